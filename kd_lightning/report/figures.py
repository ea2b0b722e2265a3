"""The report's figures (object-oriented matplotlib: no pyplot state, works headless and inline in notebooks).

Each function draws the tables of ONE recipe (``tables.py``'s frames of ``runs.for_recipe``) and returns a
``Figure``: numbers in, figure out; no figure computes a statistic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from kd_lightning.report.formatting import metric_note
from kd_lightning.report.paper import dataset_label, method_label, paper_diffs
from kd_lightning.report.runs import (
    COMPLEXITY_RANK,
    DEFAULT_METRIC,
    completed_runs,
    conf_methods,
    ordered_datasets,
    ordered_methods,
)

#: paired comparisons keyed by (treatment, control): ``tables.student_comparisons``
Comparisons = Mapping[tuple[str, str], pd.DataFrame]

#: colours in conf/method/'s order (the teacher, the controls, the distilling students); a method beyond them, or
#: one conf/method/ does not hold, takes one of the rest by its name (:func:`method_color`)
PALETTE = ("#4C72B0", "#8C8C8C", "#DD8452", "#55A868")
_MORE_COLORS = ("#C44E52", "#8172B3", "#937860", "#DA8BC3", "#CCB974", "#64B5CD")


def method_color(method: str) -> str:
    """A method's colour, stable across figures (a new method gets one without an edit here)."""
    known = conf_methods()
    if method in known and known.index(method) < len(PALETTE):
        return PALETTE[known.index(method)]
    return _MORE_COLORS[sum(map(ord, method)) % len(_MORE_COLORS)]


def _require_table(table: Any, columns: Sequence[str], builder: str, figure: str) -> None:
    """Figures draw tables, not the runs frame (which they took before the report's two layers): name the table."""
    if not isinstance(table, pd.DataFrame) or not set(columns) <= set(table.columns):
        raise TypeError(f"{figure} draws a table (columns {', '.join(columns)}), not the runs frame: pass {builder}")


def _require_comparisons(comparisons: Any, figure: str) -> None:
    if isinstance(comparisons, pd.DataFrame) or not isinstance(comparisons, Mapping):
        raise TypeError(
            f"{figure} draws paired comparisons keyed by (treatment, control), not a {type(comparisons).__name__}: "
            "pass report.student_comparisons(runs) (or tables.comparison_table's frames in such a mapping)"
        )


def _no_data(ax: Any, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")


def _legend(ax: Any, **kwargs: Any) -> None:
    """A legend only when something is labelled (empty sweeps draw bare axes)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _bar_positions(n_groups: int, n_bars: int, width: float = 0.8) -> tuple[np.ndarray, float, list[float]]:
    bar = width / max(n_bars, 1)
    offsets = [(i - (n_bars - 1) / 2) * bar for i in range(n_bars)]
    return np.arange(n_groups), bar, offsets


def plot_accuracy(summary: pd.DataFrame, metric: str = DEFAULT_METRIC) -> Figure:
    """Grouped bars: test accuracy per dataset for teacher and students (``tables.summary_table``), seed std as
    error bars."""
    _require_table(summary, ("dataset", "method", "mean"), "report.summary_table(runs)", "plot_accuracy")
    datasets = ordered_datasets(summary["dataset"])
    methods = ordered_methods(summary["method"])
    fig = Figure(figsize=(max(6.0, 1.6 * len(datasets) + 2), 4.5), layout="constrained")
    ax = fig.add_subplot()
    x, bar, offsets = _bar_positions(len(datasets), len(methods))
    for offset, method in zip(offsets, methods):
        rows = summary[summary["method"] == method].set_index("dataset").reindex(datasets)
        ax.bar(
            x + offset,
            rows["mean"],
            bar,
            yerr=rows["std"].fillna(0),
            capsize=3,
            color=method_color(method),
            label=method_label(method),
        )
        if rows["paper"].notna().any():
            ax.scatter(
                x + offset,
                rows["paper"],
                marker="x",
                color="black",
                zorder=3,
                label="paper (reported)" if method == methods[0] else None,
            )
    if summary["mean"].notna().any():
        low = np.nanmin(summary["mean"] - summary["std"].fillna(0))
        ax.set_ylim(max(0.0, low - 5), 100)
    else:
        _no_data(ax)
    ax.set_xticks(x, [dataset_label(d) for d in datasets])
    ax.set_xlabel("dataset (simplest → most complex)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(
        f"Test accuracy by method\n{metric_note(metric)}; mean over seeds, error bars: sample std", fontsize="medium"
    )
    _legend(ax, loc="lower left", fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return fig


def _draw_differences(ax: Any, pairs: Sequence[tuple[str, pd.DataFrame]], datasets: Sequence[str]) -> None:
    """Bars of paired differences per dataset on ``ax``, one bar per comparison, 95% CI as error bars, * where
    Holm resolves."""
    x, bar, offsets = _bar_positions(len(datasets), len(pairs))
    for offset, (method, frame) in zip(offsets, pairs):
        rows = frame.set_index("dataset").reindex(datasets)
        err = np.vstack([rows["diff_mean"] - rows["ci_low"], rows["ci_high"] - rows["diff_mean"]])
        color, label = method_color(method), method_label(method)
        ax.bar(x + offset, rows["diff_mean"], bar, yerr=np.nan_to_num(err), capsize=3, color=color, label=label)
        for xi, (res, low, high) in enumerate(zip(rows["resolved"].fillna(""), rows["ci_low"], rows["ci_high"])):
            if res:  # beyond the end of the interval, on the side the difference points to
                y = high if res == "+" else low
                ax.annotate(
                    "*", (x[xi] + offset, y), ha="center", va="bottom" if res == "+" else "top", fontsize="large"
                )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, [dataset_label(d) for d in datasets])
    ax.grid(axis="y", alpha=0.3)
    _legend(ax, fontsize="small")


def _difference_bars(pairs: Sequence[tuple[str, pd.DataFrame]], title: str, ylabel: str) -> Figure:
    """:func:`_draw_differences` on a figure of its own, datasets simplest first."""
    datasets = ordered_datasets(d for _, frame in pairs for d in frame["dataset"])
    fig = Figure(figsize=(max(6.0, 1.4 * len(datasets) + 2), 4.5), layout="constrained")
    ax = fig.add_subplot()
    _draw_differences(ax, pairs, datasets)
    if not any(frame["diff_mean"].notna().any() for _, frame in pairs):
        _no_data(ax)
    ax.set(xlabel="dataset (simplest → most complex)", ylabel=ylabel)
    ax.set_title(title, fontsize="medium")
    return fig


def _by_treatment(comparisons: Comparisons, figure: str) -> list[tuple[str, pd.DataFrame]]:
    _require_comparisons(comparisons, figure)
    return [(treatment, frame) for (treatment, _), frame in comparisons.items()]


def plot_gain_over_scratch(gains: Comparisons, metric: str = DEFAULT_METRIC) -> Figure:
    """Each distilling student's gain over the control student per dataset, paired by seed, with 95% CIs."""
    return _difference_bars(
        _by_treatment(gains, "plot_gain_over_scratch"),
        f"Student gain over scratch\n{metric_note(metric)}; paired by seed, error bars: 95% CI, "
        "* = resolved after Holm",
        "student − scratch (percentage points)",
    )


def plot_students_vs_teacher(comparisons: Comparisons, metric: str = DEFAULT_METRIC) -> Figure:
    """Each student minus the teacher per dataset: how much of the teacher each student recovers."""
    return _difference_bars(
        _by_treatment(comparisons, "plot_students_vs_teacher"),
        f"Students vs teacher\n{metric_note(metric)}; paired by seed, error bars: 95% CI, * = resolved after Holm",
        "student − teacher (percentage points)",
    )


def plot_gain_vs_complexity(gains: Comparisons, metric: str = DEFAULT_METRIC) -> Figure:
    """Gain over scratch against the paper's complexity rank (claim 1), with the paper's gains dashed."""
    _require_comparisons(gains, "plot_gain_vs_complexity")
    fig = Figure(figsize=(7.0, 4.5), layout="constrained")
    ax = fig.add_subplot()
    plotted = False
    for (student, control), frame in gains.items():
        color = method_color(student)
        frame = frame.dropna(subset=["complexity_rank", "diff_mean"])
        if not frame.empty:
            err = np.vstack([frame["diff_mean"] - frame["ci_low"], frame["ci_high"] - frame["diff_mean"]])
            ax.errorbar(
                frame["complexity_rank"],
                frame["diff_mean"],
                yerr=np.nan_to_num(err),
                marker="o",
                capsize=3,
                color=color,
                label=f"{method_label(student)} (this sweep)",
            )
            plotted = True
        paper = [(COMPLEXITY_RANK[d], diff) for d, diff in paper_diffs(student, control).items()]
        if paper:  # the paper's own students only
            ax.plot(
                *zip(*paper),
                linestyle="--",
                marker=".",
                color=color,
                alpha=0.6,
                label=f"{method_label(student)} (paper)",
            )
    if not plotted:
        _no_data(ax, "no ranked datasets with paired runs")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(list(COMPLEXITY_RANK.values()), [f"{r}\n{dataset_label(d)}" for d, r in COMPLEXITY_RANK.items()])
    ax.set_xlabel("dataset complexity rank (1 = simplest, paper's ordering)")
    ax.set_ylabel("student − scratch (percentage points)")
    ax.set_title(
        f"Distillation gain vs dataset complexity\n{metric_note(metric)}; error bars: 95% CI", fontsize="medium"
    )
    _legend(ax, fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def plot_training_curves(summary: pd.DataFrame, dataset: str) -> Figure:
    """Validation accuracy and loss per epoch for every method on one dataset (mean over seeds, ±std band),
    from :func:`kd_lightning.report.curves.curve_summary` (a report folder's ``tables/curves.csv``)."""
    summary = summary[summary["dataset"] == dataset]
    fig = Figure(figsize=(11.0, 4.2), layout="constrained")
    ax_acc, ax_loss = fig.subplots(1, 2)
    for method in ordered_methods(summary["method"]):
        rows = summary[summary["method"] == method].sort_values("epoch")
        epoch = rows["epoch"].to_numpy() + 1
        for ax, name in ((ax_acc, "val_acc"), (ax_loss, "val_loss")):
            mean, std = rows[f"{name}_mean"].to_numpy(float), rows[f"{name}_std"].fillna(0).to_numpy(float)
            ax.plot(
                epoch,
                mean,
                marker=".",
                color=method_color(method),
                label=f"{method_label(method)} (n≤{rows['n'].max()})",
            )
            ax.fill_between(epoch, mean - std, mean + std, color=method_color(method), alpha=0.15)
    for ax, ylabel, title in (
        (ax_acc, "validation accuracy (%)", "Validation accuracy"),
        (ax_loss, "validation loss (cross-entropy, nats)", "Validation loss"),
    ):
        if summary.empty:
            _no_data(ax, "no metrics.csv found")
        else:
            _legend(ax, fontsize="small")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Training curves — {dataset_label(dataset)} (mean over seeds, band: ±1 std)")
    return fig


def plot_per_class_f1(runs: pd.DataFrame, dataset: str, metric: str = DEFAULT_METRIC) -> Figure:
    """Per-class test F1 on one dataset, methods as grouped bars (mean over seeds, std error bars)."""
    split = metric.split(".")[0]
    column = f"{split}.per_class_f1"
    done = completed_runs(runs)
    done = done[(done["dataset"] == dataset) & done[column].notna()] if column in done else done.iloc[0:0]
    methods = ordered_methods(done["method"]) if not done.empty else []
    n_classes = max((len(v) for v in done[column]), default=0) if not done.empty else 0
    fig = Figure(
        figsize=(min(30.0, max(7.0, 0.35 * n_classes * max(len(methods), 1) / 2 + 2)), 4.5), layout="constrained"
    )
    ax = fig.add_subplot()
    x, bar, offsets = _bar_positions(n_classes, len(methods))
    for offset, method in zip(offsets, methods):
        values = (
            np.array([v for v in done.loc[done["method"] == method, column] if len(v) == n_classes], dtype=float) * 100
        )
        if len(values) == 0:
            continue
        std = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(n_classes)
        ax.bar(
            x + offset,
            values.mean(axis=0),
            bar,
            yerr=std,
            capsize=2 if n_classes <= 20 else 0,
            color=method_color(method),
            label=f"{method_label(method)} (n={len(values)})",
        )
    if n_classes == 0:
        _no_data(ax)
    else:
        _legend(ax, fontsize="small")
        ax.set_xticks(x if n_classes <= 20 else x[::5])
    ax.set_xlabel("class index")
    ax.set_ylabel("test F1 (%)")
    ax.set_ylim(0, 105)
    ax.set_title(
        f"Per-class test F1 — {dataset_label(dataset)}\n{metric_note(metric)}; mean over seeds, error bars: sample std",
        fontsize="medium",
    )
    ax.grid(axis="y", alpha=0.3)
    return fig


COSTS = {"latency_ms_b1": "CPU latency, batch 1 (median ms)", "flops_per_image": "FLOPs per image"}


def plot_accuracy_vs_cost(
    efficiency: pd.DataFrame,
    metric: str = DEFAULT_METRIC,
    cost: str = "latency_ms_b1",
    datasets: Sequence[str] | None = None,
) -> Figure:
    """Accuracy against cost (``tables.efficiency_table``), one panel per dataset (default: the table's), one point
    per method (95% t-interval over seeds)."""
    datasets = (
        [] if efficiency.empty else ordered_datasets(efficiency["dataset"]) if datasets is None else list(datasets)
    )
    fig = Figure(figsize=(max(5.0, 3.6 * max(len(datasets), 1)), 3.8), layout="constrained")
    axes = fig.subplots(1, max(len(datasets), 1), squeeze=False)[0]
    if not datasets:
        _no_data(axes[0], "no efficiency measurements")
    for ax, dataset in zip(axes, datasets):
        rows = efficiency[efficiency["dataset"] == dataset]
        for r in rows.to_dict("records"):
            err = [[r["acc_mean"] - r["acc_ci_low"]], [r["acc_ci_high"] - r["acc_mean"]]]
            ax.errorbar(
                r[cost],
                r["acc_mean"],
                yerr=np.nan_to_num(err),
                marker="o",
                capsize=3,
                color=method_color(r["method"]),
                label=method_label(r["method"]),
            )
        ax.set_xscale("log" if cost == "flops_per_image" else "linear")
        ax.set_title(dataset_label(dataset))
        ax.set_xlabel(COSTS.get(cost, cost))
        ax.grid(alpha=0.3)
        _legend(ax, fontsize="small")
    axes[0].set_ylabel("test accuracy (%)")
    fig.suptitle(
        f"Accuracy vs cost — {metric_note(metric)}; error bars: 95% t-interval over seeds",
        fontsize="medium",
    )
    return fig


def plot_gain_by_recipe(
    gains: Mapping[str, Comparisons], metric: str = DEFAULT_METRIC, datasets: Mapping[str, Sequence[str]] | None = None
) -> Figure:
    """Each distilling student's gain over the control per dataset under each recipe side by side (e.g. paper
    vs strong): does what KD buys survive well-trained networks? Paired by seed, 95% CIs. ``gains``: per recipe,
    its :func:`plot_gain_over_scratch` numbers; ``datasets``: per recipe, its panel's (default: the gains')."""
    recipes = list(gains)
    fig = Figure(figsize=(5.0 * max(len(recipes), 1), 4.5), layout="constrained")
    axes = fig.subplots(1, max(len(recipes), 1), sharey=True, squeeze=False)[0]
    for ax, recipe in zip(axes, recipes):
        pairs = _by_treatment(gains[recipe], "plot_gain_by_recipe")
        shown = datasets[recipe] if datasets else ordered_datasets(d for _, f in pairs for d in f["dataset"])
        _draw_differences(ax, pairs, shown)
        ax.set_title(f"recipe {recipe}", fontsize="medium")
    axes[0].set_ylabel("student − scratch (pp), 95% CI")
    fig.suptitle(f"KD gain over scratch per recipe — {metric_note(metric)}", fontsize="medium")
    return fig


def plot_factor_gain(table: pd.DataFrame, dataset: str, factor: str) -> Figure:
    """One factor sweep: the students' gain over scratch (paired, 95% CI) and their agreement with the
    teacher against the factor's level (``factors.factor_table`` rows of one dataset and factor)."""
    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    gain_ax, agree_ax = fig.subplots(1, 2)
    rows = table[(table["dataset"] == dataset) & (table["factor"] == factor)].sort_values("level")
    for student, sub in rows.groupby("student", sort=False):
        color = method_color(student)
        err = np.vstack([sub["gain"] - sub["gain_ci_low"], sub["gain_ci_high"] - sub["gain"]])
        gain_ax.errorbar(
            sub["level"],
            sub["gain"],
            yerr=np.nan_to_num(err),
            marker="o",
            capsize=3,
            color=color,
            label=method_label(student),
        )
        agree_ax.plot(sub["level"], 100 * sub["agreement"], marker="o", color=color, label=method_label(student))
    if rows.empty:
        _no_data(gain_ax)
    gain_ax.axhline(0, color="black", linewidth=0.8)
    gain_ax.set(
        xlabel=factor,
        ylabel="student − scratch (pp)",
        title=f"{dataset_label(dataset)}: gain over scratch vs {factor}\npaired by seed, error bars: 95% CI",
    )
    agree_ax.set(xlabel=factor, ylabel="top-1 agreement with teacher (%)", title="Fidelity vs " + factor)
    for ax in (gain_ax, agree_ax):
        _legend(ax)
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """PNG through the Agg renderer (no display needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")
    return path
