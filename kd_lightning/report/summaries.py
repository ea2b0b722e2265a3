"""The tables of docs/findings.md (one factor's levels side by side) and docs/recipes.md (two recipes side by
side), as frames built by the report's own table functions from a sweep or a report folder
(``python -m kd_lightning.report findings|recipes <folder>`` prints them; ``markdown.py`` writes the words).
Every interval is one of ``stats.py``'s."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from kd_lightning.report import stats
from kd_lightning.report.runs import DEFAULT_LEVEL, METRICS, checkpoint, completed_runs, methods_in, roles
from kd_lightning.report.tables import factor_table, fidelity_table, gap_closed_table, paired_comparison, summary_table


def _levels(runs: pd.DataFrame, factor: str) -> dict[str, float]:
    """Each condition (the ``recipe`` column) and its level of ``factor`` (the default level for runs without it)."""
    return {
        r["recipe"]: float((r["factors"] if isinstance(r["factors"], dict) else {}).get(factor, DEFAULT_LEVEL[factor]))
        for r in runs.to_dict("records")
    }


def _with_level(frame: pd.DataFrame, levels: dict[str, float]) -> pd.DataFrame:
    if "recipe" not in frame:  # one condition: per_recipe leaves the column out
        return frame.assign(level=next(iter(levels.values()), math.nan))
    return frame.assign(level=frame["recipe"].map(levels))


def with_interval(summary: pd.DataFrame) -> pd.DataFrame:
    """Each arm of :func:`summary_table` with the t-interval of its mean (from its mean, sd and n)."""
    arms = summary[["mean", "std", "n"]].to_numpy()
    bounds = [stats.t_interval(m, s / math.sqrt(n) if n else math.nan, int(n), stats.CONFIDENCE) for m, s, n in arms]
    return summary.assign(ci_low=[b[0] for b in bounds], ci_high=[b[1] for b in bounds])


def level_tables(runs: pd.DataFrame, factor: str = "train_fraction") -> dict[str, Any]:
    """Per checkpoint: every arm with its interval, each student's and the teacher's paired difference from the
    control, gap closed and agreement per level; then the factor's complexity per level and the wall times."""
    levels = _levels(runs, factor)
    teacher, control, students = roles(runs)
    out: dict[str, Any] = {"roles": (teacher, control, students), "methods": methods_in(runs)}
    for metric in METRICS:
        key = checkpoint(metric)
        diffs = [paired_comparison(runs, m, control, metric) for m in [*students, teacher]]
        out[key] = {
            "arms": _with_level(with_interval(summary_table(runs, metric)), levels),
            "diffs": [_with_level(d, levels) for d in diffs],
            "gap_closed": _with_level(gap_closed_table(runs, metric), levels),
            "fidelity": _with_level(fidelity_table(runs, f"test_{key}"), levels),
        }
    factors = factor_table(runs)
    if factors.empty:  # no condition has two levels of any factor (a recipe comparison): no complexity rows
        factors = pd.DataFrame(columns=["factor", "student", "recipe", "level"])
    complexity = factors[(factors["factor"] == factor) & (factors["student"] == students[0])]
    # factor_table names a sweep by its base recipe; the other tables by each level's condition
    condition = {(b, levels[r]): r for r, b in zip(runs["recipe"], runs["base_recipe"])}
    named = [condition.get((b, lv), b) for b, lv in zip(complexity["recipe"], complexity["level"])]
    out["complexity"] = complexity.assign(recipe=named).sort_values("level")
    done = completed_runs(runs)  # one record per run, as every other table counts them
    walls = _with_level(done, levels)[["recipe", "level", "method", "wall_time_s", "optimizer_steps", "teacher_key"]]
    # one teacher serving several levels (teacher.data=full) trained once, at its largest level: its rows at the
    # others record the same training time, which was not spent again
    trained_at = walls.groupby("teacher_key")["level"].transform("max")
    reused = walls["teacher_key"].notna() & (walls["level"] != trained_at)
    out["walls"] = walls.assign(reused=reused, wall_time_s=walls["wall_time_s"].where(~reused))
    return out


def recipe_tables(runs: pd.DataFrame, first: str, second: str) -> dict[str, pd.DataFrame]:
    """Two recipes side by side per method: each one's mean and sd per checkpoint, ``first − second`` with a
    Welch interval (different recipes draw different batches: nothing pairs them), the median and the fastest
    wall time per run (a run that shared the CPU is slow in the median, not in the minimum), and each recipe's
    paired teacher − control."""
    walls = runs[runs["status"] == "completed"].groupby(["recipe", "method"])["wall_time_s"]
    wall, fastest = walls.median(), walls.min()
    summaries = {checkpoint(m): summary_table(runs, m).set_index(["recipe", "method"]) for m in METRICS}
    rows = []
    for method in methods_in(runs):
        row: dict[str, Any] = {"method": method}
        for key, arms in summaries.items():
            cells = {r: tuple(arms.loc[(r, method), ["mean", "std", "n"]]) for r in (first, second)}
            row.update({f"{r}_{key}": cells[r][:2] for r in (first, second)})
            row[f"diff_{key}"] = stats.welch_interval(cells[first], cells[second])
        row.update({f"{r}_wall": (wall[(r, method)], fastest[(r, method)]) for r in (first, second)})
        rows.append(row)
    teacher, control, _ = roles(runs)
    gaps = {checkpoint(m): paired_comparison(runs, teacher, control, m) for m in METRICS}
    return {"methods": pd.DataFrame(rows), "gaps": gaps, "roles": (teacher, control)}
