"""Training throughput of a method's step, three ways: the measurement behind ``python -m kd_lightning.bench``.

- timing windows: :func:`timed_loop` (a plain loop) and :class:`WindowTimer` (a Lightning callback) mark
  ``(time, images so far)`` at the end of warm-up and of every window of ``steps`` steps, synchronising CUDA
  only at those edges; :func:`summarize` turns the marks into the median (and best) window throughput;
- :class:`BareStep`: one optimisation step of the project's own LightningModule without the Trainer;
- batch sources: :func:`memory_batches` (uint8 images in host memory, augmented on the device) and
  :func:`device_batches` (one random batch resident on the device);
- :func:`build_lightning`: the module and a Trainer timed by a :class:`WindowTimer`;
- :func:`bench_method`: the three paths for one method's composed config;
- :func:`verdicts`, :func:`ikd_rkd_ratios`: the reported (never asserted) targets and IKD/RKD ratios.

The one config-bound module of :mod:`kd_lightning.measure`: the benchmark times the project's own objects,
so :class:`BareStep` and :func:`bench_method` take a composed run config (from
:func:`kd_lightning.run.compose.compose_run_config`) and build through :mod:`kd_lightning.run.build`.

Why not :func:`kd_lightning.measure.efficiency.time_calls`: that loop times each call on its own, with a
synchronisation before and after every call, and returns seconds per call. A training-throughput window
must include the overlap between consecutive steps (asynchronous CUDA launches, data loading, the
Trainer's work between batches), so it synchronises only at window edges and counts images; and path 2's
loop belongs to the Trainer, so its edges are marked by a callback (:class:`WindowTimer`), not a loop here.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from kd_lightning.datasets.batched import BatchAugment
from kd_lightning.datasets.synthetic import unverified_cifar
from kd_lightning.measure.efficiency import PRECISIONS, count_flops, lightning_precision
from kd_lightning.models import build_resnet
from kd_lightning.run.build import build_module

#: the three ways one method's training step is timed
PATHS = ("bare", "lightning", "model")
#: targets reported (never asserted): name -> (threshold, description)
TARGETS = {
    "lightning_vs_bare": (0.95, "path2 >= 0.95 x path1 (Lightning + DataModule vs bare loop)"),
    "lightning_vs_model": (0.95, "path2 >= 0.95 x path3 (Lightning + DataModule vs compute only)"),
    "ikd_vs_rkd_step_time": (1.15, "IKD step time <= 1.15 x RKD step time (path 2)"),
}
#: trainer.precision values the bare loop reproduces -> whether it autocasts to bfloat16
# the precisions the bare loop can mirror: fp32, and bf16 autocast (fp16 would also need a GradScaler)
BARE_PRECISIONS = {
    name for name, mode in PRECISIONS.items() if mode in ((torch.float32, False), (torch.bfloat16, True))
}


# -- timing ----------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def summarize(marks: Sequence[tuple[float, int]]) -> dict[str, Any]:
    """Window throughputs from ``(time, images so far)`` marks taken at window edges."""
    rates = [(n1 - n0) / (t1 - t0) for (t0, n0), (t1, n1) in zip(marks, marks[1:]) if t1 > t0]
    if not rates:
        return {"images_per_s": None, "best_images_per_s": None, "windows_images_per_s": [], "spread": None}
    med = statistics.median(rates)
    return {
        "images_per_s": med,
        # interference from other processes only slows a window down: on a shared or noisy machine the
        # fastest window is the better estimate of what the path itself costs
        "best_images_per_s": max(rates),
        "windows_images_per_s": [round(r, 3) for r in rates],
        "spread": round((max(rates) - min(rates)) / med, 4),  # (max - min) / median: how noisy the windows were
    }


def is_window_edge(done: int, warmup: int, steps: int) -> bool:
    """After ``done`` steps: the end of warm-up, or the end of a timed window."""
    return done >= warmup and (done - warmup) % steps == 0


class WindowTimer(L.Callback):
    """Marks ``(time, images)`` at the end of warm-up and of every window of ``steps`` training batches."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.done = 0
        self.images = 0
        self.marks: list[tuple[float, int]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.done += 1
        self.images += int(batch[1].shape[0])
        if is_window_edge(self.done, self.warmup, self.steps):
            synchronize(pl_module.device)
            self.marks.append((time.perf_counter(), self.images))


def timed_loop(
    step: Callable[[Tensor, Tensor], Any],
    batches: Iterator[tuple[Tensor, Tensor]],
    warmup: int,
    steps: int,
    windows: int,
    device: torch.device,
) -> dict[str, Any]:
    marks: list[tuple[float, int]] = []
    images = 0
    for done in range(1, warmup + windows * steps + 1):
        x, y = next(batches)
        step(x, y)
        images += int(y.shape[0])
        if is_window_edge(done, warmup, steps):
            synchronize(device)
            marks.append((time.perf_counter(), images))
    return summarize(marks)


# -- path 1 and 3: the same math in plain PyTorch --------------------------------------------------
def build_benchmark_module(cfg: DictConfig) -> L.LightningModule:
    """The method's LightningModule as ``kd_lightning.train`` builds it, with a frozen random-init
    teacher for the KD methods (the benchmark measures speed, not what a trained teacher knows)."""
    teacher = teacher_info = None
    if get_class(cfg.method._target_).requires_teacher:
        teacher = build_resnet(**OmegaConf.to_container(cfg.teacher_model, resolve=True))
        teacher_info = {"source": "random init (benchmark only)", "arch": str(cfg.teacher_model.arch)}
    return build_module(cfg, teacher, teacher_info)


class BareStep:
    """One optimisation step of ``method`` without the Trainer: the module's own loss
    (:meth:`~kd_lightning.modules.base.ClassifierModule.training_loss`) and optimizer
    (``configure_optimizers``), driven by a plain PyTorch loop: no second copy of the KD math."""

    def __init__(self, cfg: DictConfig, device: torch.device) -> None:
        self.name = str(cfg.method.name)
        self.module = build_benchmark_module(cfg).to(device).train()
        self.net = self.module.net
        self.teacher: nn.Module | None = getattr(self.module, "teacher", None)
        self.adapters: nn.ModuleDict | None = getattr(self.module, "adapters", None)
        optimizers = self.module.configure_optimizers()
        self.optimizer = optimizers["optimizer"] if isinstance(optimizers, dict) else optimizers
        # the same speed switches and precision as the Lightning path (callbacks.speedups, trainer.precision)
        instantiate(cfg.callbacks.speedups).apply(self.module)
        precision = lightning_precision(cfg.trainer.precision)
        if precision not in BARE_PRECISIONS:
            raise ValueError(f"trainer.precision={precision}: the bare loop mirrors only {sorted(BARE_PRECISIONS)}")
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=PRECISIONS[precision][1])

    def loss(self, images: Tensor, labels: Tensor) -> Tensor:
        return self.module.training_loss(images, labels)[2]

    def __call__(self, images: Tensor, labels: Tensor) -> Tensor:
        with self.autocast:
            loss = self.loss(images, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def close(self) -> None:
        remove = getattr(self.module, "remove_hooks", None)
        if remove is not None:
            remove()


def memory_batches(
    images: Tensor, labels: Tensor, batch_size: int, device: torch.device, augment: BatchAugment, seed: int = 0
) -> Iterator[tuple[Tensor, Tensor]]:
    """Shuffled epochs over uint8 tensors in host memory (drop_last), augmented and normalised on ``device``."""
    if len(labels) < batch_size:
        raise ValueError(f"{len(labels)} training images hold no full batch of {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    pin = device.type == "cuda"
    if pin:
        images, labels = images.pin_memory(), labels.pin_memory()
    while True:
        order = torch.randperm(len(labels), generator=gen)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            x = images[index].to(device, non_blocking=pin)
            y = labels[index].to(device, non_blocking=pin)
            yield augment(x), y


def device_batches(
    shape: Sequence[int], num_classes: int, batch_size: int, device: torch.device
) -> Iterator[tuple[Tensor, Tensor]]:
    """The same random (normal) batch, resident on the device, forever."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, *shape, generator=gen).to(device)
    y = torch.randint(0, num_classes, (batch_size,), generator=gen).to(device)
    while True:
        yield x, y


# -- path 2: the project's module under the Lightning Trainer --------------------------------------
def build_lightning(
    cfg: DictConfig, timer: WindowTimer, max_steps: int, root: Path
) -> tuple[L.LightningModule, L.Trainer]:
    module = build_benchmark_module(cfg)
    trainer = instantiate(
        cfg.trainer,
        callbacks=[timer, instantiate(cfg.callbacks.speedups)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_epochs=-1,
        max_steps=max_steps,
        limit_train_batches=None,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        default_root_dir=str(root),
    )
    return module, trainer


# -- one method, three paths; the reported targets ----------------------------------------------
def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def bench_method(
    cfg: DictConfig,
    *,
    warmup: int,
    steps: int,
    windows: int,
    batch_size: int,
    seed: int,
    data: tuple[Tensor, Tensor],
    dm: L.LightningDataModule,
    data_info: Mapping[str, Any],
    tmp: Path,
) -> dict[str, Any]:
    """The three paths for one method's composed run config: ``{"model", "bare", "lightning"}`` window
    summaries, FLOPs per image of a training step, the Lightning/bare and Lightning/model ratios."""
    method = str(cfg.method.name)
    shape = (int(cfg.dataset.channels), int(cfg.dataset.image_size), int(cfg.dataset.image_size))
    total = warmup + windows * steps
    timer = WindowTimer(warmup, steps)
    # The Trainer goes first: it sets the process-wide flags of the trainer config (deterministic
    # algorithms, cuDNN benchmark), so paths 1 and 3 run under exactly the flags path 2 runs under.
    module, trainer = build_lightning(cfg, timer, total, tmp / "lightning" / method)
    device = trainer.strategy.root_device
    torch.manual_seed(seed)
    result: dict[str, Any] = {}

    step = BareStep(cfg, device)
    batches = device_batches(shape, int(cfg.dataset.num_classes), batch_size, device)
    result["flops_per_image"] = count_flops(step, *next(batches)) / batch_size  # one full training step
    result["model"] = timed_loop(step, batches, warmup, steps, windows, device)
    step.close()
    del step
    _free(device)

    step = BareStep(cfg, device)
    augment = BatchAugment.from_config(cfg.dataset.mean, cfg.dataset.std, cfg.dataset.augmentation).to(device)
    images, labels = data
    result["bare"] = timed_loop(
        step,
        memory_batches(images, labels, batch_size, device, augment, seed),
        warmup,
        steps,
        windows,
        device,
    )
    step.close()
    del step
    _free(device)

    with unverified_cifar(data_info["source"] == "synthetic" and str(cfg.dataset.name).startswith("cifar")):
        trainer.fit(module, datamodule=dm)
    result["lightning"] = summarize(timer.marks)
    result["lightning"]["steps_run"] = timer.done
    result["device"] = str(device)
    with contextlib.suppress(OSError):
        result["load_average_after"] = round(os.getloadavg()[0], 2)  # 1-minute load: how busy the machine was
    del module, trainer
    _free(device)

    result["ratio_lightning_vs_bare"] = _ratio(result["lightning"]["images_per_s"], result["bare"]["images_per_s"])
    result["ratio_lightning_vs_model"] = _ratio(result["lightning"]["images_per_s"], result["model"]["images_per_s"])
    result["best_window_ratio_lightning_vs_bare"] = _ratio(
        result["lightning"]["best_images_per_s"], result["bare"]["best_images_per_s"]
    )
    result["best_window_ratio_lightning_vs_model"] = _ratio(
        result["lightning"]["best_images_per_s"], result["model"]["best_images_per_s"]
    )
    for path in PATHS:
        ips = result[path]["images_per_s"]
        result[path]["step_ms"] = 1000.0 * batch_size / ips if ips else None
    return result


def verdicts(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, path_ratio in (
        ("lightning_vs_bare", "ratio_lightning_vs_bare"),
        ("lightning_vs_model", "ratio_lightning_vs_model"),
    ):
        threshold, text = TARGETS[key]
        per_method = {
            m: {"ratio": r[path_ratio], "pass": r[path_ratio] is not None and r[path_ratio] >= threshold}
            for m, r in results.items()
        }
        out[key] = {
            "target": text,
            "threshold": threshold,
            "per_method": per_method,
            "pass": all(v["pass"] for v in per_method.values()),
        }
    threshold, text = TARGETS["ikd_vs_rkd_step_time"]
    ratio = ikd_rkd_ratios(results).get("lightning")
    out["ikd_vs_rkd_step_time"] = {
        "target": text,
        "threshold": threshold,
        "ratio": ratio,
        "pass": ratio is not None and ratio <= threshold,
    }
    return out


def ikd_rkd_ratios(results: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """IKD step time / RKD step time (= RKD images/s / IKD images/s) for each path, and the FLOP ratio."""
    if "ikd" not in results or "rkd" not in results:
        return {}
    ratios = {
        path: _ratio(results["rkd"][path]["images_per_s"], results["ikd"][path]["images_per_s"]) for path in PATHS
    }
    ratios["flops"] = _ratio(results["ikd"].get("flops_per_image"), results["rkd"].get("flops_per_image"))
    return ratios
