"""Training throughput of the study's methods, interleaved in one process: ``python -m kd_lightning.bench``.

For each method (conf/method/: teacher, scratch, rkd, ikd) on one dataset's shapes:

1. **bare** - a plain PyTorch loop over the project's own LightningModule (built by
   :func:`kd_lightning.run.build.build_module`): its ``training_loss`` and ``configure_optimizers``, the
   same batch size, on the dataset's images held in memory as uint8 tensors, augmented on the device
   with :class:`~kd_lightning.datasets.batched.BatchAugment` (the same recipe), without the Trainer;
2. **lightning** - the real training path: the module and the Trainer ``kd_lightning.train`` builds
   (:func:`kd_lightning.run.build.build_trainer`: loggers, checkpointing, progress bar, validation, every
   callback; frozen random-init teacher for rkd/ikd) on the project's DataModule reading ``--data-dir``;
3. **model** (``--model-path``) - the bare training step on one random batch already on the device: compute only.

Paths 1 and 2 run in one ``Trainer.fit``: after ``--warmup`` steps of each, windows of ``--steps`` steps alternate
in ``--blocks`` ABBA blocks (Lightning, bare, bare, Lightning), timed by the training runs' own
:class:`~kd_lightning.run.callbacks.ThroughputMeter` (device synchronised at window edges only). Each block gives a
Lightning/bare ratio; the report gives their geometric mean with a 95% t-interval and a verdict against the 0.95
target: "met", "missed" or "not resolved at this noise".

Real data: ``--data-dir`` (default ``$KD_DATA_DIR``, ``<project>/data``, ``<project>/../shared/datasets``)
must hold the dataset in torchvision's on-disk format. Without it (or with ``--synthetic N``), N
class-structured random images (noise plus a label-dependent bright square, never all-zero) are
written in that same format to a temporary folder and read through the same code.

This file is the command line: options, the config and data, the report (JSON and table). The timing,
the bare step, the batch sources, the interleaving and the verdicts are :mod:`kd_lightning.measure.throughput`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from kd_lightning import PROJECT_ROOT
from kd_lightning.datasets import DatasetError
from kd_lightning.datasets.batched import load_as_uint8_tensors
from kd_lightning.datasets.locations import data_dir_candidates
from kd_lightning.datasets.synthetic import unverified_cifar, write_dataset
from kd_lightning.measure.throughput import PATHS, bench_method, ikd_rkd_ratios, verdicts
from kd_lightning.methods import available_methods
from kd_lightning.run.build import build_datamodule
from kd_lightning.run.compose import compose_run_config
from kd_lightning.run.records import device_info, package_versions, write_json

METHODS = available_methods()  # conf/method/: the teacher first, then controls, then distilling students
DATASETS = ("usps", "mnist", "fashion_mnist", "cifar10", "cifar100")
PATH_LABELS = {"bare": "1 bare PyTorch", "lightning": "2 Lightning", "model": "3 model only"}
SMOKE = {"batch_size": 8, "warmup": 1, "steps": 2, "blocks": 2, "synthetic": 48, "num_workers": 0, "threads": 1}
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


# -- the run ------------------------------------------------------------------------------------------
def _device_slug(device: torch.device) -> str:
    if device.type != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def format_report(report: dict[str, Any]) -> str:
    def num(v: float | None, fmt: str = "{:.1f}") -> str:
        return "n/a" if v is None else fmt.format(v)

    s = report["settings"]
    lines = [
        f"kd_lightning.bench: {report['dataset']['name']} {tuple(report['dataset']['shape'])}, "
        f"{report['dataset']['data']['source']} data, "
        f"device {report['device']['name']}, batch {s['batch_size']}, "
        f"warmup {s['warmup_steps']} + {s['blocks']} ABBA blocks of 4 x {s['window_steps']} steps, "
        f"num_workers {s['num_workers']}, torch threads {s['torch_threads']}, "
        f"augmentation {'on' if s['augmentation'] else 'off'}, "
        f"precision {s['trainer']['precision'] or '32-true'}, channels_last {s['speedups']['channels_last']}, "
        f"compile {s['speedups']['compile']}, load average at start {report['device'].get('load_average_at_start')}",
        "",
        (
            "| method | 1 bare (img/s) | 2 Lightning (img/s) | 2/1 (95% CI) | block ratios | verdict (>= 0.95) "
            "| 3 model only (img/s) | window spread 1/2 | MFLOP/img | load after |"
        ),
        "|---|---:|---:|---|---|---|---:|---|---:|---:|",
    ]
    verdicts_ = report["targets"]["lightning_vs_bare"]["per_method"]
    for method, r in report["results"].items():
        ci = r["ratio_lightning_vs_bare"]
        spread = "/".join(num(r[p]["spread"], "{:.0%}") for p in ("bare", "lightning"))
        lines.append(
            f"| {method} | {num(r['bare']['images_per_s'])} | {num(r['lightning']['images_per_s'])} "
            f"| {num(ci['ratio'], '{:.3f}')} [{num(ci['low'], '{:.3f}')}, {num(ci['high'], '{:.3f}')}] "
            f"| {' '.join(f'{x:.3f}' for x in r['block_ratios_lightning_vs_bare'])} | {verdicts_[method]['verdict']} "
            f"| {num(r.get('model', {}).get('images_per_s'))} | {spread} | {num(r['flops_per_image'] / 1e6)} "
            f"| {num(r.get('load_average_after'), '{:.2f}')} |"
        )
    ratios = report["ikd_rkd_step_time_ratio"]
    if ratios:
        lines += [
            "",
            "IKD/RKD step-time ratio: "
            + ", ".join(f"{PATH_LABELS[p]} {num(ratios[p], '{:.3f}')}" for p in PATHS if p in ratios)
            + f"; FLOPs per step {num(ratios['flops'], '{:.3f}')}",
        ]
    lines.append("")
    for v in report["targets"].values():
        if "per_method" in v:
            detail = ", ".join(f"{m} {x['verdict']}" for m, x in v["per_method"].items())
        else:
            detail = f"ratio {num(v['ratio'], '{:.3f}')}: {v['verdict']}"
        lines.append(f"{v['target']}: {detail}")
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
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="default: recipe.batch_size of the recipe (the paper's unless --override recipe=...)",
    )
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before the first window")
    p.add_argument("--steps", type=int, default=5, help="steps per timed window")
    p.add_argument(
        "--blocks",
        type=int,
        default=6,
        help="ABBA blocks (Lightning, bare, bare, Lightning windows); each gives one Lightning/bare ratio",
    )
    p.add_argument("--model-path", action="store_true", help="also time path 3 (compute only), after paths 1 and 2")
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
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for every method, as kd_lightning.train takes it (repeatable), "
        "e.g. recipe=strong or model@teacher_model=resnet18",
    )
    p.add_argument("--smoke", action="store_true", help=f"seconds-long check of the whole pipeline: {SMOKE}")
    p.add_argument("--out", default=None, help="JSON path (default: outputs/bench/<dataset>-<device>.json)")
    args = p.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            if key in ("batch_size", "num_workers", "synthetic", "threads") and getattr(args, key) is not None:
                continue  # an explicit value wins
            setattr(args, key, value)
    for key in ("warmup", "steps", "blocks"):
        if getattr(args, key) < 1:
            p.error(f"--{key} must be >= 1")
    if args.synthetic is not None and args.synthetic < 2:
        p.error("--synthetic needs at least 2 images")
    return args


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the report that is also written as JSON and printed."""
    args = parse_args(argv)
    base = compose_config(args.dataset, "teacher", args.override)
    if args.batch_size is None:
        args.batch_size = int(base.recipe.batch_size)
    if args.num_workers is None:
        args.num_workers = int(base.dataset.num_workers)
    overrides = [*args.override, f"recipe.batch_size={args.batch_size}", f"dataset.num_workers={args.num_workers}"]
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
            results[method] = bench_method(
                compose_config(args.dataset, method, overrides),
                warmup=args.warmup,
                steps=args.steps,
                blocks=args.blocks,
                batch_size=args.batch_size,
                seed=args.seed,
                data=data,
                dm=dm,
                data_info=data_info,
                tmp=tmp,
                model_path=args.model_path,
            )
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
            "blocks": args.blocks,
            "steps_per_path": args.warmup + 2 * args.blocks * args.steps,
            "model_path": args.model_path,
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
            "overrides": list(args.override),
            "smoke": args.smoke,
            "seed": args.seed,
            "statistic": (
                "ratio: geometric mean over ABBA blocks of Lightning/bare throughput, 95% t-interval on logs; "
                "img/s: median over windows of images / window wall time"
            ),
            "paths": {
                "bare": (
                    "plain PyTorch loop; uint8 data in host memory, BatchAugment on the device; same nets, losses, SGD"
                ),
                "lightning": (
                    "the real training path: project LightningModule + build_trainer (loggers, checkpoints, progress "
                    "bar, validation, callbacks) + project DataModule; windows pause over validation and epoch ends"
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
