"""Per-epoch training curves from each run's CSVLogger file (``csv/metrics.csv``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from kd_lightning.report.runs import KEYS, RUNS_CSV, completed_runs, in_table_order, is_report_folder

CURVE_COLUMNS = {
    "val/acc": "val_acc",
    "val/loss": "val_loss",
    "val/f1": "val_f1",
    "train/loss_epoch": "train_loss",
    "train/acc": "train_acc",
}


def read_metrics_csv(run_dir: str | Path) -> pd.DataFrame:
    """Per-epoch values from a run's CSVLogger file(s); empty when the run has none.

    CSVLogger rows are sparse (validation, training and test rows each fill their own columns), so
    each column's last non-empty value per epoch is taken; epochs with no validation are dropped.
    """
    csv_dir = Path(run_dir) / "csv"
    files = [csv_dir / "metrics.csv"] if (csv_dir / "metrics.csv").is_file() else sorted(csv_dir.rglob("metrics.csv"))
    frames = [pd.read_csv(f) for f in files if f.stat().st_size > 0]
    if not frames:
        return pd.DataFrame(columns=["epoch", *CURVE_COLUMNS.values()])
    raw = pd.concat(frames, ignore_index=True).reindex(columns=["epoch", *CURVE_COLUMNS])
    raw = raw.dropna(subset=["epoch"])
    per_epoch = raw.groupby("epoch", as_index=False).last().rename(columns=CURVE_COLUMNS)
    per_epoch = per_epoch.dropna(subset=["val_acc", "val_loss"], how="all")
    per_epoch["epoch"] = per_epoch["epoch"].astype(int)
    return per_epoch.reset_index(drop=True)


def load_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch validation (and training) values of every completed run, keyed by recipe/dataset/method/seed."""
    cols = ["recipe", *KEYS, "epoch", *CURVE_COLUMNS.values()]
    frames = []
    for run in completed_runs(runs).to_dict("records"):
        curve = read_metrics_csv(run["path"]) if isinstance(run.get("path"), str) else pd.DataFrame()
        if not curve.empty:
            frames.append(
                curve.assign(recipe=run["recipe"], dataset=run["dataset"], method=run["method"], seed=run["seed"])
            )
    if not frames:
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True)[cols]


SUMMARY_COLUMNS = "recipe dataset method epoch n val_acc_mean val_acc_std val_loss_mean val_loss_std".split()
CURVES_CSV = RUNS_CSV.parent / "curves.csv"


def curve_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per recipe/dataset/method/epoch; accuracy in percent."""
    cols = SUMMARY_COLUMNS
    if curves.empty:
        return pd.DataFrame(columns=cols)
    data = curves.assign(val_acc=curves["val_acc"].astype(float) * 100.0)
    if "recipe" not in data:
        data = data.assign(recipe="n/a")
    grouped = data.groupby(["recipe", "dataset", "method", "epoch"])
    out = grouped.agg(
        n=("seed", "count"),
        val_acc_mean=("val_acc", "mean"),
        val_acc_std=("val_acc", "std"),
        val_loss_mean=("val_loss", "mean"),
        val_loss_std=("val_loss", "std"),
    ).reset_index()
    return in_table_order(out.assign(seed=pd.NA))[cols]


def read_curve_summary(path: str | Path) -> pd.DataFrame:
    """A report folder's ``tables/curves.csv`` (:func:`curve_summary` as written); empty when it has none."""
    if not Path(path).is_file():
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"recipe": str, "dataset": str})
    return frame.reindex(columns=SUMMARY_COLUMNS)


def summary_of_folders(folders: Sequence[str | Path], runs: pd.DataFrame) -> pd.DataFrame:
    """The curve summary of a report's inputs: report folders give their ``tables/curves.csv`` (their run
    folders may be elsewhere), sweeps the per-epoch curves of their own runs."""
    reports = [Path(f) for f in folders if is_report_folder(f)]
    frames = [read_curve_summary(f / CURVES_CSV) for f in reports]
    if len(reports) < len(folders):
        inside = runs["path"].map(lambda p: not any(str(p).startswith(str(r)) for r in reports)) if reports else None
        frames.append(curve_summary(load_curves(runs if inside is None else runs[inside])))
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    return in_table_order(pd.concat(frames, ignore_index=True).assign(seed=pd.NA))[SUMMARY_COLUMNS]
