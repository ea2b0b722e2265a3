"""Training throughput of the four methods, three ways, in one process: ``python -m kd_lightning.bench``.

For each method (teacher, scratch, rkd, ikd) on one dataset's shapes:

1. **bare** - a plain PyTorch loop over the project's own LightningModule (built by
   :func:`kd_lightning.run.build.build_module`): its ``training_loss`` and ``configure_optimizers``, the
   same batch size, on the dataset's images held in memory as uint8 tensors, augmented on the device
   with :class:`~kd_lightning.datasets.batched.BatchAugment` (the same recipe), without the Trainer;
2. **lightning** - the project's LightningModule, built as ``kd_lightning.train`` builds it (frozen
   random-init teacher for rkd/ikd), trained by the Lightning Trainer from the project's trainer
   config (accelerator auto; no logger, checkpointing, progress bar or validation) on the project's
   DataModule reading files from ``--data-dir``;
3. **model** - the bare training step on one random batch already on the device: compute only.

Each path runs ``warmup`` steps, then ``windows`` timed windows of ``steps`` steps (CUDA synchronised
at the window edges); its throughput is the median over windows of images / window time. Path 2 is
timed by a Lightning callback at the same window edges, so its windows include everything between
two batches (data loading, host-to-device copy, logging, metrics).

Real data: ``--data-dir`` (default ``$KD_DATA_DIR``, ``<project>/data``, ``<project>/../shared/datasets``)
must hold the dataset in torchvision's on-disk format. Without it (or with ``--synthetic N``), N
class-structured random images (noise plus a label-dependent bright square, never all-zero) are
written in that same format to a temporary folder and read through the same code.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import re
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from kd_lightning import PROJECT_ROOT
from kd_lightning.datasets import DatasetError
from kd_lightning.datasets.batched import BatchAugment, load_as_uint8_tensors
from kd_lightning.datasets.locations import data_dir_candidates
from kd_lightning.datasets.synthetic import unverified_cifar, write_dataset
from kd_lightning.measure.efficiency import PRECISIONS, count_flops, lightning_precision
from kd_lightning.models import build_resnet
from kd_lightning.run.build import build_datamodule, build_module
from kd_lightning.run.compose import CONF_DIR, compose_run_config
from kd_lightning.run.records import device_info, package_versions, write_json


def _methods() -> tuple[str, ...]:
    """The methods of conf/method/: the teacher first, then students without a teacher, then those
    distilling from one; a method built on another (IKD on RKD) after it."""
    found = []
    for file in (CONF_DIR / "method").glob("*.yaml"):
        cls = get_class(OmegaConf.load(file)._target_)
        found.append(((not cls.publishes_teacher, cls.requires_teacher, len(cls.__mro__), file.stem), file.stem))
    return tuple(name for _, name in sorted(found))


METHODS = _methods()
DATASETS = ("usps", "mnist", "fashion_mnist", "cifar10", "cifar100")
PATHS = ("bare", "lightning", "model")
PATH_LABELS = {"bare": "1 bare PyTorch", "lightning": "2 Lightning", "model": "3 model only"}
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
SMOKE = {"batch_size": 8, "warmup": 1, "steps": 2, "windows": 2, "synthetic": 48, "num_workers": 0, "threads": 1}
DEFAULT_SYNTHETIC = 2048

log = logging.getLogger("kd_lightning.bench")


# -- config --------------------------------------------------------------------------------------
def compose_config(dataset: str, method: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The run config ``python -m kd_lightning.train dataset=<dataset> method=<method>`` would get."""
    return compose_run_config([f"dataset={dataset}", f"method={method}", *overrides])


def locate_data(cfg: DictConfig, args: argparse.Namespace, tmp: Path) -> tuple[L.LightningDataModule, dict[str, Any]]:
    """The DataModule on real files when found, else on a synthetic copy written to ``tmp``."""
    if not args.synthetic:
        for candidate in data_dir_candidates(args.data_dir):
            dm = build_datamodule(cfg, data_dir=str(candidate))
            try:
                dm.prepare_data()
            except DatasetError:
                continue
            return dm, {"source": "real", "data_dir": str(candidate)}
        log.warning(
            "%s not found in %s: timing on synthetic data",
            cfg.dataset.name,
            [str(c) for c in data_dir_candidates(args.data_dir)],
        )
    n_train = int(args.synthetic or DEFAULT_SYNTHETIC)
    n_test = max(n_train // 4, 16)
    write_dataset(tmp / "data", str(cfg.dataset.name), n_train, n_test)
    dm = build_datamodule(cfg, data_dir=str(tmp / "data"))
    with unverified_cifar(str(cfg.dataset.name).startswith("cifar")):
        dm.prepare_data()
    return dm, {
        "source": "synthetic",
        "data_dir": str(tmp / "data"),
        "synthetic_train_images": n_train,
        "synthetic_test_images": n_test,
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


# -- the run ------------------------------------------------------------------------------------------
def _device_slug(device: torch.device) -> str:
    if device.type != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def bench_method(
    method: str,
    args: argparse.Namespace,
    overrides: list[str],
    data: tuple[Tensor, Tensor],
    dm: L.LightningDataModule,
    data_info: dict,
    tmp: Path,
) -> dict[str, Any]:
    cfg = compose_config(args.dataset, method, overrides)
    shape = (int(cfg.dataset.channels), int(cfg.dataset.image_size), int(cfg.dataset.image_size))
    total = args.warmup + args.windows * args.steps
    timer = WindowTimer(args.warmup, args.steps)
    # The Trainer goes first: it sets the process-wide flags of the trainer config (deterministic
    # algorithms, cuDNN benchmark), so paths 1 and 3 run under exactly the flags path 2 runs under.
    module, trainer = build_lightning(cfg, timer, total, tmp / "lightning" / method)
    device = trainer.strategy.root_device
    torch.manual_seed(args.seed)
    result: dict[str, Any] = {}

    step = BareStep(cfg, device)
    batches = device_batches(shape, int(cfg.dataset.num_classes), args.batch_size, device)
    result["flops_per_image"] = count_flops(step, *next(batches)) / args.batch_size  # one full training step
    result["model"] = timed_loop(step, batches, args.warmup, args.steps, args.windows, device)
    step.close()
    del step
    _free(device)

    step = BareStep(cfg, device)
    augment = BatchAugment.from_config(cfg.dataset.mean, cfg.dataset.std, cfg.dataset.augmentation).to(device)
    images, labels = data
    result["bare"] = timed_loop(
        step,
        memory_batches(images, labels, args.batch_size, device, augment, args.seed),
        args.warmup,
        args.steps,
        args.windows,
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
        result[path]["step_ms"] = 1000.0 * args.batch_size / ips if ips else None
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


def format_report(report: dict[str, Any]) -> str:
    def num(v: float | None, fmt: str = "{:.1f}") -> str:
        return "n/a" if v is None else fmt.format(v)

    s = report["settings"]
    lines = [
        f"kd_lightning.bench: {report['dataset']['name']} {tuple(report['dataset']['shape'])}, "
        f"{report['dataset']['data']['source']} data, "
        f"device {report['device']['name']}, batch {s['batch_size']}, "
        f"warmup {s['warmup_steps']} + {s['windows']} x {s['window_steps']} steps, "
        f"num_workers {s['num_workers']}, torch threads {s['torch_threads']}, "
        f"augmentation {'on' if s['augmentation'] else 'off'}, "
        f"precision {s['trainer']['precision'] or '32-true'}, channels_last {s['speedups']['channels_last']}, "
        f"compile {s['speedups']['compile']}",
        "",
        (
            "| method | 1 bare PyTorch (img/s) | 2 Lightning (img/s) | 3 model only (img/s) | 2/1 | 2/3 "
            "| 2/1, 2/3 of best windows | window spread 1/2/3 | MFLOP/img |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for method, r in report["results"].items():
        spread = "/".join(num(r[p]["spread"], "{:.0%}") for p in PATHS)
        lines.append(
            f"| {method} | {num(r['bare']['images_per_s'])} | {num(r['lightning']['images_per_s'])} "
            f"| {num(r['model']['images_per_s'])} "
            f"| {num(r['ratio_lightning_vs_bare'], '{:.3f}')} | {num(r['ratio_lightning_vs_model'], '{:.3f}')} "
            f"| {num(r['best_window_ratio_lightning_vs_bare'], '{:.3f}')}, "
            f"{num(r['best_window_ratio_lightning_vs_model'], '{:.3f}')} "
            f"| {spread} | {num(r['flops_per_image'] / 1e6)} |"
        )
    ratios = report["ikd_rkd_step_time_ratio"]
    if ratios:
        lines += [
            "",
            "IKD/RKD step-time ratio: "
            + ", ".join(f"{PATH_LABELS[p]} {num(ratios[p], '{:.3f}')}" for p in PATHS)
            + f"; FLOPs per step {num(ratios['flops'], '{:.3f}')}",
        ]
    lines.append("")
    for v in report["targets"].values():
        verdict = "PASS" if v["pass"] else "FAIL"
        if "per_method" in v:
            detail = ", ".join(
                f"{m} {num(x['ratio'], '{:.3f}')}{'' if x['pass'] else ' (fail)'}" for m, x in v["per_method"].items()
            )
        else:
            detail = f"ratio {num(v['ratio'], '{:.3f}')}"
        lines.append(f"{verdict}  {v['target']}: {detail}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m kd_lightning.bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--dataset", choices=DATASETS, default="usps", help="shapes and classes from conf/dataset/<name>.yaml"
    )
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument(
        "--data-dir",
        default=None,
        help=(
            "folder with the dataset in torchvision's format "
            "(default: $KD_DATA_DIR, <project>/data, <project>/../shared/datasets)"
        ),
    )
    p.add_argument(
        "--synthetic",
        type=int,
        default=None,
        metavar="N",
        help="time on N synthetic training images written in torchvision's format (ignores real data)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="default: recipe.batch_size of the paper recipe")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before the first window")
    p.add_argument("--steps", type=int, default=10, help="steps per timed window")
    p.add_argument("--windows", type=int, default=5, help="timed windows; the median is reported")
    p.add_argument(
        "--num-workers",
        type=int,
        default=None,
        help="DataLoader workers for path 2 (default: dataset.num_workers of the config)",
    )
    p.add_argument(
        "--no-augmentation", action="store_true", help="train without the paper's augmentation in paths 1 and 2"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help=(
            "torch.set_num_threads for the run (default: torch's choice). "
            "On a CPU shared with other jobs, 1 avoids OpenMP threads spinning on each other"
        ),
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--note", default=None, help="free text stored in the JSON (e.g. 'machine shared with a training job')"
    )
    p.add_argument(
        "--pipeline",
        choices=["tensor", "pil"],
        default=None,
        help="the DataModule's data path for path 2 (default: dataset.pipeline from the config)",
    )
    p.add_argument("--channels-last", action="store_true", help="all paths with callbacks.speedups.channels_last=true")
    p.add_argument(
        "--compile",
        action="store_true",
        help="all paths with callbacks.speedups.compile=true (torch.compile; compile time falls in the warm-up)",
    )
    p.add_argument(
        "--precision",
        choices=["32-true", "bf16-mixed"],
        default=None,
        help="trainer.precision for path 2; paths 1 and 3 autocast to match",
    )
    p.add_argument("--smoke", action="store_true", help=f"seconds-long check of the whole pipeline: {SMOKE}")
    p.add_argument("--out", default=None, help="JSON path (default: outputs/bench/<dataset>-<device>.json)")
    args = p.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            if key in ("batch_size", "num_workers", "synthetic", "threads") and getattr(args, key) is not None:
                continue  # an explicit value wins
            setattr(args, key, value)
    for key in ("warmup", "steps", "windows"):
        if getattr(args, key) < 1:
            p.error(f"--{key} must be >= 1")
    if args.synthetic is not None and args.synthetic < 2:
        p.error("--synthetic needs at least 2 images")
    return args


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the report that is also written as JSON and printed."""
    args = parse_args(argv)
    base = compose_config(args.dataset, "teacher")
    if args.batch_size is None:
        args.batch_size = int(base.recipe.batch_size)
    if args.num_workers is None:
        args.num_workers = int(base.dataset.num_workers)
    overrides = [f"recipe.batch_size={args.batch_size}", f"dataset.num_workers={args.num_workers}"]
    if args.no_augmentation:
        overrides.append("recipe.augmentation=null")
    if args.pipeline:
        overrides.append(f"dataset.pipeline={args.pipeline}")
    if args.channels_last:
        overrides.append("callbacks.speedups.channels_last=true")
    if args.compile:
        overrides.append("callbacks.speedups.compile=true")
    if args.precision:
        overrides.append(f"trainer.precision={args.precision}")
    base = compose_config(args.dataset, "teacher", overrides)

    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="kd-bench-") as tmp_name, _quiet(), _restore_torch_flags():
        tmp = Path(tmp_name)
        if args.threads:
            torch.set_num_threads(args.threads)
        threads_used = torch.get_num_threads()
        dm, data_info = locate_data(base, args, tmp)
        with unverified_cifar(data_info["source"] == "synthetic" and args.dataset.startswith("cifar")):
            dm.setup("fit")
        data = load_as_uint8_tensors(dm.train_set)
        data_info["train_images"] = len(data[1])
        if data_info["train_images"] < args.batch_size:
            raise SystemExit(f"{data_info['train_images']} training images hold no full batch of {args.batch_size}")
        for method in args.methods:
            print(f"[bench] {method} ...", file=sys.stderr, flush=True)
            results[method] = bench_method(method, args, overrides, data, dm, data_info, tmp)
        device = torch.device(results[args.methods[0]]["device"])

    report: dict[str, Any] = {
        "benchmark": "kd_lightning.bench",
        "started_at": started_at,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m kd_lightning.bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "note": args.note,
        "device": device_info(device),
        "versions": {"python": sys.version.split()[0], **package_versions()},
        "dataset": {
            "name": args.dataset,
            "shape": [int(base.dataset.channels), int(base.dataset.image_size), int(base.dataset.image_size)],
            "num_classes": int(base.dataset.num_classes),
            "data": data_info,
        },
        "settings": {
            "batch_size": args.batch_size,
            "warmup_steps": args.warmup,
            "window_steps": args.steps,
            "windows": args.windows,
            "steps_per_path": args.warmup + args.windows * args.steps,
            "num_workers": args.num_workers,
            "pipeline": str(base.dataset.pipeline),
            "torch_threads": threads_used,
            "augmentation": OmegaConf.to_container(base.recipe.augmentation) if base.recipe.augmentation else None,
            "optimizer": OmegaConf.to_container(base.recipe.optimizer),
            "trainer": {
                k: OmegaConf.select(base, f"trainer.{k}")
                for k in ("accelerator", "precision", "deterministic", "benchmark", "log_every_n_steps")
            },
            "speedups": {k: v for k, v in OmegaConf.to_container(base.callbacks.speedups).items() if k != "_target_"},
            "methods": list(args.methods),
            "smoke": args.smoke,
            "seed": args.seed,
            "statistic": "median over windows of images / window wall time",
            "paths": {
                "bare": (
                    "plain PyTorch loop; uint8 data in host memory, BatchAugment on the device; same nets, losses, SGD"
                ),
                "lightning": (
                    "project LightningModule + Lightning Trainer (trainer config; no logger/ckpt/progress/val) "
                    "+ project DataModule"
                ),
                "model": "plain PyTorch training step on one random batch resident on the device",
            },
        },
        "results": results,
        "ikd_rkd_step_time_ratio": ikd_rkd_ratios(results),
        "targets": verdicts(results),
        "wall_time_s": round(time.perf_counter() - started, 2),
    }
    out = (
        Path(args.out)
        if args.out
        else PROJECT_ROOT / "outputs" / "bench" / f"{args.dataset}-{_device_slug(device)}.json"
    )
    write_json(out, report)
    report["json_path"] = str(out)
    print(format_report(report))
    print(f"\nwrote {out} ({report['wall_time_s']:.1f} s)")
    return report


@contextlib.contextmanager
def _restore_torch_flags() -> Iterator[None]:
    """The Trainer sets process-wide flags from the trainer config; put them back when the benchmark ends."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2], saved[3]
        torch.set_num_threads(threads)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep Lightning's start-up chatter and known-harmless warnings out of the table."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern in (
                ".*does not have many workers.*",
                ".*GPU available but not used.*",
                ".*deterministic.*",
                ".*max_epochs.*",
                ".*module\\(s\\) in eval mode.*",
                ".*LeafSpec.*",
            ):
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
