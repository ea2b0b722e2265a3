"""The primary claim, named before the runs: which factor, student(s), test and direction is confirmatory.

A sweep names it in its config (``conf/train.yaml`` → ``claims.primary``; each run's ``results.json`` holds the
resolved config under ``config``) or the report's command line names it (``--primary
factor=train_fraction,student=rkd,test=contrast,direction=greater``). The report tests it first, at the full α;
every other claim is exploratory (``kd_lightning/report/claims.py``, :func:`control_family`). The key is not part
of any run's identity (``kd_lightning/run/identity.py`` lists what is), so naming it changes no run.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from kd_lightning.run.records import RESULTS_FILE

TESTS = ("slope", "contrast")
DIRECTIONS = ("greater", "less")
ALL_STUDENTS = ("all", "both", "", None)


@dataclass(frozen=True)
class PrimaryClaim:
    """One factor claim: does ``students``' gain over scratch change in ``direction`` along ``factor``?

    ``test`` ``slope``: each seed's slope of its gain on the level's position; ``contrast``: each seed's gain at
    the hardest level minus at the easiest (full data for ``train_fraction``). ``students`` empty: every
    distilling student the sweep holds, each of which must show it. ``dataset`` None: any dataset."""

    factor: str
    students: tuple[str, ...] = ()
    test: str = "slope"
    direction: str = "greater"
    dataset: str | None = None

    def __post_init__(self) -> None:
        if self.test not in TESTS:
            raise ValueError(f"claims.primary.test must be one of {TESTS}, not {self.test!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"claims.primary.direction must be one of {DIRECTIONS}, not {self.direction!r}")

    def matches(self, dataset: str, factor: str) -> bool:
        return factor == self.factor and (self.dataset is None or dataset == self.dataset)

    def describe(self) -> str:
        who = " and ".join(self.students) if self.students else "every distilling student"
        where = f" on {self.dataset}" if self.dataset else ""
        return f"{self.factor}{where}: {who}, {self.test}, direction {self.direction}"


def parse_primary(spec: Mapping[str, Any] | str | None) -> PrimaryClaim | None:
    """A :class:`PrimaryClaim` from a config mapping or ``key=value,key=value`` text; None when not named."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, str):
        spec = dict(item.split("=", 1) for item in spec.split(",") if item.strip())
    spec = {k.strip(): v for k, v in dict(spec).items()}
    unknown = set(spec) - {"factor", "student", "students", "test", "direction", "dataset"}
    if unknown or "factor" not in spec:
        raise ValueError(f"claims.primary needs factor (and optionally student, test, direction, dataset): {spec}")
    students = spec.get("students", spec.get("student"))
    if isinstance(students, str):
        students = [s.strip() for s in students.replace("+", " ").replace(";", " ").split()]
    students = tuple(s for s in (students or ()) if s not in ALL_STUDENTS)
    return PrimaryClaim(
        factor=str(spec["factor"]).strip(),
        students=students,
        test=str(spec.get("test", "slope")).strip(),
        direction=str(spec.get("direction", "greater")).strip(),
        dataset=spec.get("dataset"),
    )


def _recorded_spec(folder: Any) -> Any:
    """``config.claims.primary`` of the record in ``folder``; ``...`` when the record cannot be read."""
    try:
        config = json.loads((Path(str(folder)) / RESULTS_FILE).read_text()).get("config") or {}
    except (OSError, ValueError, AttributeError, TypeError):
        return ...
    claims = config.get("claims") if isinstance(config, dict) else None
    return claims.get("primary") if isinstance(claims, dict) else None


def primary_from_runs(runs: pd.DataFrame) -> PrimaryClaim | None:
    """The primary claim the runs' recorded configs name (``config.claims.primary``); None when none does.

    Read from the runs frame's ``claims_primary`` column (JSON; a committed report's runs.csv keeps it), else from
    each run's results.json. Runs that disagree are an error: a primary claim chosen per run is no claim named in
    advance. Runs whose choice can be read from neither (an older runs.csv whose run folders are gone) are named
    in a warning: pass ``--primary`` to name the claim."""
    found: set[PrimaryClaim | None] = set()
    unknown = 0
    recorded = runs["claims_primary"] if "claims_primary" in runs else pd.Series(None, index=runs.index, dtype=object)
    folders = runs["path"] if "path" in runs else pd.Series(None, index=runs.index, dtype=object)
    for text, folder in zip(recorded, folders):
        spec = json.loads(text) if isinstance(text, str) and text else _recorded_spec(folder)
        if spec is ...:
            unknown += 1
            continue
        found.add(parse_primary(spec))
    named = found - {None}
    if len(named) > 1:
        raise ValueError(f"the runs name different primary claims: {sorted(p.describe() for p in named)}")
    if unknown:
        warnings.warn(
            f"{unknown} of {len(runs)} run(s) have no readable claims.primary (a damaged results.json, or an older "
            "runs.csv whose run folders are gone): the report cannot tell whether they named a primary claim; pass "
            "--primary to name it",
            stacklevel=2,
        )
    return named.pop() if named else None
