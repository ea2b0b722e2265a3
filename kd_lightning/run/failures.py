"""A multirun whose runs failed must not exit 0.

``train.main`` records a failed run and returns, so that the other runs of a grid still complete; Hydra
therefore sees only successes. This Hydra callback gives the failures back to the exit status: each
failed run drops a marker file into ``<sweep dir>/.failed-runs/<multirun id>/`` (a shared file system reaches it
from joblib workers and SLURM jobs alike), and at the end the multirun lists them and exits with status 1. The id
(``$KD_MULTIRUN_ID``, set at the multirun's start and inherited by its jobs) keeps two multiruns sharing a sweep
folder (the same ``name=``) from reading or deleting each other's markers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from kd_lightning.run.records import write_json

MARKER_FOLDER = ".failed-runs"
#: the running multirun's id, set by :class:`ExitNonzeroOnFailedRuns` and inherited by its jobs' processes
MULTIRUN_ID = "KD_MULTIRUN_ID"
#: the ids of every multirun this process started: a reused worker pool may still write under an earlier one
_STARTED_IDS: list[str] = []
log = logging.getLogger("kd_lightning")


def report_failed_run(sweep_dir: str | os.PathLike, run_dir: str | os.PathLike, exc: BaseException) -> None:
    """Called by a failed run of a multirun: leave a marker for :class:`ExitNonzeroOnFailedRuns`."""
    name = str(run_dir).strip("/").replace("/", "__")
    write_json(
        Path(sweep_dir) / MARKER_FOLDER / os.environ.get(MULTIRUN_ID, "") / f"{name}.json",
        {"run_dir": str(run_dir), "error": f"{type(exc).__name__}: {exc}"},
    )


class ExitNonzeroOnFailedRuns(Callback):
    """At the end of a multirun, list its failed runs and exit with status 1 if there were any."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # this multirun's own marker folder: an earlier one's leftovers and a concurrent one's markers are not its own
        os.environ[MULTIRUN_ID] = f"{os.getpid()}-{time.time_ns()}"
        _STARTED_IDS.append(os.environ[MULTIRUN_ID])

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(config.hydra.sweep.dir) / MARKER_FOLDER
        own = os.environ.pop(MULTIRUN_ID, "")
        # this multirun's folder; those of earlier multiruns this process started (a reused worker pool keeps the id
        # it started with); and markers without an id (a launcher that does not pass the environment on)
        folders = [root, *(root / name for name in dict.fromkeys([own, *_STARTED_IDS]) if name)]
        markers = sorted(m for folder in folders for m in folder.glob("*.json"))
        failures = [m.read_text().strip() for m in markers]
        for marker in markers:
            marker.unlink()
        for folder in reversed(folders):  # the id folders, then the root: each only when nothing else is in it
            with contextlib.suppress(OSError):
                folder.rmdir()
        if failures:
            log.error(
                "%d run(s) of this multirun failed "
                "(each results.json says why, unless its folder held a completed run):\n%s",
                len(failures),
                "\n".join(failures),
            )
            raise SystemExit(1)
