"""The teacher registry: teachers are trained once and found by what makes them interchangeable.

An entry lives at ``<paths.teachers_dir>/<dataset>/<arch>-<hash>/seed<seed>/`` with ``teacher.ckpt``
and ``teacher.json`` (the teacher run's results record plus the key and the spec it was hashed from).
The hash covers everything that changes the teacher: dataset and split, network, recipe, epochs and
batch limits. Entries are written by rename (never half a file) and a file lock makes concurrent runs
that need the same missing teacher train it once.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from kd_lightning.models import build_resnet
from kd_lightning.records import PROJECT_ROOT, write_json

TEACHER_METHOD_FILE = PROJECT_ROOT / "conf" / "method" / "teacher.yaml"
CHECKPOINT_FILE = "teacher.ckpt"
METADATA_FILE = "teacher.json"
_TRAINER_KEYS = ("max_epochs", "max_steps", "limit_train_batches", "limit_val_batches", "precision", "accumulate_grad_batches", "gradient_clip_val")
_DATASET_KEYS_THAT_DO_NOT_MATTER = ("data_dir", "num_workers", "download", "pin_memory", "eval_batch_size")


class TeacherError(RuntimeError):
    """The teacher is missing, or does not fit the student's dataset."""


def teacher_config(cfg: DictConfig) -> DictConfig:
    """The config ``method=teacher`` with the same overrides would have: the run that trains this teacher."""
    if cfg.method.name == "teacher":
        return cfg
    tcfg = copy.deepcopy(cfg)
    with open_dict(tcfg):
        tcfg.method = OmegaConf.load(TEACHER_METHOD_FILE)
        tcfg.teacher_ckpt = None
    return tcfg


def teacher_spec(tcfg: DictConfig) -> dict[str, Any]:
    """Everything that makes two teachers interchangeable, except the seed (which is in the path)."""
    dataset = {k: v for k, v in OmegaConf.to_container(tcfg.dataset, resolve=True).items() if k not in _DATASET_KEYS_THAT_DO_NOT_MATTER}
    trainer = {k: OmegaConf.select(tcfg, f"trainer.{k}") for k in _TRAINER_KEYS}
    recipe = OmegaConf.to_container(tcfg.recipe, resolve=True)
    recipe.pop("epochs", None)  # only the teacher's own epochs matter, and they are in trainer.max_epochs
    return {
        "dataset": dataset,
        "model": OmegaConf.to_container(tcfg.method.net, resolve=True),
        "recipe": recipe,
        "trainer": {k: v for k, v in trainer.items() if v is not None},
    }


def teacher_key(spec: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{spec['model']['arch']}-{digest}"


def entry_dir(cfg: DictConfig) -> Path:
    tcfg = teacher_config(cfg)
    return Path(tcfg.paths.teachers_dir) / str(tcfg.dataset.name) / teacher_key(teacher_spec(tcfg)) / f"seed{tcfg.seed}"


def lock(entry: Path) -> FileLock:
    """Held while a teacher is trained, so a second run waits for it instead of training it again."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(entry) + ".lock")


def read_entry(entry: Path) -> dict[str, Any] | None:
    meta = entry / METADATA_FILE
    if not (entry / CHECKPOINT_FILE).is_file() or not meta.is_file():
        return None
    return json.loads(meta.read_text())


def publish(entry: Path, checkpoint: Path, record: dict[str, Any], spec: dict[str, Any]) -> None:
    """Copy the teacher's best checkpoint into the registry (copy, then rename) with its metadata."""
    entry.mkdir(parents=True, exist_ok=True)
    old = read_entry(entry)
    if old is not None:  # force=true retrains: keep the old teacher beside, never delete it
        backup = entry.parent / f"{entry.name}.replaced-{old.get('finished_at', 'unknown').replace(':', '')}"
        shutil.copytree(entry, backup, dirs_exist_ok=True)
    tmp = entry / (CHECKPOINT_FILE + ".tmp")
    shutil.copyfile(checkpoint, tmp)
    tmp.replace(entry / CHECKPOINT_FILE)
    write_json(entry / METADATA_FILE, {**record, "teacher_key": entry.parent.name, "teacher_spec": spec, "source_checkpoint": str(checkpoint)})


def train_command(cfg: DictConfig) -> str:
    """The command that trains the teacher this student run needs."""
    overrides = [f"dataset={cfg.dataset.name}", "method=teacher", f"seed={cfg.seed}"]
    try:
        from hydra.core.hydra_config import HydraConfig

        def key(override: str) -> str:
            return override.lstrip("+~").split("=")[0]

        # keep everything that shapes the teacher (dataset.*, recipe.*, trainer.*...), drop what names
        # the student or is already spelled out above
        task = HydraConfig.get().overrides.task
        overrides += [o for o in task if key(o) not in ("dataset", "seed", "teacher_ckpt", "teacher_missing") and key(o).split(".")[0] != "method"]
    except ValueError:  # not inside a Hydra app (tests, notebooks)
        pass
    return "python -m kd_lightning.train " + " ".join(overrides)


def load_teacher(path: str | Path, dataset: str, num_classes: int, channels: int) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a teacher network from a teacher-run checkpoint and check it fits the student's data."""
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        net_cfg = dict(checkpoint["hyper_parameters"]["net"])
        state = {k[len("net."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    except Exception as exc:
        raise TeacherError(f"teacher_ckpt {path}: not a readable kd-lightning teacher checkpoint ({type(exc).__name__}: {exc})") from exc
    trained_on = checkpoint["hyper_parameters"].get("dataset")
    mismatches = []
    if trained_on is not None and trained_on != dataset:
        mismatches.append(f"trained on dataset {trained_on!r}, this run uses {dataset!r}")
    if int(net_cfg["num_classes"]) != num_classes:
        mismatches.append(f"{net_cfg['num_classes']} classes, dataset has {num_classes}")
    if int(net_cfg["in_channels"]) != channels:
        mismatches.append(f"{net_cfg['in_channels']} input channels, dataset has {channels}")
    if mismatches:
        raise TeacherError(f"teacher_ckpt {path} does not fit this run: " + "; ".join(mismatches))
    net = build_resnet(**net_cfg)
    net.load_state_dict(state)
    return net, {"checkpoint": str(path), "net": net_cfg, "dataset": trained_on}

