"""Single-factor sweeps: what KD buys as one characteristic of the data changes (issue 12).

A factor sweep (``experiment=factor_*``) trains teacher, scratch, RKD and IKD at several levels of one
data factor (``kd_lightning/datasets/factors.py``) with everything else at the recipe's values. Runs
without data factors are the factor's default level (``train_fraction`` 1.0, ``label_noise`` 0, the
native resolution, all classes (``num_classes``), colour, ``imbalance`` 1), so a plain sweep of the same
recipe joins in. ``label_noise`` with ``noise_kind=pairs`` is its own factor, ``label_noise (pairs)``.

Per dataset, recipe and factor this module gives, for every level: the paired gain of each student over
scratch (by seed, with its t-interval), the share of the teacher-scratch gap closed, fidelity
(teacher-student agreement), the teacher's accuracy and the data's measured complexity, and the rank
correlation of the gain with each complexity measure. Every column comes from the checkpoint the
headline metric names (``test_best`` or ``test_last``). The verdicts are
:func:`kd_lightning.report.claims.factor_claims` (their words: ``claims_text.py``).

Pairing: a student is compared with the scratch run of the same level, seed and data draw
(``factor_seed``), never across conditions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from kd_lightning.report import stats
from kd_lightning.report.runs import (
    COMPLEXITY_MEASURES,
    DEFAULT_METRIC,
    completed_runs,
    distilling_methods,
    roles,
    teacher_check,
)

PAIRS_NOISE = "label_noise (pairs)"
#: +1: a larger level is harder data; -1: a smaller level is harder
DIFFICULTY_SIGN = {
    "train_fraction": -1,
    "label_noise": +1,
    PAIRS_NOISE: +1,
    "classes": +1,
    "resolution": -1,
    "grayscale": +1,
    "imbalance": +1,
}
#: a level's position on its factor's axis, larger = harder (the x of a slope; docs/factors.md): halvings of the
#: training set (log2 of the reduction 1/f), doublings of the imbalance ratio (log2 ρ), tenths of the label-noise
#: rate (10 η), doublings of the class count (log2 k), halvings of the resolution (−log2 r: the shift by the
#: native size cancels in a slope), and colour removed (0 / 1)
LEVEL_POSITION = {
    "train_fraction": lambda f: -np.log2(f),
    "imbalance": np.log2,
    "label_noise": lambda eta: 10 * eta,
    PAIRS_NOISE: lambda eta: 10 * eta,
    "classes": np.log2,
    "resolution": lambda r: -np.log2(r),
    "grayscale": lambda g: 1.0 * g,
}
#: factors whose levels are two fixed conditions: a paired contrast, not a trend
TWO_LEVEL_FACTORS = frozenset({"grayscale"})
#: factors that draw at random (from ``factor_seed``): their data draw is part of a level's condition
RANDOM_FACTORS = frozenset({"train_fraction", "label_noise", PAIRS_NOISE, "imbalance"})
#: the level of a run without this factor (None: read from the run, see :func:`_level`)
DEFAULT_LEVEL = {
    "train_fraction": 1.0,
    "label_noise": 0.0,
    PAIRS_NOISE: 0.0,
    "classes": None,
    "resolution": None,
    "grayscale": 0.0,
    "imbalance": 1.0,
}
POINT_COLUMNS = [
    "dataset",
    "base_recipe",
    "factor",
    "level",
    "method",
    "distils",
    "seed",
    "factor_seed",
    "value",
    "agreement",
    "soft_label_entropy",
    "teacher_match",
    *COMPLEXITY_MEASURES,
]


def factor_of(factors: dict[str, Any]) -> list[str]:
    """The factors a run's data-factor identity turns on (``label_noise`` with pairs noise is its own)."""
    active = [k for k in factors if k in DIFFICULTY_SIGN]
    if factors.get("noise_kind") == "pairs":
        active = [PAIRS_NOISE if k == "label_noise" else k for k in active]
    return active


def _level(factor: str, factors: dict[str, Any], row: pd.Series) -> float | None:
    key = "label_noise" if factor == PAIRS_NOISE else factor
    value = factors.get(key)
    if value is None:
        if factor == "resolution":
            return float(row["image_size"]) if pd.notna(row.get("image_size")) else None
        if factor == "classes":  # every class: the dataset's own count
            return float(row["num_classes"]) if pd.notna(row.get("num_classes")) else None
        return DEFAULT_LEVEL[factor]
    if factor == "classes":
        return float(len(value))
    return float(value)


def split_of(metric: str) -> str:
    """``test_last`` for ``test_last.acc``: the checkpoint every other column of a row must come from."""
    return metric.split(".", 1)[0]


def factor_points(runs: pd.DataFrame, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """One row per completed run and factor it can be a level of: dataset, base_recipe, factor, level,
    method, seed, factor_seed, value (pp), agreement and soft-label entropy (same checkpoint as
    ``metric``), teacher_match (students: is their teacher the sweep's teacher row?), complexity
    measures. A run with factors {} is a level of every factor (its default); a run with one factor
    (besides its seed) is a level of that factor only."""
    if "factors" not in runs or runs.empty:
        return pd.DataFrame(columns=POINT_COLUMNS)
    done = completed_runs(runs, metric)
    done = done.assign(distils=done["method"].isin(distilling_methods(done)))
    split = split_of(metric)
    checks = teacher_check(runs)
    mismatch = {
        (r["recipe"], r["dataset"], r["method"], int(r["seed"])): r["teacher_match"] for r in checks.to_dict("records")
    }
    rows = []
    for _, row in done.iterrows():
        factors = row["factors"] if isinstance(row["factors"], dict) else {}
        active = factor_of(factors)
        for factor in [active[0]] if len(active) == 1 else [] if active else list(DIFFICULTY_SIGN):
            level = _level(factor, factors, row)
            if level is None:
                continue
            rows.append(
                {
                    "dataset": row["dataset"],
                    "base_recipe": row.get("base_recipe"),
                    "factor": factor,
                    "level": level,
                    "method": row["method"],
                    "distils": row["distils"],
                    "seed": int(row["seed"]),
                    "factor_seed": factors.get("factor_seed", -1),
                    "value": 100.0 * float(row[metric]),
                    "agreement": row.get(f"{split}.agreement"),
                    "soft_label_entropy": row.get(f"{split}.soft_label_entropy"),
                    "teacher_match": mismatch.get((row["recipe"], row["dataset"], row["method"], int(row["seed"])), ""),
                    **{m: row.get(f"complexity.{m}") for m in COMPLEXITY_MEASURES},
                }
            )
    points = pd.DataFrame(rows, columns=POINT_COLUMNS)
    for col in ("level", "value", "agreement", "soft_label_entropy", *COMPLEXITY_MEASURES):
        points[col] = pd.to_numeric(points[col], errors="coerce")
    if points.empty:
        return points
    # keep only factors that actually vary (a plain sweep alone is no factor study)
    varied = points.groupby(["dataset", "base_recipe", "factor"])["level"].transform("nunique") >= 2
    return points[varied].reset_index(drop=True)


def paired_by_level(sub: pd.DataFrame, treatment: str, control: str) -> pd.DataFrame:
    """Per (level, seed, factor_seed): treatment − control in pp, where both ran on that condition.

    A run keyed by these is unique once :func:`kd_lightning.report.runs.pick_runs` has kept one record
    per condition (duplicates are listed in the report's problems), so nothing is averaged away here."""
    keys = ["level", "seed", "factor_seed"]
    arms = sub[sub["method"].isin([treatment, control])].drop_duplicates([*keys, "method"])
    wide = arms.pivot(index=keys, columns="method", values="value") if not arms.empty else pd.DataFrame()
    if treatment not in wide or control not in wide:
        return pd.DataFrame(columns=[*keys, "diff"])
    diff = (wide[treatment] - wide[control]).dropna()
    return diff.rename("diff").reset_index()


def students_of(points: pd.DataFrame) -> list[str]:
    """The distilling students a factor's points hold (each is compared with the control)."""
    return distilling_methods(points) if len(points) else []


def difficulty_ranks(factor: str, levels: Any) -> np.ndarray:
    """1 for the easiest level, L for the hardest (ties share the average rank)."""
    return rankdata(DIFFICULTY_SIGN[factor] * np.asarray(levels, dtype=float))


def level_positions(factor: str, levels: Any) -> np.ndarray:
    """Each level's fixed position on the factor's axis (:data:`LEVEL_POSITION`), larger = harder.

    Fixed by the factor's definition, never by the levels a sweep happens to hold: a slope is per unit of
    this axis, and adding or dropping a level moves no other level."""
    return LEVEL_POSITION[factor](np.asarray(levels, dtype=float))


def seeds_draw_their_own(points: pd.DataFrame, factor: str) -> bool:
    """True when the seed is the unit: the factor draws at random and every drawn run's data draw is its own
    seed's (``factor_seed = seed``), so each seed is one chain of draws across the levels."""
    if factor not in RANDOM_FACTORS:
        return False
    drawn = points[points["factor_seed"].astype(int) >= 0]
    return not drawn.empty and bool((drawn["factor_seed"].astype(int) == drawn["seed"].astype(int)).all())


#: what the seeds at one level replicate (:func:`draw_design`)
DRAW_DESIGNS = ("fixed", "none", "own", "shared", "mixed")


def draw_design(points: pd.DataFrame, factor: str) -> str:
    """What the seeds at one level replicate: ``fixed`` transformations (no draw), ``none`` drawn at random,
    each seed its ``own`` draw, one ``shared`` draw per level, or ``mixed``."""
    if factor not in RANDOM_FACTORS:
        return "fixed"
    drawn = points[points["factor_seed"].astype(int) >= 0]
    if drawn.empty:
        return "none"
    if (drawn["factor_seed"].astype(int) == drawn["seed"].astype(int)).all():
        return "own"
    shared = drawn.groupby("level").apply(
        lambda g: g["factor_seed"].nunique() == 1 and g["seed"].nunique() > 1, include_groups=False
    )
    return "shared" if shared.all() else "mixed"


def factor_table(runs: pd.DataFrame, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """Per dataset, recipe, factor, level and student: accuracies, paired gain over scratch with its 95%
    interval, gap closed, agreement with the teacher, and the data's measured complexity.

    Gap closed uses only students distilled from the sweep's own teacher row (``teacher_match`` not "no")."""
    points = factor_points(runs, metric)
    out = []
    for (dataset, recipe, factor), sub in points.groupby(["dataset", "base_recipe", "factor"], sort=False):
        teacher_name, control, _ = roles(sub)
        for level, at in sub.groupby("level"):
            means = at.groupby("method")["value"].mean()
            complexity = {m: pd.to_numeric(at[m], errors="coerce").mean() for m in COMPLEXITY_MEASURES}
            for student in students_of(at):
                paired = paired_by_level(at, student, control)
                t = stats.paired_t(paired["diff"].to_numpy())
                teacher, scratch, kd = (
                    means.get(teacher_name, math.nan),
                    means.get(control, math.nan),
                    means.get(student, math.nan),
                )
                own_teacher = at[(at["method"] == student) & (at["teacher_match"] != "no")]["value"].mean()
                gap = teacher - scratch
                out.append(
                    {
                        "dataset": dataset,
                        "recipe": recipe,
                        "factor": factor,
                        "level": level,
                        "student": student,
                        "teacher": teacher,
                        "scratch": scratch,
                        "student_acc": kd,
                        "n_pairs": t["n"],
                        "gain": t["mean"],
                        "gain_ci_low": t["ci_low"],
                        "gain_ci_high": t["ci_high"],
                        "gap_closed": (own_teacher - scratch) / gap
                        if gap >= stats.GAP_MIN_PP
                        else math.nan,  # no room to close otherwise
                        "agreement": at.loc[at["method"] == student, "agreement"].mean(),
                        "teacher_soft_label_entropy": at.loc[at["method"] == teacher_name, "soft_label_entropy"].mean(),
                        **{f"complexity.{m}": v for m, v in complexity.items()},
                    }
                )
    return pd.DataFrame(out)


def complexity_rhos(points: pd.DataFrame, student: str) -> tuple[Any, ...] | None:
    """Rank correlation of the per-level mean gain with each measured complexity (bootstrap over seeds):
    (student, levels, ((measure, rho, low, high), ...)); None when no measure covers 3 levels."""
    paired = paired_by_level(points, student, roles(points)[1])
    measures = points.groupby("level")[list(COMPLEXITY_MEASURES)].mean(numeric_only=True)
    found = []
    for m in COMPLEXITY_MEASURES:
        by_level = [
            (measures.loc[lv, m], d.to_numpy())
            for lv, d in paired.groupby("level")["diff"]
            if lv in measures.index and pd.notna(measures.loc[lv, m])
        ]
        if len(by_level) < 3:
            continue
        x = [v for v, _ in by_level]
        rho = stats.spearman_rho(x, [d.mean() for _, d in by_level])
        found.append((m, rho, *stats.bootstrap_rho(x, [d for _, d in by_level])))
    return (student, paired["level"].nunique(), tuple(found)) if found else None
