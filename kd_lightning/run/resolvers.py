"""The config resolvers of ``conf/`` (``${kd_...:}``), registered where configs are composed: the training entry
point and :func:`kd_lightning.run.compose.compose_run_config`. Importing the package registers nothing, and
each resolver imports what it needs (the folder metadata, the GPU pool) only when a config uses it."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from kd_lightning import PROJECT_ROOT


def _when_subsampled(value: Any, factors: Any = None) -> Any:
    """The value when the data factors shrink the training split (train_fraction < 1 or imbalance > 1), else
    None (the full split)."""
    factors = factors or {}
    shrunk = float(factors.get("train_fraction", 1.0)) != 1.0 or float(factors.get("imbalance", 1.0)) != 1.0
    return value if shrunk else None


def _folder_metadata(field: str, _parent_: Any) -> Any:
    """The measured metadata of a folder dataset (kd_lightning/datasets/folder_meta.py), measured on first use."""
    from kd_lightning.datasets.folder_meta import metadata_field

    return metadata_field(field, _parent_)


def _gpu_jobs(gpus: int | str, slots_per_gpu: int) -> int:
    """Jobs ``launcher=gpu_node`` runs at once (kd_lightning/run/gpu_slots.py, imported only by that launcher)."""
    from kd_lightning.run.gpu_slots import GpuSlotError, pool_size

    try:
        return pool_size(gpus, slots_per_gpu)
    except GpuSlotError as exc:  # one line that says what to change, not the launcher's traceback
        raise SystemExit(f"[kd_lightning] launcher=gpu_node: {exc}") from None


def _hydra_subdir(run_dir: str) -> str:
    """Where Hydra writes this command's job record (config, overrides) in the run folder: ``.hydra`` for the first
    command that reaches the folder, ``.hydra/again-<UTC time>`` for each later one (a rerun that skips, a refused
    config, ``force=true``), so a later command never rewrites the record of the run the folder holds."""
    if not (Path(run_dir) / ".hydra" / "config.yaml").exists():
        return ".hydra"
    return f".hydra/again-{datetime.now(timezone.utc):%Y%m%dT%H%M%S.%fZ}"


RESOLVERS = {
    # conf/paths/default.yaml: outputs and data default to the checkout, wherever the command is launched from
    "kd_project_root": lambda: str(PROJECT_ROOT),
    # conf/model/*.yaml: one logit per class the run trains on (dataset.factors.classes restricts them)
    "kd_num_classes": lambda n, classes=None: int(n) if classes is None else len(classes),
    # conf/recipe/strong.yaml: the step floor only where the data factors shrink the training split
    "kd_when_subsampled": _when_subsampled,
    # conf/teacher_variant/patient.yaml: a multiple of a count that may be unset (null stays null)
    "kd_times": lambda factor, value: None if value is None else int(factor) * int(value),
    # conf/dataset/folder.yaml: classes, channels, size, mean/std and the content fingerprint of dataset.path
    "kd_folder": _folder_metadata,
    # conf/launcher/gpu_node.yaml: the launcher runs one job per GPU slot
    "kd_gpu_jobs": _gpu_jobs,
    # conf/hydra/default.yaml: a later command's job record beside the first one's, never over it
    "kd_hydra_subdir": _hydra_subdir,
}


def register_resolvers() -> None:
    """Make every ``${kd_...:}`` of conf/ resolvable (idempotent)."""
    for name, resolver in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
