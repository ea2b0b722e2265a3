"""Export a trained network to ONNX and check it: ``python -m kd_lightning.export <run folder | .ckpt>``.

What is exported is the trained network alone (the ``net.*`` weights of the checkpoint, read by
:func:`kd_lightning.models.load_network`, the one reader of a checkpoint's network): a student's frozen teacher
and IKD's 1x1 adapters are training machinery and are not part of the deployable model.

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

This file is the command line and the orchestration of one export. Finding the checkpoint, its run
config and its data is :mod:`kd_lightning.run.finished`; the export and the check are
:mod:`kd_lightning.measure.onnx`; the ONNX description and label names are
:mod:`kd_lightning.run.measuring`, shared with a training run, which exports itself the same way, in memory
(:mod:`kd_lightning.run.byproducts`).

Exit codes: 0 exported and verified, 1 the check failed (nothing written), 2 bad input (missing file,
not a kd-lightning checkpoint, output exists without ``--force``, unwritable output).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from kd_lightning.measure import onnx
from kd_lightning.measure.efficiency import count_parameters
from kd_lightning.measure.onnx import (  # noqa: F401  (the export's API)
    folded_parameter_count,
    initializer_count,
    read_metadata,
)
from kd_lightning.models import CheckpointError, load_network
from kd_lightning.run.finished import (
    ExportError,
    dataset_config,
    default_output,
    load_eval_data,
    method_of,
    resolve_source,
    run_status,
)
from kd_lightning.run.measuring import onnx_description

RANDOM_INPUTS = 16
CALIBRATION_IMAGES = 256


# -- the output -------------------------------------------------------------------------------------
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

    try:  # resolve_source found the file; anything but a kd-lightning checkpoint is bad input (exit code 2)
        net, info = load_network(ckpt_path)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None
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
        "run_status": run_status(run_dir),
        "params": count_parameters(net),
        "params_bn_folded": onnx.folded_parameter_count(net),
    }
    data_dir = Path(data["data_dir"]) if have_data else None
    description = onnx_description(ds_cfg, info["net"], method, ckpt_path, info["epoch"], input_shape, data_dir)
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
                **description,
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
