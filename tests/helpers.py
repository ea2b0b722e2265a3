"""Shared test helpers: compose the real Hydra config with settings that make runs take seconds."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from omegaconf import DictConfig

from kd_lightning.run.compose import CONF_DIR, compose_run_config  # noqa: F401  (CONF_DIR: for tests that compose by hand)

#: one epoch, a handful of batches of 16 images: enough to exercise every code path
FAST = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
    "recipe.batch_size=16",
    "dataset.num_workers=0",
    "efficiency.quick=true",
    "efficiency.export_onnx=false",
    "complexity.measure=false",
]


def compose_cfg(overrides: list[str] | tuple[str, ...] = (), data_dir: Path | None = None, out_dir: Path | None = None, fast: bool = True) -> DictConfig:
    args = list(FAST if fast else [])
    if data_dir is not None:
        args.append(f"paths.data_dir={data_dir}")
    if out_dir is not None:
        args.append(f"paths.output_dir={out_dir}")
    return compose_run_config(args + list(overrides))


class PreemptAfterFirstEpoch(L.Callback):
    """Stands in for a job killed at its time limit: stops the run once epoch 1's checkpoint exists."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 1:
            raise RuntimeError("preempted (test)")
