"""Small Lightning callbacks the study needs that Lightning does not ship."""

from __future__ import annotations

import random
import time

import lightning as L
import numpy as np
import torch


class ThroughputMeter(L.Callback):
    """Training images per second. A batch counts from the previous batch's end, so data loading, host-to-device
    copies and on-device augmentation are included; an epoch's first batch counts from its own start (its loading
    may include worker start-up), so runs whose epochs are a single batch (a 5% subsample under the training
    budget) are measured too. Validation never counts."""

    def __init__(self) -> None:
        self.images = 0
        self.seconds = 0.0
        self._last: float | None = None
        self._start: float | None = None

    def _now(self, pl_module: L.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._last = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._last is None:
            self._start = self._now(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = self._now(pl_module)
        since = self._last if self._last is not None else self._start
        if since is not None:
            self.seconds += now - since
            self.images += int(batch[1].shape[0])
        self._last = now

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


class Speedups(L.Callback):
    """Speed switches that leave the math alone, applied before training or evaluation starts.

    - ``channels_last``: the networks' weights (and so their activations) in NHWC memory format, the
      layout tensor-core convolutions prefer; pair it with ``trainer.precision=bf16-mixed`` on a GPU.
    - ``compile``: ``torch.compile`` of the student and teacher networks, in place
      (``nn.Module.compile``), so parameter names, and hence checkpoints, stay the same and the
      forward hooks of IKD still fire. ``compile_mode`` and ``compile_backend`` go to torch.compile.

    Both are off by default: neither could be measured on a GPU here (docs/benchmarks.md).
    """

    #: attributes of the LightningModule that hold networks worth compiling
    NETWORKS = ("net", "teacher")

    def __init__(
        self,
        channels_last: bool = False,
        compile: bool = False,
        compile_mode: str | None = None,
        compile_backend: str = "inductor",
    ) -> None:
        self.channels_last = bool(channels_last)
        self.compile = bool(compile)
        self.compile_mode = compile_mode
        self.compile_backend = compile_backend

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.apply(pl_module)

    def apply(self, module: torch.nn.Module) -> None:
        """Switch ``module`` (and its ``net`` / ``teacher`` children) over; also used by the benchmark's bare loop."""
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        if self.compile:
            for name in self.NETWORKS:
                network = getattr(module, name, None)
                if isinstance(network, torch.nn.Module) and getattr(network, "_compiled_call_impl", None) is None:
                    network.compile(mode=self.compile_mode, backend=self.compile_backend)
