"""The identity rule: which runs (and which teachers) are the same experiment.

Two runs are the same experiment when everything that can change their numbers is equal. That is an
explicit list (:data:`IDENTITY_KEYS`), not a list of exceptions, so a new cosmetic flag (progress bar,
logger, workers, output paths, ``name``) can never change an identity by accident:

- data: the dataset config (which files, split, augmentation, pipeline, factors), minus where the files
  live and how they are loaded (:data:`DATASET_KEYS_NOT_IN_IDENTITY`); a folder dataset (``dataset=folder``)
  holds its content fingerprint and measured metadata instead of its path, so two folders never share a run
  or a teacher and a moved folder still does; a built-in dataset's copy of the files is recorded and checked
  beside the identity (:mod:`kd_lightning.run.data_files`), so identities from before it stay valid;
- the method with its hyperparameters and trained network (``method``, which holds ``net``);
- the recipe values that train it: batch size, optimizer, schedule, augmentation, and the training budget's
  floor on optimizer steps (``recipe.min_steps``, only when set: :data:`IDENTITY_KEYS_WHEN_SET`);
- the trainer values that change what is computed: epochs and steps, batch limits, validation cadence,
  precision, accumulation, clipping, deterministic kernels;
- what selects the checkpoint (``callbacks.model_checkpoint.monitor`` / ``mode``);
- the seed;
- for a distilled student, the identity of its teacher (:func:`kd_lightning.run.teachers.teacher_reference`).

The code version is not part of it: a teacher trained by earlier code is reused, and the record says so.
The run fingerprint and the teacher key are both hashes of :func:`identity`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from kd_lightning.datasets.factors import factor_identity

#: every config key whose value can change a run's numbers (dotted paths into the resolved config)
IDENTITY_KEYS: tuple[str, ...] = (
    "seed",
    "dataset",
    "method",
    "recipe.batch_size",
    "recipe.optimizer",
    "recipe.scheduler",
    "recipe.augmentation",
    "trainer.max_epochs",
    "trainer.min_epochs",
    "trainer.max_steps",
    "trainer.min_steps",
    "trainer.limit_train_batches",
    "trainer.limit_val_batches",
    "trainer.limit_test_batches",
    "trainer.overfit_batches",
    "trainer.val_check_interval",
    "trainer.check_val_every_n_epoch",
    "trainer.precision",
    "trainer.accumulate_grad_batches",
    "trainer.gradient_clip_val",
    "trainer.gradient_clip_algorithm",
    "trainer.deterministic",
    "callbacks.model_checkpoint.monitor",
    "callbacks.model_checkpoint.mode",
)
#: identity keys added after runs existed: they count only when set (not null), so every run from before
#: them (which behaved as if unset) keeps its fingerprint and its teacher key
IDENTITY_KEYS_WHEN_SET: tuple[str, ...] = ("recipe.min_steps",)
#: dataset keys that say where files are or how they are loaded, never what is computed (a folder dataset's
#: ``path`` and metadata ``cache_dir`` included: its content fingerprint, a key of its own, says which data it is)
DATASET_KEYS_NOT_IN_IDENTITY: tuple[str, ...] = (
    "data_dir",
    "num_workers",
    "download",
    "pin_memory",
    "eval_batch_size",
    "path",
    "cache_dir",
)
#: dataset identity keys that change how the data is trained on, not which images and labels it holds
TRAINING_ONLY_DATASET_KEYS: tuple[str, ...] = ("batch_size", "augmentation", "pipeline", "top_k", "augmentation_family")


def identity(cfg: DictConfig, teacher: str | None = None, include_seed: bool = True) -> dict[str, Any]:
    """The values of :data:`IDENTITY_KEYS` in ``cfg`` (resolved), plus the teacher's reference for students."""
    out: dict[str, Any] = {}
    for key in IDENTITY_KEYS:
        if key == "seed" and not include_seed:
            continue
        value = OmegaConf.select(cfg, key, default=None)
        if isinstance(value, DictConfig):
            value = OmegaConf.to_container(value, resolve=True)
        if key == "dataset" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in DATASET_KEYS_NOT_IN_IDENTITY}
            # data factors in canonical form; the paper's data ({}) leaves no key, so runs and teachers
            # from before data factors existed keep their identity
            factors = factor_identity(value.pop("factors", None), value.get("image_size"))
            if factors:
                value["factors"] = factors
        out[key] = value
    for key in IDENTITY_KEYS_WHEN_SET:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            out[key] = value
    if teacher is not None:
        out["teacher"] = teacher
    return json.loads(json.dumps(out, default=str))  # plain JSON values: what is hashed is what is stored


def data_identity(dataset_identity: Mapping[str, Any]) -> dict[str, Any]:
    """What makes two data configurations the same data (files, split, factors): a run identity's
    ``dataset`` entry without :data:`TRAINING_ONLY_DATASET_KEYS`. Keys the complexity cache
    (:mod:`kd_lightning.measure.complexity`), so runs of any method, batch size or augmentation share it."""
    return {k: v for k, v in dataset_identity.items() if k not in TRAINING_ONLY_DATASET_KEYS}


def digest(values: dict[str, Any], length: int = 10) -> str:
    """Short SHA-256 of a JSON-serialisable identity (key order does not matter)."""
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:length]


def fingerprint(cfg: DictConfig, teacher: str | None = None) -> str:
    """The run's fingerprint: equal for two configs exactly when they are the same experiment."""
    return digest(identity(cfg, teacher))
