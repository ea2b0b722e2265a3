"""Config checks in one place: every user-facing value is checked before data is loaded or a model built."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from kd_lightning.datasets.factors import validate_factors
from kd_lightning.models import ARCHITECTURES, STEMS, build_resnet
from kd_lightning.run import teachers
from kd_lightning.seeding import MEMBER_SEED_BASE


class ConfigError(ValueError):
    """A config value is out of range or inconsistent; the message names key, value and what is allowed."""


def _get(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None)


def _stage_problems(cfg: DictConfig) -> list[str]:
    stages = _get(cfg, "method.stages")
    if stages is None:
        return []
    if isinstance(stages, str) or not stages or not all(isinstance(s, str) for s in stages):
        return [f"method.stages={stages!r}: give a non-empty list of module paths, e.g. [layer1,layer2,layer3,layer4]"]
    problems = []
    for model_key in ("student_model", "teacher_model"):
        # resolved first: resolving may read data (a folder dataset's scan draws its split with torch)
        m = OmegaConf.to_container(cfg[model_key], resolve=True)
        if m["arch"] not in ARCHITECTURES or m["stem"] not in STEMS:
            continue  # reported by its own check
        with torch.device("meta"):  # structure only: no memory, no init cost
            net = build_resnet(m["arch"], max(int(m["num_classes"]), 2), max(int(m["in_channels"]), 1), m["stem"])
        names = {name for name, _ in net.named_modules() if name}
        bad = [s for s in stages if s not in names]
        if bad:
            top = [name for name, _ in net.named_children()]
            where = f"{model_key} ({m['arch']})"
            problems.append(f"method.stages={list(stages)}: {bad} not found in {where}; top-level modules are {top}")
    return problems


# (key, test, what is allowed). A missing key (method without that hyperparameter) is not checked.
_RULES: list[tuple[str, Callable[[Any], bool], str]] = [
    ("seed", lambda v: isinstance(v, int) and 0 <= v < 2**32, "an integer in [0, 2^32)"),
    ("method.alpha", lambda v: 0.0 <= float(v) <= 1.0, "a number in [0, 1]"),
    ("method.temperature", lambda v: float(v) > 0, "a number > 0"),
    ("method.feature_weight", lambda v: float(v) >= 0, "a number >= 0"),
    ("recipe.optimizer.lr", lambda v: float(v) > 0, "a number > 0"),
    ("recipe.batch_size", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    ("dataset.batch_size", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    ("trainer.max_epochs", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    (
        "recipe.min_steps",
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "an integer >= 1 or null (no floor)",
    ),
    ("dataset.val_fraction", lambda v: 0.0 < float(v) < 1.0, "a number in (0, 1)"),
    ("dataset.split_seed", lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
    ("dataset.num_workers", lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
    ("dataset.num_classes", lambda v: isinstance(v, int) and v >= 2, "an integer >= 2"),
    ("dataset.channels", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    ("dataset.image_size", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    ("student_model.arch", lambda v: v in ARCHITECTURES, f"one of {list(ARCHITECTURES)}"),
    ("teacher_model.arch", lambda v: v in ARCHITECTURES, f"one of {list(ARCHITECTURES)}"),
    ("student_model.stem", lambda v: v in STEMS, f"one of {list(STEMS)}"),
    ("teacher_model.stem", lambda v: v in STEMS, f"one of {list(STEMS)}"),
    ("teacher_missing", lambda v: v in ("train", "fail"), "'train' or 'fail'"),
    ("force", lambda v: isinstance(v, bool), "true or false"),
    ("recipe.augmentation.translate", lambda v: isinstance(v, int) and v >= 0, "a whole number of pixels >= 0"),
    ("recipe.augmentation.scale", lambda v: 0.0 <= float(v) < 1.0, "a number in [0, 1)"),
    ("recipe.augmentation.hflip", lambda v: 0.0 <= float(v) <= 1.0, "a probability in [0, 1]"),
    ("recipe.augmentation.vflip", lambda v: 0.0 <= float(v) <= 1.0, "a probability in [0, 1]"),
    *((f"efficiency.{k}", lambda v: isinstance(v, bool), "true or false") for k in ("measure", "quick", "export_onnx")),
]


def _factor_problems(cfg: DictConfig) -> list[str]:
    """Data factors checked against the dataset's metadata (kd_lightning/datasets/factors.py),
    before any data is read."""
    factors = _get(cfg, "dataset.factors")
    try:
        meta = [int(_get(cfg, f"dataset.{k}")) for k in ("num_classes", "channels", "image_size")]
    except (TypeError, ValueError):
        return []  # reported by the rules above
    return validate_factors(factors, *meta, pipeline=_get(cfg, "dataset.pipeline"))


#: what a multi-device run would get wrong, and what scales the grid instead (docs/multi-gpu.md)
_ONE_DEVICE = (
    "a run trains on one device (trainer.devices=1, trainer.num_nodes=1, trainer.strategy=auto). Multi-device runs "
    "are refused because they would be silently wrong: evaluation padded with duplicate batches, the effective batch "
    "multiplied at the same learning rate. The grid scales by jobs instead: launcher=gpu_node on a machine with "
    "several GPUs, launcher=slurm on a cluster (docs/multi-gpu.md)"
)
_SINGLE_DEVICE_STRATEGIES = ("auto", "single_device")


def _requested_devices(devices: Any, accelerator: Any) -> int | None:
    """How many devices ``trainer.devices`` selects, as Lightning reads it (``2`` / ``"2"``: two devices,
    ``[0, 1]`` / ``"0,1"``: those indices, ``-1`` / ``"auto"``: every one visible); None when unreadable.
    GPUs are counted with ``torch.cuda.device_count()`` (in a launcher's job, after its GPU slot is claimed)."""
    accelerator = str(accelerator).lower()

    def every_visible() -> int:
        if accelerator in ("auto", "gpu", "cuda"):
            return max(torch.cuda.device_count(), 1 if accelerator == "auto" else 0)
        return 1  # cpu ("auto" is one process; -1 Lightning refuses itself), mps

    if isinstance(devices, bool):
        return None
    if isinstance(devices, int):
        return every_visible() if devices == -1 else devices
    if isinstance(devices, str):
        text = devices.strip().lower()
        if text == "auto" or text == "-1":
            return every_visible()
        if "," in text:
            return len([d for d in text.split(",") if d.strip()])
        return int(text) if text.isdigit() else None
    if OmegaConf.is_list(devices) or isinstance(devices, (list, tuple)):
        return len(devices)
    return None


def _distribution_problems(cfg: DictConfig) -> list[str]:
    """trainer.devices / num_nodes / strategy that would make a run distributed (see ``_ONE_DEVICE``)."""
    problems = []
    devices = _get(cfg, "trainer.devices")
    count = _requested_devices(devices, _get(cfg, "trainer.accelerator"))
    if count is None or count > 1:
        resolved = "" if count is None or str(devices) == str(count) else f" (resolves to {count} devices)"
        problems.append(f"trainer.devices={devices!r}{resolved}: must select one device; {_ONE_DEVICE}")
    nodes = _get(cfg, "trainer.num_nodes")
    if nodes is not None and nodes != 1:
        problems.append(f"trainer.num_nodes={nodes!r}: must be 1; {_ONE_DEVICE}")
    strategy = _get(cfg, "trainer.strategy")
    if strategy is not None and not _single_device_strategy(strategy):
        allowed = list(_SINGLE_DEVICE_STRATEGIES)
        problems.append(f"trainer.strategy={strategy!r}: must be one of {allowed}; {_ONE_DEVICE}")
    return problems


def _device_problems(cfg: DictConfig) -> list[str]:
    """Settings that are fine on one kind of device and fail, or fail at random, on the one the run trains on."""
    accelerator = str(_get(cfg, "trainer.accelerator")).lower()
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.device_count() > 0)
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not on_gpu and not torch.backends.mps.is_available())
    problems = []
    if on_gpu and _get(cfg, "trainer.deterministic") is True:
        problems.append(
            "trainer.deterministic=true on a GPU: the backward of ResNet's AdaptiveAvgPool2d has no deterministic "
            "CUDA kernel, so the first training step would raise; use trainer.deterministic=warn (the default: "
            "deterministic kernels wherever CUDA has one)"
        )
    if on_cpu and _get(cfg, "callbacks.speedups.channels_last") is True:
        problems.append(
            "callbacks.speedups.channels_last=true on a CPU: identical runs turn the weights NaN after the first "
            "optimizer step at random (about a third of runs with trainer.precision=bf16-mixed, now and then in "
            "fp32: docs/benchmarks.md); it is a GPU speed switch, leave it off on a CPU"
        )
    precision = _get(cfg, "trainer.precision")
    if on_cpu and precision is not None and str(precision).startswith(("bf16", "16")):
        problems.append(
            f"trainer.precision={precision} on a CPU: a bf16-mixed smoke run's loss went NaN at random inside the "
            "test suite, as channels_last's did (docs/benchmarks.md); reduced precision is a GPU speed switch, "
            "leave trainer.precision unset (fp32) on a CPU"
        )
    return problems


def _single_device_strategy(strategy: Any) -> bool:
    if isinstance(strategy, str):
        return strategy.strip().lower() in _SINGLE_DEVICE_STRATEGIES
    target = OmegaConf.select(strategy, "_target_") if OmegaConf.is_dict(strategy) else None
    return isinstance(target, str) and target.endswith(".SingleDeviceStrategy")


#: ``teacher.data``: the students' own training data (the paper's) or the full training split (run/teachers.py)
TEACHER_DATA = ("same", "full")


def _teacher_problems(cfg: DictConfig) -> list[str]:
    """``teacher.members`` / ``teacher.data`` (conf/teacher/), the variant (conf/teacher_variant/), and student
    seeds apart from ensemble members'."""
    problems = []
    members, data = _get(cfg, "teacher.members"), _get(cfg, "teacher.data")
    if members is not None and not (isinstance(members, int) and not isinstance(members, bool) and members >= 0):
        problems.append(f"teacher.members={members!r}: must be an integer >= 0 (0: one teacher on the run's seed)")
    if data is not None and data not in TEACHER_DATA:
        problems.append(f"teacher.data={data!r}: must be one of {list(TEACHER_DATA)}")
    if members and _get(cfg, "teacher_ckpt") is not None:
        problems.append(
            f"teacher_ckpt with teacher.members={members}: a checkpoint is one network; use teacher=resnet50 "
            "(teacher.members=0) with teacher_ckpt, or drop teacher_ckpt to use the ensemble"
        )
    problems += teachers.variant_problems(cfg)
    seed, method = _get(cfg, "seed"), _get(cfg, "method.name")
    if isinstance(seed, int) and seed >= MEMBER_SEED_BASE and method != "teacher":
        problems.append(
            f"seed={seed}: student seeds must be below 2^31 = {MEMBER_SEED_BASE}; seeds from 2^31 up are ensemble "
            "members' own streams (kd_lightning.seeding.member_seed)"
        )
    return problems


#: validated metrics the best-validation checkpoint may monitor, and the direction in which each improves
MONITOR_MODES = {"val/acc": "max", "val/f1": "max", "val/top5": "max", "val/loss": "min"}


def _schedule_problems(cfg: DictConfig) -> list[str]:
    """Settings under which a run would stop short of its recipe and still be recorded as it, or would never write
    the checkpoints its tests read: refused here, before training, not discovered after it."""
    problems = []
    max_time = _get(cfg, "trainer.max_time")
    if max_time is not None:
        problems.append(
            f"trainer.max_time={max_time!r}: a wall-clock cap stops training at a point that depends on the machine, "
            "and the run would be recorded (and reused) as its full recipe; shorten it with trainer.max_epochs instead"
        )
    if _get(cfg, "trainer.fast_dev_run"):
        problems.append(
            f"trainer.fast_dev_run={_get(cfg, 'trainer.fast_dev_run')!r}: a smoke test writes no checkpoints to test; "
            "for a short run set trainer.max_epochs=1 trainer.limit_train_batches=<n>"
        )
    for key, what in (("trainer.limit_train_batches", "training"), ("trainer.limit_val_batches", "validation")):
        value = _get(cfg, key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
            problems.append(
                f"{key}=0: no {what} batch, so no best-validation checkpoint to test; give a number of batches "
                "(an integer >= 1) or a share in (0, 1]"
            )
    every, epochs = _get(cfg, "trainer.check_val_every_n_epoch"), _get(cfg, "trainer.max_epochs")
    if isinstance(every, int) and isinstance(epochs, int) and 1 <= epochs < every:
        problems.append(
            f"trainer.check_val_every_n_epoch={every} with trainer.max_epochs={epochs}: the run would never validate, "
            "so no best-validation checkpoint; validate at most every max_epochs epochs"
        )
    if _get(cfg, "callbacks.model_checkpoint.save_top_k") == 0:
        problems.append(
            "callbacks.model_checkpoint.save_top_k=0: the best-validation checkpoint is what test_best reads; keep 1"
        )
    monitor, mode = _get(cfg, "callbacks.model_checkpoint.monitor"), _get(cfg, "callbacks.model_checkpoint.mode")
    if monitor in MONITOR_MODES and mode != MONITOR_MODES[monitor]:
        problems.append(
            f"callbacks.model_checkpoint.mode={mode!r} with monitor={monitor}: must be {MONITOR_MODES[monitor]!r}, "
            "else the 'best' checkpoint is the worst epoch"
        )
    eval_batch = _get(cfg, "dataset.eval_batch_size")
    for key in ("trainer.limit_val_batches", "trainer.limit_test_batches"):
        value = _get(cfg, key)
        if eval_batch is not None and isinstance(value, int) and not isinstance(value, bool):
            problems.append(
                f"{key}={value} (a count of batches) with dataset.eval_batch_size={eval_batch}: the evaluation batch "
                "size would decide which images are scored, and it is not part of a run's identity; give the limit as "
                "a share (e.g. 0.5) or leave dataset.eval_batch_size unset"
            )
    for key in ("every_n_epochs", "every_n_train_steps", "train_time_interval", "save_on_train_epoch_end"):
        value = _get(cfg, f"callbacks.model_checkpoint.{key}")
        if value not in ((None, 1) if key == "every_n_epochs" else (None,)):
            problems.append(
                f"callbacks.model_checkpoint.{key}={value!r}: the best-validation checkpoint must be considered at "
                "every validation (it is not part of a run's identity, and skipping some would change which epoch "
                "is 'best'); leave it unset"
            )
    last_every = _get(cfg, "callbacks.last_checkpoint.every_n_epochs")
    if last_every not in (None, 1):
        problems.append(
            f"callbacks.last_checkpoint.every_n_epochs={last_every!r}: last.ckpt must be written every epoch (the "
            "last-epoch test and resuming read it); leave it unset"
        )
    return problems


def _is_folder_dataset(cfg: DictConfig) -> bool:
    """``dataset=folder``: a dataset config with a ``path`` key (conf/dataset/folder.yaml)."""
    dataset = _get(cfg, "dataset")
    return OmegaConf.is_dict(dataset) and "path" in dataset.keys()


def _check_folder_dataset(cfg: DictConfig) -> list[str]:
    """Read (or find cached) the folder's metadata first: its problems (empty class, corrupt files, mixed sizes,
    ...) raise :class:`~kd_lightning.datasets.folder_scan.FolderError` as they are, naming the path and the fix,
    instead of one "cannot be resolved" line per measured key."""
    from kd_lightning.datasets.folder import AUGMENTATION_FAMILIES
    from kd_lightning.datasets.folder_meta import FolderOptions, measure

    meta = measure(FolderOptions.from_node(cfg.dataset))
    problems = []
    batch_size = _get(cfg, "recipe.batch_size")
    if isinstance(batch_size, int) and meta["num_train"] < batch_size:
        problems.append(
            f"recipe.batch_size={batch_size}: {cfg.dataset.path}'s training split holds {meta['num_train']} images, "
            "not one full batch (the incomplete last batch is dropped), so the run would train zero steps: lower "
            f"recipe.batch_size to {meta['num_train']} or less, or add images"
        )
    family = _get(cfg, "dataset.augmentation_family")
    if family not in AUGMENTATION_FAMILIES:
        problems.append(f"dataset.augmentation_family={family!r}: must be one of {list(AUGMENTATION_FAMILIES)}")
    label = _get(cfg, "dataset.label")
    if not isinstance(label, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", label):
        problems.append(f"dataset.label={label!r}: must be a folder-safe name (letters, digits, _ . -)")
    return problems


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` listing every bad value; silent when the config is usable."""
    folder = _is_folder_dataset(cfg)
    problems = _check_folder_dataset(cfg) if folder else []
    for key, ok, allowed in _RULES:
        try:
            value = _get(cfg, key)
        except Exception as exc:  # an interpolation that cannot resolve
            problems.append(f"{key}: cannot be resolved ({exc})")
            continue
        if value is None and key not in ("seed", "trainer.max_epochs"):
            continue
        try:
            good = ok(value)
        except (TypeError, ValueError):
            good = False
        if not good:
            problems.append(f"{key}={value!r}: must be {allowed}")
    for key in ("dataset.mean", "dataset.std"):
        values = _get(cfg, key)
        if values is None or len(values) != _get(cfg, "dataset.channels"):
            problems.append(
                f"{key}={values!r}: give one value per channel (dataset.channels={_get(cfg, 'dataset.channels')})"
            )
    if any(float(s) <= 0 for s in _get(cfg, "dataset.std") or []):
        problems.append(f"dataset.std={list(_get(cfg, 'dataset.std'))}: every value must be > 0")
    problems += _distribution_problems(cfg)
    problems += _device_problems(cfg)
    if _get(cfg, "recipe.optimizer.nesterov") and not (_get(cfg, "recipe.optimizer.momentum") or 0) > 0:
        problems.append(
            "recipe.optimizer.nesterov=true: needs recipe.optimizer.momentum > 0 "
            f"(got {_get(cfg, 'recipe.optimizer.momentum')!r}); set a momentum or recipe.optimizer.nesterov=false"
        )
    problems += _stage_problems(cfg)
    problems += _schedule_problems(cfg)
    problems += _factor_problems(cfg)
    problems += _teacher_problems(cfg)
    teacher_ckpt = _get(cfg, "teacher_ckpt")
    if teacher_ckpt is not None and not Path(teacher_ckpt).is_file():
        problems.append(f"teacher_ckpt={teacher_ckpt!r}: no such file")
    data_dir = Path(str(_get(cfg, "dataset.data_dir")))
    if not folder and not data_dir.is_dir() and not _get(cfg, "dataset.download"):
        problems.append(
            f"paths.data_dir={str(data_dir)!r}: no such folder. Point paths.data_dir (or $KD_DATA_DIR) at the folder "
            "holding the datasets, or set dataset.download=true to fetch them"
        )
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)
