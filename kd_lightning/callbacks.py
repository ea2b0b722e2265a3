"""Small Lightning callbacks the study needs that Lightning does not ship."""

from __future__ import annotations

import random
import time

import lightning as L
import numpy as np
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


class RNGStateCheckpoint(L.Callback):
    """Stores the global RNG states (torch, CUDA, numpy, random) in every checkpoint and restores them.

    Data order and augmentation come from these generators, so a run resumed from an epoch-end
    checkpoint continues with exactly the batches an uninterrupted run would have drawn. (Lightning
    runs its sanity check under ``isolate_rng``, so nothing draws from them between restore and the
    first training batch.)
    """

    def state_dict(self) -> dict:
        numpy_state = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
            "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        torch.set_rng_state(state_dict["torch"])
        kind, keys, *rest = state_dict["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
