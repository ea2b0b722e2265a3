"""Sizing the next sweep from a pilot: the seeds each factor claim needs for a stated effect (issue 29).

``python -m kd_lightning.report plan <sweep-or-report-dir> --effect 0.5`` reads a pilot sweep (its results.json
files, or a committed report's ``tables/runs.csv`` when the run folders are elsewhere), estimates each student's
sd of the per-seed statistic (slope on the levels' positions, or the hardest-minus-easiest contrast) and prints,
under the report's own rule (one-sided t-test over seeds, every student named must pass, each pilot sd at its
upper confidence limit ``stats.SD_CONFIDENCE``), the fewest seeds with 80% power for the verdict:

- as the primary claim (full α), and as an exploratory one at Holm's first step (α / m, m the exploratory claims
  the pilot's report holds);
- the effect is ``--effect`` pp per unit of the factor's position (docs/factors.md: per halving of the data for
  ``train_fraction``) for the slope, and the same effect carried across the pilot's range of positions for the
  contrast (a linear effect's size between the easiest and the hardest level), never beyond it;
- the runs needed: seeds × levels × methods (teacher, scratch and the students); a contrast needs only its two
  levels.
"""

from __future__ import annotations

import math

import pandas as pd

from kd_lightning.report import stats
from kd_lightning.report.claims import factor_seed_part, report_claims
from kd_lightning.report.primary import PrimaryClaim
from kd_lightning.report.runs import (
    DEFAULT_METRIC,
    TWO_LEVEL_FACTORS,
    factor_points,
    level_positions,
    seeds_draw_their_own,
    students_of,
)
from kd_lightning.report.verdicts import DEFAULT_FACTOR_TEST, EXPLORATORY


def _row(factor: str, test: str, students: list[str], parts: list, effect: float, alpha: float, family: str) -> dict:
    sds = [stats.sd_upper_limit(p.sd, p.df) for p in parts]
    seeds = stats.seeds_needed(effect, sds, alpha)
    levels = 2 if test == "contrast" else None
    return {
        "factor": factor,
        "test": test,
        "students": " + ".join(students),
        "pilot seeds": parts[0].df + 1,
        "pilot sd (pp)": " / ".join(f"{p.sd:.2f}" for p in parts),
        f"sd used ({stats.SD_CONFIDENCE:.0%} upper limit)": " / ".join(f"{sd:.2f}" for sd in sds),
        "effect": round(effect, 3),
        "as": family,
        "alpha": round(alpha, 5),
        "seeds needed": seeds,
        "levels": levels,
    }


def plan_frame(
    runs: pd.DataFrame, effect: float, metric: str = DEFAULT_METRIC, primary: PrimaryClaim | None = None
) -> pd.DataFrame:
    """One row per factor, test, student set and family: the seeds its verdict needs for ``effect`` (module doc)."""
    claims = report_claims(runs, metric, primary)
    m = max(1, sum(c.family == EXPLORATORY and not math.isnan(c.p_support) for c in claims))
    rows = []
    points = factor_points(runs, metric)
    for (_, _, factor), sub in points.groupby(["dataset", "base_recipe", "factor"], sort=False):
        if not (factor in TWO_LEVEL_FACTORS or seeds_draw_their_own(sub, factor)):
            continue  # the level is the unit: more seeds do not add degrees of freedom
        students = students_of(sub)
        n_levels = sub["level"].nunique()
        methods = 2 + len(students)
        for test in ("contrast",) if factor in TWO_LEVEL_FACTORS else (DEFAULT_FACTOR_TEST, "contrast"):
            parts = {s: factor_seed_part(sub, factor, s, test) for s in students}
            if any(p.df < 1 for p in parts.values()):
                continue
            span = next(iter(parts.values())).span if test == "slope" else _span(sub, factor)
            size = effect if test == "slope" else effect * span
            for who in [[s] for s in students] + ([students] if len(students) > 1 else []):
                for family, alpha in (("primary", stats.ALPHA), (f"exploratory (1st of {m})", stats.ALPHA / m)):
                    row = _row(factor, test, who, [parts[s] for s in who], size, alpha, family)
                    row["levels"] = row["levels"] or n_levels
                    row["runs"] = row["seeds needed"] * row["levels"] * methods
                    rows.append(row)
    return pd.DataFrame(rows)


def _span(sub: pd.DataFrame, factor: str) -> float:
    x = level_positions(factor, sorted(sub["level"].unique()))
    return float(x.max() - x.min())
