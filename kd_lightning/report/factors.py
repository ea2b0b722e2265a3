"""Single-factor sweeps: what KD buys as one characteristic of the data changes (issue 12).

A factor sweep (``experiment=factor_*``) trains teacher, scratch, RKD and IKD at several levels of one
data factor (``kd_lightning/datasets/factors.py``) with everything else at the recipe's values. Runs
without data factors are the factor's default level (``train_fraction`` 1.0, ``label_noise`` 0, the
native resolution, all classes, colour, ``imbalance`` 1), so a plain sweep of the same recipe joins in.

Per dataset, recipe and factor this module gives, for every level: the paired gain of each student over
scratch (by seed, with its t-interval), the share of the teacher-scratch gap closed, fidelity
(teacher-student agreement), the teacher's accuracy and the data's measured complexity, and the rank
correlation of the gain with each complexity measure. The verdict ("the gain grows as the data gets
harder along <factor>") is :func:`kd_lightning.report.claims.factor_claims`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from kd_lightning.report import stats
from kd_lightning.report.formatting import fmt, fmt_ci, method_label
from kd_lightning.report.runs import COMPLEXITY_MEASURES, DEFAULT_METRIC, completed_runs
from kd_lightning.report.tables import GAP_MIN_PP

STUDENTS = ("rkd", "ikd")
#: +1: a larger level is harder data; -1: a smaller level is harder
DIFFICULTY_SIGN = {"train_fraction": -1, "label_noise": +1, "classes": +1, "resolution": -1, "grayscale": +1, "imbalance": +1}
#: the level of a run without this factor (resolution: the native size, filled in per run)
DEFAULT_LEVEL = {"train_fraction": 1.0, "label_noise": 0.0, "classes": None, "resolution": None, "grayscale": 0.0, "imbalance": 1.0}
FACTOR_TEXT = {
    "train_fraction": "training data shrinks", "label_noise": "label noise grows", "classes": "the number of classes grows",
    "resolution": "resolution drops", "grayscale": "colour is removed", "imbalance": "class imbalance grows",
}


def _level(factor: str, factors: dict[str, Any], row: pd.Series) -> float | None:
    value = factors.get(factor)
    if value is None:
        if factor == "resolution":
            return float(row["image_size"]) if pd.notna(row.get("image_size")) else None
        return DEFAULT_LEVEL[factor]
    if factor == "classes":
        return float(len(value))
    return float(value)


def factor_points(runs: pd.DataFrame, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """One row per completed run and factor it can be a level of: dataset, base_recipe, factor, level,
    method, seed, value (pp), agreement, complexity measures. A run with factors {} is a level of every
    factor (its default); a run with one factor (besides its seed) is a level of that factor only."""
    cols = ["dataset", "base_recipe", "factor", "level", "method", "seed", "value", "agreement", "soft_label_entropy", *COMPLEXITY_MEASURES]
    if "factors" not in runs or runs.empty:
        return pd.DataFrame(columns=cols)
    done = completed_runs(runs, metric)
    rows = []
    for _, row in done.iterrows():
        factors = row["factors"] if isinstance(row["factors"], dict) else {}
        active = [k for k in factors if k in DIFFICULTY_SIGN]
        for factor in ([active[0]] if len(active) == 1 else [] if active else list(DIFFICULTY_SIGN)):
            level = _level(factor, factors, row)
            if level is None:
                continue
            rows.append({"dataset": row["dataset"], "base_recipe": row.get("base_recipe"), "factor": factor, "level": level,
                         "method": row["method"], "seed": int(row["seed"]), "value": 100.0 * float(row[metric]),
                         "agreement": row.get("test_best.agreement"), "soft_label_entropy": row.get("test_best.soft_label_entropy"),
                         **{m: row.get(f"complexity.{m}") for m in COMPLEXITY_MEASURES}})
    points = pd.DataFrame(rows, columns=cols)
    for col in ("level", "value", "agreement", "soft_label_entropy", *COMPLEXITY_MEASURES):
        points[col] = pd.to_numeric(points[col], errors="coerce")
    if points.empty:
        return points
    # keep only factors that actually vary (a plain sweep alone is no factor study)
    varied = points.groupby(["dataset", "base_recipe", "factor"])["level"].transform("nunique") >= 2
    return points[varied].reset_index(drop=True)


def paired_by_level(sub: pd.DataFrame, treatment: str, control: str) -> pd.DataFrame:
    """Per (level, seed): treatment − control in pp, where both ran."""
    wide = sub.pivot_table(index=["level", "seed"], columns="method", values="value", aggfunc="first")
    if treatment not in wide or control not in wide:
        return pd.DataFrame(columns=["level", "seed", "diff"])
    diff = (wide[treatment] - wide[control]).dropna()
    return diff.rename("diff").reset_index()


def factor_table(runs: pd.DataFrame, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """Per dataset, recipe, factor, level and student: accuracies, paired gain over scratch with its 95%
    interval, gap closed, agreement with the teacher, and the data's measured complexity."""
    points = factor_points(runs, metric)
    out = []
    for (dataset, recipe, factor), sub in points.groupby(["dataset", "base_recipe", "factor"], sort=False):
        for level, at in sub.groupby("level"):
            means = at.groupby("method")["value"].mean()
            complexity = {m: pd.to_numeric(at[m], errors="coerce").mean() for m in COMPLEXITY_MEASURES}
            for student in STUDENTS:
                paired = paired_by_level(at, student, "scratch")
                t = stats.paired_t(paired["diff"].to_numpy())
                teacher, scratch, kd = means.get("teacher", math.nan), means.get("scratch", math.nan), means.get(student, math.nan)
                gap = teacher - scratch
                out.append({
                    "dataset": dataset, "recipe": recipe, "factor": factor, "level": level, "student": student,
                    "teacher": teacher, "scratch": scratch, "student_acc": kd, "n_pairs": t["n"],
                    "gain": t["mean"], "gain_ci_low": t["ci_low"], "gain_ci_high": t["ci_high"],
                    "gap_closed": (kd - scratch) / gap if gap >= GAP_MIN_PP else math.nan,  # no room to close otherwise
                    "agreement": at.loc[at["method"] == student, "agreement"].mean(),
                    "teacher_soft_label_entropy": at.loc[at["method"] == "teacher", "soft_label_entropy"].mean(),
                    **{f"complexity.{m}": v for m, v in complexity.items()},
                })
    return pd.DataFrame(out)


def complexity_evidence(points: pd.DataFrame, student: str) -> list[str]:
    """Rank correlation of the per-level mean gain with each measured complexity (bootstrap over seeds)."""
    paired = paired_by_level(points, student, "scratch")
    measures = points.groupby("level")[list(COMPLEXITY_MEASURES)].mean(numeric_only=True)
    lines = []
    for m in COMPLEXITY_MEASURES:
        by_level = [(measures.loc[lv, m], d.to_numpy()) for lv, d in paired.groupby("level")["diff"]
                    if lv in measures.index and pd.notna(measures.loc[lv, m])]
        if len(by_level) < 3:
            continue
        x = [v for v, _ in by_level]
        rho = stats.spearman_rho(x, [d.mean() for _, d in by_level])
        low, high = stats.bootstrap_rho(x, [d for _, d in by_level])
        lines.append(f"{m} {fmt(rho, signed=True)} {fmt_ci(low, high)}")
    if not lines:
        return []
    return [f"- {method_label(student)} gain vs measured complexity over {paired['level'].nunique()} levels "
            f"(Spearman rho, 95% bootstrap interval over seeds): " + "; ".join(lines) + "."]
