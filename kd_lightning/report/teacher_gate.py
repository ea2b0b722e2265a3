"""The teacher gate: is a condition's teacher worth distilling? (docs/teachers.md)

Per condition (recipe, teacher kind, data level: the report's ``recipe`` column) and dataset: the teacher's
accuracy minus the control student's (scratch), paired by seed, with its 95% t-interval
(:func:`kd_lightning.report.stats.paired_t`). The condition is **qualified** when the mean difference is at least
``margin`` percentage points (default ``stats.GATE_MARGIN``). A point estimate, not a test: the gate says whether
a KD question is worth asking with this teacher, and its interval says how sure that is. "Gap closed" and the
factor answers say whether their teacher was qualified. An ensemble teacher's members' mean accuracy is shown
beside the ensemble's.
"""

from __future__ import annotations

import math

import pandas as pd

from kd_lightning.report import stats
from kd_lightning.report.runs import DEFAULT_METRIC, completed_runs, distils
from kd_lightning.report.stats import GATE_MARGIN

GATE_COLUMNS = "recipe dataset control n teacher members_mean control_mean diff ci_low ci_high qualified".split()


def _roles(done: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Teacher rows (a run that registered a teacher says so: ``teacher_key``) and control rows (students that
    do not distil): from what the records say, never from method names."""
    is_teacher = done["teacher_key"].notna() if "teacher_key" in done else pd.Series(False, index=done.index)
    return done[is_teacher], done[~is_teacher & ~distils(done)]


def teacher_gate(runs: pd.DataFrame, metric: str = DEFAULT_METRIC, margin: float = GATE_MARGIN) -> pd.DataFrame:
    """One row per condition, dataset and control method: teacher − control in pp, paired by seed."""
    done = completed_runs(runs, metric)
    if done.empty:
        return pd.DataFrame(columns=GATE_COLUMNS)
    done = done.assign(value=pd.to_numeric(done[metric], errors="coerce") * 100.0)
    teachers, controls = _roles(done)
    rows = []
    for (recipe, dataset), tsub in teachers.groupby(["recipe", "dataset"], sort=False):
        t = tsub.set_index("seed")
        members = pd.to_numeric(t.get("teacher.members_mean_acc"), errors="coerce") * 100.0
        for control, csub in controls[(controls["recipe"] == recipe) & (controls["dataset"] == dataset)].groupby(
            "method", sort=False
        ):
            c = csub.set_index("seed")["value"]
            seeds = t.index.intersection(c.index)
            paired = stats.paired_t((t.loc[seeds, "value"] - c.loc[seeds]).to_numpy())
            rows.append(
                {
                    "recipe": recipe,
                    "dataset": dataset,
                    "control": control,
                    "n": len(seeds),
                    "teacher": float(t.loc[seeds, "value"].mean()) if len(seeds) else math.nan,
                    "members_mean": float(members.loc[seeds].mean()) if len(seeds) else math.nan,
                    "control_mean": float(c.loc[seeds].mean()) if len(seeds) else math.nan,
                    "diff": paired["mean"],
                    "ci_low": paired["ci_low"],
                    "ci_high": paired["ci_high"],
                    "qualified": bool(paired["mean"] >= margin) if len(seeds) else False,
                }
            )
    return pd.DataFrame(rows, columns=GATE_COLUMNS)
