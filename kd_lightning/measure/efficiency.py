"""What a network costs to keep and to run: parameters, FLOPs, file size, latency and throughput.

One implementation for the training entry point (``results.json["efficiency"]``), the benchmark and
the report, so every number of the kind "the student is N x cheaper" comes from the same code.

- :func:`count_parameters` - every parameter of the module (trainable or not).
- :func:`count_flops` / :func:`flops_per_image` - FLOPs counted by torch's ``FlopCounterMode``: one
  multiply-add is 2 FLOPs; convolutions and matrix products are counted, element-wise work
  (BatchNorm, ReLU, pooling, residual adds) and convolution / linear biases are not. For a ResNet that
  is ``sum over conv/linear layers of 2 * Cin/groups * kH * kW * Cout * Hout * Wout`` (the tests check
  exactly that). ``flops_per_image`` is the forward pass of one image in eval mode without gradients.
- :func:`checkpoint_size_mb` - size of a file on disk in MB (10^6 bytes).
- :func:`cpu_latency` / :func:`cpu_throughput` - wall-clock time of the forward pass on the CPU, under
  ``torch.inference_mode`` in eval mode, timed with ``time.perf_counter`` after warm-up calls: median
  and 90th percentile per call (batch 1), and images/s at batch 64 (median batch time).
- :func:`gpu_latency` / :func:`gpu_throughput` - the same on a CUDA device at a given precision
  (Lightning's precision names: ``32-true``, ``bf16-mixed``, ``16-mixed``, ``bf16-true``, ``16-true``),
  with ``torch.cuda.synchronize()`` around every timed call.
- :func:`measure_efficiency` - all of the above in the dict stored in ``results.json``.
- :func:`time_calls` - the one timing loop (warm-up, synchronise, ``perf_counter``), also used for
  onnxruntime's latency (:mod:`kd_lightning.measure.onnx`).

Timings depend on the machine and on what else runs on it: compare numbers measured in one process on
one machine, and quote the thread count recorded beside them.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from kd_lightning.models import count_parameters  # re-exported: one parameter count for runs and costs

__all__ = [
    "PRECISIONS",
    "lightning_precision",
    "checkpoint_size_mb",
    "count_flops",
    "count_parameters",
    "cpu_latency",
    "cpu_throughput",
    "flops_per_image",
    "gpu_latency",
    "gpu_throughput",
    "measure_efficiency",
    "percentile",
    "time_calls",
]

#: Lightning precision name -> (dtype, autocast?) used by the GPU timings
PRECISIONS: dict[str, tuple[torch.dtype, bool]] = {
    "32-true": (torch.float32, False),
    "32": (torch.float32, False),
    "bf16-mixed": (torch.bfloat16, True),
    "16-mixed": (torch.float16, True),
    "bf16-true": (torch.bfloat16, False),
    "16-true": (torch.float16, False),
    "16": (torch.float16, True),  # Lightning reads the short names as the mixed ones
    "bf16": (torch.bfloat16, True),
}


def lightning_precision(value: str | int | None) -> str:
    """``trainer.precision`` as a key of :data:`PRECISIONS` (``None``: Lightning's default, ``32-true``).

    Raises ``ValueError`` naming the key for a precision this module cannot time."""
    name = "32-true" if value is None else str(value)
    if name not in PRECISIONS:
        raise ValueError(f"trainer.precision={value!r}: choose one of {sorted(PRECISIONS)}")
    return name


#: (warmup, repeats) of the full and of the quick measurement
LATENCY_REPEATS = {False: (10, 50), True: (1, 3)}
THROUGHPUT_REPEATS = {False: (2, 10), True: (1, 2)}
#: a full measurement stops repeating after this many seconds (at least MIN_REPEATS calls are timed)
DEFAULT_BUDGET_S = 20.0
MIN_REPEATS = 3


# -- size ----------------------------------------------------------------------------------------
def checkpoint_size_mb(path: str | os.PathLike) -> float:
    """Size of the file at ``path`` in MB (10^6 bytes)."""
    return os.path.getsize(path) / 1e6


# -- FLOPs ---------------------------------------------------------------------------------------
def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """FLOPs of ``fn(*args, **kwargs)`` by ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add = 2).

    Counts whatever the call does: a forward, or a whole training step (forward and backward; the
    optimizer's element-wise update is not counted).
    """
    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


@contextlib.contextmanager
def eval_mode(net: nn.Module) -> Iterator[nn.Module]:
    """``net`` in eval mode inside the block; its previous mode is restored afterwards."""
    was_training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was_training)


def _device_of(net: nn.Module) -> torch.device:
    tensor = next(iter(net.parameters()), None)
    if tensor is None:
        tensor = next(iter(net.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _check_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape is one image's (channels, height, width), got {tuple(input_shape)}")
    return shape


def flops_per_image(net: nn.Module, input_shape: Sequence[int]) -> int:
    """Forward FLOPs of ``net`` for one image of ``input_shape`` = (C, H, W), in eval mode, without gradients."""
    shape = _check_shape(input_shape)
    x = torch.zeros(1, *shape, device=_device_of(net))
    with eval_mode(net), torch.no_grad():
        return count_flops(net, x)


# -- timing helpers ------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between order statistics (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(position), math.ceil(position)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (position - lo)


@contextlib.contextmanager
def _num_threads(threads: int | None) -> Iterator[int]:
    """Use ``threads`` intra-op threads inside the block (``None``: leave torch's setting); yields the count used."""
    previous = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(int(threads))
    try:
        yield torch.get_num_threads()
    finally:
        if threads is not None:
            torch.set_num_threads(previous)


def _no_sync() -> None:
    pass


def time_calls(
    call: Callable[[], Any],
    warmup: int,
    repeats: int,
    sync: Callable[[], None] = _no_sync,
    budget_s: float | None = None,
) -> list[float]:
    """Seconds per call of ``repeats`` timed calls after ``warmup`` untimed ones; stops early past ``budget_s``."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for _ in range(warmup):
        call()
    sync()
    times: list[float] = []
    started = time.perf_counter()
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - t0)
        if budget_s is not None and len(times) >= MIN_REPEATS and time.perf_counter() - started > budget_s:
            break
    return times


def latency_summary(times: list[float], threads: int) -> dict[str, Any]:
    """Seconds per call -> milliseconds: ``{"median", "p90", "threads", "repeats"}``."""
    ms = [t * 1e3 for t in times]
    return {"median": statistics.median(ms), "p90": percentile(ms, 90), "threads": int(threads), "repeats": len(ms)}


def _timed_forward(
    net: nn.Module,
    input_shape: Sequence[int],
    batch_size: int,
    warmup: int,
    repeats: int,
    device: torch.device,
    precision: str,
    budget_s: float | None,
) -> list[float]:
    """Seconds per forward of a copy of ``net`` on ``device`` at ``precision`` (``net`` itself is not moved)."""
    shape = _check_shape(input_shape)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {sorted(PRECISIONS)}")
    dtype, autocast = PRECISIONS[precision]
    model = net if _device_of(net) == device and (autocast or dtype == torch.float32) else copy.deepcopy(net).to(device)
    if not autocast and dtype != torch.float32:
        model = model.to(dtype)
    x = torch.randn(batch_size, *shape, device=device, dtype=torch.float32 if autocast else dtype)
    cuda = device.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    cast = torch.autocast(device.type, dtype=dtype) if autocast else contextlib.nullcontext()

    def call() -> None:
        with cast:
            model(x)

    with eval_mode(model), torch.inference_mode():
        return time_calls(call, warmup, repeats, sync, budget_s)


# -- CPU -----------------------------------------------------------------------------------------
def cpu_latency(
    net: nn.Module,
    input_shape: Sequence[int],
    batch_size: int = 1,
    warmup: int = 10,
    repeats: int = 50,
    threads: int | None = None,
    budget_s: float | None = None,
) -> dict[str, Any]:
    """Milliseconds per forward call on the CPU: ``{"median", "p90", "threads", "repeats"}``.

    Eval mode, ``torch.inference_mode``, fp32, ``warmup`` untimed calls then ``repeats`` timed ones with
    ``time.perf_counter`` (fewer when ``budget_s`` seconds have passed, at least 3). ``threads`` sets
    torch's intra-op thread count for the measurement (``None``: the current setting); the count used
    is returned. A net on another device is copied to the CPU; ``net`` itself is left as it was.
    """
    with _num_threads(threads) as used:
        times = _timed_forward(net, input_shape, batch_size, warmup, repeats, torch.device("cpu"), "32-true", budget_s)
    return latency_summary(times, used)


def cpu_throughput(
    net: nn.Module,
    input_shape: Sequence[int],
    batch_size: int = 64,
    warmup: int = 2,
    repeats: int = 10,
    threads: int | None = None,
    budget_s: float | None = None,
) -> float:
    """Images per second of the forward pass on the CPU at ``batch_size`` (batch size / median batch time)."""
    with _num_threads(threads):
        times = _timed_forward(net, input_shape, batch_size, warmup, repeats, torch.device("cpu"), "32-true", budget_s)
    return batch_size / statistics.median(times)


# -- GPU -----------------------------------------------------------------------------------------
def _cuda_device(device: torch.device | str | None) -> torch.device:
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device is available: use cpu_latency / cpu_throughput")
    device = torch.device(device if device is not None else "cuda")
    if device.type != "cuda":
        raise ValueError(f"device must be a CUDA device, got {device}")
    # an explicit index, so that it compares equal to the device of tensors placed there
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())


def gpu_latency(
    net: nn.Module,
    input_shape: Sequence[int],
    batch_size: int = 1,
    warmup: int = 20,
    repeats: int = 100,
    precision: str = "32-true",
    device: torch.device | str | None = None,
    budget_s: float | None = None,
) -> dict[str, Any]:
    """Milliseconds per forward call on a CUDA device at ``precision``: ``{"median", "p90", "precision", "repeats"}``.

    Like :func:`cpu_latency`, with ``torch.cuda.synchronize()`` before and after every timed call
    (``*-mixed``: autocast to bf16/fp16 with fp32 weights; ``*-true``: weights and input in that dtype).
    """
    device = _cuda_device(device)
    times = _timed_forward(net, input_shape, batch_size, warmup, repeats, device, precision, budget_s)
    ms = [t * 1e3 for t in times]
    return {"median": statistics.median(ms), "p90": percentile(ms, 90), "precision": precision, "repeats": len(ms)}


def gpu_throughput(
    net: nn.Module,
    input_shape: Sequence[int],
    batch_size: int = 64,
    warmup: int = 5,
    repeats: int = 30,
    precision: str = "32-true",
    device: torch.device | str | None = None,
    budget_s: float | None = None,
) -> float:
    """Images per second of the forward pass on a CUDA device at ``precision`` and ``batch_size``."""
    device = _cuda_device(device)
    times = _timed_forward(net, input_shape, batch_size, warmup, repeats, device, precision, budget_s)
    return batch_size / statistics.median(times)


# -- all of it -----------------------------------------------------------------------------------
def measure_efficiency(
    net: nn.Module,
    input_shape: Sequence[int],
    checkpoint: str | os.PathLike | None = None,
    quick: bool = False,
    *,
    threads: int | None = None,
    precision: str | int | None = "32-true",
    gpu: bool | None = None,
    budget_s: float | None = DEFAULT_BUDGET_S,
) -> dict[str, Any]:
    """Size and speed of ``net`` for images of ``input_shape`` = (C, H, W), as stored in ``results.json``::

        {"params": int, "flops_per_image": int, "checkpoint_mb": float | None,
         "latency_ms_b1": {"median": float, "p90": float, "threads": int, "repeats": int},
         "throughput_b64_img_s": float, "device": "cpu",
         "gpu": None | {"name": str, "precision": str,
                        "latency_ms_b1": {"median", "p90", "precision", "repeats"},
                        "throughput_b64_img_s": float}}

    ``checkpoint``: a file whose size is reported as ``checkpoint_mb`` (``None``: not reported).
    ``quick``: a few repeats only (tests, smoke runs). ``threads``: torch intra-op threads for the CPU
    timings (``None``: torch's current setting). ``gpu``: measure on CUDA too (``None``: when
    available), at ``precision``. ``budget_s`` bounds each timing loop (seconds, after warm-up).
    ``net`` is not modified: it is timed on a copy, and its train/eval mode is restored.
    """
    shape = _check_shape(input_shape)
    precision = lightning_precision(precision)  # checked before any timing, on CPU-only machines too
    lat_warmup, lat_repeats = LATENCY_REPEATS[bool(quick)]
    tp_warmup, tp_repeats = THROUGHPUT_REPEATS[bool(quick)]
    cpu_net = copy.deepcopy(net).to("cpu").float() if _device_of(net).type != "cpu" else net
    with eval_mode(cpu_net):
        result: dict[str, Any] = {
            "params": count_parameters(net),
            "flops_per_image": flops_per_image(cpu_net, shape),
            "checkpoint_mb": round(checkpoint_size_mb(checkpoint), 3) if checkpoint is not None else None,
            "latency_ms_b1": cpu_latency(cpu_net, shape, 1, lat_warmup, lat_repeats, threads, budget_s),
            "throughput_b64_img_s": cpu_throughput(cpu_net, shape, 64, tp_warmup, tp_repeats, threads, budget_s),
            "device": "cpu",
            "gpu": None,
        }
    if gpu is None:
        gpu = torch.cuda.is_available()
    if gpu:
        device = _cuda_device(None)
        gl_warmup, gl_repeats = (1, 3) if quick else (20, 100)
        gt_warmup, gt_repeats = (1, 2) if quick else (5, 30)
        gpu_net = copy.deepcopy(cpu_net).to(device)
        result["gpu"] = {
            "name": torch.cuda.get_device_name(device),
            "precision": precision,
            "latency_ms_b1": gpu_latency(gpu_net, shape, 1, gl_warmup, gl_repeats, precision, device, budget_s),
            "throughput_b64_img_s": gpu_throughput(
                gpu_net, shape, 64, gt_warmup, gt_repeats, precision, device, budget_s
            ),
        }
        del gpu_net
        torch.cuda.empty_cache()
    return result
