"""Export a trained network to ONNX and check it: ``python -m kd_lightning.export <run folder | .ckpt>``.

What is exported is the trained network alone (the ``net.*`` weights of the checkpoint, rebuilt with
:func:`~kd_lightning.models.build_resnet` from ``hyper_parameters["net"]``): a student's frozen teacher
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

Exit codes: 0 exported and verified, 1 the check failed (nothing written), 2 bad input (missing file,
not a kd-lightning checkpoint, output exists without ``--force``, unwritable output).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import statistics
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from kd_lightning.config import CONF_DIR
from kd_lightning.datasets.locations import data_dir_candidates
from kd_lightning.efficiency import count_parameters, percentile
from kd_lightning.models import build_resnet

DATASET_CONF_DIR = CONF_DIR / "dataset"
FORMATS = ("onnx",)
DEFAULT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "logits"
INPUT_DESCRIPTION = "input: float32 NCHW, pixels scaled to [0,1] then (x-mean)/std"
OUTPUT_DESCRIPTION = "logits: float32 (batch, num_classes), unnormalised; softmax gives class probabilities"
#: label names by dataset (CIFAR100's are read from the data's meta file when it is available)
LABEL_NAMES: dict[str, list[str]] = {
    "mnist": [str(i) for i in range(10)],
    "usps": [str(i) for i in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}
DATAMODULES = {
    "mnist": "MNISTDataModule",
    "fashion_mnist": "FashionMNISTDataModule",
    "usps": "USPSDataModule",
    "cifar10": "CIFAR10DataModule",
    "cifar100": "CIFAR100DataModule",
}
#: DataModule arguments taken from a dataset config (the rest are fixed for evaluation)
_DATAMODULE_KEYS = ("name", "num_classes", "channels", "image_size", "mean", "std", "val_fraction", "split_seed", "top_k")
RANDOM_INPUTS = 16
CALIBRATION_IMAGES = 256
EVAL_BATCH = 256


class ExportError(RuntimeError):
    """Bad input: the source is not a kd-lightning checkpoint, or the output cannot be written (exit code 2)."""


# -- finding and reading the checkpoint ----------------------------------------------------------
def _read_yaml_or_json(path: Path) -> dict[str, Any] | None:
    from omegaconf import OmegaConf

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
        f"{path}: no checkpoint found (looked for results.json's best_checkpoint, checkpoints/best-*.ckpt and teacher.ckpt). "
        "Pass a finished kd_lightning.train run folder, or the .ckpt file itself."
    )


def load_network(checkpoint: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """The trained network of a kd-lightning checkpoint (``net.*`` only), in eval mode, and its hyperparameters.

    Works for teacher, scratch, RKD and IKD module checkpoints and for the teacher registry's
    ``teacher.ckpt``; a teacher's or an adapter's weights in the file are ignored.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise ExportError(f"{path}: no such checkpoint file.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ExportError(
            f"{path}: not readable as a PyTorch checkpoint with weights_only=True ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "Pass a .ckpt written by kd_lightning.train."
        ) from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, Mapping) else None
    net_cfg = hparams.get("net") if isinstance(hparams, Mapping) else None
    state = ckpt.get("state_dict") if isinstance(ckpt, Mapping) else None
    if not isinstance(net_cfg, Mapping) or not isinstance(state, Mapping):
        raise ExportError(
            f"{path}: not a kd-lightning run checkpoint (it has no hyper_parameters['net'] and state_dict). "
            "Export a checkpoint written by kd_lightning.train (a run's checkpoints/*.ckpt or a registry teacher.ckpt)."
        )
    net_cfg = {k: net_cfg[k] for k in ("arch", "num_classes", "in_channels", "stem") if k in net_cfg}
    try:
        net = build_resnet(**net_cfg)
    except (TypeError, ValueError) as exc:
        raise ExportError(f"{path}: hyper_parameters['net']={net_cfg} does not describe a kd-lightning network ({exc}).") from None
    weights = {k[len("net.") :].replace("_orig_mod.", ""): v for k, v in state.items() if k.startswith("net.")}
    try:
        net.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise ExportError(f"{path}: its net.* weights do not fit {net_cfg} ({str(exc).splitlines()[0]}).") from None
    info = {
        "checkpoint": str(path),
        "net": net_cfg,
        "dataset": hparams.get("dataset"),
        "epoch": ckpt.get("epoch"),
        "global_step": ckpt.get("global_step"),
        "hyper_parameters": dict(hparams),
        "skipped_keys": sorted({k.split(".")[0] for k in state if not k.startswith("net.")}),
    }
    return net.eval(), info


def _method_of(info: Mapping[str, Any], config: Mapping[str, Any] | None) -> str | None:
    name = ((config or {}).get("method") or {}).get("name")
    if name:
        return str(name)
    hp = info["hyper_parameters"]
    if "feature_weight" in hp or "adapters" in info["skipped_keys"]:
        return "ikd"
    if "alpha" in hp:
        return "rkd"
    return None  # teacher and scratch checkpoints look alike


# -- dataset metadata and data -------------------------------------------------------------------
def dataset_config(info: Mapping[str, Any], run_config: Mapping[str, Any] | None, dataset: str | None = None) -> tuple[dict[str, Any], str]:
    """The dataset config (name, num_classes, channels, image_size, mean, std, ...) and where it came from.

    From the run's config when there is one, else from ``conf/dataset/<name>.yaml`` with the name the
    checkpoint records (or ``dataset``). Checked against the network's classes and input channels.
    """
    from omegaconf import OmegaConf

    trained_on = info.get("dataset")
    run_ds = dict((run_config or {}).get("dataset") or {})
    name = dataset or trained_on or run_ds.get("name")
    for other, what in ((trained_on, "the checkpoint's hyper_parameters"), (run_ds.get("name"), "the run config")):
        if name and other and other != name:
            raise ExportError(f"{info['checkpoint']}: dataset {name!r} requested but {what} say(s) {other!r}; drop --dataset or fix it.")
    if not name:
        raise ExportError(f"{info['checkpoint']}: the checkpoint does not record its dataset; pass --dataset NAME (one of {sorted(DATAMODULES)}).")
    if {"mean", "std", "channels", "image_size"} <= run_ds.keys():
        cfg, origin = run_ds, "run config"
    else:
        file = DATASET_CONF_DIR / f"{name}.yaml"
        if not file.is_file():
            raise ExportError(f"{info['checkpoint']}: unknown dataset {name!r}: no {file}. Choose one of {sorted(DATAMODULES)} with --dataset.")
        cfg, origin = dict(OmegaConf.to_container(OmegaConf.load(file), resolve=True)), str(file.relative_to(CONF_DIR.parent))
    net = info["net"]
    problems = []
    if int(cfg["num_classes"]) != int(net["num_classes"]):
        problems.append(f"{net['num_classes']} classes, dataset has {cfg['num_classes']}")
    if int(cfg["channels"]) != int(net.get("in_channels", 3)):
        problems.append(f"{net.get('in_channels', 3)} input channels, dataset has {cfg['channels']}")
    if problems:
        raise ExportError(f"{info['checkpoint']}: the network does not fit dataset {name!r}: " + "; ".join(problems))
    return cfg, origin


def label_names(name: str, data_dir: Path | None, classes: Sequence[int] | None = None) -> list[str] | None:
    """Class names by output index; ``classes``: the class ids a ``dataset.factors.classes`` run kept, in order."""
    names: list[str] | None = None
    if name in LABEL_NAMES:
        names = list(LABEL_NAMES[name])
    elif name == "cifar100" and data_dir is not None and (data_dir / "cifar-100-python" / "meta").is_file():
        try:
            with open(data_dir / "cifar-100-python" / "meta", "rb") as f:
                names = [str(n) for n in pickle.load(f, encoding="latin1")["fine_label_names"]]
        except Exception:
            names = None
    if names is not None and classes:
        names = [names[int(c)] for c in sorted(classes)] if all(0 <= int(c) < len(names) for c in classes) else None
    return names


def make_datamodule(cfg: Mapping[str, Any], data_dir: Path):
    """The project's DataModule for ``cfg`` on ``data_dir``, for evaluation: tensor pipeline, no download, no workers.

    Every config key the DataModule's constructor accepts is passed on (so data factors such as
    ``dataset.factors`` apply when the DataModule supports them); loading settings are fixed here.
    """
    import inspect

    import kd_lightning.datasets as datasets

    target = str(cfg.get("_target_") or "")
    cls_name = target.rsplit(".", 1)[-1] if target.startswith("kd_lightning.datasets") else DATAMODULES.get(str(cfg["name"]))
    cls = getattr(datasets, cls_name or "", None)
    if cls is None:
        raise ExportError(f"no DataModule for dataset {cfg['name']!r} (target {target!r})")
    fixed = {
        "data_dir": str(data_dir), "download": False, "pipeline": "tensor", "num_workers": 0, "augmentation": None,
        "batch_size": EVAL_BATCH, "eval_batch_size": EVAL_BATCH, "pin_memory": False,
    }
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in cfg.items() if k in accepted and k not in fixed and k != "self"}
    return cls(**kwargs, **{k: v for k, v in fixed.items() if k in accepted})


def load_eval_data(cfg: Mapping[str, Any], data_dir: str | os.PathLike | None, run_ds: Mapping[str, Any], max_images: int | None = None) -> dict[str, Any] | None:
    """Normalised test (and validation) images from the project's DataModule, or ``None`` when no data is found.

    An explicit ``data_dir`` that does not hold the data is an error; the automatic candidates
    (run config's data_dir, $KD_DATA_DIR, <project>/data, <project>/../shared/datasets) are tried in turn.
    """
    from kd_lightning.datasets import DatasetError

    tried = []
    for candidate in data_dir_candidates(data_dir, run_ds.get("data_dir")):
        try:
            dm = make_datamodule(cfg, candidate)
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
        for split, loader in (("test", dm.test_dataloader()), ("val", dm.val_dataloader())):
            images, labels = [], []
            for batch in loader:  # uint8 images, labels: normalised as on_after_batch_transfer does for evaluation
                images.append(dm.batch_augment.normalize(batch[0]))
                labels.append(batch[1])
            out[split] = (torch.cat(images)[:max_images], torch.cat(labels)[:max_images])
        return out
    return None if not tried else {"data_dir": None, "tried": tried}


# -- ONNX ----------------------------------------------------------------------------------------
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


def _torch_export(net: nn.Module, input_shape: Sequence[int], path: Path, opset: int) -> None:
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


def _set_metadata(model, props: Mapping[str, Any]) -> None:
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


def initializer_count(path: str | os.PathLike) -> int:
    """Number of weight elements stored in an ONNX graph's initializers."""
    import onnx

    model = onnx.load(str(path))
    return int(sum(int(np.prod(t.dims)) if len(t.dims) else 1 for t in model.graph.initializer))


def folded_parameter_count(net: nn.Module) -> int:
    """Parameters of ``net`` once each BatchNorm is folded into the convolution before it (as the export does).

    A BatchNorm's scale and shift (2 x C) become the convolution's bias (C): C fewer elements per BatchNorm.
    """
    return count_parameters(net) - sum(m.num_features for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


def _session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _ort_logits(session, images: Tensor) -> np.ndarray:
    outs = [session.run(None, {INPUT_NAME: images[i : i + EVAL_BATCH].numpy()})[0] for i in range(0, len(images), EVAL_BATCH)]
    return np.concatenate(outs)


def _torch_logits(net: nn.Module, images: Tensor) -> np.ndarray:
    with torch.inference_mode():
        return torch.cat([net(images[i : i + EVAL_BATCH]) for i in range(0, len(images), EVAL_BATCH)]).numpy()


def compare_logits(reference: np.ndarray, other: np.ndarray, atol: float, rtol: float) -> dict[str, Any]:
    """Largest absolute difference and top-1 agreement; ``ok`` when the difference is within ``atol + rtol * max|reference|``
    and every top-1 disagreement is a near tie (the reference's margin between the two classes within that tolerance)."""
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
        "top1_disagreements": int(len(differ)),
        "disagreements_beyond_tie": real,
        "ok": diff <= tolerance and real == 0,
    }


def _accuracy(logits: np.ndarray, labels: Tensor | None) -> float | None:
    return None if labels is None else float((logits.argmax(1) == labels.numpy()).mean())


def ort_latency(path: str | os.PathLike, input_shape: Sequence[int], warmup: int = 10, repeats: int = 50, threads: int | None = None) -> dict[str, Any]:
    """Milliseconds per batch-1 call of an ONNX model under onnxruntime (CPU): ``{"median", "p90", "threads", "repeats"}``."""
    threads = threads or torch.get_num_threads()
    session = _session(Path(path), threads)
    x = np.random.default_rng(0).standard_normal((1, *input_shape)).astype(np.float32)
    for _ in range(warmup):
        session.run(None, {INPUT_NAME: x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        session.run(None, {INPUT_NAME: x})
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median": statistics.median(times), "p90": percentile(times, 90), "threads": int(threads), "repeats": repeats}


def quantize_int8(fp32_path: Path, out: Path, calibration: Tensor, batch: int = 32) -> str:
    """Static post-training quantization (QDQ, int8 per-channel weights, uint8 activations, MinMax) of ``fp32_path``,
    calibrated on ``calibration`` (normalised images, as the model takes them)."""
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
                str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            )
    finally:
        pre.unlink(missing_ok=True)
    return "onnxruntime static PTQ: QDQ, int8 per-channel weights, uint8 activations, MinMax calibration"


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


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
    opset: int = DEFAULT_OPSET,
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

    import onnx

    net, info = load_network(ckpt_path)
    ds_cfg, ds_origin = dataset_config(info, run_config, dataset)
    name = str(ds_cfg["name"])
    input_shape = (int(ds_cfg["channels"]), int(ds_cfg["image_size"]), int(ds_cfg["image_size"]))
    run_ds = dict((run_config or {}).get("dataset") or {})
    data = load_eval_data(ds_cfg, data_dir, run_ds, max_images) if use_data else None
    have_data = data is not None and "test" in data
    if have_data:
        images, labels = data["test"]
        data_note = f"test split ({len(images)} images from {data['data_dir']})"
    else:
        images = torch.randn(RANDOM_INPUTS, *input_shape, generator=torch.Generator().manual_seed(0))
        labels = None
        why = "data not used" if not use_data else f"no {name} data found" + (f" in {', '.join(data['tried'])}" if data else "")
        data_note = f"{RANDOM_INPUTS} random inputs ({why})"
    classes = (ds_cfg.get("factors") or {}).get("classes") if isinstance(ds_cfg.get("factors"), Mapping) else None
    names = label_names(name, Path(data["data_dir"]) if have_data else None, classes)
    if names is not None and len(names) != int(ds_cfg["num_classes"]):
        names = None
    method = _method_of(info, run_config)

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
        "run_status": ((_read_yaml_or_json(run_dir / "results.json") or {}).get("status") if run_dir and (run_dir / "results.json").is_file() else None),
        "params": count_parameters(net),
        "params_bn_folded": folded_parameter_count(net),
    }
    tmp = out_path.with_name(f".{out_path.stem}.tmp-{os.getpid()}.onnx")
    try:
        _torch_export(net, input_shape, tmp, opset)
        report["onnx_initializer_params"] = initializer_count(tmp)
        session = _session(tmp)
        torch_logits, onnx_logits = _torch_logits(net, images), _ort_logits(session, images)
        verification = compare_logits(torch_logits, onnx_logits, atol, rtol)
        verification.update(
            images=len(images), data="test split" if have_data else "random", data_note=data_note,
            accuracy_pytorch=_accuracy(torch_logits, labels), accuracy_onnx=_accuracy(onnx_logits, labels),
        )
        report["verification"] = verification
        report["ok"] = bool(verification["ok"])
        if not report["ok"]:
            report["out"] = None
            return report
        model = onnx.load(str(tmp))
        metadata = {
            "kd_lightning.format": "1",
            "dataset": name,
            "num_classes": str(ds_cfg["num_classes"]),
            "input_shape": ["batch", *input_shape],
            "mean": report["mean"],
            "std": report["std"],
            "input": INPUT_DESCRIPTION,
            "output": OUTPUT_DESCRIPTION,
            "arch": str(info["net"]["arch"]),
            "stem": str(info["net"].get("stem", "imagenet")),
            "method": method or "unknown",
            "source_checkpoint": str(ckpt_path),
            "epoch": str(info["epoch"]),
            "exported_by": f"kd_lightning.export (torch {torch.__version__}, onnx {onnx.__version__})",
            "verified": {k: verification[k] for k in ("data", "images", "max_abs_logit_diff", "top1_agreement", "accuracy_pytorch", "accuracy_onnx")},
        }
        if names:
            metadata["label_names"] = names
        if isinstance(ds_cfg.get("factors"), Mapping) and ds_cfg["factors"]:
            metadata["dataset_factors"] = dict(ds_cfg["factors"])  # a data-factor run (kd_lightning.datasets.factors)
        model.doc_string = f"kd-lightning {method or ''} {info['net']['arch']} for {name}; {INPUT_DESCRIPTION}".replace("  ", " ")
        _set_metadata(model, metadata)
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        if int8:
            report["int8"] = _int8(tmp, int8_path, data, images, labels, onnx_logits, input_shape, metadata, latency_repeats)
        tmp.replace(out_path)
        report["out_mb"] = round(out_path.stat().st_size / 1e6, 3)
        return report
    except ExportError:
        raise
    except OSError as exc:
        raise ExportError(f"cannot write {out_path} ({exc.strerror or exc}); choose a writable --out path.") from None
    finally:
        tmp.unlink(missing_ok=True)


def _int8(
    fp32_path: Path, out: Path, data: dict[str, Any] | None, images: Tensor, labels: Tensor | None,
    fp32_logits: np.ndarray, input_shape: Sequence[int], metadata: dict[str, Any], repeats: int,
) -> dict[str, Any]:
    import onnx

    if data is not None and "val" in data:
        calibration = data["val"][0][:CALIBRATION_IMAGES]
        calibrated_on = f"{len(calibration)} validation images"
    else:
        calibration = torch.randn(CALIBRATION_IMAGES // 4, *input_shape, generator=torch.Generator().manual_seed(1))
        calibrated_on = f"{len(calibration)} random inputs (no data: accuracy unknown, calibration not representative)"
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}.onnx")
    try:
        method = quantize_int8(fp32_path, tmp, calibration)
        model = onnx.load(str(tmp))
        logits = _ort_logits(_session(tmp), images)
        agreement = float((logits.argmax(1) == fp32_logits.argmax(1)).mean())
        _set_metadata(model, {**metadata, "quantization": f"{method}; calibrated on {calibrated_on}", "verified": {"data": metadata["verified"]["data"], "images": len(images), "top1_agreement_with_fp32": agreement, "accuracy_onnx": _accuracy(logits, labels)}})
        onnx.save(model, str(tmp))
        warmup = max(1, repeats // 5)
        result = {
            "out": str(out),
            "method": method,
            "calibrated_on": calibrated_on,
            "accuracy_fp32": _accuracy(fp32_logits, labels),
            "accuracy_int8": _accuracy(logits, labels),
            "top1_agreement_with_fp32": agreement,
            "max_abs_logit_diff_vs_fp32": float(np.abs(logits - fp32_logits).max()),
            "latency_ms_b1_fp32": ort_latency(fp32_path, input_shape, warmup, repeats),
            "latency_ms_b1_int8": ort_latency(tmp, input_shape, warmup, repeats),
        }
        tmp.replace(out)
        result["fp32_mb"], result["int8_mb"] = round(fp32_path.stat().st_size / 1e6, 3), round(out.stat().st_size / 1e6, 3)
        return result
    finally:
        tmp.unlink(missing_ok=True)


# -- command line --------------------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def format_report(report: Mapping[str, Any]) -> str:
    v = report.get("verification", {})
    lines = [
        f"source      {report['checkpoint']}",
        f"network     {report['net']['arch']} ({report['net'].get('stem', 'imagenet')} stem), {report['params']:,} parameters"
        f" ({report['params_bn_folded']:,} with BatchNorm folded; ONNX initializers {report.get('onnx_initializer_params', 0):,})",
        f"left out    {', '.join(k + '.*' for k in report['left_out'])} (training machinery, not part of the deployable network)"
        if report["left_out"] else "left out    nothing (the checkpoint holds the network alone)",
        f"dataset     {report['dataset']}, input {report['input_shape']}, mean {report['mean']}, std {report['std']} (from {report['dataset_config_from']})",
        f"checked on  {v.get('data_note', '?')}",
        f"max |logit difference| {v.get('max_abs_logit_diff', float('nan')):.3g} (tolerance {v.get('tolerance', float('nan')):.3g}), "
        f"top-1 agreement {_pct(v.get('top1_agreement'))} ({v.get('top1_disagreements', '?')} differ, {v.get('disagreements_beyond_tie', '?')} beyond a tie)",
        f"accuracy    PyTorch {_pct(v.get('accuracy_pytorch'))}, onnxruntime {_pct(v.get('accuracy_onnx'))}",
    ]
    if report.get("run_status") not in (None, "completed"):
        lines.insert(1, f"note        the run's results.json says status={report['run_status']!r}: this is its best checkpoint so far")
    if report.get("int8"):
        q = report["int8"]
        lines += [
            f"int8        {q['out']} ({q['int8_mb']} MB vs {q['fp32_mb']} MB), calibrated on {q['calibrated_on']}",
            f"            accuracy fp32 {_pct(q['accuracy_fp32'])}, int8 {_pct(q['accuracy_int8'])}; top-1 agreement with fp32 {_pct(q['top1_agreement_with_fp32'])}",
            f"            batch-1 latency (onnxruntime, {q['latency_ms_b1_fp32']['threads']} threads, median / p90): fp32 "
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
    parser.add_argument("source", help="a run folder (with results.json and checkpoints/) or a .ckpt written by kd_lightning.train")
    parser.add_argument("--format", choices=FORMATS, default="onnx")
    parser.add_argument("--out", help="output .onnx file (default: <run>/export/model.onnx, or the .ckpt's path with .onnx)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    parser.add_argument("--data-dir", help="folder holding the dataset (default: the run's data_dir, $KD_DATA_DIR, ./data, ../shared/datasets)")
    parser.add_argument("--dataset", help="dataset name, for a checkpoint that does not record it")
    parser.add_argument("--int8", action="store_true", help="also write <out>.int8.onnx, statically quantized, with accuracy and latency")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--max-images", type=int, help="check on at most this many test images")
    parser.add_argument("--random-inputs", action="store_true", help="check on random inputs even when the data is available (fast; no accuracy)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = export_onnx(
            args.source, args.out, force=args.force, data_dir=args.data_dir, dataset=args.dataset,
            int8=args.int8, opset=args.opset, max_images=args.max_images, use_data=not args.random_inputs,
        )
    except ExportError as exc:
        print(f"kd_lightning.export: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
