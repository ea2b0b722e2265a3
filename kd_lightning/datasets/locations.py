"""Where the tools that work outside a training run (bench, export) look for dataset files."""

from __future__ import annotations

import os
from pathlib import Path

from kd_lightning import PROJECT_ROOT


def data_dir_candidates(explicit: str | os.PathLike | None = None, *preferred: str | os.PathLike | None) -> list[Path]:
    """``[explicit]`` when given (nothing else is tried); otherwise ``preferred`` (e.g. the run config's
    data_dir), ``$KD_DATA_DIR``, ``<project>/data`` and ``<project>/../shared/datasets``, in that order,
    without repeats."""
    if explicit:
        return [Path(explicit)]
    found = [
        *preferred,
        os.environ.get("KD_DATA_DIR"),
        PROJECT_ROOT / "data",
        PROJECT_ROOT.parent / "shared" / "datasets",
    ]
    return list(dict.fromkeys(Path(c) for c in found if c))
