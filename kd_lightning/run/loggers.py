"""A CSV logger whose curves survive a resume.

Lightning's CSVLogger deletes ``metrics.csv`` when it opens a folder that already holds one, so a run
resumed from ``last.ckpt`` lost the curves of every epoch before the interruption. This one appends:
:func:`kd_lightning.run.rundir.trim_curves` first cuts the file back to the resume checkpoint, then the
resumed run adds its epochs after the kept ones, and every epoch appears exactly once.
"""

from __future__ import annotations

import csv
import os

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _AppendingWriter(ExperimentWriter):
    """Keeps an existing ``metrics.csv`` (and its columns) instead of deleting it."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as handle:
                self.metrics_keys = list(csv.DictReader(handle).fieldnames or [])


class ResumableCSVLogger(CSVLogger):
    """``lightning.pytorch.loggers.CSVLogger`` that appends to the curves already in its folder."""

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
