"""The teacher registry: teachers are trained once and found by their identity.

**Which teacher a student uses**: the teacher that ``method=teacher`` with the student's own overrides
would train (same data, split, recipe, trainer limits and seed; :mod:`kd_lightning.run.identity`), found in
the registry by its key, trained into the registry first when missing, unless ``teacher_ckpt=`` names
one explicitly.

An entry lives at ``<paths.teachers_dir>/<dataset>/<key>/seed<seed>/`` with ``teacher.ckpt`` and
``teacher.json`` (the teacher run's record plus its key, identity and code version). ``<key>`` is
``<arch>-<hash of the teacher's identity without the seed>``. A teacher trained because a student
needed it trains in the entry's own ``run/`` folder, so it never lands in a sweep folder that holds
another teacher. Entries are written by rename (never half a file), and a file lock makes concurrent
runs that need the same missing teacher train it once.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from kd_lightning import PROJECT_ROOT
from kd_lightning.models import CheckpointError, load_network
from kd_lightning.run import data_files, rundir
from kd_lightning.run.identity import digest, fingerprint, identity
from kd_lightning.run.records import RESULTS_FILE, git_commit, write_json

TEACHER_METHOD_FILE = PROJECT_ROOT / "conf" / "method" / "teacher.yaml"
CHECKPOINT_FILE = "teacher.ckpt"
METADATA_FILE = "teacher.json"
#: the folder inside a registry entry where a teacher trained on a student's demand runs
RUN_FOLDER = "run"
log = logging.getLogger("kd_lightning")


class TeacherError(RuntimeError):
    """The teacher is missing, or does not fit the student's dataset."""


class TeacherReplacedError(TeacherError):
    """A completed run's teacher was replaced in the registry since (retrained with ``force=true`` into different
    weights): the run's numbers are the old teacher's, so it is not skipped as done."""


#: what ``teacher.data=full`` undoes: the factors that shrink the training split (its students keep them). Content
#: factors (classes, resolution, grayscale) and label noise stay: the teacher sees the same kind of images and labels.
FULL_DATA_FACTORS = {"train_fraction": 1.0, "imbalance": 1.0}


def teacher_data(cfg: DictConfig) -> str:
    """``same`` (the paper's: the students' own training data) or ``full`` (the full training split)."""
    return str(OmegaConf.select(cfg, "teacher.data", default="same"))


def teacher_variant(cfg: DictConfig) -> str | None:
    """The name of the teacher's training variant (conf/teacher_variant/), None for the plain one."""
    return OmegaConf.select(cfg, "teacher.variant.name", default=None) or None


def variant_overrides(cfg: DictConfig) -> list[tuple[str, Any]]:
    """``teacher.variant.overrides`` as (key, value) pairs: each ``key=value`` with the value read as YAML, so
    ``${...}`` stays an interpolation resolved in the teacher's own config (a member's ``${seed}`` is its own)."""
    node = OmegaConf.select(cfg, "teacher.variant.overrides", default=None)
    items = OmegaConf.to_container(node, resolve=False) if node is not None else []  # unresolved: the teacher's
    pairs = []
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise TeacherError(f"teacher.variant.overrides: {item!r} is not key=value (e.g. trainer.max_epochs=24)")
        pairs.append((key.strip(), yaml.safe_load(value)))
    return pairs


def variant_problems(cfg: DictConfig) -> list[str]:
    """What makes a teacher variant unusable, found before any training: a setting without a name (its students
    would be pooled with the plain teacher's), a key the config does not have (a typo would train the plain
    teacher), an explicit ``teacher_ckpt`` (which the variant cannot change), and settings that leave the teacher's
    identity as it is (its students would reuse the plain teacher under another label)."""
    try:
        pairs = variant_overrides(cfg)
    except TeacherError as exc:
        return [str(exc)]
    if not pairs:
        return []
    name = teacher_variant(cfg)
    problems = [] if name else ["teacher.variant.overrides are set but teacher.variant.name is not: name the variant"]
    missing = [key for key, _ in pairs if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT]
    problems += [f"teacher.variant.overrides: {key!r} is no key of the config (a typo?)" for key in missing]
    if cfg.get("teacher_ckpt"):
        problems.append(f"teacher_variant={name} with teacher_ckpt: a checkpoint is trained already; drop one of them")
    if not problems:
        plain = copy.deepcopy(cfg)
        with open_dict(plain):
            plain.teacher.variant = {"name": None, "overrides": []}
        if teacher_key(plain) == teacher_key(cfg):
            problems.append(
                f"teacher_variant={name}: its settings {[k for k, _ in pairs]} do not change the teacher's identity "
                "(run/identity.py), so its students would reuse the plain teacher; set keys that change its training"
            )
    return problems


_ABSENT = object()


def teacher_config(cfg: DictConfig) -> DictConfig:
    """The config ``method=teacher`` with the same overrides would have: the run that trains this teacher.

    With ``teacher.data=full`` it trains on the full training split (:data:`FULL_DATA_FACTORS`): at the full-data
    level that is the same config, so the same registry entry, as the same-data teacher's. A teacher variant's
    settings (:func:`variant_overrides`) apply here, to the teacher's run only.
    """
    full = teacher_data(cfg) == "full" and OmegaConf.select(cfg, "dataset.factors") is not None
    overrides = variant_overrides(cfg)
    if cfg.method.name == "teacher" and not full and not overrides:
        return cfg
    tcfg = copy.deepcopy(cfg)
    with open_dict(tcfg):
        if cfg.method.name != "teacher":
            tcfg.method = OmegaConf.load(TEACHER_METHOD_FILE)
        tcfg.teacher_ckpt = None
        if full:
            tcfg.dataset.factors.update(FULL_DATA_FACTORS)
        for key, value in overrides:
            OmegaConf.update(tcfg, key, value, merge=False)
        if overrides:  # applied once: the teacher's run keeps the variant's name, its settings are now its own
            tcfg.teacher.variant.overrides = []
        if cfg.method.name == "teacher":  # a teacher row at a data level records its (full-data) teacher in that
            tcfg.paths.run_dir = str(cfg.paths.run_dir)  # level's folder, not in the one the full data would name
    return tcfg


def teacher_key(cfg: DictConfig) -> str:
    """``<arch>-<hash>`` of the teacher's identity without its seed (the seed is a folder below the key)."""
    tcfg = teacher_config(cfg)
    return f"{tcfg.method.net.arch}-{digest(identity(tcfg, include_seed=False), length=8)}"


def entry_dir(cfg: DictConfig, key: str | None = None) -> Path:
    """The registry entry of this run's teacher (``key``: its :func:`teacher_key`, when already known)."""
    return Path(cfg.paths.teachers_dir) / str(cfg.dataset.name) / (key or teacher_key(cfg)) / f"seed{cfg.seed}"


def file_digest(path: str | Path) -> str:
    """SHA-256 of a checkpoint file (identity of a teacher given by path)."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def teacher_reference(cfg: DictConfig, key: str | None = None) -> str | None:
    """What a student's identity records of its teacher: the registry key (``key``, when already known)
    and seed, or the explicit file's hash."""
    if cfg.method.name == "teacher":
        return None
    if cfg.get("teacher_ckpt"):
        return "sha256:" + file_digest(cfg.teacher_ckpt)[:16]
    return f"{key or teacher_key(cfg)}/seed{cfg.seed}"


def lock(entry: Path) -> FileLock:
    """Held while a teacher is trained, so a second run waits for it instead of training it again."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(entry) + ".lock")


def read_entry(entry: Path) -> dict[str, Any] | None:
    meta = entry / METADATA_FILE
    if not (entry / CHECKPOINT_FILE).is_file() or not meta.is_file():
        return None
    return json.loads(meta.read_text())


def registered_weights(entry: Path, read: bool = False) -> str | None:
    """The :func:`~kd_lightning.models.weights_digest` of the teacher in a registry entry now, from its
    ``teacher.json``; None when the entry holds no teacher or was registered before digests were recorded, unless
    ``read``: then from its checkpoint (recording a row; not on every skipped run of a large grid)."""
    meta = read_entry(entry)
    digest = (meta or {}).get("weights_sha256")
    if isinstance(digest, str) or meta is None or not read:
        return digest if isinstance(digest, str) else None
    try:
        return load_network(entry / CHECKPOINT_FILE)[1]["weights_sha256"]
    except CheckpointError as exc:
        raise TeacherError(f"registry teacher {entry / CHECKPOINT_FILE} is not readable ({exc})") from None


def replaced_networks(recorded: Sequence[str | None], current: Sequence[str | None]) -> list[int]:
    """The networks (by position: an ensemble's members in order, or the one) whose weights ``recorded`` in a
    record differ from the registry's ``current`` (:func:`~kd_lightning.models.weights_digest`s). A digest either
    side does not know (a record or an entry older than the digests) is no evidence."""
    if len(recorded) != len(current):
        return []
    return [k for k, (old, new) in enumerate(zip(recorded, current)) if old and new and old != new]


def refuse_replaced(record: dict[str, Any], recorded: Sequence[str | None], current: Sequence[str | None]) -> None:
    """Raise :class:`TeacherReplacedError` when the completed run ``record`` was made with teacher networks of
    weights ``recorded`` and the registry now holds other ones (:func:`replaced_networks`)."""
    changed = replaced_networks(recorded, current)
    if changed:
        which = "its teacher" if len(current) == 1 else f"member(s) {changed} of its ensemble teacher"
        raise TeacherReplacedError(
            f"{record.get('run_dir')} holds a completed run whose registry teacher has been replaced since: "
            f"{which} had weights {recorded[changed[0]][:12]}, the registry now holds {current[changed[0]][:12]} "  # type: ignore[index]
            "(retrained with force=true). Its numbers are the old teacher's. Rerun it with force=true to redo it "
            "with the current teacher (the old run is archived in its folder), or put the old teacher back "
            "(force=true kept it beside its registry entry, as <entry>.replaced-<time>)."
        )


def stale_row(row: dict[str, Any], current: Sequence[str | None], files: str | None) -> bool:
    """Whether a completed teacher row (a record of which registry teacher a condition has; training nothing of its
    own when it reused one) names other weights than the registry's ``current`` (one digest per network), or was
    recorded for other files than ``files``. Such a row is recorded again from the registry, its old record
    archived: training it again (``force=true``) would replace the registry's teacher once more, and with it the
    teacher of every student made since."""
    members = (row.get("ensemble") or {}).get("members")
    recorded = [m.get("weights_sha256") for m in members] if members else [row.get("weights_sha256")]
    old_files = row.get(data_files.RECORD_KEY)
    return bool(replaced_networks(recorded, current)) or bool(old_files and files and old_files != files)


def publish(entry: Path, checkpoint: Path, record: dict[str, Any], key: str, teacher_identity: dict[str, Any]) -> None:
    """Put the teacher's best checkpoint into the registry with its metadata, by rename (never half a file): a hard
    link to the finished run's checkpoint where the file system allows (same bytes, not a second ~90 MB on disk;
    nothing writes a finished run's checkpoint again, and a force=true rerun archives it first), else a copy."""
    entry.mkdir(parents=True, exist_ok=True)
    old = read_entry(entry)
    if old is not None:  # force=true retrains: keep the old teacher beside, never delete it
        backup = entry.parent / f"{entry.name}.replaced-{old.get('finished_at', 'unknown').replace(':', '')}"
        shutil.copytree(entry, backup, dirs_exist_ok=True)
    tmp = entry / (CHECKPOINT_FILE + ".tmp")
    tmp.unlink(missing_ok=True)  # left by a publish that was cut
    try:
        os.link(checkpoint, tmp)
    except OSError:  # another file system, or one without hard links
        shutil.copyfile(checkpoint, tmp)
    tmp.replace(entry / CHECKPOINT_FILE)
    code = (record.get("environment") or {}).get("git") or git_commit()
    meta = {
        **record,
        "teacher_key": key,
        "teacher_identity": teacher_identity,
        "code_version": code,
        "source_checkpoint": str(checkpoint),
    }
    write_json(entry / METADATA_FILE, meta)


def train_command(cfg: DictConfig) -> str:
    """The command that trains the teacher this student run needs."""
    # a folder dataset is named after its content (conf/dataset/folder.yaml); its config group is `folder`
    group = "folder" if "path" in cfg.dataset else cfg.dataset.name
    overrides = [f"dataset={group}", "method=teacher", f"seed={cfg.seed}"]
    try:
        from hydra.core.hydra_config import HydraConfig

        def key(override: str) -> str:
            return override.lstrip("+~").split("=")[0]

        # keep everything that shapes the teacher (dataset.*, recipe.*, trainer.*...), drop what names
        # the student or is already spelled out above
        task = HydraConfig.get().overrides.task
        overrides += [
            o
            for o in task
            if key(o) not in ("dataset", "seed", "teacher_ckpt", "teacher_missing") and key(o).split(".")[0] != "method"
        ]
    except ValueError:  # not inside a Hydra app (tests, notebooks)
        pass
    return "python -m kd_lightning.train " + " ".join(overrides)


def _provenance(path: Path) -> dict[str, Any]:
    """The record of the run that produced a teacher checkpoint: ``teacher.json`` beside a registry
    checkpoint, else the ``results.json`` of the run folder holding ``checkpoints/<file>``."""
    for candidate in (path.parent / METADATA_FILE, path.parent.parent / RESULTS_FILE):
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text())
            except json.JSONDecodeError:
                continue
    return {}


def describe(path: str | Path, source: str, key: str | None = None) -> dict[str, Any]:
    """What a student's record says about its teacher: key, checkpoint, test accuracy, producing run, code version."""
    path = Path(path)
    record = _provenance(path)
    code = record.get("code_version") or (record.get("environment") or {}).get("git") or {}
    current = git_commit()
    stale = bool(code.get("commit")) and bool(current.get("commit")) and code.get("commit") != current.get("commit")
    return {
        "key": key or record.get("teacher_key") or f"sha256:{file_digest(path)[:16]}",
        "checkpoint": str(path),
        "source": source,
        "test_acc": (record.get("test_best") or {}).get("acc"),
        "run_dir": record.get("run_dir"),
        "code_version": code or None,
        "stale": stale,
        "weights_sha256": record.get("weights_sha256"),  # the producing run's; the loaded weights' replace it
        data_files.RECORD_KEY: record.get(data_files.RECORD_KEY),  # the files it was trained on
    }


def load_teacher(path: str | Path, dataset: str, num_classes: int, channels: int) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a teacher network from a teacher-run checkpoint and check it fits the student's data.

    The network is built on a private random stream (:func:`kd_lightning.models.load_network`): loading
    a teacher never moves the student's. The student's module freezes it (eval mode, no gradients).
    """
    path = Path(path)
    try:
        net, info = load_network(path)
    except CheckpointError as exc:
        raise TeacherError(f"teacher_ckpt {path}: not a readable kd-lightning teacher checkpoint ({exc})") from exc
    net_cfg, trained_on = info["net"], info["dataset"]
    mismatches = []
    if trained_on is not None and trained_on != dataset:
        mismatches.append(f"trained on dataset {trained_on!r}, this run uses {dataset!r}")
    if int(net_cfg["num_classes"]) != num_classes:
        mismatches.append(f"{net_cfg['num_classes']} classes, dataset has {num_classes}")
    if int(net_cfg["in_channels"]) != channels:
        mismatches.append(f"{net_cfg['in_channels']} input channels, dataset has {channels}")
    if mismatches:
        raise TeacherError(f"teacher_ckpt {path} does not fit this run: " + "; ".join(mismatches))
    return net, {"net": net_cfg, "dataset": trained_on, "weights_sha256": info["weights_sha256"]}


# -- which teacher a run uses, and registering the teachers it trains ---------------------------------
@dataclass(frozen=True)
class TeacherChoice:
    """The teacher a student distils from (``reference`` set: part of its identity), or that a scratch
    student is compared with for fidelity (``reference`` None)."""

    checkpoints: tuple[str, ...]  # one network's, or an ensemble's members' (kd_lightning/run/teacher_kinds.py)
    record: dict[str, Any]  # :func:`describe`: key, checkpoint, source, test accuracy, producing run, code version
    reference: str | None


def resolve_teacher(cfg: DictConfig, train: Callable[[DictConfig], Any]) -> TeacherChoice | None:
    """``teacher_ckpt=``, else the registry's teacher of this run's data, recipe and seed.

    A distilling student (``requires_teacher``) whose teacher is missing has it trained first by
    ``train`` in the entry's own run folder (or fails with the command, ``teacher_missing=fail``); a
    scratch student only uses a teacher that exists; a teacher run has none.
    """
    method = get_class(cfg.method._target_)
    if method.publishes_teacher:
        return None
    distils = bool(method.requires_teacher)
    if cfg.get("teacher_ckpt"):
        path = str(cfg.teacher_ckpt)
        record = describe(path, "teacher_ckpt")
        return TeacherChoice(
            (path,), _warn_if_stale(record) if distils else record, teacher_reference(cfg) if distils else None
        )
    found = registered(cfg, teacher_config(cfg), train, train_if_missing=distils)
    if found is None:
        log.info(
            "no teacher in the registry for %s seed=%s: fidelity metrics are left empty", cfg.dataset.name, cfg.seed
        )
        return None
    entry, key = found
    record = describe(entry / CHECKPOINT_FILE, "registry", key)
    return TeacherChoice(
        (str(entry / CHECKPOINT_FILE),),
        _warn_if_stale(record) if distils else record,
        teacher_reference(cfg, key) if distils else None,
    )


def registered(
    cfg: DictConfig, tcfg: DictConfig, train: Callable[[DictConfig], Any], train_if_missing: bool
) -> tuple[Path, str] | None:
    """The registry entry and key of the teacher run ``tcfg`` (for the run ``cfg``), trained first by ``train`` in
    the entry's own run folder when missing and ``train_if_missing`` (or a clear error with
    ``teacher_missing=fail``); None when it is missing and not to be trained."""
    key = teacher_key(tcfg)
    entry = entry_dir(tcfg, key)
    if read_entry(entry) is None and train_if_missing:
        if cfg.teacher_missing == "fail":
            raise TeacherError(
                f"no teacher for dataset={cfg.dataset.name} seed={tcfg.seed} in {entry}. "
                f"Train it with:\n  {train_command(cfg)}\n"
                "or pass teacher_ckpt=<path>, or teacher_missing=train to train it here first."
            )
        log.info("teacher missing from the registry: training it first, in %s", entry / RUN_FOLDER)
        run_cfg = copy.deepcopy(tcfg)
        with open_dict(run_cfg):
            run_cfg.paths.run_dir = str(entry / RUN_FOLDER)
            run_cfg.force = False
        train(run_cfg)
    return (entry, key) if read_entry(entry) is not None else None


def _warn_if_stale(description: dict[str, Any]) -> dict[str, Any]:
    if description["stale"]:
        commit = (description.get("code_version") or {}).get("commit")
        log.warning(
            "teacher %s was trained by other code (commit %s); it is used as it is "
            "(force=true on the teacher run retrains it)",
            description["checkpoint"],
            commit,
        )
    return description


def train_or_reuse(cfg: DictConfig, fit: Callable[[DictConfig, None], dict[str, Any]]) -> dict[str, Any]:
    """A teacher run: train it with ``fit`` and register it, or record the registry's identical teacher in
    this folder instead of training it again. Holds the entry's lock, so it is trained once. A completed row that
    names other weights or files than the registry's teacher now is recorded anew (:func:`stale_row`); one that
    reused a registry teacher which has gone since trains it here."""
    cfg = teacher_config(cfg)  # teacher.data=full: the full training split, in this run's folder
    key = teacher_key(cfg)
    entry = entry_dir(cfg, key)
    with lock(entry), rundir.claim(cfg.paths.run_dir):  # the registry's lock first: a second process waits
        existing = read_entry(entry)
        fp = fingerprint(cfg)
        if existing is not None and not cfg.force:
            files = data_files.current_digest(cfg)  # a teacher trained on other files is not this data's
            data_files.refuse_other_teacher(cfg, {**existing, "source": "registry", "checkpoint": str(entry)}, files)
            # an unfinished copy of a teacher the registry already holds is archived whole, not cut back to resume
            plan = rundir.plan(cfg.paths.run_dir, fp, False, log, resume=False)
            if plan.completed is not None and not stale_row(plan.completed, [registered_weights(entry)], files):
                return plan.completed
            if plan.completed is not None:  # the teacher was replaced, or the files changed, since: recorded anew
                log.warning(
                    "%s: its row recorded another teacher or files than now; recording %s", cfg.paths.run_dir, entry
                )
                plan = rundir.plan(cfg.paths.run_dir, fp, True, log, resume=False)  # the old row to archive/
            log.info("teacher already in the registry (%s); recording it instead of training again", entry)
            record = {
                **existing,
                "run_dir": str(cfg.paths.run_dir),
                "fingerprint": fp,
                "config": OmegaConf.to_container(cfg, resolve=True),
                "best_checkpoint": str(entry / CHECKPOINT_FILE),
                "reused_from": str(entry),
                "weights_sha256": registered_weights(entry, read=True),
            }
            rundir.write_results(cfg.paths.run_dir, record)
            return record
        row = None if cfg.force else rundir.completed(cfg.paths.run_dir, fp)
        if row is not None and row.get("reused_from"):  # it recorded a registry teacher that has gone: train one here
            log.warning(
                "%s recorded %s, which is gone: training the teacher here", cfg.paths.run_dir, row["reused_from"]
            )
            rundir.plan(cfg.paths.run_dir, fp, True, log, resume=False)  # the row to archive/
        record = fit(cfg, None)
        record["teacher_key"] = key
        record["weights_sha256"] = load_network(record["best_checkpoint"])[1]["weights_sha256"]
        rundir.write_results(record["run_dir"], record)
        publish(entry, Path(record["best_checkpoint"]), record, key, identity(cfg, include_seed=False))
        accuracy = (record.get("test_best") or {}).get("acc")
        log.info("teacher registered at %s: test acc %s (best-val checkpoint)", entry, accuracy)
        return record
