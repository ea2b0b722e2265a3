"""Writing a sweep's report folder: report.md, figures/*.png and tables/*.csv."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from kd_lightning.report.claims import report_claims
from kd_lightning.report.claims_text import claims_frame, claims_markdown
from kd_lightning.report.curves import summary_of_folders
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
from kd_lightning.report.paper import TABLES
from kd_lightning.report.problems import find_issues
from kd_lightning.report.records import load_runs
from kd_lightning.report.runs import (
    CLAIMS_JSON,
    DEFAULT_METRIC,
    METRICS,
    SPLITS,
    checkpoint,
    datasets_in,
    for_recipe,
    recipes_in,
    run_counts,
    teacher_check,
)
from kd_lightning.report.tables import (
    comparison_table,
    efficiency_table,
    evidence_table,
    factor_table,
    fidelity_table,
    gap_closed_table,
    has_efficiency,
    student_buys_table,
    student_comparisons,
    summary_table,
)
from kd_lightning.report.teacher_gate import teacher_gate
from kd_lightning.report.verdicts import Claim


def file_tag(recipe: str) -> str:
    """A recipe label as a file-name part: ``paper · train_fraction=0.1`` -> ``paper_train_fraction-0.1``
    (no spaces or symbols that break Markdown links or shells)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", recipe.replace("=", "-")).strip("_")


def _recipe_figures(
    sub: pd.DataFrame, curves: pd.DataFrame, metric: str
) -> list[tuple[str, str, Callable[[], Figure]]]:
    """One recipe's figures as (caption, file stem, figure), figures drawn as they are listed."""
    gains, vs_teacher = student_comparisons(sub, metric), student_comparisons(sub, metric, versus="teacher")
    made = [
        ("Test accuracy per dataset and method", "accuracy", lambda: plot_accuracy(summary_table(sub, metric), metric)),
        ("Student gain over scratch", "gain_over_scratch", lambda: plot_gain_over_scratch(gains, metric)),
        ("Students vs teacher", "students_vs_teacher", lambda: plot_students_vs_teacher(vs_teacher, metric)),
        ("Gain vs dataset complexity", "gain_vs_complexity", lambda: plot_gain_vs_complexity(gains, metric)),
    ]
    datasets = datasets_in(sub)
    if has_efficiency(sub):
        eff = efficiency_table(sub, metric)
        for caption, stem, cost in (("CPU latency", "latency", "latency_ms_b1"), ("FLOPs", "flops", "flops_per_image")):
            draw = partial(plot_accuracy_vs_cost, eff, metric, cost, datasets)
            made.append((f"Accuracy vs {caption}", f"accuracy_vs_{stem}", draw))
    made += [(f"Training curves — {d}", f"curves_{d}", lambda d=d: plot_training_curves(curves, d)) for d in datasets]
    made += [
        (f"Per-class F1 — {d}", f"per_class_f1_{d}", lambda d=d: plot_per_class_f1(sub, d, metric)) for d in datasets
    ]
    return made


def write_figures(runs: pd.DataFrame, curves: pd.DataFrame, metric: str, figures: Path) -> list[tuple[str, Path]]:
    """Every figure of the report, as (caption, path); one set per recipe when there are several."""
    made = []
    recipes = recipes_in(runs)
    for recipe in recipes:
        sub_curves = curves[curves["recipe"] == recipe] if "recipe" in curves else curves
        tag, where = (f"_{file_tag(recipe)}", f" — recipe {recipe}") if len(recipes) > 1 else ("", "")
        for caption, stem, draw in _recipe_figures(for_recipe(runs, recipe), sub_curves, metric):
            made.append((f"{caption}{where}", save_figure(draw(), figures / f"{stem}{tag}.png")))
    bases = [r for r in recipes if "·" not in r]  # data-factor conditions have their own figure
    if len(bases) > 1:
        gains = {r: student_comparisons(for_recipe(runs, r), metric) for r in bases}
        shown = {r: datasets_in(for_recipe(runs, r)) for r in bases}
        path = save_figure(plot_gain_by_recipe(gains, metric, shown), figures / "gain_by_recipe.png")
        made.append(("KD gain over scratch under each recipe", path))
    factors = factor_table(runs, metric)
    keys = [key for key, _ in factors.groupby(["dataset", "factor"], sort=False)] if not factors.empty else []
    for dataset, factor in keys:
        path = save_figure(plot_factor_gain(factors, dataset, factor), figures / f"factor_{factor}_{dataset}.png")
        made.append((f"KD gain and fidelity vs {factor} — {dataset}", path))
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
    verdicts.to_json(tables.parent / CLAIMS_JSON, orient="records", indent=1, force_ascii=False)
    curves.to_csv(tables / "curves.csv", index=False)
    comparisons = {}
    for m in METRICS:
        for comparison in TABLES:
            key = f"{comparison.key}_{checkpoint(m)}"
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
        other[f"fidelity_{checkpoint(split)}"] = fidelity_table(runs, split)
    for m in METRICS:
        other[f"gap_closed_{checkpoint(m)}"] = gap_closed_table(runs, m)
        other[f"summary_{checkpoint(m)}"] = summary_table(runs, m)
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
    section = claims_markdown(claims, metric, other.get("teacher_gate"))
    report.write_text(build_markdown(sweeps, runs, metric, comparisons, section, issues, figures, out, other))
    return report
