"""Export a trained network to ONNX and check it: ``python -m kd_lightning.export <run folder | .ckpt>``.

What is exported is the trained network alone (the ``net.*`` weights of the checkpoint, read by
:func:`kd_lightning.models.load_network`): a student's frozen teacher and IKD's 1x1 adapters are
training machinery and are not part of the deployable model.

The ONNX file (opset >= 17, dynamic batch axis, BatchNorm folded into the convolutions) carries its
own description in ``metadata_props``: dataset, number of classes, input shape, the normalisation
(mean/std) the network expects, label names where known, the source checkpoint and the result of the
check below. See ``docs/deployment.md``.

The check runs the exported model with onnxruntime beside the PyTorch network on the dataset's test
split (through the project's DataModule, so the images, split and normalisation are the training
run's) or, when the data is not found, on random inputs. It reports the largest logit difference,
top-1 agreement and both accuracies; a model that disagrees beyond tolerance is not written.

``--int8`` adds a post-training quantized copy (onnxruntime static quantization, QDQ, int8 weights per
channel, calibrated on validation images) with its accuracy and batch-1 latency beside fp32.

This file is the command line: finding the checkpoint, its run config and its data. The export and the
check are :mod:`kd_lightning.measure.onnx`; a training run exports itself the same way, in memory
(:mod:`kd_lightning.run.after_test`).

Exit codes: 0 exported and verified, 1 the check failed (nothing written), 2 bad input (missing file,
not a kd-lightning checkpoint, output exists without ``--force``, unwritable output).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from kd_lightning import models
from kd_lightning.datasets import DatasetError
from kd_lightning.datasets.locations import data_dir_candidates
from kd_lightning.measure import onnx
from kd_lightning.measure.efficiency import count_parameters
from kd_lightning.measure.onnx import (  # noqa: F401  (the export's API)
    folded_parameter_count,
    initializer_count,
    read_metadata,
)
from kd_lightning.run.after_test import doc_string, label_names, normalised_split
from kd_lightning.run.build import build_datamodule
from kd_lightning.run.compose import CONF_DIR, compose_run_config

DATASET_CONF_DIR = CONF_DIR / "dataset"
METHOD_CONF_DIR = CONF_DIR / "method"
#: DataModule arguments for evaluation: tensor pipeline, no download, no augmentation, no workers
EVAL_LOADING = {
    "download": False,
    "pipeline": "tensor",
    "num_workers": 0,
    "augmentation": None,
    "batch_size": onnx.EVAL_BATCH,
    "eval_batch_size": onnx.EVAL_BATCH,
    "pin_memory": False,
}
RANDOM_INPUTS = 16
CALIBRATION_IMAGES = 256


class ExportError(RuntimeError):
    """Bad input: the source is not a kd-lightning checkpoint, or the output cannot be written (exit code 2)."""


# -- finding and reading the checkpoint ----------------------------------------------------------
def _read_yaml_or_json(path: Path) -> dict[str, Any] | None:
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)  # saved resolved by kd_lightning.train
    except Exception:
        return None


def _run_config(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The run's resolved config from ``config.yaml``, ``results.json["config"]`` or ``teacher.json["config"]``."""
    config = _read_yaml_or_json(folder / "config.yaml") if (folder / "config.yaml").is_file() else None
    if isinstance(config, dict) and "dataset" in config:
        return config, str(folder / "config.yaml")
    for record_file in ("results.json", "teacher.json"):
        record = _read_yaml_or_json(folder / record_file) if (folder / record_file).is_file() else None
        if isinstance(record, dict) and isinstance(record.get("config"), dict):
            return record["config"], str(folder / record_file)
    return None, None


def resolve_source(source: str | os.PathLike) -> tuple[Path, Path | None, dict[str, Any] | None, str | None]:
    """``(checkpoint, run folder or None, run config or None, where the config came from)`` for a run folder or a .ckpt.

    A run folder's checkpoint is ``results.json["best_checkpoint"]``, else ``checkpoints/best-*.ckpt``
    (the newest), else a teacher-registry entry's ``teacher.ckpt``. A checkpoint inside a run folder
    (``<run>/checkpoints/x.ckpt``) or a registry entry finds its run config the same way.
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise ExportError(
            f"{path}: no such file or folder. Pass a run folder (holding results.json and checkpoints/) or a .ckpt "
            "written by kd_lightning.train (e.g. outputs/default/usps/rkd/seed0/checkpoints/best-epoch009.ckpt)."
        )
    if path.is_file():
        for folder in (path.parent, path.parent.parent):
            config, origin = _run_config(folder)
            if config is not None:
                run_dir = folder
                return path, run_dir, config, origin
        return path, None, None, None
    config, origin = _run_config(path)
    record = _read_yaml_or_json(path / "results.json") if (path / "results.json").is_file() else None
    best = (record or {}).get("best_checkpoint")
    candidates: list[Path] = []
    if best:
        best_path = Path(best)
        candidates.append(best_path if best_path.is_absolute() else path / best_path)
        candidates.append(path / "checkpoints" / best_path.name)  # the run folder was moved
    candidates += sorted((path / "checkpoints").glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    candidates.append(path / "teacher.ckpt")
    for candidate in candidates:
        if candidate.is_file():
            return candidate, path, config, origin
    raise ExportError(
        f"{path}: no checkpoint found (looked for results.json's best_checkpoint, "
        "checkpoints/best-*.ckpt and teacher.ckpt). "
        "Pass a finished kd_lightning.train run folder, or the .ckpt file itself."
    )


def load_network(checkpoint: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`kd_lightning.models.load_network`, its errors as :class:`ExportError` (exit code 2)."""
    path = Path(checkpoint)
    if not path.is_file():
        raise ExportError(f"{path}: no such checkpoint file.")
    try:
        return models.load_network(path)
    except models.CheckpointError as exc:
        raise ExportError(str(exc)) from None


def method_of(info: Mapping[str, Any], run_config: Mapping[str, Any] | None) -> str | None:
    """The run config's ``method.name``; for a checkpoint without one, the method of ``conf/method/`` whose
    LightningModule takes exactly the checkpoint's saved hyperparameters (``None`` when several do:
    teacher and scratch checkpoints look alike)."""
    name = ((run_config or {}).get("method") or {}).get("name")
    if name:
        return str(name)
    saved = set(info["hyper_parameters"])
    fits = []
    for file in sorted(METHOD_CONF_DIR.glob("*.yaml")):
        method = OmegaConf.load(file)
        cls = get_class(method._target_)
        arguments = set()
        for klass in cls.__mro__:
            if (
                "__init__" in vars(klass)
                and issubclass(klass, L.LightningModule)
                and klass.__module__.startswith("kd_lightning")
            ):
                signature = inspect.signature(klass.__init__).parameters.values()
                arguments |= {p.name for p in signature if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if (
            arguments - {"self", "teacher"} == saved
        ):  # the teacher itself is never saved (save_hyperparameters ignores it)
            fits.append(str(method.name))
    return fits[0] if len(fits) == 1 else None


# -- dataset metadata and data -------------------------------------------------------------------
def dataset_config(
    info: Mapping[str, Any], run_config: Mapping[str, Any] | None, dataset: str | None = None
) -> tuple[dict[str, Any], str]:
    """The dataset config (name, num_classes, channels, image_size, mean, std, ...) and where it came from.

    From the run's config when there is one, else ``conf/dataset/<name>.yaml`` as ``kd_lightning.train``
    composes it, with the name the checkpoint records (or ``dataset``). Checked against the network's
    classes and input channels.
    """
    trained_on = info.get("dataset")
    run_ds = dict((run_config or {}).get("dataset") or {})
    name = dataset or trained_on or run_ds.get("name")
    for other, what in ((trained_on, "the checkpoint's hyper_parameters"), (run_ds.get("name"), "the run config")):
        if name and other and other != name:
            raise ExportError(
                f"{info['checkpoint']}: dataset {name!r} requested but {what} say(s) {other!r}; "
                "drop --dataset or fix it."
            )
    known = sorted(p.stem for p in DATASET_CONF_DIR.glob("*.yaml"))
    if not name:
        raise ExportError(
            f"{info['checkpoint']}: the checkpoint does not record its dataset; pass --dataset NAME (one of {known})."
        )
    if {"mean", "std", "channels", "image_size"} <= run_ds.keys():
        cfg, origin = run_ds, "run config"
    else:
        file = DATASET_CONF_DIR / f"{name}.yaml"
        if not file.is_file():
            raise ExportError(
                f"{info['checkpoint']}: unknown dataset {name!r}: no {file}. Choose one of {known} with --dataset."
            )
        composed = OmegaConf.to_container(_composed(name).dataset, resolve=True)
        # a checkpoint without its run config does not say which data factors it was trained with
        cfg, origin = {k: v for k, v in composed.items() if k != "factors"}, str(file.relative_to(CONF_DIR.parent))
    net = info["net"]
    problems = []
    if int(cfg["num_classes"]) != int(net["num_classes"]):
        problems.append(f"{net['num_classes']} classes, dataset has {cfg['num_classes']}")
    if int(cfg["channels"]) != int(net.get("in_channels", 3)):
        problems.append(f"{net.get('in_channels', 3)} input channels, dataset has {cfg['channels']}")
    if problems:
        raise ExportError(f"{info['checkpoint']}: the network does not fit dataset {name!r}: " + "; ".join(problems))
    return cfg, origin


def _composed(dataset: str) -> DictConfig:
    return compose_run_config([f"dataset={dataset}"])


def eval_config(ds_cfg: Mapping[str, Any], seed: int = 0) -> DictConfig:
    """``kd_lightning.train``'s config for the dataset of ``ds_cfg``, with the run's own dataset values on
    top (normalisation, split, data factors): what :func:`kd_lightning.run.build.build_datamodule` takes."""
    cfg = _composed(str(ds_cfg["name"]))
    with open_dict(cfg):
        cfg.dataset = OmegaConf.merge(cfg.dataset, OmegaConf.create(dict(ds_cfg)))
        cfg.seed = int(seed)
    return cfg


def load_eval_data(
    ds_cfg: Mapping[str, Any],
    data_dir: str | os.PathLike | None,
    run_config: Mapping[str, Any] | None,
    max_images: int | None = None,
) -> dict[str, Any] | None:
    """Normalised test and validation images from the project's DataModule, or ``None`` when no data is found.

    An explicit ``data_dir`` that does not hold the data is an error; the automatic candidates
    (run config's data_dir, $KD_DATA_DIR, <project>/data, <project>/../shared/datasets) are tried in turn.
    """
    cfg = eval_config(ds_cfg, int((run_config or {}).get("seed") or 0))
    run_ds = (run_config or {}).get("dataset") or {}
    tried = []
    for candidate in data_dir_candidates(data_dir, run_ds.get("data_dir")):
        try:
            # for evaluation: the test split as it is, read in this process
            dm = build_datamodule(cfg, **EVAL_LOADING, data_dir=str(candidate))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dm.prepare_data()
                dm.setup("test")
        except (DatasetError, OSError) as exc:
            if data_dir:
                raise ExportError(f"--data-dir {candidate}: {exc}") from None
            tried.append(str(candidate))
            continue
        out: dict[str, Any] = {"data_dir": str(candidate)}
        for split in ("test", "val"):
            images, labels = normalised_split(dm, split)
            out[split] = (images[:max_images], labels[:max_images])
        return out
    return None if not tried else {"data_dir": None, "tried": tried}


def _check_output(out: Path, force: bool) -> None:
    if out.is_dir():
        raise ExportError(f"--out {out} is a folder; give a file path ending in .onnx.")
    if out.exists() and not force:
        raise ExportError(f"{out} already exists; pass --force to overwrite it, or choose another --out.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.parent / f".{out.name}.probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ExportError(f"cannot write {out} ({exc.strerror or exc}); choose a writable --out path.") from None


# -- export --------------------------------------------------------------------------------------
def default_output(checkpoint: Path, run_dir: Path | None, source: Path) -> Path:
    """``<run>/export/model.onnx`` for a run folder, ``<checkpoint>.onnx`` beside a .ckpt given directly."""
    if source.is_dir() and run_dir is not None:
        return run_dir / "export" / "model.onnx"
    return checkpoint.with_suffix(".onnx")


def export_onnx(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    force: bool = False,
    data_dir: str | os.PathLike | None = None,
    dataset: str | None = None,
    int8: bool = False,
    opset: int = onnx.DEFAULT_OPSET,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    max_images: int | None = None,
    latency_repeats: int = 50,
    use_data: bool = True,
) -> dict[str, Any]:
    """Export the trained network of a run folder or checkpoint to ONNX, verify it, and return the report.

    The report holds ``ok``, the output path(s), the source, the dataset metadata, the parameter
    counts (student, folded, ONNX initializers) and ``verification`` (``compare_logits`` keys plus
    ``images``, ``data`` = "test split" or "random", ``accuracy_pytorch``, ``accuracy_onnx``), and
    with ``int8`` an ``int8`` section (path, accuracy, agreement with fp32, latencies). When the check
    fails (``ok`` false) nothing is written. Raises :class:`ExportError` on bad input.
    ``use_data=False`` checks on random inputs even when the dataset is available (faster).
    """
    if opset < 17:
        raise ExportError(f"--opset {opset}: use opset 17 or later.")
    source = Path(checkpoint).expanduser()
    ckpt_path, run_dir, run_config, config_origin = resolve_source(source)
    out_path = Path(out).expanduser() if out is not None else default_output(ckpt_path, run_dir, source)
    if out_path.suffix != ".onnx":
        raise ExportError(f"--out {out_path}: the file name must end in .onnx.")
    int8_path = out_path.with_name(out_path.stem + ".int8.onnx")
    for path in (out_path, int8_path) if int8 else (out_path,):
        _check_output(path, force)

    net, info = load_network(ckpt_path)
    ds_cfg, ds_origin = dataset_config(info, run_config, dataset)
    name = str(ds_cfg["name"])
    input_shape = (int(ds_cfg["channels"]), int(ds_cfg["image_size"]), int(ds_cfg["image_size"]))
    data = load_eval_data(ds_cfg, data_dir, run_config, max_images) if use_data else None
    have_data = data is not None and "test" in data
    if have_data:
        images, labels = data["test"]
        data_note = f"test split ({len(images)} images from {data['data_dir']})"
    else:
        images = torch.randn(RANDOM_INPUTS, *input_shape, generator=torch.Generator().manual_seed(0))
        labels = None
        why = (
            "data not used"
            if not use_data
            else f"no {name} data found" + (f" in {', '.join(data['tried'])}" if data else "")
        )
        data_note = f"{RANDOM_INPUTS} random inputs ({why})"
    factors = ds_cfg.get("factors") if isinstance(ds_cfg.get("factors"), Mapping) else None
    names = label_names(name, Path(data["data_dir"]) if have_data else None, (factors or {}).get("classes"))
    if names is not None and len(names) != int(ds_cfg["num_classes"]):
        names = None
    method = method_of(info, run_config)

    report: dict[str, Any] = {
        "ok": False,
        "source": str(source),
        "checkpoint": str(ckpt_path),
        "out": str(out_path),
        "format": "onnx",
        "opset": opset,
        "dataset": name,
        "dataset_config_from": ds_origin if ds_origin != "run config" else config_origin,
        "method": method,
        "net": info["net"],
        "input_shape": list(input_shape),
        "mean": [float(m) for m in ds_cfg["mean"]],
        "std": [float(s) for s in ds_cfg["std"]],
        "left_out": info["skipped_keys"],
        "run_status": (
            (_read_yaml_or_json(run_dir / "results.json") or {}).get("status")
            if run_dir and (run_dir / "results.json").is_file()
            else None
        ),
        "params": count_parameters(net),
        "params_bn_folded": onnx.folded_parameter_count(net),
    }
    metadata = onnx.onnx_metadata(
        dataset=name,
        num_classes=int(ds_cfg["num_classes"]),
        input_shape=input_shape,
        mean=ds_cfg["mean"],
        std=ds_cfg["std"],
        net=info["net"],
        method=method,
        source_checkpoint=str(ckpt_path),
        epoch=info["epoch"],
        label_names=names,
        factors=factors,
    )
    if data is not None and "val" in data:
        calibration = data["val"][0][:CALIBRATION_IMAGES]
        calibrated_on = f"{len(calibration)} validation images"
    else:
        calibration = torch.randn(CALIBRATION_IMAGES // 4, *input_shape, generator=torch.Generator().manual_seed(1))
        calibrated_on = f"{len(calibration)} random inputs (no data: accuracy unknown, calibration not representative)"
    try:
        report.update(
            onnx.export_checked(
                net,
                out_path,
                images,
                labels,
                metadata=metadata,
                doc_string=doc_string(method, str(info["net"]["arch"]), name),
                data="test split" if have_data else "random",
                data_note=data_note,
                opset=opset,
                atol=atol,
                rtol=rtol,
                int8_out=int8_path if int8 else None,
                calibration=calibration,
                calibrated_on=calibrated_on,
                latency_repeats=latency_repeats,
            )
        )
    except OSError as exc:
        raise ExportError(f"cannot write {out_path} ({exc.strerror or exc}); choose a writable --out path.") from None
    if not report["ok"]:
        report["out"] = None
    return report


# -- command line --------------------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def format_report(report: Mapping[str, Any]) -> str:
    v = report.get("verification", {})
    lines = [
        f"source      {report['checkpoint']}",
        f"network     {report['net']['arch']} ({report['net'].get('stem', 'imagenet')} stem), "
        f"{report['params']:,} parameters"
        f" ({report['params_bn_folded']:,} with BatchNorm folded; "
        f"ONNX initializers {report.get('onnx_initializer_params', 0):,})",
        f"left out    {', '.join(k + '.*' for k in report['left_out'])} "
        "(training machinery, not part of the deployable network)"
        if report["left_out"]
        else "left out    nothing (the checkpoint holds the network alone)",
        f"dataset     {report['dataset']}, input {report['input_shape']}, mean {report['mean']}, std {report['std']} "
        f"(from {report['dataset_config_from']})",
        f"checked on  {v.get('data_note', '?')}",
        f"max |logit difference| {v.get('max_abs_logit_diff', float('nan')):.3g} "
        f"(tolerance {v.get('tolerance', float('nan')):.3g}), "
        f"top-1 agreement {_pct(v.get('top1_agreement'))} ({v.get('top1_disagreements', '?')} differ, "
        f"{v.get('disagreements_beyond_tie', '?')} beyond a tie)",
        f"accuracy    PyTorch {_pct(v.get('accuracy_pytorch'))}, onnxruntime {_pct(v.get('accuracy_onnx'))}",
    ]
    if report.get("run_status") not in (None, "completed"):
        lines.insert(
            1,
            f"note        the run's results.json says status={report['run_status']!r}: "
            "this is its best checkpoint so far",
        )
    if report.get("int8"):
        q = report["int8"]
        lines += [
            f"int8        {q['out']} ({q['int8_mb']} MB vs {q['fp32_mb']} MB), calibrated on {q['calibrated_on']}",
            f"            accuracy fp32 {_pct(q['accuracy_fp32'])}, int8 {_pct(q['accuracy_int8'])}; "
            f"top-1 agreement with fp32 {_pct(q['top1_agreement_with_fp32'])}",
            f"            batch-1 latency (onnxruntime, {q['latency_ms_b1_fp32']['threads']} threads, "
            "median / p90): fp32 "
            f"{q['latency_ms_b1_fp32']['median']:.2f} / {q['latency_ms_b1_fp32']['p90']:.2f} ms, int8 "
            f"{q['latency_ms_b1_int8']['median']:.2f} / {q['latency_ms_b1_int8']['p90']:.2f} ms",
        ]
    if report["ok"]:
        lines.append(f"wrote       {report['out']} ({report.get('out_mb')} MB)")
    else:
        lines.append("FAILED      onnxruntime and PyTorch disagree beyond tolerance; nothing was written")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kd_lightning.export", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "source", help="a run folder (with results.json and checkpoints/) or a .ckpt written by kd_lightning.train"
    )
    parser.add_argument(
        "--out", help="output .onnx file (default: <run>/export/model.onnx, or the .ckpt's path with .onnx)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    parser.add_argument(
        "--data-dir",
        help="folder holding the dataset (default: the run's data_dir, $KD_DATA_DIR, ./data, ../shared/datasets)",
    )
    parser.add_argument("--dataset", help="dataset name, for a checkpoint that does not record it")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write <out>.int8.onnx, statically quantized, with accuracy and latency",
    )
    parser.add_argument("--opset", type=int, default=onnx.DEFAULT_OPSET)
    parser.add_argument("--max-images", type=int, help="check on at most this many test images")
    parser.add_argument(
        "--random-inputs",
        action="store_true",
        help="check on random inputs even when the data is available (fast; no accuracy)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = export_onnx(
            args.source,
            args.out,
            force=args.force,
            data_dir=args.data_dir,
            dataset=args.dataset,
            int8=args.int8,
            opset=args.opset,
            max_images=args.max_images,
            use_data=not args.random_inputs,
        )
    except ExportError as exc:
        print(f"kd_lightning.export: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
