"""Study report: turn a sweep folder of ``results.json`` files into tables, figures and verdicts.

``python -m kd_lightning.report outputs/study [--out DIR] [--metric test_best.acc|test_last.acc]``
writes ``report.md`` (GitHub-readable), ``figures/*.png`` and ``tables/*.csv``. Every function is a
library function so ``notebooks/study.ipynb`` shows the same numbers without repeating any logic.

Accuracies come from the files as fractions and are reported in percent. Spreads are sample standard
deviations (ddof=1) over seeds; differences between two arms are paired by seed (only seeds present
in both) with a 95% t-interval. Nothing is dropped silently: failed, running, interrupted, unreadable,
duplicate and missing runs are listed.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import product
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from kd_lightning.paper import (
    COMPLEXITY_RANK,
    DATASET_LABELS,
    METHOD_LABELS,
    METHODS,
    PAPER_EPOCHS,
    PAPER_RECIPE,
    paper_accuracy,
)

RESULTS_FILE = "results.json"
SKIP_DIRS = frozenset({"archive"})
KEYS = ["dataset", "method", "seed"]

METRICS: dict[str, str] = {
    "test_best.acc": "test accuracy at the best-validation checkpoint",
    "test_last.acc": "test accuracy at the last epoch",
}
DEFAULT_METRIC = "test_best.acc"

# Claims 1 and 2 call a trend "growing" when Spearman's rho against complexity rank reaches this.
RHO_THRESHOLD = 0.5
MIN_TREND_DATASETS = 3

METHOD_COLORS = {"teacher": "#4C72B0", "scratch": "#8C8C8C", "rkd": "#DD8452", "ikd": "#55A868"}

# Two-sided 95% critical values of Student's t, df = 1..30 (used when scipy is absent).
_T975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
    2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
    2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272,
)

_SPLIT_FIELDS = ("acc", "f1", "top5")
RUN_COLUMNS = [
    "dataset", "method", "seed", "status", "path", "recipe", "paper_recipe", "max_epochs", "paper_epochs",
    "limit_train_batches", "epochs", "best_epoch", "best_val_acc", "wall_time_s", "started_at", "finished_at",
    "error_type", "error_message",
    *(f"{split}.{field}" for split in ("test_best", "test_last") for field in _SPLIT_FIELDS),
    "test_best.per_class_f1", "test_last.per_class_f1",
]


@dataclass(frozen=True)
class Comparison:
    """One of the paper's two-arm tables; ``diff = treatment - control``, paired by seed."""

    key: str
    title: str
    first: str  # column order as the paper's title reads
    second: str
    treatment: str
    control: str


TABLES: tuple[Comparison, ...] = (
    Comparison("table5", "Table 5: teacher vs scratch", "teacher", "scratch", "teacher", "scratch"),
    Comparison("table6", "Table 6: scratch vs RKD", "scratch", "rkd", "rkd", "scratch"),
    Comparison("table7", "Table 7: scratch vs IKD", "scratch", "ikd", "ikd", "scratch"),
)


@dataclass(frozen=True)
class Claim:
    """A claim of the paper, the rule used to test it, and what this sweep says."""

    number: int
    statement: str
    criterion: str
    verdict: str  # "supported" | "not supported" | "not testable: missing data"
    evidence: str  # markdown


# --------------------------------------------------------------------------------------------------
# Loading


def find_results(sweep: str | Path) -> list[Path]:
    """Every results.json under the sweep, except anything kept under an ``archive/`` folder."""
    root = Path(sweep)
    found = (p for p in root.rglob(RESULTS_FILE) if not SKIP_DIRS.intersection(p.relative_to(root).parts[:-1]))
    return sorted(found)


def _keys_from_path(path: Path) -> dict[str, Any]:
    """dataset/method/seed from ``<dataset>/<method>/seed<N>/results.json``, for damaged records."""
    match = re.fullmatch(r"seed(\d+)", path.parent.name)
    if not match or len(path.parents) < 3:
        return {"dataset": None, "method": None, "seed": None}
    return {"dataset": path.parents[2].name, "method": path.parents[1].name, "seed": int(match.group(1))}


def _is_full_batches(limit: Any) -> bool:
    """Lightning: None or the float 1.0 means every batch; an int is a batch count."""
    return limit is None or (isinstance(limit, float) and limit == 1.0)


def _is_paper_recipe(recipe: Any, limit: Any, max_epochs: Any, paper_epochs: Any) -> bool:
    """Only runs trained the paper's way are set beside the paper's numbers."""
    epochs_ok = max_epochs is None or paper_epochs is None or max_epochs == paper_epochs
    return recipe == PAPER_RECIPE and _is_full_batches(limit) and epochs_ok


def _float(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _run_row(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Flatten one results.json into the columns the tables need."""
    inferred = _keys_from_path(path)
    config = record.get("config") or {}
    recipe = config.get("recipe") or {}
    trainer = config.get("trainer") or {}
    method = record.get("method") or inferred["method"]
    seed = record.get("seed", inferred["seed"])
    error = record.get("error") or {}
    row: dict[str, Any] = {
        "dataset": record.get("dataset") or inferred["dataset"],
        "method": method,
        "seed": int(seed) if seed is not None else None,
        "status": record.get("status", "unknown"),
        "path": str(path.parent),
        "recipe": recipe.get("name"),
        "max_epochs": trainer.get("max_epochs"),
        # the paper's epochs, not the recipe's: recipe.epochs.<method>=3 is not the paper's protocol
        "paper_epochs": PAPER_EPOCHS.get(method),
        "limit_train_batches": trainer.get("limit_train_batches"),
        "epochs": record.get("epochs"),
        "best_epoch": record.get("best_epoch"),
        "best_val_acc": _float(record.get("best_val_acc")),
        "wall_time_s": _float(record.get("wall_time_s")),
        "started_at": record.get("started_at"),
        "finished_at": record.get("finished_at"),
        "error_type": error.get("type"),
        "error_message": error.get("message"),
    }
    row["paper_recipe"] = _is_paper_recipe(row["recipe"], row["limit_train_batches"], row["max_epochs"], row["paper_epochs"])
    for split in ("test_best", "test_last"):
        metrics = record.get(split) or {}
        for field in _SPLIT_FIELDS:
            row[f"{split}.{field}"] = _float(metrics.get(field))
        per_class = metrics.get("per_class_f1")
        row[f"{split}.per_class_f1"] = [float(v) for v in per_class] if isinstance(per_class, list) else None
    return row


def load_sweep(sweep: str | Path) -> pd.DataFrame:
    """One row per results.json (every status), so nothing a run left behind goes unreported.

    Unreadable files become rows with status ``unreadable`` and keys taken from their path.
    Accuracies stay fractions here; tables convert to percent.
    """
    rows = []
    for path in find_results(sweep):
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            rows.append(_run_row(path, record))
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            rows.append({**_keys_from_path(path), "status": "unreadable", "path": str(path.parent),
                         "paper_recipe": False, "error_type": type(exc).__name__, "error_message": str(exc)})
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    runs["seed"] = runs["seed"].astype("Int64")
    for col in ("max_epochs", "paper_epochs", "limit_train_batches"):
        # object dtype keeps None and int-vs-float (Lightning: 5 = five batches, 1.0 = all of them).
        runs[col] = pd.Series([row.get(col) for row in rows], dtype=object)
    return _sort(runs)


# --------------------------------------------------------------------------------------------------
# Ordering and selection


def _dataset_key(name: Any) -> tuple[int, str]:
    """Paper's complexity order first, anything unknown after, alphabetically."""
    return (COMPLEXITY_RANK.get(name, len(COMPLEXITY_RANK) + 1), str(name))


def _method_key(name: Any) -> tuple[int, str]:
    return (METHODS.index(name) if name in METHODS else len(METHODS), str(name))


def ordered_datasets(names: Iterable[Any]) -> list[str]:
    """Datasets simplest first (the paper's complexity ranking)."""
    return sorted({n for n in names if isinstance(n, str)}, key=_dataset_key)


def ordered_methods(names: Iterable[Any]) -> list[str]:
    """teacher, scratch, rkd, ikd, then anything else."""
    return sorted({n for n in names if isinstance(n, str)}, key=_method_key)


def _sort(frame: pd.DataFrame) -> pd.DataFrame:
    """Datasets by complexity, methods in the paper's order, then seed: the order every table uses."""
    if frame.empty:
        return frame.reset_index(drop=True)
    paths = frame["path"].astype(str).tolist() if "path" in frame else [""] * len(frame)

    def key(i: int) -> tuple:
        seed = frame["seed"].iat[i]
        return (_dataset_key(frame["dataset"].iat[i]), _method_key(frame["method"].iat[i]),
                -1 if pd.isna(seed) else int(seed), paths[i])

    return frame.iloc[sorted(range(len(frame)), key=key)].reset_index(drop=True)


def _pick_runs(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One record per dataset/method/seed: completed beats anything else, then the latest finished.

    Returns (kept, superseded) so superseded duplicates can be listed rather than silently dropped.
    """
    if runs.empty:
        return runs, runs
    ranked = runs.assign(
        _completed=(runs["status"] == "completed").astype(int),
        _finished=runs["finished_at"].fillna("").astype(str),
    ).sort_values(["_completed", "_finished", "path"], ascending=False, kind="stable")
    keyed = ranked[ranked[KEYS].notna().all(axis=1)]
    duplicated = keyed.duplicated(subset=KEYS, keep="first")
    kept = pd.concat([keyed[~duplicated], ranked[ranked[KEYS].isna().any(axis=1)]])
    return (_sort(kept.drop(columns=["_completed", "_finished"])),
            _sort(keyed[duplicated].drop(columns=["_completed", "_finished"])))


def completed_runs(runs: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """Completed runs (one per dataset/method/seed) that carry ``metric`` when one is named."""
    kept, _ = _pick_runs(runs)
    done = kept[kept["status"] == "completed"]
    if metric is not None:
        done = done[done[metric].notna()]
    return done.reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# Statistics


def t_critical(df: int, confidence: float = 0.95) -> float:
    """Two-sided critical value of Student's t: scipy when present, else a table (df 1..30, 1.96 beyond)."""
    if df < 1:
        return math.nan
    try:
        from scipy import stats  # type: ignore[import-not-found]

        return float(stats.t.ppf(0.5 + confidence / 2, df))
    except ImportError:
        if not math.isclose(confidence, 0.95):
            raise ValueError("without scipy only 95% intervals are available") from None
        return _T975[df - 1] if df <= len(_T975) else 1.96


def mean_ci(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample std and 95% t-interval of the mean; NaN where n is too small to say."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    half = t_critical(n - 1) * std / math.sqrt(n) if n > 1 else math.nan
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (Pearson on average ranks); NaN when either side has no spread."""
    xs, ys = pd.Series(x, dtype=float).rank(), pd.Series(y, dtype=float).rank()
    if len(xs) < 2 or xs.nunique() < 2 or ys.nunique() < 2:
        return math.nan
    return float(np.corrcoef(xs, ys)[0, 1])


def _percent(frame: pd.DataFrame, metric: str) -> pd.Series:
    return frame[metric].astype(float) * 100.0


def _datasets_in(runs: pd.DataFrame) -> list[str]:
    return ordered_datasets(runs["dataset"].dropna().unique())


def summary_table(runs: pd.DataFrame, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """Per dataset and method: n seeds, mean and sample std of ``metric`` in percent, paper's value.

    Every dataset/method seen in the sweep gets a row, with n = 0 where nothing completed.
    """
    done = completed_runs(runs, metric)
    rows = []
    for dataset, method in product(_datasets_in(runs), ordered_methods(runs["method"].dropna().unique())):
        arm = done[(done["dataset"] == dataset) & (done["method"] == method)]
        stats = mean_ci(_percent(arm, metric))
        all_paper = bool(len(arm)) and bool(arm["paper_recipe"].all())
        paper = paper_accuracy(dataset, method)
        rows.append({
            "dataset": dataset, "complexity_rank": COMPLEXITY_RANK.get(dataset), "method": method,
            "n": stats["n"], "mean": stats["mean"], "std": stats["std"],
            "seeds": ",".join(str(s) for s in sorted(arm["seed"].dropna().astype(int))),
            "paper_recipe": all_paper, "paper": paper if (all_paper and paper is not None) else math.nan,
        })
    return pd.DataFrame(rows, columns=["dataset", "complexity_rank", "method", "n", "mean", "std", "seeds", "paper_recipe", "paper"])


def paired_comparison(runs: pd.DataFrame, treatment: str, control: str, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """Per dataset: ``treatment - control`` in percentage points, paired by seed, with a 95% t-interval.

    Pairing by seed removes the seed-to-seed variation both arms share (same split, same teacher seed).
    """
    done = completed_runs(runs, metric)
    rows = []
    for dataset in _datasets_in(runs):
        def arm(method: str) -> pd.Series:
            sel = done[(done["dataset"] == dataset) & (done["method"] == method) & done["seed"].notna()]
            return pd.Series(_percent(sel, metric).to_numpy(), index=sel["seed"].astype(int).to_numpy())

        a, b = arm(treatment), arm(control)
        seeds = sorted(set(a.index) & set(b.index))
        stats = mean_ci((a[seeds] - b[seeds]).to_numpy() if seeds else [])
        paper_t, paper_c = paper_accuracy(dataset, treatment), paper_accuracy(dataset, control)
        rows.append({
            "dataset": dataset, "complexity_rank": COMPLEXITY_RANK.get(dataset),
            "treatment": treatment, "control": control, "n_pairs": stats["n"], "seeds": ",".join(map(str, seeds)),
            "diff_mean": stats["mean"], "diff_std": stats["std"], "ci_low": stats["ci_low"], "ci_high": stats["ci_high"],
            "paper_diff": paper_t - paper_c if paper_t is not None and paper_c is not None else math.nan,
        })
    return pd.DataFrame(rows, columns=["dataset", "complexity_rank", "treatment", "control", "n_pairs", "seeds",
                                       "diff_mean", "diff_std", "ci_low", "ci_high", "paper_diff"])


def _recipe_label(arms: pd.DataFrame) -> str:
    """How the runs in a table row were trained, so a reader knows whether the paper column applies."""
    labels = set()
    for row in arms.itertuples(index=False):
        label = str(row.recipe)
        if not _is_full_batches(row.limit_train_batches):
            label += f" (limit_train_batches={row.limit_train_batches})"
        elif not row.paper_recipe and row.recipe == PAPER_RECIPE:
            label += f" (max_epochs={row.max_epochs}, paper {row.paper_epochs})"
        labels.add(label)
    return "; ".join(sorted(labels)) if labels else "n/a"


def comparison_table(runs: pd.DataFrame, comparison: Comparison, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """One of Tables 5-7: both arms (mean, std, n), the paired difference with CI, and the paper's values.

    The paper's columns are filled only where every run in the row used the paper recipe.
    """
    summary = summary_table(runs, metric).set_index(["dataset", "method"])
    paired = paired_comparison(runs, comparison.treatment, comparison.control, metric).set_index("dataset")
    done = completed_runs(runs, metric)
    rows = []
    for dataset in paired.index:
        row: dict[str, Any] = {"dataset": dataset, "complexity_rank": COMPLEXITY_RANK.get(dataset)}
        for method in (comparison.first, comparison.second):
            cell = summary.loc[(dataset, method)] if (dataset, method) in summary.index else None
            row[f"{method}_mean"] = cell["mean"] if cell is not None else math.nan
            row[f"{method}_std"] = cell["std"] if cell is not None else math.nan
            row[f"{method}_n"] = int(cell["n"]) if cell is not None else 0
        p = paired.loc[dataset]
        row.update({k: p[k] for k in ("n_pairs", "diff_mean", "diff_std", "ci_low", "ci_high")})
        arms = done[(done["dataset"] == dataset) & done["method"].isin([comparison.first, comparison.second])]
        comparable = bool(row[f"{comparison.first}_n"]) and bool(row[f"{comparison.second}_n"]) and bool(arms["paper_recipe"].all())
        row["recipe"] = _recipe_label(arms)
        row["paper_comparable"] = comparable
        for method in (comparison.first, comparison.second):
            value = paper_accuracy(dataset, method)
            row[f"paper_{method}"] = value if comparable and value is not None else math.nan
        row["paper_diff"] = p["paper_diff"] if comparable else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def run_counts(runs: pd.DataFrame) -> pd.DataFrame:
    """Completed runs per dataset x method out of the seeds seen anywhere in the sweep."""
    seeds = runs["seed"].dropna().unique()
    done = completed_runs(runs)
    table = pd.DataFrame(index=pd.Index(_datasets_in(runs), name="dataset"))
    for method in ordered_methods(runs["method"].dropna().unique()):
        counts = done[done["method"] == method].groupby("dataset").size()
        table[method] = [f"{int(counts.get(d, 0))}/{len(seeds)}" for d in table.index]
    return table.reset_index()


def find_issues(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that did not yield a result: failed, running, interrupted, unreadable, duplicate, missing.

    Missing = dataset x method x seed combinations of the grid seen anywhere in the sweep that have no
    results.json at all.
    """
    kept, superseded = _pick_runs(runs)
    rows = []
    for row in kept.itertuples(index=False):
        if row.status == "completed":
            continue
        if row.status == "failed" or row.status == "unreadable":
            detail = f"{row.error_type or 'unknown error'}: {_one_line(row.error_message)}"
        else:
            detail = f"started {row.started_at}" if isinstance(row.started_at, str) else ""
        rows.append({"dataset": row.dataset, "method": row.method, "seed": row.seed, "status": row.status,
                     "detail": detail, "path": row.path})
    for _, row in kept[(kept["status"] == "completed")].iterrows():
        if pd.isna(row["test_best.acc"]) and pd.isna(row["test_last.acc"]):
            rows.append({**{k: row[k] for k in KEYS}, "status": "completed (no test metrics)",
                         "detail": "results.json has neither test_best nor test_last", "path": row["path"]})
    for _, row in superseded.iterrows():
        rows.append({**{k: row[k] for k in KEYS}, "status": f"duplicate ({row['status']}, ignored)",
                     "detail": "another record for the same dataset/method/seed is used", "path": row["path"]})
    present = {tuple(k) for k in runs[KEYS].dropna().itertuples(index=False)}
    grid = product(_datasets_in(runs), ordered_methods(runs["method"].dropna().unique()),
                   sorted(int(s) for s in runs["seed"].dropna().unique()))
    for key in grid:
        if key not in present:
            rows.append({"dataset": key[0], "method": key[1], "seed": key[2], "status": "missing",
                         "detail": "no results.json", "path": ""})
    issues = pd.DataFrame(rows, columns=["dataset", "method", "seed", "status", "detail", "path"])
    issues["seed"] = issues["seed"].astype("Int64")
    return _sort(issues)


def _one_line(text: Any, limit: int = 200) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------------
# Training curves


_CURVE_COLUMNS = {"val/acc": "val_acc", "val/loss": "val_loss", "val/f1": "val_f1",
                  "train/loss_epoch": "train_loss", "train/acc": "train_acc"}


def read_metrics_csv(run_dir: str | Path) -> pd.DataFrame:
    """Per-epoch values from a run's CSVLogger file(s); empty when the run has none.

    CSVLogger rows are sparse (validation, training and test rows each fill their own columns), so
    each column's last non-empty value per epoch is taken; epochs with no validation are dropped.
    """
    csv_dir = Path(run_dir) / "csv"
    files = [csv_dir / "metrics.csv"] if (csv_dir / "metrics.csv").is_file() else sorted(csv_dir.rglob("metrics.csv"))
    frames = [pd.read_csv(f) for f in files if f.stat().st_size > 0]
    if not frames:
        return pd.DataFrame(columns=["epoch", *_CURVE_COLUMNS.values()])
    raw = pd.concat(frames, ignore_index=True).reindex(columns=["epoch", *_CURVE_COLUMNS])
    raw = raw.dropna(subset=["epoch"])
    per_epoch = raw.groupby("epoch", as_index=False).last().rename(columns=_CURVE_COLUMNS)
    per_epoch = per_epoch.dropna(subset=["val_acc", "val_loss"], how="all")
    per_epoch["epoch"] = per_epoch["epoch"].astype(int)
    return per_epoch.reset_index(drop=True)


def load_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch validation (and training) values of every completed run, keyed by dataset/method/seed."""
    frames = []
    for _, run in completed_runs(runs).iterrows():
        curve = read_metrics_csv(run["path"])
        if not curve.empty:
            frames.append(curve.assign(dataset=run["dataset"], method=run["method"], seed=run["seed"]))
    if not frames:
        return pd.DataFrame(columns=[*KEYS, "epoch", *_CURVE_COLUMNS.values()])
    return pd.concat(frames, ignore_index=True)[[*KEYS, "epoch", *_CURVE_COLUMNS.values()]]


def curve_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per dataset/method/epoch; accuracy in percent."""
    cols = ["dataset", "method", "epoch", "n", "val_acc_mean", "val_acc_std", "val_loss_mean", "val_loss_std"]
    if curves.empty:
        return pd.DataFrame(columns=cols)
    data = curves.assign(val_acc=curves["val_acc"].astype(float) * 100.0)
    grouped = data.groupby(["dataset", "method", "epoch"])
    out = grouped.agg(n=("seed", "count"), val_acc_mean=("val_acc", "mean"), val_acc_std=("val_acc", "std"),
                      val_loss_mean=("val_loss", "mean"), val_loss_std=("val_loss", "std")).reset_index()
    return _sort(out.assign(seed=pd.NA))[cols]


# --------------------------------------------------------------------------------------------------
# Claims


def _trend(paired: pd.DataFrame) -> tuple[float, int, pd.DataFrame]:
    """Spearman's rho of a per-dataset difference against complexity rank, over ranked datasets."""
    usable = paired.dropna(subset=["complexity_rank", "diff_mean"])
    return spearman(usable["complexity_rank"], usable["diff_mean"]), len(usable), usable


def _paper_trend(treatment: str, control: str) -> float:
    datasets = [d for d in COMPLEXITY_RANK if paper_accuracy(d, treatment) is not None and paper_accuracy(d, control) is not None]
    return spearman([COMPLEXITY_RANK[d] for d in datasets],
                    [paper_accuracy(d, treatment) - paper_accuracy(d, control) for d in datasets])


def _diff_list(paired: pd.DataFrame) -> str:
    """'MNIST +0.10 [−0.2, +0.4] (n=3)' per dataset, for the evidence column."""
    parts = []
    for row in paired.itertuples(index=False):
        ci = f" [{_fmt(row.ci_low, signed=True)}, {_fmt(row.ci_high, signed=True)}]" if row.n_pairs > 1 else " [CI n/a]"
        paper = f"; paper {_fmt(row.paper_diff, signed=True)}" if not pd.isna(row.paper_diff) else ""
        parts.append(f"{_label(row.dataset)} {_fmt(row.diff_mean, signed=True)}{ci} (n={row.n_pairs}{paper})")
    return "; ".join(parts) if parts else "no paired runs"


def _claim_trend(runs: pd.DataFrame, metric: str) -> Claim:
    statement = "The gain from distillation (student − scratch) grows with dataset complexity."
    criterion = (f"For each of RKD and IKD, Spearman's rho between the paired gain over scratch and the paper's "
                 f"complexity rank is ≥ {RHO_THRESHOLD} over at least {MIN_TREND_DATASETS} ranked datasets.")
    results, lines = [], []
    for student in ("rkd", "ikd"):
        paired = paired_comparison(runs, student, "scratch", metric)
        rho, n, usable = _trend(paired)
        testable = n >= MIN_TREND_DATASETS and not math.isnan(rho)
        results.append(None if not testable else rho >= RHO_THRESHOLD)
        lines.append(f"- {METHOD_LABELS[student]} gain (pp): {_diff_list(usable)}. Spearman rho = {_fmt(rho)} over "
                     f"{n} dataset(s) (paper: {_fmt(_paper_trend(student, 'scratch'))}).")
    return Claim(1, statement, criterion, _combine(results), "\n".join(lines))


def _claim_ikd_over_rkd(runs: pd.DataFrame, metric: str) -> Claim:
    statement = "IKD beats RKD, and by most on complex data."
    criterion = (f"IKD − RKD (paired by seed) is positive on a majority of datasets, and its Spearman rho against "
                 f"complexity rank is ≥ {RHO_THRESHOLD} (needs ≥ {MIN_TREND_DATASETS} ranked datasets).")
    paired = paired_comparison(runs, "ikd", "rkd", metric).dropna(subset=["diff_mean"])
    wins = int((paired["diff_mean"] > 0).sum())
    majority = None if paired.empty else wins > len(paired) / 2
    rho, n, _ = _trend(paired)
    grows = None if n < MIN_TREND_DATASETS or math.isnan(rho) else rho >= RHO_THRESHOLD
    evidence = (f"- IKD − RKD (pp): {_diff_list(paired)}.\n- IKD ahead on {wins} of {len(paired)} dataset(s). "
                f"Spearman rho vs complexity = {_fmt(rho)} over {n} dataset(s) (paper: {_fmt(_paper_trend('ikd', 'rkd'))}).")
    return Claim(2, statement, criterion, _combine([majority, grows]), evidence)


def _claim_ikd_over_teacher(runs: pd.DataFrame, metric: str) -> Claim:
    statement = "An IKD student can beat its teacher."
    criterion = ("On at least one dataset the mean paired difference IKD − teacher is positive "
                 "(datasets whose 95% CI lies wholly above 0 are named).")
    paired = paired_comparison(runs, "ikd", "teacher", metric).dropna(subset=["diff_mean"])
    ahead = paired[paired["diff_mean"] > 0]
    clear = paired[paired["ci_low"] > 0]
    verdict = None if paired.empty else not ahead.empty
    evidence = (f"- IKD − teacher (pp): {_diff_list(paired)}.\n- IKD ahead on average: "
                f"{', '.join(map(_label, ahead['dataset'])) or 'none'}; CI above 0: "
                f"{', '.join(map(_label, clear['dataset'])) or 'none'}.")
    return Claim(3, statement, criterion, _combine([verdict]), evidence)


def _combine(parts: Sequence[bool | None]) -> str:
    """A conjunction: any tested part failing refutes it; otherwise an untestable part leaves it open."""
    if any(p is False for p in parts):
        return "not supported"
    if any(p is None for p in parts):
        return "not testable: missing data"
    return "supported"


def evaluate_claims(runs: pd.DataFrame, metric: str = DEFAULT_METRIC) -> list[Claim]:
    """The paper's three claims, each with a verdict from this sweep and the numbers behind it."""
    return [_claim_trend(runs, metric), _claim_ikd_over_rkd(runs, metric), _claim_ikd_over_teacher(runs, metric)]


def claims_frame(claims: Sequence[Claim]) -> pd.DataFrame:
    """Claims as a table (for CSV and the notebook)."""
    return pd.DataFrame([c.__dict__ for c in claims], columns=["number", "statement", "criterion", "verdict", "evidence"])


# --------------------------------------------------------------------------------------------------
# Figures (object-oriented matplotlib: no pyplot state, works headless and inline in notebooks)


def _label(dataset: Any) -> str:
    return DATASET_LABELS.get(dataset, str(dataset))


def _metric_note(metric: str) -> str:
    """Which checkpoint a figure shows, short enough for a title line."""
    return {"test_best": "best-validation checkpoint", "test_last": "last-epoch checkpoint"}.get(metric.split(".")[0], metric)


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


def plot_accuracy(runs: pd.DataFrame, metric: str = DEFAULT_METRIC) -> Figure:
    """Grouped bars: test accuracy per dataset for teacher and students, seed std as error bars."""
    summary = summary_table(runs, metric)
    datasets = ordered_datasets(summary["dataset"])
    methods = ordered_methods(summary["method"])
    fig = Figure(figsize=(max(6.0, 1.6 * len(datasets) + 2), 4.5), layout="constrained")
    ax = fig.add_subplot()
    x, bar, offsets = _bar_positions(len(datasets), len(methods))
    for offset, method in zip(offsets, methods):
        rows = summary[summary["method"] == method].set_index("dataset").reindex(datasets)
        ax.bar(x + offset, rows["mean"], bar, yerr=rows["std"].fillna(0), capsize=3,
               color=METHOD_COLORS.get(method), label=METHOD_LABELS.get(method, method))
        if rows["paper"].notna().any():
            ax.scatter(x + offset, rows["paper"], marker="x", color="black", zorder=3,
                       label="paper (reported)" if method == methods[0] else None)
    if summary["mean"].notna().any():
        low = np.nanmin(summary["mean"] - summary["std"].fillna(0))
        ax.set_ylim(max(0.0, low - 5), 100)
    else:
        _no_data(ax)
    ax.set_xticks(x, [_label(d) for d in datasets])
    ax.set_xlabel("dataset (simplest → most complex)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Test accuracy by method\n{_metric_note(metric)}; mean over seeds, error bars: sample std", fontsize="medium")
    _legend(ax, loc="lower left", fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return fig


def _difference_bars(pairs: Sequence[tuple[str, pd.DataFrame]], title: str, ylabel: str) -> Figure:
    """Bars of paired differences per dataset, one bar per comparison, 95% CI as error bars."""
    datasets = ordered_datasets(d for _, frame in pairs for d in frame["dataset"])
    fig = Figure(figsize=(max(6.0, 1.4 * len(datasets) + 2), 4.5), layout="constrained")
    ax = fig.add_subplot()
    x, bar, offsets = _bar_positions(len(datasets), len(pairs))
    for offset, (method, frame) in zip(offsets, pairs):
        rows = frame.set_index("dataset").reindex(datasets)
        err = np.vstack([rows["diff_mean"] - rows["ci_low"], rows["ci_high"] - rows["diff_mean"]])
        ax.bar(x + offset, rows["diff_mean"], bar, yerr=np.nan_to_num(err), capsize=3,
               color=METHOD_COLORS.get(method), label=METHOD_LABELS.get(method, method))
    if not any(frame["diff_mean"].notna().any() for _, frame in pairs):
        _no_data(ax)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, [_label(d) for d in datasets])
    ax.set_xlabel("dataset (simplest → most complex)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize="medium")
    _legend(ax, fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_gain_over_scratch(runs: pd.DataFrame, metric: str = DEFAULT_METRIC) -> Figure:
    """RKD and IKD gain over the scratch student per dataset, paired by seed, with 95% CIs."""
    pairs = [(s, paired_comparison(runs, s, "scratch", metric)) for s in ("rkd", "ikd")]
    return _difference_bars(pairs, f"Student gain over scratch\n{_metric_note(metric)}; paired by seed, error bars: 95% CI",
                            "student − scratch (percentage points)")


def plot_students_vs_teacher(runs: pd.DataFrame, metric: str = DEFAULT_METRIC) -> Figure:
    """Each student minus the teacher per dataset: how much of the teacher each student recovers."""
    pairs = [(s, paired_comparison(runs, s, "teacher", metric)) for s in ("scratch", "rkd", "ikd")]
    return _difference_bars(pairs, f"Students vs teacher\n{_metric_note(metric)}; paired by seed, error bars: 95% CI",
                            "student − teacher (percentage points)")


def plot_gain_vs_complexity(runs: pd.DataFrame, metric: str = DEFAULT_METRIC) -> Figure:
    """Gain over scratch against the paper's complexity rank (claim 1), with the paper's gains dashed."""
    fig = Figure(figsize=(7.0, 4.5), layout="constrained")
    ax = fig.add_subplot()
    plotted = False
    for student in ("rkd", "ikd"):
        color = METHOD_COLORS[student]
        frame = paired_comparison(runs, student, "scratch", metric).dropna(subset=["complexity_rank", "diff_mean"])
        if not frame.empty:
            err = np.vstack([frame["diff_mean"] - frame["ci_low"], frame["ci_high"] - frame["diff_mean"]])
            ax.errorbar(frame["complexity_rank"], frame["diff_mean"], yerr=np.nan_to_num(err), marker="o", capsize=3,
                        color=color, label=f"{METHOD_LABELS[student]} (this sweep)")
            plotted = True
        paper = [(r, paper_accuracy(d, student) - paper_accuracy(d, "scratch")) for d, r in COMPLEXITY_RANK.items()]
        ax.plot(*zip(*paper), linestyle="--", marker=".", color=color, alpha=0.6, label=f"{METHOD_LABELS[student]} (paper)")
    if not plotted:
        _no_data(ax, "no ranked datasets with paired runs")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(list(COMPLEXITY_RANK.values()), [f"{r}\n{_label(d)}" for d, r in COMPLEXITY_RANK.items()])
    ax.set_xlabel("dataset complexity rank (1 = simplest, paper's ordering)")
    ax.set_ylabel("student − scratch (percentage points)")
    ax.set_title(f"Distillation gain vs dataset complexity\n{_metric_note(metric)}; error bars: 95% CI", fontsize="medium")
    _legend(ax, fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def plot_training_curves(curves: pd.DataFrame, dataset: str) -> Figure:
    """Validation accuracy and loss per epoch for every method on one dataset (mean over seeds, ±std band)."""
    summary = curve_summary(curves[curves["dataset"] == dataset])
    fig = Figure(figsize=(11.0, 4.2), layout="constrained")
    ax_acc, ax_loss = fig.subplots(1, 2)
    for method in ordered_methods(summary["method"]):
        rows = summary[summary["method"] == method].sort_values("epoch")
        epoch = rows["epoch"].to_numpy() + 1
        for ax, name in ((ax_acc, "val_acc"), (ax_loss, "val_loss")):
            mean, std = rows[f"{name}_mean"].to_numpy(float), rows[f"{name}_std"].fillna(0).to_numpy(float)
            ax.plot(epoch, mean, marker=".", color=METHOD_COLORS.get(method), label=f"{METHOD_LABELS.get(method, method)} (n≤{rows['n'].max()})")
            ax.fill_between(epoch, mean - std, mean + std, color=METHOD_COLORS.get(method), alpha=0.15)
    for ax, ylabel, title in ((ax_acc, "validation accuracy (%)", "Validation accuracy"),
                              (ax_loss, "validation loss (cross-entropy, nats)", "Validation loss")):
        if summary.empty:
            _no_data(ax, "no metrics.csv found")
        else:
            _legend(ax, fontsize="small")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Training curves — {_label(dataset)} (mean over seeds, band: ±1 std)")
    return fig


def plot_per_class_f1(runs: pd.DataFrame, dataset: str, metric: str = DEFAULT_METRIC) -> Figure:
    """Per-class test F1 on one dataset, methods as grouped bars (mean over seeds, std error bars)."""
    split = metric.split(".")[0]
    column = f"{split}.per_class_f1"
    done = completed_runs(runs)
    done = done[(done["dataset"] == dataset) & done[column].notna()]
    methods = ordered_methods(done["method"])
    n_classes = max((len(v) for v in done[column]), default=0)
    fig = Figure(figsize=(min(30.0, max(7.0, 0.35 * n_classes * max(len(methods), 1) / 2 + 2)), 4.5), layout="constrained")
    ax = fig.add_subplot()
    x, bar, offsets = _bar_positions(n_classes, len(methods))
    for offset, method in zip(offsets, methods):
        values = np.array([v for v in done.loc[done["method"] == method, column] if len(v) == n_classes], dtype=float) * 100
        if len(values) == 0:
            continue
        std = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(n_classes)
        ax.bar(x + offset, values.mean(axis=0), bar, yerr=std, capsize=2 if n_classes <= 20 else 0,
               color=METHOD_COLORS.get(method), label=f"{METHOD_LABELS.get(method, method)} (n={len(values)})")
    if n_classes == 0:
        _no_data(ax)
    else:
        _legend(ax, fontsize="small")
        ax.set_xticks(x if n_classes <= 20 else x[::5])
    ax.set_xlabel("class index")
    ax.set_ylabel("test F1 (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"Per-class test F1 — {_label(dataset)}\n{_metric_note(metric)}; mean over seeds, error bars: sample std", fontsize="medium")
    ax.grid(axis="y", alpha=0.3)
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """PNG through the Agg renderer (no display needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")
    return path


# --------------------------------------------------------------------------------------------------
# Markdown


def _fmt(value: Any, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _mean_std(mean: float, std: float) -> str:
    return "n/a" if pd.isna(mean) else f"{mean:.2f} ± {_fmt(std)}"


def format_comparison(table: pd.DataFrame, comparison: Comparison) -> pd.DataFrame:
    """Human-readable version of a comparison table (strings, percent, 'n/a' where undefined)."""
    a, b = comparison.first, comparison.second
    delta = f"Δ {METHOD_LABELS[comparison.treatment]} − {METHOD_LABELS[comparison.control]} [95% CI]"
    rows = []
    for r in table.to_dict("records"):
        ci = f"[{_fmt(r['ci_low'], signed=True)}, {_fmt(r['ci_high'], signed=True)}]" if r["n_pairs"] > 1 else "[n/a]"
        rows.append({
            "Dataset": _label(r["dataset"]),
            f"{METHOD_LABELS[a]} (n)": f"{_mean_std(r[f'{a}_mean'], r[f'{a}_std'])} ({r[f'{a}_n']})",
            f"{METHOD_LABELS[b]} (n)": f"{_mean_std(r[f'{b}_mean'], r[f'{b}_std'])} ({r[f'{b}_n']})",
            f"{delta} (pairs)": f"{_fmt(r['diff_mean'], signed=True)} {ci} ({r['n_pairs']})",
            f"Paper {METHOD_LABELS[a]}": _fmt(r[f"paper_{a}"]),
            f"Paper {METHOD_LABELS[b]}": _fmt(r[f"paper_{b}"]),
            "Paper Δ": _fmt(r["paper_diff"], signed=True),
            "Recipe": r["recipe"],
        })
    return pd.DataFrame(rows)


def markdown_table(frame: pd.DataFrame) -> str:
    """GitHub-flavoured markdown table (pandas' to_markdown needs tabulate, which is not a dependency)."""
    if frame.empty:
        return "_(none)_"

    def cell(value: Any) -> str:
        text = "" if value is None or (not isinstance(value, (list, tuple)) and pd.isna(value)) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def table_caption(comparison: Comparison, metric: str) -> str:
    return (f"**{comparison.title}** — {METRICS.get(metric, metric)} (%). Arms: mean ± sample std (ddof=1) over seeds, "
            f"n seeds in brackets. Δ = {METHOD_LABELS[comparison.treatment]} − {METHOD_LABELS[comparison.control]} in "
            f"percentage points, paired by seed (only seeds present in both arms), 95% t-interval (df = pairs − 1). "
            f"Paper columns are filled only where every run in the row used the paper recipe "
            f"(recipe `{PAPER_RECIPE}`, all training batches, the recipe's epochs).")


# --------------------------------------------------------------------------------------------------
# The report


def _short(metric: str) -> str:
    return metric.split(".")[0].removeprefix("test_")


def _write_figures(runs: pd.DataFrame, curves: pd.DataFrame, metric: str, figures: Path) -> list[tuple[str, Path]]:
    """Every figure of the report, as (caption, path)."""
    made = [
        ("Test accuracy per dataset and method", save_figure(plot_accuracy(runs, metric), figures / "accuracy.png")),
        ("Student gain over scratch", save_figure(plot_gain_over_scratch(runs, metric), figures / "gain_over_scratch.png")),
        ("Students vs teacher", save_figure(plot_students_vs_teacher(runs, metric), figures / "students_vs_teacher.png")),
        ("Gain vs dataset complexity", save_figure(plot_gain_vs_complexity(runs, metric), figures / "gain_vs_complexity.png")),
    ]
    for dataset in _datasets_in(runs):
        made.append((f"Training curves — {_label(dataset)}",
                     save_figure(plot_training_curves(curves, dataset), figures / f"curves_{dataset}.png")))
    for dataset in _datasets_in(runs):
        made.append((f"Per-class F1 — {_label(dataset)}",
                     save_figure(plot_per_class_f1(runs, dataset, metric), figures / f"per_class_f1_{dataset}.png")))
    return made


def _write_tables(runs: pd.DataFrame, curves: pd.DataFrame, issues: pd.DataFrame, claims: list[Claim], tables: Path) -> dict[str, pd.DataFrame]:
    """CSV copies of everything in the report; returns the comparison tables keyed '<table>_<best|last>'."""
    tables.mkdir(parents=True, exist_ok=True)
    flat = runs.copy()
    for col in ("test_best.per_class_f1", "test_last.per_class_f1"):
        flat[col] = flat[col].map(lambda v: json.dumps(v) if isinstance(v, list) else "")
    flat.to_csv(tables / "runs.csv", index=False)
    issues.to_csv(tables / "issues.csv", index=False)
    claims_frame(claims).to_csv(tables / "claims.csv", index=False)
    curve_summary(curves).to_csv(tables / "curves.csv", index=False)
    out = {}
    for metric in METRICS:
        summary_table(runs, metric).to_csv(tables / f"summary_{_short(metric)}.csv", index=False)
        for comparison in TABLES:
            key = f"{comparison.key}_{_short(metric)}"
            out[key] = comparison_table(runs, comparison, metric)
            out[key].to_csv(tables / f"{key}.csv", index=False)
    return out


def _issues_markdown(issues: pd.DataFrame) -> str:
    if issues.empty:
        return "All runs of the grid completed."
    parts = []
    for status, group in issues.groupby("status", sort=False):
        shown = group.assign(dataset=group["dataset"].map(_label))[["dataset", "method", "seed", "detail", "path"]]
        parts.append(f"**{status}** ({len(group)})\n\n{markdown_table(shown)}")
    return "\n\n".join(parts)


def build_markdown(sweep: Path, runs: pd.DataFrame, metric: str, comparisons: dict[str, pd.DataFrame],
                   claims: list[Claim], issues: pd.DataFrame, figures: list[tuple[str, Path]], out: Path) -> str:
    """Assemble report.md: inventory, tables (headline metric first), figures, claims, problems."""
    other = [m for m in METRICS if m != metric]
    n_done = len(completed_runs(runs))
    lines = [
        "# Knowledge distillation study report", "",
        f"- Sweep: `{sweep}`",
        f"- Generated: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
        f"- Runs found: {len(runs)} results.json ({n_done} completed); problems listed in [Missing, failed and running runs](#missing-failed-and-running-runs): {len(issues)}",
        f"- Headline metric: **{metric}** — {METRICS.get(metric, metric)}. Accuracies in percent.",
        f"- Recipes: {_recipe_label(completed_runs(runs))}", "",
        "## Runs", "", "Completed runs per dataset and method (out of the seeds seen anywhere in the sweep).", "",
        markdown_table(run_counts(runs).assign(dataset=lambda f: f["dataset"].map(_label))) if not runs.empty else "_No results.json found._", "",
        "## Accuracy per method", "",
        f"{METRICS.get(metric, metric).capitalize()} (%), mean ± sample std over seeds (n).", "",
        markdown_table(_summary_wide(runs, metric)), "",
    ]
    for m in [metric, *other]:
        lines += [f"## Paper tables — {m} ({METRICS[m]})", ""]
        for comparison in TABLES:
            table = comparisons[f"{comparison.key}_{_short(m)}"]
            lines += [table_caption(comparison, m), "", markdown_table(format_comparison(table, comparison)), ""]
    lines += ["## Figures", ""]
    for caption, path in figures:
        lines += [f"### {caption}", "", f"![{caption}]({path.relative_to(out).as_posix()})", ""]
    lines += ["## Claims", "", f"Verdicts use the headline metric ({metric}). Where runs did not use the paper recipe, "
              "the verdicts describe this sweep's recipe, not a replication.", ""]
    for claim in claims:
        lines += [f"### Claim {claim.number}: {claim.statement}", "", f"**Verdict: {claim.verdict}**", "",
                  f"Criterion: {claim.criterion}", "", claim.evidence, ""]
    lines += ["## Missing, failed and running runs", "",
              "Expected grid: every dataset × method × seed that appears anywhere in the sweep.", "",
              _issues_markdown(issues), "",
              "## Files", "", "Tables as CSV under `tables/` (runs, issues, claims, curves, summary_<best|last>, "
              "table5/6/7_<best|last>); figures as PNG under `figures/`.", ""]
    return "\n".join(lines)


def _summary_wide(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Datasets as rows, methods as columns, 'mean ± std (n)' cells."""
    summary = summary_table(runs, metric)
    if summary.empty:
        return summary
    summary = summary.assign(cell=[f"{_mean_std(m, s)} ({n})" for m, s, n in zip(summary["mean"], summary["std"], summary["n"])])
    wide = summary.pivot(index="dataset", columns="method", values="cell")
    wide = wide.reindex(index=ordered_datasets(wide.index), columns=ordered_methods(wide.columns))
    wide.index = [_label(d) for d in wide.index]
    wide.columns = [METHOD_LABELS.get(m, m) for m in wide.columns]
    return wide.rename_axis("Dataset").reset_index()


def write_report(sweep: str | Path, out: str | Path | None = None, metric: str = DEFAULT_METRIC) -> Path:
    """Write report.md, figures/*.png and tables/*.csv for a sweep; returns the path of report.md."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, not {metric!r}")
    sweep = Path(sweep).resolve()
    if not sweep.is_dir():
        raise FileNotFoundError(f"sweep folder not found: {sweep}")
    out = Path(out).resolve() if out is not None else sweep / "report"
    out.mkdir(parents=True, exist_ok=True)
    runs = load_sweep(sweep)
    curves = load_curves(runs)
    issues = find_issues(runs)
    claims = evaluate_claims(runs, metric)
    comparisons = _write_tables(runs, curves, issues, claims, out / "tables")
    figures = _write_figures(runs, curves, metric, out / "figures")
    report = out / "report.md"
    report.write_text(build_markdown(sweep, runs, metric, comparisons, claims, issues, figures, out))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: ``python -m kd_lightning.report <sweep-dir> [--out DIR] [--metric ...]``."""
    import matplotlib

    matplotlib.use("Agg")
    parser = argparse.ArgumentParser(prog="python -m kd_lightning.report", description=(
        "Summarise a knowledge-distillation sweep (every results.json under SWEEP, except archive/ folders) "
        "into report.md, PNG figures and CSV tables."))
    parser.add_argument("sweep", type=Path, help="sweep folder, e.g. outputs/study")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: SWEEP/report)")
    parser.add_argument("--metric", choices=sorted(METRICS), default=DEFAULT_METRIC,
                        help="headline metric for figures and claims (both are tabulated); default: %(default)s")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.sweep, args.out, args.metric)
    except FileNotFoundError as exc:
        parser.error(str(exc))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
