"""Small Lightning callbacks the study needs that Lightning does not ship."""

from __future__ import annotations

import time

import lightning as L
import torch


class ThroughputMeter(L.Callback):
    """Training images per second, counting only time spent inside training batches."""

    def __init__(self) -> None:
        self.images = 0
        self.seconds = 0.0
        self._start: float | None = None

    def _sync(self, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._sync(pl_module)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync(pl_module)
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self.images += int(batch[1].shape[0])

    @property
    def images_per_second(self) -> float | None:
        return self.images / self.seconds if self.seconds > 0 else None
