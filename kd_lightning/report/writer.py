"""Writing a sweep's report folder: report.md, figures/*.png and tables/*.csv."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from kd_lightning.report.claims import Claim, claims_frame, report_claims
from kd_lightning.report.curves import summary_of_folders
from kd_lightning.report.factor_sweeps import factor_table
from kd_lightning.report.figures import (
    plot_accuracy,
    plot_accuracy_vs_cost,
    plot_factor_gain,
    plot_gain_by_recipe,
    plot_gain_over_scratch,
    plot_gain_vs_complexity,
    plot_per_class_f1,
    plot_students_vs_teacher,
    plot_training_curves,
    save_figure,
)
from kd_lightning.report.markdown import build_markdown
from kd_lightning.report.problems import find_issues
from kd_lightning.report.provenance import teacher_check
from kd_lightning.report.runs import (
    DEFAULT_METRIC,
    METRICS,
    SPLITS,
    datasets_in,
    for_recipe,
    load_runs,
    recipes_in,
    run_counts,
)
from kd_lightning.report.tables import (
    TABLES,
    comparison_table,
    efficiency_table,
    evidence_table,
    fidelity_table,
    gap_closed_table,
    has_efficiency,
    student_buys_table,
    summary_table,
)
from kd_lightning.report.teacher_gate import teacher_gate


def file_tag(recipe: str) -> str:
    """A recipe label as a file-name part: ``paper · train_fraction=0.1`` -> ``paper_train_fraction-0.1``
    (no spaces or symbols that break Markdown links or shells)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", recipe.replace("=", "-")).strip("_")


def _short(metric: str) -> str:
    return metric.split(".")[0].removeprefix("test_")


def write_figures(runs: pd.DataFrame, curves: pd.DataFrame, metric: str, figures: Path) -> list[tuple[str, Path]]:
    """Every figure of the report, as (caption, path); one set per recipe when there are several."""
    made = []
    recipes = recipes_in(runs)
    for recipe in recipes:
        sub = for_recipe(runs, recipe)
        sub_curves = curves[curves["recipe"] == recipe] if "recipe" in curves else curves
        tag, where = (f"_{file_tag(recipe)}", f" — recipe {recipe}") if len(recipes) > 1 else ("", "")
        made += [
            (
                f"Test accuracy per dataset and method{where}",
                save_figure(plot_accuracy(sub, metric), figures / f"accuracy{tag}.png"),
            ),
            (
                f"Student gain over scratch{where}",
                save_figure(plot_gain_over_scratch(sub, metric), figures / f"gain_over_scratch{tag}.png"),
            ),
            (
                f"Students vs teacher{where}",
                save_figure(plot_students_vs_teacher(sub, metric), figures / f"students_vs_teacher{tag}.png"),
            ),
            (
                f"Gain vs dataset complexity{where}",
                save_figure(plot_gain_vs_complexity(sub, metric), figures / f"gain_vs_complexity{tag}.png"),
            ),
        ]
        if has_efficiency(sub):
            made.append(
                (
                    f"Accuracy vs CPU latency{where}",
                    save_figure(
                        plot_accuracy_vs_cost(sub, metric, "latency_ms_b1"), figures / f"accuracy_vs_latency{tag}.png"
                    ),
                )
            )
            made.append(
                (
                    f"Accuracy vs FLOPs{where}",
                    save_figure(
                        plot_accuracy_vs_cost(sub, metric, "flops_per_image"), figures / f"accuracy_vs_flops{tag}.png"
                    ),
                )
            )
        for dataset in datasets_in(sub):
            made.append(
                (
                    f"Training curves — {dataset}{where}",
                    save_figure(plot_training_curves(sub_curves, dataset), figures / f"curves_{dataset}{tag}.png"),
                )
            )
        for dataset in datasets_in(sub):
            made.append(
                (
                    f"Per-class F1 — {dataset}{where}",
                    save_figure(plot_per_class_f1(sub, dataset, metric), figures / f"per_class_f1_{dataset}{tag}.png"),
                )
            )
    if len([r for r in recipes if "·" not in r]) > 1:
        made.append(
            (
                "KD gain over scratch under each recipe",
                save_figure(plot_gain_by_recipe(runs, metric), figures / "gain_by_recipe.png"),
            )
        )
    factors = factor_table(runs, metric)
    if not factors.empty:
        for (dataset, factor), _ in factors.groupby(["dataset", "factor"], sort=False):
            made.append(
                (
                    f"KD gain and fidelity vs {factor} — {dataset}",
                    save_figure(plot_factor_gain(factors, dataset, factor), figures / f"factor_{factor}_{dataset}.png"),
                )
            )
    return made


def write_tables(
    runs: pd.DataFrame, curves: pd.DataFrame, issues: pd.DataFrame, claims: list[Claim], metric: str, tables: Path
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """CSV copies of everything in the report. Returns (comparison tables keyed '<key>_<best|last>', other tables)."""
    tables.mkdir(parents=True, exist_ok=True)
    flat = runs.copy()
    for col in ("test_best.per_class_f1", "test_last.per_class_f1"):
        flat[col] = flat[col].map(lambda v: json.dumps(v) if isinstance(v, list) else "")
    flat.to_csv(tables / "runs.csv", index=False)
    issues.to_csv(tables / "issues.csv", index=False)
    verdicts = claims_frame(claims)
    verdicts.to_csv(tables / "claims.csv", index=False)
    # the verdict records as data, beside report.md, for tools and notebooks that should not parse markdown
    verdicts.to_json(tables.parent / "claims.json", orient="records", indent=1, force_ascii=False)
    curves.to_csv(tables / "curves.csv", index=False)
    comparisons = {}
    for m in METRICS:
        summary_table(runs, m).to_csv(tables / f"summary_{_short(m)}.csv", index=False)
        for comparison in TABLES:
            key = f"{comparison.key}_{_short(m)}"
            comparisons[key] = comparison_table(runs, comparison, m)
            comparisons[key].to_csv(tables / f"{key}.csv", index=False)
    other = {
        "run_counts": run_counts(runs),
        "evidence": evidence_table(runs, metric),
        "provenance": teacher_check(runs),
        "efficiency": efficiency_table(runs, metric),
        "student_buys": student_buys_table(runs, metric),
        "factors": factor_table(runs, metric),
        "teacher_gate": teacher_gate(runs, metric),
    }
    for split in SPLITS:
        other[f"fidelity_{_short(split)}"] = fidelity_table(runs, split)
    for m in METRICS:
        other[f"gap_closed_{_short(m)}"] = gap_closed_table(runs, m)
    for name, frame in other.items():
        if name != "run_counts":
            frame.to_csv(tables / f"{name}.csv", index=False)
    return comparisons, other


def write_report(
    sweep: str | Path | Sequence[str | Path], out: str | Path | None = None, metric: str = DEFAULT_METRIC
) -> Path:
    """Write report.md, figures/*.png and tables/*.csv for a sweep folder, or several read as one (e.g.
    the paper recipe's and the strong recipe's); returns the path of report.md (default
    ``<first sweep>/report``). A report folder in place of a sweep is read from its ``tables/runs.csv`` and
    ``tables/curves.csv``: a committed report regenerates, with the same runs, under today's rules."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, not {metric!r}")
    sweeps = [Path(s).resolve() for s in ([sweep] if isinstance(sweep, (str, Path)) else sweep)]
    for folder in sweeps:
        if not folder.is_dir():
            raise FileNotFoundError(f"sweep folder not found: {folder}")
    out = Path(out).resolve() if out is not None else sweeps[0] / "report"
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(sweeps)
    curves = summary_of_folders(sweeps, runs)
    issues = find_issues(runs)
    claims = report_claims(runs, metric)
    comparisons, other = write_tables(runs, curves, issues, claims, metric, out / "tables")
    figures = write_figures(runs, curves, metric, out / "figures")
    report = out / "report.md"
    report.write_text(build_markdown(sweeps, runs, metric, comparisons, claims, issues, figures, out, other))
    return report
