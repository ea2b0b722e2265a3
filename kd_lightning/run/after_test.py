"""What a run measures once its test numbers are final, on the network and data it holds in memory.

After ``trainer.test`` has loaded the best-validation checkpoint, the module's network holds the best
weights and the DataModule holds the test split; nothing here opens the checkpoint or reads the data
again. :func:`measure` returns the two results.json fields:

- ``efficiency``: :func:`kd_lightning.measure.efficiency.measure_efficiency` of the best network, and
  (``efficiency.export_onnx``) ``onnx_mb`` / ``onnx_check`` of its ONNX export checked on the test split
  (:func:`export_run`, written to ``<run>/export/model.onnx``);
- ``data_complexity``: the complexity of the training data (teacher runs), computed once per data
  configuration and cached (:func:`config_complexity`).

Both are by-products: a failure is logged and recorded as ``{"error": ...}``, never allowed to lose a
finished run. :func:`log_hparams` adds the run's row to TensorBoard's HParams view.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from kd_lightning.measure import complexity, onnx
from kd_lightning.measure.efficiency import measure_efficiency
from kd_lightning.models import network_copy
from kd_lightning.run.identity import data_identity, identity
from kd_lightning.run.records import write_json

log = logging.getLogger("kd_lightning")
#: where a run's ONNX export goes, relative to its run folder
EXPORT_FILE = Path("export") / "model.onnx"
#: label names by dataset (CIFAR100's are read from the data's meta file when it is available)
LABEL_NAMES: dict[str, list[str]] = {
    "mnist": [str(i) for i in range(10)],
    "usps": [str(i) for i in range(10)],
    "fashion_mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}


def measure(
    cfg: DictConfig,
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    run_dir: Path,
    tests: Mapping[str, Any],
) -> dict[str, Any]:
    """``{"data_complexity", "efficiency"}`` of a tested run (``tests``: what ``_test_both`` returned)."""
    publishes = bool(getattr(type(module), "publishes_teacher", False))
    return {
        "data_complexity": data_complexity(cfg, datamodule) if publishes else None,
        "efficiency": deployment_cost(cfg, module, datamodule, run_dir, tests["best_checkpoint"], tests["best_epoch"]),
    }


# -- the deployable network ------------------------------------------------------------------------
def deployment_cost(
    cfg: DictConfig,
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    run_dir: Path,
    best_checkpoint: str,
    best_epoch: int,
) -> dict[str, Any] | None:
    """Size and speed of the best network (``module.net`` once the best checkpoint is loaded), and its
    ONNX export checked against PyTorch on the test split."""
    settings = cfg.get("efficiency") or {}
    if not settings.get("measure", True):
        return None
    try:
        net = network_copy(module.net, module.hparams["net"])
        shape = (int(cfg.dataset.channels), int(cfg.dataset.image_size), int(cfg.dataset.image_size))
        cost = measure_efficiency(
            net,
            shape,
            checkpoint=best_checkpoint,
            quick=bool(settings.get("quick", False)),
            precision=cfg.trainer.precision,
        )
        if settings.get("export_onnx", False):
            exported = export_run(
                cfg, net, module.hparams["net"], datamodule, Path(run_dir) / EXPORT_FILE, best_checkpoint, best_epoch
            )
            cost["onnx_mb"] = exported.get("out_mb")
            cost["onnx_check"] = exported.get("verification")
        return cost
    except Exception as exc:  # noqa: BLE001 - costing is a by-product; the run's accuracy stands
        log.warning("could not measure or export %s: %s: %s", best_checkpoint, type(exc).__name__, exc)
        return {"error": f"{type(exc).__name__}: {exc}"}


def normalised_split(datamodule: L.LightningDataModule, split: str) -> tuple[Tensor, Tensor]:
    """All images of a set-up DataModule's ``split`` ("test", "val") as the network takes them, and their labels."""
    loader = getattr(datamodule, f"{split}_dataloader")()
    images, labels = [], []
    for batch in loader:  # the tensor pipeline's uint8 batches are normalised as on_after_batch_transfer does
        x = batch[0]
        images.append(datamodule.batch_augment.normalize(x) if datamodule.pipeline == "tensor" else x)
        labels.append(batch[1])
    return torch.cat(images), torch.cat(labels)


def label_names(name: str, data_dir: Path | None, classes: Sequence[int] | None = None) -> list[str] | None:
    """Class names by output index; ``classes``: the class ids a ``dataset.factors.classes`` run kept, in order."""
    names: list[str] | None = None
    if name in LABEL_NAMES:
        names = list(LABEL_NAMES[name])
    elif name == "cifar100" and data_dir is not None and (data_dir / "cifar-100-python" / "meta").is_file():
        try:
            with open(data_dir / "cifar-100-python" / "meta", "rb") as f:
                names = [str(n) for n in pickle.load(f, encoding="latin1")["fine_label_names"]]
        except Exception:  # noqa: BLE001 - names are a nicety: an unreadable meta file means none
            names = None
    if names is not None and classes:
        names = [names[int(c)] for c in sorted(classes)] if all(0 <= int(c) < len(names) for c in classes) else None
    return names


def doc_string(method: str | None, arch: str, dataset: str) -> str:
    return f"kd-lightning {method or ''} {arch} for {dataset}; {onnx.INPUT_DESCRIPTION}".replace("  ", " ")


def export_run(
    cfg: DictConfig,
    net: nn.Module,
    net_cfg: Mapping[str, Any],
    datamodule: L.LightningDataModule,
    out: Path,
    checkpoint: str,
    epoch: int,
) -> dict[str, Any]:
    """:func:`kd_lightning.measure.onnx.export_checked` of a run's network on the test split its DataModule holds."""
    if out.exists():
        raise FileExistsError(f"{out} already exists")
    out.parent.mkdir(parents=True, exist_ok=True)
    ds = cfg.dataset
    images, labels = normalised_split(datamodule, "test")
    factors = OmegaConf.to_container(ds.factors, resolve=True) if ds.get("factors") else None
    num_classes = int(net_cfg["num_classes"])
    names = label_names(str(ds.name), Path(datamodule.data_dir), (factors or {}).get("classes"))
    metadata = onnx.onnx_metadata(
        dataset=str(ds.name),
        num_classes=num_classes,
        input_shape=list(images.shape[1:]),
        mean=list(ds.mean),
        std=list(ds.std),
        net=net_cfg,
        method=str(cfg.method.name),
        source_checkpoint=str(checkpoint),
        epoch=epoch,
        label_names=names if names is not None and len(names) == num_classes else None,
        factors=factors,
    )
    return onnx.export_checked(
        net,
        out,
        images,
        labels,
        metadata=metadata,
        doc_string=doc_string(str(cfg.method.name), str(net_cfg["arch"]), str(ds.name)),
        data="test split",
        data_note=f"test split ({len(images)} images from {datamodule.data_dir})",
    )


# -- the training data's complexity -----------------------------------------------------------------
def data_complexity(cfg: DictConfig, datamodule: L.LightningDataModule) -> dict[str, Any] | None:
    """Measured complexity of the training data this run saw (``complexity.measure``), without ``cache_hit``."""
    if not (cfg.get("complexity") or {}).get("measure", False):
        return None
    try:
        result = config_complexity(cfg, datamodule)
    except Exception as exc:  # noqa: BLE001 - a by-product: the run's accuracy stands
        log.warning("could not measure the data's complexity: %s: %s", type(exc).__name__, exc)
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {k: v for k, v in result.items() if k != "cache_hit"}


def dataset_complexity(
    images: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    identity: Mapping[str, Any],
    cache_dir: str | os.PathLike,
    eval_images: Tensor | np.ndarray | None = None,
    eval_labels: Tensor | np.ndarray | None = None,
    recompute: bool = False,
    **params: Any,
) -> dict[str, Any]:
    """:func:`kd_lightning.measure.complexity.compute_complexity`, cached in ``cache_dir/complexity-<key>.json``.

    ``identity`` is what makes two data configurations the same (e.g. ``{"dataset": "usps",
    "split_seed": 1234, "val_fraction": 0.7, "factors": factor_identity(f, image_size)}``); the key
    hashes it with the measure parameters. A file lock makes concurrent runs of one configuration
    compute it once; the file is written by rename. The returned dict has ``cache_hit`` (not stored).
    """
    from filelock import FileLock

    key = complexity.complexity_cache_key(identity, params)
    path = Path(cache_dir) / f"complexity-{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.is_file() and not recompute:
            return {**json.loads(path.read_text()), "cache_hit": True}
        start = time.perf_counter()
        result = complexity.compute_complexity(images, labels, eval_images, eval_labels, **params)
        record = {
            "key": key,
            "version": complexity.COMPLEXITY_VERSION,
            "identity": json.loads(json.dumps(identity, default=str)),
            **result,
        }
        record["seconds"] = round(time.perf_counter() - start, 3)
        write_json(path, record, sort_keys=True)
    return {**record, "cache_hit": False}


def config_complexity(cfg: Any, datamodule: Any, recompute: bool = False) -> dict[str, Any]:
    """:func:`dataset_complexity` of the training data a composed run config describes, from its set-up
    DataModule (tensor pipeline), cached in ``paths.complexity_dir`` under the config's
    :func:`kd_lightning.run.identity.data_identity`; the validation split (clean labels) scores the probe."""
    return dataset_complexity(
        datamodule.train_set.images,
        datamodule.train_set.labels,
        data_identity(identity(cfg)["dataset"]),
        cfg.paths.complexity_dir,
        eval_images=datamodule.val_set.images,
        eval_labels=datamodule.val_set.labels,
        recompute=recompute,
    )


# -- TensorBoard ----------------------------------------------------------------------------------------
def log_hparams(trainer: L.Trainer, cfg: DictConfig, record: dict[str, Any]) -> None:
    """One row per run in TensorBoard's HParams view."""
    params = {
        "dataset": cfg.dataset.name,
        "method": cfg.method.name,
        "seed": cfg.seed,
        "lr": cfg.recipe.optimizer.lr,
        "batch_size": cfg.recipe.batch_size,
        "max_epochs": cfg.trainer.max_epochs,
    }
    for key in ("alpha", "temperature", "feature_weight"):
        params[key] = cfg.method.get(key, "n/a")
    metrics = {
        f"hparams/{stage}_{k}": v
        for stage in ("test_best", "test_last")
        for k, v in record[stage].items()
        if isinstance(v, float)
    }
    metrics["hparams/best_val_acc"] = record["best_val_acc"]
    cost = record.get("efficiency") or {}
    for key in ("params", "flops_per_image", "checkpoint_mb", "onnx_mb", "throughput_b64_img_s"):
        if isinstance(cost.get(key), (int, float)):
            metrics[f"hparams/{key}"] = float(cost[key])
    if isinstance(cost.get("latency_ms_b1"), dict):
        metrics["hparams/latency_ms_b1"] = float(cost["latency_ms_b1"]["median"])
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(params, metrics)
