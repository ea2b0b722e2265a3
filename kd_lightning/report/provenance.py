"""Which teacher each distilled student learnt from, and whether it is the sweep's teacher.

Teacher runs record ``teacher_key`` (registry key, e.g. ``resnet50-1a2b3c4d``); distilling students record
``teacher = {key, checkpoint, test_acc, run_dir, stale, source}``. A student is marked

- ``teacher_match = "no"`` when its ``teacher.key`` differs from the ``teacher_key`` of the sweep's teacher
  run of the same recipe, dataset and seed (the teacher the "vs teacher" rows compare against);
- ``"yes"`` when they agree; ``"n/a"`` when either key is unknown or the sweep holds no such teacher run.

A ``stale`` teacher was trained by another code commit than the student that used it.
"""

from __future__ import annotations

import pandas as pd

from kd_lightning.report.runs import PICK_KEYS, completed_runs, distils, teacher_methods

COLUMNS = [
    *PICK_KEYS,
    "teacher.key",
    "sweep_teacher_key",
    "teacher_match",
    "teacher.stale",
    "teacher.source",
    "teacher.test_acc",
    "teacher.checkpoint",
    "teacher.run_dir",
    "path",
]


def teacher_check(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per completed distilling run: the teacher it used against the sweep's teacher run."""
    if runs.empty or "teacher.key" not in runs:
        return pd.DataFrame(columns=COLUMNS)
    done = completed_runs(runs)
    if done.empty:
        return pd.DataFrame(columns=COLUMNS)
    teachers = done[done["method"].isin(teacher_methods(done))].set_index(["recipe", "dataset", "seed"])["teacher_key"]
    students = done[distils(done)].copy()
    rows = []
    for row in students.to_dict("records"):
        key = (row["recipe"], row["dataset"], row["seed"])
        sweep_key = teachers.get(key) if key in teachers.index else None
        used = row.get("teacher.key")
        known = isinstance(used, str) and isinstance(sweep_key, str)
        match = ("yes" if used == sweep_key else "no") if known else "n/a"
        rows.append({**{c: row.get(c) for c in COLUMNS}, "sweep_teacher_key": sweep_key, "teacher_match": match})
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["seed"] = out["seed"].astype("Int64")
    return out
