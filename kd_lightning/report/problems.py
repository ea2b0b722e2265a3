"""What went wrong in a sweep: runs that did not yield a result (failed, running, interrupted, unreadable,
duplicate, missing) and results that need a caveat (teacher mismatch, stale teacher), each with the
reason, so no run is ever dropped from the report without being listed."""

from __future__ import annotations

from itertools import product
from typing import Any

import pandas as pd

from kd_lightning.report.runs import (
    KEYS,
    PICK_KEYS,
    datasets_in,
    for_recipe,
    in_table_order,
    methods_in,
    pick_runs,
    recipes_in,
    teacher_check,
)


def one_line(text: Any, limit: int = 200) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _issue(row: dict[str, Any], status: str, detail: str) -> dict[str, Any]:
    return {**{k: row[k] for k in PICK_KEYS}, "status": status, "detail": detail, "path": row["path"]}


def _without_result(kept: pd.DataFrame, superseded: pd.DataFrame) -> list[dict[str, Any]]:
    """Kept runs that did not complete or carry no test metrics, and the duplicates another record replaced."""
    rows = []
    for row in kept.to_dict("records"):
        if row["status"] == "completed":
            if pd.isna(row["test_best.acc"]) and pd.isna(row["test_last.acc"]):
                rows.append(
                    _issue(row, "completed (no test metrics)", "results.json has neither test_best nor test_last")
                )
        elif row["status"] in ("failed", "unreadable"):
            error = f"{row.get('error_type') or 'unknown error'}: {one_line(row.get('error_message'))}"
            before = (
                "before this run started (a refused config, its data files or its teacher): "
                if row["never_started"]
                else ""
            )
            rows.append(_issue(row, row["status"], before + error))
        else:
            started = f"started {row.get('started_at')}" if isinstance(row.get("started_at"), str) else ""
            rows.append(_issue(row, row["status"], started))
    for row in superseded.to_dict("records"):
        detail = "another record for the same recipe/dataset/method/seed is used"
        rows.append(_issue(row, f"duplicate ({row['status']}, ignored)", detail))
    return rows


def _never_started(runs: pd.DataFrame) -> pd.Series:
    """Failures recorded before the run wrote its ``running`` record (no ``started_at``): a config refused before
    training (a wrong dataset path lands in a ``<label>-invalid`` folder), or a teacher that could not be had. Records
    that carry no start time at all (a plain frame) tell nothing apart: none is flagged."""
    starts = runs["started_at"].map(lambda v: isinstance(v, str) and bool(v))
    return (runs["status"] == "failed") & ~starts if starts.any() else pd.Series(False, index=runs.index)


def _missing(runs: pd.DataFrame, kept: pd.DataFrame) -> list[dict[str, Any]]:
    """dataset x method x seed combinations of the grid seen anywhere in the recipe with no results.json. A run
    that never started adds no dataset, method or seed to the grid (it is listed as failed, not as missing)."""
    rows = []
    for recipe in recipes_in(kept):
        every = for_recipe(runs, recipe)
        present = {tuple(k) for k in every[KEYS].dropna().itertuples(index=False)}
        sub = every[~every["never_started"]]
        grid = product(datasets_in(sub), methods_in(sub), sorted(int(s) for s in sub["seed"].dropna().unique()))
        keys = [key for key in grid if key not in present]
        rows += [
            {"recipe": recipe, **dict(zip(KEYS, key)), "status": "missing", "detail": "no results.json", "path": ""}
            for key in keys
        ]
    return rows


def _mismatch(row: dict[str, Any]) -> str:
    if row["teacher.key"] != row["sweep_teacher_key"]:
        return (
            f"distilled from teacher {row['teacher.key']}, but the sweep's teacher run of this dataset and seed is "
            f"{row['sweep_teacher_key']}"
        )
    used, sweep = str(row["teacher.weights_sha256"])[:12], str(row["sweep_teacher_weights_sha256"])[:12]
    return (
        f"distilled from teacher {row['teacher.key']} with weights {used}, but the sweep's teacher run of this "
        f"dataset and seed recorded weights {sweep} (the teacher was retrained with force=true between the two)"
    )


def _teacher_caveats(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """Students of another teacher than the sweep's, and of a teacher trained by another commit."""
    checks = teacher_check(runs)
    rows = [
        _issue(row, "teacher mismatch", _mismatch(row))
        for row in checks[checks["teacher_match"] == "no"].to_dict("records")
    ]
    for row in checks[checks["teacher.stale"] == True].to_dict("records"):  # noqa: E712 (object column)
        # an ensemble has no checkpoint of its own (None from results.json, NaN from a regenerated runs.csv)
        where = row["teacher.checkpoint"] if isinstance(row["teacher.checkpoint"], str) else "its ensemble members"
        detail = f"teacher {row['teacher.key']} ({row['teacher.source']}) was trained by another code commit: {where}"
        rows.append(_issue(row, "stale teacher", detail))
    return rows


def _data_caveats(kept: pd.DataFrame) -> list[dict[str, Any]]:
    """Completed runs of a dataset made from another copy of its files than most of its runs (their recorded
    ``data_files_sha256``; runs that recorded none are not compared)."""
    if "data_files_sha256" not in kept:
        return []
    done = kept[(kept["status"] == "completed") & kept["data_files_sha256"].map(lambda d: isinstance(d, str))]
    rows = []
    for dataset, group in done.groupby("dataset"):
        counts = group["data_files_sha256"].value_counts()
        common = counts.index[0]  # the most runs' copy (ties: the first seen)
        for row in group[group["data_files_sha256"] != common].to_dict("records"):
            detail = (
                f"trained on {dataset} files {row['data_files_sha256'][:12]}; {counts.iloc[0]} of the sweep's "
                f"{len(group)} {dataset} runs read files {common[:12]}"
            )
            rows.append(_issue(row, "other data files", detail))
    return rows


def find_issues(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that did not yield a result (failed, running, interrupted, unreadable, duplicate, missing) and
    runs whose result needs a caveat (teacher mismatch, stale teacher, other data files).

    Missing = dataset x method x seed combinations of the grid seen anywhere in the sweep (per recipe)
    that have no results.json at all.
    """
    cols = ["recipe", "dataset", "method", "seed", "status", "detail", "path"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    if "status" not in runs:  # a plain frame: every row is a completed run
        runs = runs.assign(status="completed")
    for col in ("path", "error_type", "error_message", "started_at", "test_best.acc", "test_last.acc"):
        if col not in runs:
            runs = runs.assign(**{col: "" if col == "path" else None})
    runs = runs.assign(never_started=_never_started(runs))
    kept, superseded = pick_runs(runs)
    rows = _without_result(kept, superseded) + _missing(runs, kept) + _teacher_caveats(runs) + _data_caveats(kept)
    issues = pd.DataFrame(rows, columns=cols)
    issues["seed"] = issues["seed"].astype("Int64")
    issues = in_table_order(issues)
    return issues if len(recipes_in(runs)) > 1 else issues.drop(columns="recipe")
