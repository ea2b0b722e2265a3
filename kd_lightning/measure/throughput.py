"""Training throughput of a method's step: the measurement behind ``python -m kd_lightning.bench``.

- the timer is the training runs' own, :class:`kd_lightning.run.callbacks.ThroughputMeter` (device synchronised
  only at the edges of what it times); :func:`timed_windows` drives it around a plain loop, :func:`summarize`
  turns its windows into the median (and best) window throughput;
- :class:`BareStep`: one optimisation step of the project's own LightningModule without the Trainer;
- batch sources: :func:`memory_batches` (uint8 images in host memory, augmented on the device) and
  :func:`device_batches` (one random batch resident on the device);
- :class:`Interleave`: the bare loop's windows run between the Lightning path's inside one ``Trainer.fit`` (ABBA
  blocks), so both paths see the same machine; :func:`block_ratios`, :func:`ratio_interval` and :func:`verdict`
  turn the blocks into a ratio with a confidence interval and "met" / "missed" / "not resolved at this noise";
- :func:`bench_method`: the paths for one method's composed config, the Lightning path being the real training
  path (:func:`kd_lightning.run.build.build_trainer`: loggers, checkpointing, progress bar, every callback);
- :func:`verdicts`, :func:`ikd_rkd_ratios`: the reported (never asserted) targets and IKD/RKD ratios.

The one config-bound module of :mod:`kd_lightning.measure`: the benchmark times the project's own objects,
so :class:`BareStep` and :func:`bench_method` take a composed run config (from
:func:`kd_lightning.run.compose.compose_run_config`) and build through :mod:`kd_lightning.run.build`.

Why not :func:`kd_lightning.measure.efficiency.time_calls`: that loop times each call on its own, with a
synchronisation before and after every call, and returns seconds per call. A training-throughput window
must include the overlap between consecutive steps (asynchronous CUDA launches, data loading, the
Trainer's work between batches), so it synchronises only at window edges and counts images.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from scipy import stats
from torch import Tensor, nn

from kd_lightning.datasets.batched import BatchAugment
from kd_lightning.datasets.synthetic import unverified_cifar
from kd_lightning.measure.efficiency import PRECISIONS, count_flops, lightning_precision
from kd_lightning.models import build_resnet
from kd_lightning.run.build import build_module, build_trainer
from kd_lightning.run.callbacks import ThroughputMeter

#: the three ways one method's training step is timed
PATHS = ("bare", "lightning", "model")
#: targets reported (never asserted): name -> (threshold, description)
TARGETS = {
    "lightning_vs_bare": (0.95, "path2 >= 0.95 x path1 (real Lightning training path vs bare loop, interleaved)"),
    "ikd_vs_rkd_step_time": (1.15, "IKD step time <= 1.15 x RKD step time (path 2; indicative: not interleaved)"),
}
#: the verdicts a ratio's confidence interval can give against a threshold
VERDICTS = ("met", "missed", "not resolved at this noise")
#: confidence of the ratio intervals
LEVEL = 0.95
#: trainer.precision values the bare loop reproduces -> whether it autocasts to bfloat16
# the precisions the bare loop can mirror: fp32, and bf16 autocast (fp16 would also need a GradScaler)
BARE_PRECISIONS = {
    name for name, mode in PRECISIONS.items() if mode in ((torch.float32, False), (torch.bfloat16, True))
}


# -- timing ----------------------------------------------------------------------------------------
def summarize(windows: Sequence[tuple[int, float]]) -> dict[str, Any]:
    """Median (and best) throughput of ``(images, seconds)`` windows."""
    rates = [images / seconds for images, seconds in windows if seconds > 0]
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


def run_window(
    step: Callable[[Tensor, Tensor], Any],
    batches: Iterator[tuple[Tensor, Tensor]],
    steps: int,
    meter: ThroughputMeter,
    device: torch.device,
) -> tuple[int, float]:
    """``steps`` steps of a plain loop (fetching its batches included), timed as one window of ``meter``."""
    meter.start(device)
    for _ in range(steps):
        x, y = next(batches)
        step(x, y)
        meter.count(int(y.shape[0]))
    return meter.cut(device)


def timed_windows(
    step: Callable[[Tensor, Tensor], Any],
    batches: Iterator[tuple[Tensor, Tensor]],
    warmup: int,
    steps: int,
    windows: int,
    device: torch.device,
) -> dict[str, Any]:
    """``warmup`` untimed steps, then ``windows`` windows of ``steps`` steps: their summary."""
    meter = ThroughputMeter()
    run_window(step, batches, warmup, meter, device)
    return summarize([run_window(step, batches, steps, meter, device) for _ in range(windows)])


class Interleave(L.Callback):
    """The bare loop's windows between the Lightning path's, inside one ``Trainer.fit``.

    Why: on a shared machine the load drifts by more than the 5% to resolve; paths timed one after the other
    see different machines. After ``warmup`` steps of each path, windows of ``steps`` steps alternate in ABBA
    blocks (Lightning, bare, bare, Lightning), so a linear drift falls on both alike and each block gives one
    ratio. The Lightning windows are the run's own :class:`ThroughputMeter` (paused over validation and the
    epoch's end, which the end-to-end wall time covers); the bare windows a second meter."""

    def __init__(
        self,
        meter: ThroughputMeter,
        bare: Callable[[Tensor, Tensor], Any],
        batches: Iterator[tuple[Tensor, Tensor]],
        warmup: int,
        steps: int,
        blocks: int,
    ) -> None:
        self.meter, self.bare, self.batches = meter, bare, batches
        self.warmup, self.steps, self.blocks = warmup, steps, blocks
        self.bare_meter = ThroughputMeter()
        self.done = 0
        self.first = 0  # the meter's windows before this index are warm-up

    @property
    def total_steps(self) -> int:
        """Lightning steps the interleaved run needs: its warm-up and two windows per block."""
        return self.warmup + 2 * self.blocks * self.steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.done += 1
        past = self.done - self.warmup
        if past < 0 or past % self.steps:
            return
        device = pl_module.device
        self.meter.cut(device)
        windows = past // self.steps
        if windows == 0:  # end of the warm-up: the bare loop's own
            self.first = len(self.meter.windows)
            run_window(self.bare, self.batches, self.warmup, self.bare_meter, device)
            self.bare_meter.windows.clear()
        elif windows % 2:  # A B B A: two bare windows after the first Lightning window of a block
            for _ in range(2):
                run_window(self.bare, self.batches, self.steps, self.bare_meter, device)
        if windows < 2 * self.blocks:
            self.meter.start(device)  # the next batch's loading counts

    def lightning_windows(self) -> list[tuple[int, float]]:
        return self.meter.windows[self.first :]


def block_ratios(lightning: Sequence[tuple[int, float]], bare: Sequence[tuple[int, float]]) -> list[float]:
    """Lightning / bare throughput of each ABBA block (windows 2j and 2j + 1 of each path)."""

    def rate(windows: Sequence[tuple[int, float]]) -> float:
        return sum(i for i, _ in windows) / sum(s for _, s in windows)

    n = min(len(lightning), len(bare)) // 2
    return [rate(lightning[2 * j : 2 * j + 2]) / rate(bare[2 * j : 2 * j + 2]) for j in range(n)]


def ratio_interval(ratios: Sequence[float], level: float = LEVEL) -> dict[str, Any]:
    """Geometric mean of the block ratios with a t-interval on their logarithms (ratios multiply, noise too)."""
    logs = [math.log(r) for r in ratios if r > 0]
    if not logs:
        return {"ratio": None, "low": None, "high": None, "blocks": 0, "level": level}
    mean = statistics.fmean(logs)
    half = (
        stats.t.ppf(0.5 + level / 2, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
        if len(logs) > 1
        else math.inf
    )
    return {
        "ratio": math.exp(mean),
        "low": math.exp(mean - half),
        "high": math.exp(mean + half),
        "blocks": len(logs),
        "level": level,
    }


def verdict(interval: Mapping[str, Any], threshold: float) -> str:
    """Met when the whole interval is at or above ``threshold``, missed when it is below, else the noise is
    too large to tell."""
    low, high = interval.get("low"), interval.get("high")
    if low is None or high is None or not math.isfinite(high - low):
        return VERDICTS[2]
    return VERDICTS[0] if low >= threshold else VERDICTS[1] if high < threshold else VERDICTS[2]


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
        self.speedups = instantiate(cfg.callbacks.speedups)
        self.speedups.apply(self.module)
        precision = lightning_precision(cfg.trainer.precision)
        if precision not in BARE_PRECISIONS:
            raise ValueError(f"trainer.precision={precision}: the bare loop mirrors only {sorted(BARE_PRECISIONS)}")
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=PRECISIONS[precision][1])

    def loss(self, images: Tensor, labels: Tensor) -> Tensor:
        return self.module.training_loss(images, labels)[2]

    def __call__(self, images: Tensor, labels: Tensor) -> Tensor:
        self.speedups.begin_step()
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
    """Shuffled epochs over uint8 tensors in host memory (drop_last), augmented and normalised on ``device``.

    As on the training path (AugmentedBatches, a pinning DataLoader, Lightning's transfer): the batch is gathered and
    its augmentation drawn on the host, page-locked, and copied without waiting for the device."""
    if len(labels) < batch_size:
        raise ValueError(f"{len(labels)} training images hold no full batch of {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    pin = device.type == "cuda"
    while True:
        order = torch.randperm(len(labels), generator=gen)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            x, y = images[index], labels[index]
            params = augment.sample_params(batch_size) if augment.training else None
            if pin:
                x, y = x.pin_memory(), y.pin_memory()
                params = params.pin_memory() if params is not None else None
            x, y = x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)
            yield augment(x, params.to(device, non_blocking=pin) if params is not None else None), y


def device_batches(
    shape: Sequence[int], num_classes: int, batch_size: int, device: torch.device
) -> Iterator[tuple[Tensor, Tensor]]:
    """The same random (normal) batch, resident on the device, forever."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, *shape, generator=gen).to(device)
    y = torch.randint(0, num_classes, (batch_size,), generator=gen).to(device)
    while True:
        yield x, y


# -- path 2: the real training path ------------------------------------------------------------------
def build_lightning(cfg: DictConfig, max_steps: int, run_dir: Path) -> tuple[L.LightningModule, L.Trainer]:
    """The module and the Trainer a run gets (:func:`~kd_lightning.run.build.build_trainer`: its loggers,
    checkpoints, progress bar and callbacks), writing into ``run_dir`` and stopping after ``max_steps``."""
    cfg = cfg.copy()
    OmegaConf.update(cfg, "paths.run_dir", str(run_dir))
    OmegaConf.update(cfg, "trainer.max_epochs", 10**6)  # max_steps decides
    OmegaConf.update(cfg, "trainer.max_steps", max_steps)
    return build_benchmark_module(cfg), build_trainer(cfg)


# -- one method: the interleaved paths; the reported targets ------------------------------------------
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
    blocks: int,
    batch_size: int,
    seed: int,
    data: tuple[Tensor, Tensor],
    dm: L.LightningDataModule,
    data_info: Mapping[str, Any],
    tmp: Path,
    model_path: bool = False,
) -> dict[str, Any]:
    """Paths 1 (bare) and 2 (the real Lightning training path) interleaved in ABBA blocks for one method's composed
    run config, and (``model_path``) path 3, compute only, after them: window summaries, FLOPs per image of a
    training step, the Lightning/bare ratio per block and their interval."""
    method = str(cfg.method.name)
    shape = (int(cfg.dataset.channels), int(cfg.dataset.image_size), int(cfg.dataset.image_size))
    torch.manual_seed(seed)
    # The Trainer goes first: it sets the process-wide flags of the trainer config (deterministic
    # algorithms, cuDNN benchmark), so the bare loop runs under exactly the flags path 2 runs under.
    module, trainer = build_lightning(cfg, warmup + 2 * blocks * steps, tmp / "lightning" / method)
    device = trainer.strategy.root_device
    meter = next(c for c in trainer.callbacks if isinstance(c, ThroughputMeter))
    step = BareStep(cfg, device)
    augment = BatchAugment.from_config(cfg.dataset.mean, cfg.dataset.std, cfg.dataset.augmentation).to(device)
    batches = memory_batches(*data, batch_size, device, augment, seed)
    interleave = Interleave(meter, step, batches, warmup, steps, blocks)
    trainer.callbacks.append(interleave)
    with unverified_cifar(data_info["source"] == "synthetic" and str(cfg.dataset.name).startswith("cifar")):
        trainer.fit(module, datamodule=dm)
    result: dict[str, Any] = {"device": str(device)}
    result["bare"] = summarize(interleave.bare_meter.windows)
    result["lightning"] = summarize(interleave.lightning_windows())
    result["lightning"]["steps_run"] = int(trainer.global_step)
    result["block_ratios_lightning_vs_bare"] = [
        round(r, 4) for r in block_ratios(interleave.lightning_windows(), interleave.bare_meter.windows)
    ]
    result["ratio_lightning_vs_bare"] = ratio_interval(result["block_ratios_lightning_vs_bare"])
    step.close()
    del module, trainer, step, interleave
    _free(device)

    step = BareStep(cfg, device)
    batches = device_batches(shape, int(cfg.dataset.num_classes), batch_size, device)
    result["flops_per_image"] = count_flops(step, *next(batches)) / batch_size  # one full training step
    if model_path:
        result["model"] = timed_windows(step, batches, warmup, steps, 2 * blocks, device)
        result["ratio_lightning_vs_model"] = _ratio(
            result["lightning"]["images_per_s"], result["model"]["images_per_s"]
        )
    step.close()
    del step
    _free(device)
    with contextlib.suppress(OSError):
        result["load_average_after"] = round(os.getloadavg()[0], 2)  # 1-minute load: how busy the machine was
    for path in PATHS:
        ips = result.get(path, {}).get("images_per_s")
        if path in result:
            result[path]["step_ms"] = 1000.0 * batch_size / ips if ips else None
    return result


def verdicts(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each target's verdict: from a ratio's interval ("met" / "missed" / "not resolved at this noise")."""
    threshold, text = TARGETS["lightning_vs_bare"]
    per_method = {
        m: {**r["ratio_lightning_vs_bare"], "verdict": verdict(r["ratio_lightning_vs_bare"], threshold)}
        for m, r in results.items()
    }
    out: dict[str, Any] = {
        "lightning_vs_bare": {"target": text, "threshold": threshold, "per_method": per_method},
    }
    threshold, text = TARGETS["ikd_vs_rkd_step_time"]
    ratio = ikd_rkd_ratios(results).get("lightning")
    out["ikd_vs_rkd_step_time"] = {
        "target": text,
        "threshold": threshold,
        "ratio": ratio,
        "verdict": "not resolved at this noise" if ratio is None else "met" if ratio <= threshold else "missed",
    }
    return out


def ikd_rkd_ratios(results: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """IKD step time / RKD step time (= RKD images/s / IKD images/s) for each path, and the FLOP ratio."""
    if "ikd" not in results or "rkd" not in results:
        return {}
    ratios = {
        path: _ratio(results["rkd"][path]["images_per_s"], results["ikd"][path]["images_per_s"])
        for path in PATHS
        if path in results["rkd"] and path in results["ikd"]
    }
    ratios["flops"] = _ratio(results["ikd"].get("flops_per_image"), results["rkd"].get("flops_per_image"))
    return ratios
