"""A network as an ONNX file that onnxruntime runs like PyTorch does, and an int8 copy of it.

- :func:`export_checked` - export (opset >= 17, dynamic batch axis, BatchNorm folded into the
  convolutions), run onnxruntime beside PyTorch on the given images (:func:`compare_logits`), and
  keep the file only when they agree; the file carries its own description in ``metadata_props``
  (:func:`onnx_metadata`).
- :func:`quantize_int8` / :func:`int8_copy` - onnxruntime static post-training quantization (QDQ,
  int8 per-channel weights, uint8 activations, MinMax calibration), its accuracy and latency.
- :func:`ort_latency` - batch-1 latency under onnxruntime, timed by the same loop as the PyTorch
  latencies (:func:`kd_lightning.measure.efficiency.time_calls`).

Modules and tensors in, dicts out; which checkpoint, config or data they come from is the caller's
business (:mod:`kd_lightning.run.byproducts` for a finished run, :mod:`kd_lightning.tools.export` for a file).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from kd_lightning.measure.efficiency import count_parameters, latency_summary, time_calls

DEFAULT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "logits"
INPUT_DESCRIPTION = "input: float32 NCHW, pixels scaled to [0,1] then (x-mean)/std"
OUTPUT_DESCRIPTION = "logits: float32 (batch, num_classes), unnormalised; softmax gives class probabilities"
#: images per forward call when comparing PyTorch and onnxruntime
EVAL_BATCH = 256
#: metadata keys of the check, copied from the verification into the file
VERIFIED_KEYS = ("data", "images", "max_abs_logit_diff", "top1_agreement", "accuracy_pytorch", "accuracy_onnx")


# -- the network as a file ----------------------------------------------------------------------
def torch_export(
    net: nn.Module, input_shape: Sequence[int], path: str | os.PathLike, opset: int = DEFAULT_OPSET
) -> None:
    """``net`` (eval mode, on the CPU) to ONNX at ``path``, with a dynamic batch axis; constants folded."""
    example = torch.zeros(2, *input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            net,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )


def set_metadata(model: Any, props: Mapping[str, Any]) -> None:
    """Add or replace ``metadata_props`` of an ``onnx.ModelProto``; non-strings are stored as JSON."""
    existing = {p.key: p for p in model.metadata_props}
    for key, value in props.items():
        text = value if isinstance(value, str) else json.dumps(value)
        if key in existing:
            existing[key].value = text
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, text


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file as a plain dict of strings."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def onnx_metadata(
    *,
    dataset: str,
    num_classes: int,
    input_shape: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    net: Mapping[str, Any],
    method: str | None,
    source_checkpoint: str,
    epoch: int | None,
    label_names: Sequence[str] | None = None,
    factors: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What an exported file says about itself (docs/deployment.md); ``verified`` is added by :func:`export_checked`."""
    import onnx

    metadata: dict[str, Any] = {
        "kd_lightning.format": "1",
        "dataset": dataset,
        "num_classes": str(num_classes),
        "input_shape": ["batch", *input_shape],
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "input": INPUT_DESCRIPTION,
        "output": OUTPUT_DESCRIPTION,
        "arch": str(net["arch"]),
        "stem": str(net.get("stem", "imagenet")),
        "method": method or "unknown",
        "source_checkpoint": source_checkpoint,
        "epoch": str(epoch),
        "exported_by": f"kd_lightning.export (torch {torch.__version__}, onnx {onnx.__version__})",
    }
    if label_names:
        metadata["label_names"] = list(label_names)
    if factors:
        metadata["dataset_factors"] = dict(factors)  # a data-factor run (kd_lightning.datasets.factors)
    return metadata


def initializer_count(path: str | os.PathLike) -> int:
    """Number of weight elements stored in an ONNX graph's initializers."""
    import onnx

    model = onnx.load(str(path))
    return int(sum(int(np.prod(t.dims)) if len(t.dims) else 1 for t in model.graph.initializer))


def folded_parameter_count(net: nn.Module) -> int:
    """Parameters of ``net`` once each BatchNorm is folded into the convolution before it (as the export does).

    A BatchNorm's scale and shift (2 x C) become the convolution's bias (C): C fewer elements per BatchNorm.
    """
    batchnorms = (m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
    return count_parameters(net) - sum(m.num_features for m in batchnorms)


# -- running it ----------------------------------------------------------------------------------
def session(path: str | os.PathLike, threads: int | None = None) -> Any:
    """An onnxruntime CPU session, quiet, with ``threads`` intra-op threads (``None``: onnxruntime's choice)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def ort_logits(sess: Any, images: Tensor) -> np.ndarray:
    """onnxruntime's logits for ``images``, ``EVAL_BATCH`` at a time."""
    batches = (images[i : i + EVAL_BATCH].numpy() for i in range(0, len(images), EVAL_BATCH))
    return np.concatenate([sess.run(None, {INPUT_NAME: x})[0] for x in batches])


def torch_logits(net: nn.Module, images: Tensor) -> np.ndarray:
    """PyTorch's logits for ``images``, ``EVAL_BATCH`` at a time, in inference mode."""
    with torch.inference_mode():
        return torch.cat([net(images[i : i + EVAL_BATCH]) for i in range(0, len(images), EVAL_BATCH)]).numpy()


def compare_logits(reference: np.ndarray, other: np.ndarray, atol: float, rtol: float) -> dict[str, Any]:
    """Largest absolute difference and top-1 agreement; ``ok`` when the difference is within
    ``tolerance = atol + rtol * max|reference|`` and every top-1 disagreement is a near tie (the
    reference's margin between the two classes at most ``2 * tolerance``)."""
    diff = float(np.abs(reference - other).max()) if reference.size else 0.0
    tolerance = atol + rtol * (float(np.abs(reference).max()) if reference.size else 0.0)
    top_ref, top_other = reference.argmax(1), other.argmax(1)
    differ = np.nonzero(top_ref != top_other)[0]
    margins = reference[differ, top_ref[differ]] - reference[differ, top_other[differ]]
    real = int((margins > 2 * tolerance).sum())
    return {
        "max_abs_logit_diff": diff,
        "tolerance": tolerance,
        "top1_agreement": float((top_ref == top_other).mean()) if len(top_ref) else 1.0,
        "top1_disagreements": len(differ),
        "disagreements_beyond_tie": real,
        "ok": diff <= tolerance and real == 0,
    }


def accuracy(logits: np.ndarray, labels: Tensor | None) -> float | None:
    """Top-1 accuracy, ``None`` without labels."""
    return None if labels is None else float((logits.argmax(1) == labels.numpy()).mean())


def ort_latency(
    path: str | os.PathLike, input_shape: Sequence[int], warmup: int = 10, repeats: int = 50, threads: int | None = None
) -> dict[str, Any]:
    """Milliseconds per batch-1 call under onnxruntime (CPU): ``{"median", "p90", "threads", "repeats"}``."""
    threads = threads or torch.get_num_threads()
    sess = session(path, threads)
    x = np.random.default_rng(0).standard_normal((1, *input_shape)).astype(np.float32)
    return latency_summary(time_calls(lambda: sess.run(None, {INPUT_NAME: x}), warmup, repeats), threads)


# -- export and check ----------------------------------------------------------------------------
def export_checked(
    net: nn.Module,
    out: str | os.PathLike,
    images: Tensor,
    labels: Tensor | None,
    *,
    metadata: Mapping[str, Any],
    doc_string: str,
    data: str,
    data_note: str,
    opset: int = DEFAULT_OPSET,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    int8_out: str | os.PathLike | None = None,
    calibration: Tensor | None = None,
    calibrated_on: str = "",
    latency_repeats: int = 50,
) -> dict[str, Any]:
    """Export ``net`` (eval mode, CPU, fp32) to ``out`` and check onnxruntime against PyTorch on ``images``.

    Returns ``{"ok", "onnx_initializer_params", "verification"}`` and, when written, ``out_mb`` (and
    ``int8``: :func:`int8_copy` of the file, when ``int8_out`` is given). ``verification`` is
    :func:`compare_logits` plus ``images``, ``data`` (e.g. "test split"), ``data_note`` and both
    accuracies (``None`` without ``labels``). Nothing is written when the check fails: the file is
    built under a temporary name beside ``out`` and renamed at the end.
    """
    import onnx

    out = Path(out)
    input_shape = tuple(int(s) for s in images.shape[1:])
    result: dict[str, Any] = {"ok": False}
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}.onnx")
    try:
        torch_export(net, input_shape, tmp, opset)
        result["onnx_initializer_params"] = initializer_count(tmp)
        reference, onnx_out = torch_logits(net, images), ort_logits(session(tmp), images)
        verification = compare_logits(reference, onnx_out, atol, rtol)
        verification.update(
            images=len(images),
            data=data,
            data_note=data_note,
            accuracy_pytorch=accuracy(reference, labels),
            accuracy_onnx=accuracy(onnx_out, labels),
        )
        result["verification"] = verification
        result["ok"] = bool(verification["ok"])
        if not result["ok"]:
            return result
        model = onnx.load(str(tmp))
        full_metadata = {**metadata, "verified": {k: verification[k] for k in VERIFIED_KEYS}}
        model.doc_string = doc_string
        set_metadata(model, full_metadata)
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        if int8_out is not None:
            if calibration is None:
                raise ValueError("int8_out needs calibration images")
            result["int8"] = int8_copy(
                tmp,
                Path(int8_out),
                calibration,
                calibrated_on,
                images,
                labels,
                onnx_out,
                full_metadata,
                latency_repeats,
            )
        tmp.replace(out)
        result["out_mb"] = round(out.stat().st_size / 1e6, 3)
        return result
    finally:
        tmp.unlink(missing_ok=True)


def quantize_int8(fp32_path: Path, out: Path, calibration: Tensor, batch: int = 32) -> str:
    """Static post-training quantization (QDQ, int8 per-channel weights, uint8 activations, MinMax) of
    ``fp32_path``, calibrated on ``calibration`` (normalised images, as the model takes them)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([calibration[i : i + batch].numpy() for i in range(0, len(calibration), batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            images = next(self.batches, None)
            return None if images is None else {INPUT_NAME: images}

    pre = out.with_name(out.name + ".pre.onnx")
    try:
        with warnings.catch_warnings(), _quiet_logging():
            warnings.simplefilter("ignore")
            quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
    finally:
        pre.unlink(missing_ok=True)
    return "onnxruntime static PTQ: QDQ, int8 per-channel weights, uint8 activations, MinMax calibration"


def int8_copy(
    fp32_path: Path,
    out: Path,
    calibration: Tensor,
    calibrated_on: str,
    images: Tensor,
    labels: Tensor | None,
    fp32_logits: np.ndarray,
    metadata: Mapping[str, Any],
    repeats: int,
) -> dict[str, Any]:
    """:func:`quantize_int8` of ``fp32_path`` to ``out``: accuracy and agreement with fp32 on ``images``,
    sizes, and batch-1 latency of both (:func:`ort_latency`, ``repeats`` timed calls)."""
    import onnx

    input_shape = tuple(int(s) for s in images.shape[1:])
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}.onnx")
    try:
        method = quantize_int8(fp32_path, tmp, calibration)
        model = onnx.load(str(tmp))
        logits = ort_logits(session(tmp), images)
        agreement = float((logits.argmax(1) == fp32_logits.argmax(1)).mean())
        verified = {
            "data": metadata["verified"]["data"],
            "images": len(images),
            "top1_agreement_with_fp32": agreement,
            "accuracy_onnx": accuracy(logits, labels),
        }
        set_metadata(
            model, {**metadata, "quantization": f"{method}; calibrated on {calibrated_on}", "verified": verified}
        )
        onnx.save(model, str(tmp))
        warmup = max(1, repeats // 5)
        result = {
            "out": str(out),
            "method": method,
            "calibrated_on": calibrated_on,
            "accuracy_fp32": accuracy(fp32_logits, labels),
            "accuracy_int8": accuracy(logits, labels),
            "top1_agreement_with_fp32": agreement,
            "max_abs_logit_diff_vs_fp32": float(np.abs(logits - fp32_logits).max()),
            "latency_ms_b1_fp32": ort_latency(fp32_path, input_shape, warmup, repeats),
            "latency_ms_b1_int8": ort_latency(tmp, input_shape, warmup, repeats),
        }
        tmp.replace(out)
        result["fp32_mb"], result["int8_mb"] = (
            round(fp32_path.stat().st_size / 1e6, 3),
            round(out.stat().st_size / 1e6, 3),
        )
        return result
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
