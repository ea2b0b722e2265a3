"""A run's by-products: what it measures once its test numbers are final, on the network and data it holds in memory.

After ``trainer.test`` has loaded the best-validation checkpoint, the module's network holds the best
weights and the DataModule holds the test split; nothing here opens the checkpoint or reads the data
again. :func:`measure` returns the two results.json fields:

- ``efficiency``: :func:`kd_lightning.measure.efficiency.measure_efficiency` of the best network, and
  (``efficiency.export_onnx``) ``onnx_mb`` / ``onnx_check`` of its ONNX export checked on the test split
  (:func:`export_run`, written to ``<run>/export/model.onnx``);
- ``data_complexity``: the complexity of the training data (teacher runs), computed once per data
  configuration and cached (:func:`kd_lightning.run.measuring.config_complexity`).

Both are by-products: a failure is logged and recorded as ``{"error": ...}``, never allowed to lose a
finished run. :func:`log_hparams` adds the run's row to TensorBoard's HParams view. What the export and
complexity tools share with this module is in :mod:`kd_lightning.run.measuring`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf
from torch import nn

from kd_lightning.measure import onnx
from kd_lightning.measure.efficiency import measure_efficiency
from kd_lightning.models import network_copy
from kd_lightning.run.measuring import config_complexity, normalised_split, onnx_description

log = logging.getLogger("kd_lightning")
#: where a run's ONNX export goes, relative to its run folder
EXPORT_FILE = Path("export") / "model.onnx"


def measure(
    cfg: DictConfig,
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    run_dir: Path,
    tests: Mapping[str, Any],
) -> dict[str, Any]:
    """``{"data_complexity", "efficiency"}`` of a tested run; ``tests``: what the training tool's
    ``evaluate_checkpoints`` returned."""
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
    images, labels = normalised_split(datamodule, "test")
    description = onnx_description(
        OmegaConf.to_container(cfg.dataset, resolve=True),
        net_cfg,
        str(cfg.method.name),
        checkpoint,
        epoch,
        images.shape[1:],
        Path(datamodule.data_dir),
    )
    return onnx.export_checked(
        net,
        out,
        images,
        labels,
        **description,
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
