"""A run folder's bookkeeping, in one place: skip, resume, archive, conflict, failure record, results I/O.

A run folder holds one experiment (:mod:`kd_lightning.run.identity`). Rules:

- a completed run of the same fingerprint is skipped (its record is returned as it is);
- a completed run of another fingerprint is never overwritten: :class:`RunConflictError`, unless
  ``force=true``, which first moves the old outputs to ``archive/<time>/``;
- an unfinished run of the same fingerprint resumes from ``checkpoints/last.ckpt``; its training curves
  are cut back to that checkpoint first, so every epoch appears exactly once after any number of
  interruptions (CSV rows trimmed here; TensorBoard hides later events through ``purge_step``);
- anything else already in the folder (an unfinished run of another config, outputs whose record was
  deleted) is archived before the fresh run starts: nothing written is ever lost;
- one process at a time works in a folder (:func:`claim`): a second one is refused, never let in to archive the
  first one's live files.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import OmegaConf

from kd_lightning.datasets.factors import factor_identity
from kd_lightning.run.records import (
    RESULTS_FILE,
    atomic_write,
    atomic_write_text,
    environment,
    read_results,
    write_json,
)

#: what a run writes into its folder (besides Hydra's .hydra/ and the log)
RUN_OUTPUTS = (RESULTS_FILE, "checkpoints", "tb", "csv", "config.yaml", "export")
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
CSV_METRICS = Path("csv") / "metrics.csv"
#: held by the process working in a run folder (:func:`claim`); stays in place when outputs are archived
LOCK_FILE = ".run.lock"


class RunConflictError(RuntimeError):
    """The run folder already holds a completed run of a different config."""


class RunBusyError(RuntimeError):
    """Another process is working in the run folder."""


#: run folders this process holds (:func:`claim`)
_HELD: set[Path] = set()


@contextmanager
def claim(run_dir: str | Path) -> Iterator[None]:
    """Hold the run folder's lock while deciding, training and recording (``with claim(run_dir): ...``).

    Why: two jobs can target one folder at once (a parallel launcher over a setting that is not part of the folder
    name, or two overlapping multiruns); the second would archive the first's live files and both would write into
    one folder. A busy folder raises :class:`RunBusyError` at once instead of waiting. Re-entrant within a process;
    the operating system releases it if the process dies (an ``flock``: see docs/reliability.md for NFS)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = run_dir.resolve()
    if key in _HELD:  # this process holds it already (a nested call)
        yield
        return
    lock = FileLock(str(run_dir / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunBusyError(
            f"another process is running in {run_dir} (it holds {run_dir / LOCK_FILE}). Two jobs of one grid that "
            "differ only in a setting the folder name leaves out share a folder: sweep it under different names "
            "(name=...) or let paths.run_subdir name the setting; otherwise wait for the other process to finish."
        ) from None
    _HELD.add(key)
    try:
        yield
    finally:
        _HELD.discard(key)
        lock.release()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunPlan:
    """What to do in a run folder: return ``completed`` as it is, or train (from ``resume`` when set)."""

    run_dir: Path
    fingerprint: str
    completed: dict[str, Any] | None = None
    resume: Path | None = None
    #: global step of the resume checkpoint: TensorBoard hides events logged at or after it
    resume_step: int | None = None


def archive(run_dir: Path) -> Path:
    """Move a run folder's outputs into ``archive/<time>/``: nothing is deleted."""
    target = run_dir / "archive" / datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    target.mkdir(parents=True)
    for item in run_dir.iterdir():
        if item.name not in ("archive", ".hydra", LOCK_FILE) and item.suffix != ".log":
            shutil.move(str(item), target / item.name)
    return target


def completed(run_dir: str | Path, fingerprint: str, log: Any = None) -> dict[str, Any] | None:
    """The folder's record when it holds a completed run of ``fingerprint``: what a rerun returns as it is."""
    prior = read_results(Path(run_dir))
    if prior is None or prior.get("status") != "completed" or prior.get("fingerprint") != fingerprint:
        return None
    if log is not None:
        log.info("already completed, skipping (force=true reruns): %s", run_dir)
    return prior


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, Mapping):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def identity_changes(before: Any, after: Any, shown: int = 5) -> str:
    """`` What differs: key: old → new; ...`` between two recorded identities (empty when either is missing)."""
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        return ""
    # each value as JSON text, as a record stores it and the fingerprint sees it: 1 and 1.0 differ, NaN equals NaN
    old, new = (
        {k: json.dumps(v, sort_keys=True, default=str) for k, v in _flat(side).items()} for side in (before, after)
    )
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if not keys:
        return ""

    def short(side: dict[str, str], key: str) -> str:
        text = side.get(key, '"<absent>"')
        return text if len(text) <= 80 else text[:79] + "…"

    listed = "; ".join(f"{k}: {short(old, k)} → {short(new, k)}" for k in keys[:shown])
    return f" What differs: {listed}" + (f"; and {len(keys) - shown} more" if len(keys) > shown else "") + "."


def plan(
    run_dir: str | Path,
    fingerprint: str,
    force: bool = False,
    log: Any = None,
    resume: bool = True,
    identity: Mapping[str, Any] | None = None,
) -> RunPlan:
    """Decide skip / conflict / resume / fresh for ``run_dir`` (archiving whatever must make way). ``resume=False``:
    an unfinished run of the same config is archived as it is instead of being cut back to resume from;
    ``identity``: this run's, so that a conflict says which settings differ from the completed run's."""
    run_dir = Path(run_dir)
    done = None if force else completed(run_dir, fingerprint, log)
    if done is not None:
        return RunPlan(run_dir, fingerprint, completed=done)
    prior = read_results(run_dir)
    say = log.info if log is not None else (lambda *a: None)
    if prior and prior.get("status") == "completed":
        if not force:
            refuse_conflict(run_dir, fingerprint, identity)
        say("force=true: archived the previous outputs to %s", archive(run_dir))
        prior = None
    last = run_dir / LAST_CHECKPOINT
    if resume and prior and prior.get("fingerprint") == fingerprint and last.is_file():
        try:
            epoch, step = checkpoint_position(last)
        except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, UnpicklingError... on bad files
            # half a file (a disk filled up, or a kill, while a checkpoint was copied into place): start afresh
            say("%s cannot be read (%s): its run is archived to %s and starts afresh", last, exc, archive(run_dir))
            return RunPlan(run_dir, fingerprint)
        trim_curves(run_dir, epoch, step)
        return RunPlan(run_dir, fingerprint, resume=last, resume_step=step)
    if any((run_dir / leftover).exists() for leftover in RUN_OUTPUTS):
        say("earlier outputs in %s archived to %s", run_dir, archive(run_dir))
    return RunPlan(run_dir, fingerprint)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing beside the target and renaming (:func:`atomic_write`): Lightning's
    own goes through a temporary file in /tmp, moved by copying where the outputs are on another file system, so
    a full disk or a kill mid-copy left half a ``last.ckpt`` that no rerun could read."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        atomic_write(path, lambda handle: torch.save(checkpoint, handle), durable=False)


def unfinished(run_dir: str | Path, fingerprint: str) -> dict[str, Any] | None:
    """The record of an unfinished run (running, failed, interrupted) of ``fingerprint`` in ``run_dir``, which
    :func:`plan` would resume from its ``last.ckpt``; None when there is none."""
    prior = read_results(Path(run_dir))
    return prior if prior and prior.get("status") != "completed" and prior.get("fingerprint") == fingerprint else None


def refuse_conflict(run_dir: str | Path, fingerprint: str, identity: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`RunConflictError` where ``run_dir`` holds a completed run of another config, saying which
    settings differ (``identity``: this run's). Called before anything trains, and again by :func:`plan`."""
    prior = read_results(run_dir)
    if prior and prior.get("status") == "completed" and prior.get("fingerprint") != fingerprint:
        changes = identity_changes(prior.get("identity"), identity)
        raise RunConflictError(
            f"{run_dir} holds a completed run of a different config "
            f"(fingerprint {prior.get('fingerprint')} vs {fingerprint}).{changes} "
            "Give this run another name (name=...), or force=true to archive the old outputs and rerun."
        )


def checkpoint_position(path: Path) -> tuple[int, int]:
    """(epoch index, global step) stored in a Lightning checkpoint."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return int(checkpoint["epoch"]), int(checkpoint["global_step"])


def trim_curves(run_dir: Path, epoch: int, global_step: int) -> int:
    """Drop CSV rows logged after the checkpoint of ``epoch`` (0-based) at ``global_step``; returns rows kept.

    Lightning logs a finished epoch's metrics at step ``global_step - 1`` and the next epoch's learning
    rate (no epoch column) at ``global_step``: rows of later epochs, or without an epoch from that step
    on, belong to the interrupted part and are logged again by the resumed run.
    """
    path = run_dir / CSV_METRICS
    if not path.is_file():
        return 0
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames or [], list(reader)

    def before_checkpoint(row: dict[str, str]) -> bool:
        if row.get("epoch"):
            return int(float(row["epoch"])) <= epoch and int(float(row.get("step") or 0)) < global_step
        return int(float(row.get("step") or 0)) < global_step

    kept = [row for row in rows if before_checkpoint(row)]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(kept)
    atomic_write_text(path, out.getvalue())
    return len(kept)


def write_results(run_dir: str | Path, record: dict[str, Any]) -> None:
    """The one writer of a run's ``results.json`` (atomic: a reader never sees half a file)."""
    write_json(Path(run_dir) / RESULTS_FILE, record)


def record_keys(cfg: Any) -> dict[str, Any]:
    """What every record of a run carries, a failed one included: which run, recipe and data condition,
    so the report lists a run that stopped early at its own level."""
    keys = {
        k: OmegaConf.select(cfg, path, default=None)
        for k, path in (
            ("dataset", "dataset.name"),
            ("method", "method.name"),
            ("seed", "seed"),
            ("recipe", "recipe.name"),
        )
    }
    try:
        factors = factor_identity(OmegaConf.select(cfg, "dataset.factors"), OmegaConf.select(cfg, "dataset.image_size"))
    except Exception:  # noqa: BLE001 - a malformed factor is reported by validate_config; the record still gets written
        factors = {}
    return {**keys, "data_factors": {"identity": factors}}


#: run folder -> ``started_at`` of the ``running`` record this process wrote there: only such a record, unfinished,
#: may be marked failed by this process
_STARTED_HERE: dict[Path, str] = {}


def start_record(
    run_plan: RunPlan, keys: dict[str, Any], config: dict[str, Any], identity: dict[str, Any]
) -> dict[str, Any]:
    """Write the ``running`` record (with config, identity, versions and git commit) and return it."""
    record: dict[str, Any] = {
        "status": "running",
        **keys,
        "run_dir": str(run_plan.run_dir),
        "fingerprint": run_plan.fingerprint,
        "identity": identity,
        "started_at": now(),
        "resumed_from": str(run_plan.resume) if run_plan.resume else None,
        "config": config,
        "environment": environment(),
    }
    write_results(run_plan.run_dir, record)
    _STARTED_HERE[Path(run_plan.run_dir).resolve()] = record["started_at"]
    return record


def complete(record: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """Mark the record completed with ``fields`` and write it."""
    record.update(status="completed", finished_at=now(), **fields)
    write_results(record["run_dir"], record)
    return record


def record_failure(run_dir: str | Path, keys: dict[str, Any], exc: BaseException) -> None:
    """Turn the run's record into ``failed`` (or ``interrupted``) with the error. A completed record stays, and so
    does an unfinished one this process did not start: a command refused before it started (a typo, a missing
    file) must not mark another config's interrupted run, which a rerun of its own command resumes, as failed."""
    run_dir = Path(run_dir)
    record = read_results(run_dir) or {**keys, "run_dir": str(run_dir)}
    if record.get("status") == "completed":
        return
    unfinished = record.get("status") in ("running", "interrupted")
    mine = run_dir.resolve() in _STARTED_HERE and _STARTED_HERE[run_dir.resolve()] == record.get("started_at")
    if unfinished and "fingerprint" in record and not mine:
        return  # another process's run, or one before this process's start
    if isinstance(exc, SystemExit) and isinstance(exc.__context__, KeyboardInterrupt):
        exc = exc.__context__  # Lightning answers Ctrl-C with exit(1): record the interrupt, not "SystemExit: 1"
    record.update(
        status="interrupted" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "failed",
        finished_at=now(),
        error={"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc(limit=20)},
    )
    write_results(run_dir, record)
