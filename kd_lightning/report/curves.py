"""Per-epoch training curves from each run's CSVLogger file (``csv/metrics.csv``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kd_lightning.report.runs import KEYS, _sort, completed_runs

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


def curve_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per recipe/dataset/method/epoch; accuracy in percent."""
    cols = ["recipe", "dataset", "method", "epoch", "n", "val_acc_mean", "val_acc_std", "val_loss_mean", "val_loss_std"]
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
    return _sort(out.assign(seed=pd.NA))[cols]
