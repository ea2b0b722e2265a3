"""A multirun whose runs failed must not exit 0.

``train.main`` records a failed run and returns, so that the other runs of a grid still complete; Hydra
therefore sees only successes. This Hydra callback gives the failures back to the exit status: each
failed run drops a marker file into ``<sweep dir>/.failed-runs/`` (a shared file system reaches it from
joblib workers and SLURM jobs alike), and at the end the multirun lists them and exits with status 1.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from kd_lightning.run.records import write_json

MARKER_FOLDER = ".failed-runs"
log = logging.getLogger("kd_lightning")


def report_failed_run(sweep_dir: str | os.PathLike, run_dir: str | os.PathLike, exc: BaseException) -> None:
    """Called by a failed run of a multirun: leave a marker for :class:`ExitNonzeroOnFailedRuns`."""
    name = str(run_dir).strip("/").replace("/", "__")
    write_json(
        Path(sweep_dir) / MARKER_FOLDER / f"{name}.json",
        {"run_dir": str(run_dir), "error": f"{type(exc).__name__}: {exc}"},
    )


class ExitNonzeroOnFailedRuns(Callback):
    """At the end of a multirun, list its failed runs and exit with status 1 if there were any."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # markers left by an earlier multirun that was killed before its end are not this one's
        shutil.rmtree(Path(config.hydra.sweep.dir) / MARKER_FOLDER, ignore_errors=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(config.hydra.sweep.dir) / MARKER_FOLDER
        failures = [p.read_text().strip() for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
        shutil.rmtree(folder, ignore_errors=True)
        if failures:
            log.error(
                "%d run(s) of this multirun failed "
                "(each results.json says why, unless its folder held a completed run):\n%s",
                len(failures),
                "\n".join(failures),
            )
            raise SystemExit(1)
