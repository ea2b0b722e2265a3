"""Which files a run's data came from.

A built-in dataset's identity is its config (:mod:`kd_lightning.run.identity`): which dataset, split and factors,
not which copy of the files. So another copy at the same path (a re-downloaded or edited USPS) would be the same
data to every identity. Each run's record therefore carries ``data_files_sha256``, the digest of the files it read
(:meth:`~kd_lightning.datasets.datamodules.ImageClassificationDataModule.files_digest`; a folder dataset's content
is in its identity already, so it has none), and:

- a completed run whose files have changed since is not skipped as done (:func:`refuse_changed`), and an
  unfinished one starts afresh instead of resuming (:func:`same_files`);
- files a run downloads are downloaded before any of this is judged (:func:`ready_files`);
- a student does not distil from a registry teacher (or ensemble member) trained on other files, nor a teacher
  run record one (:func:`refuse_other_teacher`); a scratch run, which only measures its fidelity to the teacher,
  trains without it (:func:`checked_teacher`).

A digest missing on either side (records from before it, files not downloaded yet) is no evidence and passes.
Identities are unchanged, so completed runs and registered teachers stay valid.
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig

from kd_lightning.datasets.datamodules import DatasetError
from kd_lightning.run.build import build_datamodule

RECORD_KEY = "data_files_sha256"
log = logging.getLogger("kd_lightning")


class DataChangedError(DatasetError):
    """The dataset's files are not the ones a completed run or a registry teacher was made from."""


def current_digest(cfg: DictConfig) -> str | None:
    """The digest of the files ``cfg``'s dataset reads now (None while any is missing, and for a folder)."""
    return build_datamodule(cfg).files_digest()


def refuse_changed(cfg: DictConfig, record: dict[str, Any], current: str | None = None) -> None:
    """Refuse to take the completed run ``record`` as this config's result when its files have changed since."""
    recorded = record.get(RECORD_KEY)
    current = current_digest(cfg) if recorded and current is None else current
    if recorded and current and recorded != current:
        raise DataChangedError(
            f"{record.get('run_dir')} holds a completed run trained on {cfg.dataset.name} files of digest "
            f"{recorded[:12]}, but the files in {cfg.dataset.data_dir} now give {current[:12]}: its numbers are "
            "the old files'. Point paths.data_dir at the files it used, or rerun it with force=true to train on these "
            "(the old run is archived in its folder)."
        )


def ready_files(datamodule: Any) -> str | None:
    """The digest of a DataModule's files, downloading them first when they are missing (or refusing, naming
    them: ``prepare_data``); None for a folder dataset, which has none (it is scanned here instead)."""
    files = datamodule.files_digest()
    if files is None:
        datamodule.prepare_data()
        files = datamodule.files_digest()
    return files


def same_files(unfinished: dict[str, Any], current: str | None) -> bool:
    """Whether an unfinished run (its running record, :func:`~kd_lightning.run.rundir.unfinished`) was started on
    the files that give ``current``; unknown either side: yes."""
    recorded = unfinished.get(RECORD_KEY)
    if recorded and current and recorded != current:
        log.warning("%s: its unfinished run read other files; it starts afresh", unfinished.get("run_dir"))
        return False
    return True


def checked_teacher(cfg: DictConfig, teacher: Any, current: str | None) -> Any:
    """The run's :class:`~kd_lightning.run.teachers.TeacherChoice` when its registry teacher was trained on these
    files (:func:`refuse_other_teacher`); a scratch run (``reference`` None: the teacher only measures fidelity)
    trains without it, with a warning, where a distilling run is refused."""
    if teacher is None:
        return None
    try:
        refuse_other_teacher(cfg, teacher.record, current)
    except DataChangedError as exc:
        if teacher.reference is not None:
            raise
        log.warning("%s Its fidelity metrics are left empty.", exc)
        return None
    return teacher


def refuse_other_teacher(cfg: DictConfig, teacher: dict[str, Any], current: str | None) -> None:
    """Refuse a registry teacher (or ensemble member) trained on other files than this run's ``current`` ones:
    ``teacher`` is the student's record of it (:func:`kd_lightning.run.teachers.describe`, or an ensemble's with
    ``members``). A teacher named by ``teacher_ckpt=`` is the user's choice and is not checked."""
    if teacher.get("source") != "registry" or not current:
        return
    for network in teacher.get("members") or [teacher]:
        recorded = network.get(RECORD_KEY)
        if recorded and recorded != current:
            raise DataChangedError(
                f"registry teacher {network.get('checkpoint')} was trained on {cfg.dataset.name} files of digest "
                f"{recorded[:12]}, but the files in {cfg.dataset.data_dir} give {current[:12]}. Point "
                "paths.teachers_dir at a registry of its own for this copy of the data, or train the teacher again "
                "on these files: move its entry away (a missing teacher is trained again), or rerun its single "
                "teacher's run (method=teacher with this run's overrides) with force=true."
            )
