"""The report's tables as DataFrames (numbers, not strings; ``markdown.py`` formats them).

Accuracy-like values are in percent, differences in percentage points (pp). Arms: mean and sample sd
(ddof=1) over the seeds of completed runs. Differences: ``treatment - control`` paired by seed (only
seeds present in both arms) with the statistics of ``stats.py``. When a sweep holds several recipes
(``config.recipe.name``), every table is built per recipe and carries a leading ``recipe`` column:
runs of different recipes are never pooled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import product
from typing import Any

import pandas as pd

from kd_lightning.report import stats
from kd_lightning.report.paper import TABLES, Comparison, paper_accuracy, paper_diffs
from kd_lightning.report.runs import (
    COMPLEXITY_MEASURES,
    COMPLEXITY_RANK,
    DEFAULT_METRIC,
    FIDELITY_FIELDS,
    completed_runs,
    datasets_in,
    differences_label,
    factor_points,
    methods_in,
    metric_values,
    paired_arms,
    paired_by_level,
    paired_values,
    per_recipe,
    roles,
    student_methods,
    students_of,
)

PAIRED_COLUMNS = (
    "dataset complexity_rank treatment control n_pairs seeds diff_mean diff_std treatment_std control_std "
    "corr ci_low ci_high p p_holm holm_level holm_low holm_high resolved mde paper_diff "
    "pairs_needed_paper"
).split()


def paired_from_values(
    values: pd.DataFrame, treatment: str, control: str, alpha: float = stats.ALPHA, power: bool = True
) -> pd.DataFrame:
    """:func:`paired_comparison` on a plain frame (dataset, method, seed, value in percent) of one recipe.
    ``power=False`` leaves the MDE and seeds-needed columns NaN (they cost time, not verdicts)."""
    arms = paired_arms(values, treatment, control)
    family = stats.paired_family(arms, paper_diffs(treatment, control), alpha, power)
    rows = [
        {
            "dataset": d,
            "complexity_rank": COMPLEXITY_RANK.get(d),
            "treatment": treatment,
            "control": control,
            "seeds": ",".join(str(int(s)) for s in arms[d].index),
            **row,
        }
        for d, row in family.items()
    ]
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS).astype({"n_pairs": int})


def paired_comparison(
    runs: pd.DataFrame, treatment: str, control: str, metric: str = DEFAULT_METRIC, alpha: float = stats.ALPHA
) -> pd.DataFrame:
    """Per dataset: ``treatment - control`` (pp), paired by seed: mean, sd, 95% t-interval, two-sided p,
    Holm-adjusted p across the datasets (and the interval at Holm's level), ``resolved`` (``+``/``−`` when
    the Holm-adjusted p < alpha), the minimum detectable effect at 80% power, the paper's difference and
    the number of seeds that would detect it with 80% power at the observed sd."""
    return per_recipe(runs, lambda sub: paired_from_values(metric_values(sub, metric), treatment, control, alpha))


def student_comparisons(
    runs: pd.DataFrame, metric: str = DEFAULT_METRIC, versus: str = "control"
) -> dict[tuple[str, str], pd.DataFrame]:
    """What the gain figures draw: each distilling student's :func:`paired_comparison` with the control, or every
    student's with the teacher (``versus="teacher"``), keyed by (student, control or teacher)."""
    teacher, control, students = roles(runs)
    if versus == "teacher":
        return {(s, teacher): paired_comparison(runs, s, teacher, metric) for s in student_methods(runs)}
    return {(s, control): paired_comparison(runs, s, control, metric) for s in students}


def summary_table(runs: pd.DataFrame, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """Per dataset and method: n seeds, mean and sample std of ``metric`` in percent, paper's value
    (only where every run of the cell is paper-configured). Every dataset/method seen gets a row."""
    cols = ["dataset", "complexity_rank", "method", "n", "mean", "std", "seeds", "paper_comparable", "paper"]

    def build(sub: pd.DataFrame) -> pd.DataFrame:
        done = completed_runs(sub, metric)
        rows = []
        for dataset, method in product(datasets_in(sub), methods_in(sub)):
            arm = done[(done["dataset"] == dataset) & (done["method"] == method)]
            s = stats.mean_ci(arm[metric].astype(float) * 100.0)
            comparable = bool(len(arm)) and bool(arm["paper_comparable"].all()) if "paper_comparable" in arm else False
            paper = paper_accuracy(dataset, method)
            rows.append(
                {
                    "dataset": dataset,
                    "complexity_rank": COMPLEXITY_RANK.get(dataset),
                    "method": method,
                    "n": s["n"],
                    "mean": s["mean"],
                    "std": s["std"],
                    "seeds": ",".join(str(int(x)) for x in sorted(arm["seed"].dropna().astype(int))),
                    "paper_comparable": comparable,
                    "paper": paper if comparable and paper is not None else math.nan,
                }
            )
        return pd.DataFrame(rows, columns=cols)

    return per_recipe(runs, build)


def comparison_table(runs: pd.DataFrame, comparison: Comparison, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """One two-arm table: both arms (mean, std, n), the paired difference with its 95% t-interval, Holm's
    adjusted p and interval, the MDE and seeds needed for the paper's difference, and the paper's values
    (filled only where every run of the row is paper-configured; otherwise ``differences`` says why)."""

    def build(sub: pd.DataFrame) -> pd.DataFrame:
        summary = summary_table(sub, metric).set_index(["dataset", "method"])
        paired = paired_from_values(metric_values(sub, metric), comparison.treatment, comparison.control).set_index(
            "dataset"
        )
        done = completed_runs(sub, metric)
        rows = []
        for dataset in paired.index:
            row: dict[str, Any] = {"dataset": dataset, "complexity_rank": COMPLEXITY_RANK.get(dataset)}
            for method in (comparison.first, comparison.second):
                cell = summary.loc[(dataset, method)] if (dataset, method) in summary.index else None
                row[f"{method}_mean"] = cell["mean"] if cell is not None else math.nan
                row[f"{method}_std"] = cell["std"] if cell is not None else math.nan
                row[f"{method}_n"] = int(cell["n"]) if cell is not None else 0
            p = paired.loc[dataset]
            row.update({k: p[k] for k in PAIRED_COLUMNS[4:] if k != "paper_diff"})
            arms = done[(done["dataset"] == dataset) & done["method"].isin([comparison.first, comparison.second])]
            comparable = (
                bool(row[f"{comparison.first}_n"])
                and bool(row[f"{comparison.second}_n"])
                and "paper_comparable" in arms
                and bool(arms["paper_comparable"].all())
            )
            row["differences"] = differences_label(arms)
            row["paper_comparable"] = comparable
            for method in (comparison.first, comparison.second):
                value = paper_accuracy(dataset, method)
                row[f"paper_{method}"] = value if comparable and value is not None else math.nan
            row["paper_diff"] = p["paper_diff"] if comparable else math.nan
            if not comparable:
                row["pairs_needed_paper"] = math.nan
            rows.append(row)
        return pd.DataFrame(rows)

    return per_recipe(runs, build)


# --------------------------------------------------------------------------------------------------
# Fidelity, calibration, gap closed


def fidelity_table(runs: pd.DataFrame, split: str = "test_best") -> pd.DataFrame:
    """Per dataset x method, at one checkpoint (``test_best`` or ``test_last``): accuracy, NLL, ECE,
    teacher-student top-1 agreement and KL(teacher || student), mean, sd and n over seeds (NaN where
    the records do not carry the field: older records, or students without a teacher)."""

    def build(sub: pd.DataFrame) -> pd.DataFrame:
        done = completed_runs(sub)
        rows = []
        for dataset, method in product(datasets_in(sub), methods_in(sub)):
            arm = done[(done["dataset"] == dataset) & (done["method"] == method)] if not done.empty else done
            row: dict[str, Any] = {"dataset": dataset, "method": method}
            for field, name, scale, _ in FIDELITY_FIELDS:
                col = f"{split}.{field}"
                values = (
                    pd.to_numeric(arm[col], errors="coerce").dropna() * scale if col in arm else pd.Series(dtype=float)
                )
                s = stats.mean_ci(values)
                row.update({f"{name}_mean": s["mean"], f"{name}_std": s["std"], f"{name}_n": s["n"]})
            rows.append(row)
        return pd.DataFrame(rows)

    return per_recipe(runs, build)


def gap_closed_from_values(
    values: pd.DataFrame, students: Sequence[str] | None = None, teacher: str | None = None, control: str | None = None
) -> pd.DataFrame:
    """Gap closed per dataset and student on a plain frame (one recipe); see :func:`gap_closed_table`. The
    teacher, control and students default to the frame's roles (:func:`kd_lightning.report.runs.roles`)."""
    default_teacher, default_control, default_students = roles(values)
    teacher, control = teacher or default_teacher, control or default_control
    students = default_students if students is None else students
    cols = "dataset student n_seeds gain_mean gain_low gain_high teacher_gap_mean gap_closed paper_gap_closed".split()
    rows = []
    if values.empty:
        return pd.DataFrame(columns=cols)
    wide = values.pivot_table(index=["dataset", "seed"], columns="method", values="value", aggfunc="first")
    for dataset, student in product(datasets_in(values), students):
        row: dict[str, Any] = {"dataset": dataset, "student": student}
        need = [teacher, control, student]
        if all(m in wide for m in need) and dataset in wide.index.get_level_values(0):
            both = wide.loc[dataset].dropna(subset=need)
            gain = stats.mean_ci((both[student] - both[control]).to_numpy())
            gap = float((both[teacher] - both[control]).mean()) if len(both) else math.nan
        else:
            both, gain, gap = [], stats.mean_ci([]), math.nan
        row.update(
            {
                "n_seeds": len(both),
                "gain_mean": gain["mean"],
                "gain_low": gain["ci_low"],
                "gain_high": gain["ci_high"],
                "teacher_gap_mean": gap,
                "gap_closed": gain["mean"] / gap if gap >= stats.GAP_MIN_PP else math.nan,
            }
        )
        pt, ps, pk = (paper_accuracy(dataset, m) for m in need)
        row["paper_gap_closed"] = (
            (pk - ps) / (pt - ps) if None not in (pt, ps, pk) and pt - ps >= stats.GAP_MIN_PP else math.nan
        )
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def gap_closed_table(runs: pd.DataFrame, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """Share of the teacher-scratch gap a KD student closes, beside its absolute gain over scratch.

    Over the seeds that have teacher, scratch and the student: gain = mean over seeds of
    (student - scratch) with its 95% t-interval; teacher gap = mean of (teacher - scratch);
    gap closed = gain / teacher gap (a ratio of paired means; 1 = as good as the teacher, 0 = no better
    than scratch, negative = worse than scratch, > 1 = better than the teacher). NaN (n/a) when the
    teacher gap is below ``GAP_MIN_PP`` (1 pp) or negative: with no room between scratch and teacher the
    ratio says nothing. The paper's gap closed (from its printed accuracies) is shown only where the
    rows are paper-configured.
    """

    def build(sub: pd.DataFrame) -> pd.DataFrame:
        teacher, control, students = roles(sub)
        out = gap_closed_from_values(metric_values(sub, metric), students, teacher, control)
        done = completed_runs(sub, metric)
        comparable = (
            {d: bool(len(g)) and bool(g["paper_comparable"].all()) for d, g in done.groupby("dataset")}
            if "paper_comparable" in done
            else {}
        )
        out.loc[[not comparable.get(d, False) for d in out["dataset"]], "paper_gap_closed"] = math.nan
        return out

    return per_recipe(runs, build)


def evidence_table(runs: pd.DataFrame, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """How much evidence each comparison has: pairs, sd of the paired differences, the minimum detectable
    effect at 80% power (two-sided paired t, alpha 0.05), the paper's difference and the seeds that would
    detect it with 80% power at the observed sd."""
    frames = [paired_comparison(runs, c.treatment, c.control, metric) for c in TABLES]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------------
# Efficiency (results.json "efficiency", when the runs carry it)

EFFICIENCY_COLUMNS = {
    "efficiency.params": "params",
    "efficiency.flops_per_image": "flops_per_image",
    "efficiency.checkpoint_mb": "checkpoint_mb",
    "efficiency.latency_ms_b1": "latency_ms_b1",
    "efficiency.throughput_b64_img_s": "throughput_b64_img_s",
}


def has_efficiency(runs: pd.DataFrame) -> bool:
    return "efficiency.params" in runs and bool(pd.to_numeric(runs["efficiency.params"], errors="coerce").notna().any())


def efficiency_table(runs: pd.DataFrame, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """Per dataset x method: accuracy (mean, std) and cost (median over seeds: a timing slowed by another
    process on the machine must not move it): parameters, FLOPs per image,
    checkpoint size (MB), CPU latency at batch 1 (median ms) and throughput at batch 64 (img/s)."""

    def build(sub: pd.DataFrame) -> pd.DataFrame:
        done = completed_runs(sub, metric)
        rows = []
        for dataset, method in product(datasets_in(sub), methods_in(sub)):
            arm = done[(done["dataset"] == dataset) & (done["method"] == method)]
            if arm.empty:
                continue
            s = stats.mean_ci(arm[metric].astype(float) * 100.0)
            row = {
                "dataset": dataset,
                "method": method,
                "n": s["n"],
                "acc_mean": s["mean"],
                "acc_std": s["std"],
                "acc_ci_low": s["ci_low"],
                "acc_ci_high": s["ci_high"],
            }
            for col, name in EFFICIENCY_COLUMNS.items():
                row[name] = float(pd.to_numeric(arm[col], errors="coerce").median()) if col in arm else math.nan
            rows.append(row)
        return pd.DataFrame(rows)

    return per_recipe(runs, build) if has_efficiency(runs) else pd.DataFrame()


def student_buys_table(runs: pd.DataFrame, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """What the student buys against its teacher, per dataset and student: accuracy kept (student /
    teacher mean accuracy, %), gap to the teacher (paired student - teacher, pp, 95% CI), speed-up
    (teacher / student median batch-1 latency), size reduction (teacher / student parameters) and
    compute reduction (teacher / student FLOPs per image)."""

    def build(sub: pd.DataFrame) -> pd.DataFrame:
        eff = efficiency_table(sub, metric)
        if eff.empty:
            return eff
        eff = eff.set_index(["dataset", "method"])
        values = metric_values(sub, metric)
        rows = []
        teacher = roles(sub)[0]
        for dataset in datasets_in(sub):
            if (dataset, teacher) not in eff.index:
                continue
            t = eff.loc[(dataset, teacher)]
            for student in student_methods(sub):
                if (dataset, student) not in eff.index:
                    continue
                s = eff.loc[(dataset, student)]
                gap = stats.mean_ci(
                    paired_values(values, student, teacher).get(dataset, pd.Series(dtype=float)).to_numpy()
                )

                def ratio(a: float, b: float) -> float:
                    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan

                rows.append(
                    {
                        "dataset": dataset,
                        "student": student,
                        "acc_mean": s["acc_mean"],
                        "teacher_acc_mean": t["acc_mean"],
                        "accuracy_kept": 100.0 * ratio(s["acc_mean"], t["acc_mean"]),
                        "gap_to_teacher": gap["mean"],
                        "gap_low": gap["ci_low"],
                        "gap_high": gap["ci_high"],
                        "n_pairs": gap["n"],
                        "speed_up": ratio(t["latency_ms_b1"], s["latency_ms_b1"]),
                        "size_reduction": ratio(t["params"], s["params"]),
                        "flops_reduction": ratio(t["flops_per_image"], s["flops_per_image"]),
                    }
                )
        return pd.DataFrame(rows)

    return per_recipe(runs, build) if has_efficiency(runs) else pd.DataFrame()


# --------------------------------------------------------------------------------------------------
# Single-factor sweeps: what KD buys as one characteristic of the data changes (issue 12; the levels: ``runs.py``)


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
