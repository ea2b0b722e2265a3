"""Small Lightning callbacks the study needs that Lightning does not ship."""

from __future__ import annotations

import random
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from kd_lightning.models import EnsembleTeacher


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously): needed to time it, so done at edges only."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ThroughputMeter(L.Callback):
    """Training images per second: the one timer of training runs (``results.json`` ``train_images_per_s``) and of
    the benchmark (``kd_lightning.bench``, which also cuts the time into windows with :meth:`cut`).

    Time runs over stretches of consecutive training batches: from the start hook of a stretch's first batch (its
    loading, which may include worker start-up, is left out) to the stretch's end (validation, the epoch's end, the
    end of training). Later batches count their loading, host-to-device copies and on-device augmentation;
    validation never counts; runs whose epochs are one batch (a 5% subsample under the training budget) are
    measured too. The device is synchronised only at a stretch's edges: a per-step synchronisation would be a
    cost of its own on a GPU."""

    def __init__(self) -> None:
        self.images = 0
        self.seconds = 0.0
        #: (images, seconds) of each window closed by :meth:`cut`
        self.windows: list[tuple[int, float]] = []
        self._since: float | None = None
        self._cut_at = (0, 0.0)

    # -- the timer -------------------------------------------------------------------------------
    def start(self, device: torch.device) -> None:
        if self._since is None:
            synchronize(device)
            self._since = time.perf_counter()

    def stop(self, device: torch.device) -> None:
        if self._since is not None:
            synchronize(device)
            self.seconds += time.perf_counter() - self._since
            self._since = None

    def count(self, images: int) -> None:
        if self._since is not None:
            self.images += images

    def cut(self, device: torch.device) -> tuple[int, float]:
        """Stop, and close a window: the images and seconds since the previous cut."""
        self.stop(device)
        window = (self.images - self._cut_at[0], self.seconds - self._cut_at[1])
        self._cut_at = (self.images, self.seconds)
        self.windows.append(window)
        return window

    @property
    def images_per_second(self) -> float | None:
        return self.images / self.seconds if self.seconds > 0 else None

    # -- Lightning's hooks -------------------------------------------------------------------------
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.start(pl_module.device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.count(int(batch[1].shape[0]))

    def on_validation_start(self, trainer, pl_module) -> None:
        self.stop(pl_module.device)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.stop(pl_module.device)

    def on_train_end(self, trainer, pl_module) -> None:
        self.stop(pl_module.device)


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
        if torch.cuda.is_initialized():  # a CPU run on a GPU host must not create a CUDA context here
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        torch.set_rng_state(state_dict["torch"])
        kind, keys, *rest = state_dict["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        if "cuda" in state_dict and torch.cuda.is_initialized():  # a CPU run resuming a GPU checkpoint: no context
            # one state per GPU visible when saved; a resume may see fewer (a launcher narrowed CUDA_VISIBLE_DEVICES)
            torch.cuda.set_rng_state_all(state_dict["cuda"][: torch.cuda.device_count()])


class TrainingClock(L.Callback):
    """The training time a run's checkpoints carry, so a resumed run's record counts the earlier processes' time too.

    ``earlier_s`` is what the resume checkpoint says the earlier processes trained (0 for a fresh run): up to that
    checkpoint, since what came after it is redone, and counted, by this process. Without it a run resumed after a
    preemption recorded only the time after the resume (s16 review: 1.9 s against 7.0 s uninterrupted).
    """

    def __init__(self) -> None:
        self.earlier_s = 0.0
        self._started: float | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def elapsed_s(self) -> float:
        """Training time up to now: the earlier processes' and this one's since ``fit`` started."""
        return self.earlier_s + (time.perf_counter() - self._started if self._started is not None else 0.0)

    def state_dict(self) -> dict:
        return {"elapsed_s": self.elapsed_s()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.earlier_s = float(state_dict.get("elapsed_s", 0.0))


class CheckpointRelocation(L.Callback):
    """A moved run folder resumes with its best-checkpoint record (a sweep's outputs copied to another disk or
    machine: run identities hold no paths, so a rerun there resumes).

    Lightning's ``ModelCheckpoint`` reloads its best score and best paths only when the checkpoint's saved folder
    equals its current one; otherwise it warns, and the first epoch validated after the resume becomes "best"
    whatever its score. Each checkpoint callback's saved paths are mapped here onto its current folder by file
    name (the folder moved, not the files in it), before the callbacks load their state."""

    PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        states = checkpoint.get("callbacks") or {}
        for callback in trainer.checkpoint_callbacks:
            state = states.get(callback.state_key)
            saved, current = (state or {}).get("dirpath"), getattr(callback, "dirpath", None)
            if saved is None or current is None or saved == current:
                continue

            def moved(path: str | None, saved: str = saved, current: str = current) -> str | None:
                return str(Path(current) / Path(path).name) if path and Path(path).parent == Path(saved) else path

            for key in self.PATH_KEYS:
                if key in state:
                    state[key] = moved(state[key])
            if "best_k_models" in state:
                state["best_k_models"] = {moved(path): score for path, score in state["best_k_models"].items()}
            state["dirpath"] = current


class Speedups(L.Callback):
    """Speed switches that leave the math alone, applied before training or evaluation starts.

    - ``channels_last``: the networks' weights (and so their activations) in NHWC memory format, the
      layout tensor-core convolutions prefer; pair it with ``trainer.precision=bf16-mixed`` on a GPU.
    - ``compile``: ``torch.compile`` of the student and teacher networks, in place
      (``nn.Module.compile``), so parameter names, and hence checkpoints, stay the same and the
      forward hooks of IKD still fire. ``compile_mode`` and ``compile_backend`` go to torch.compile.

    Both are off by default: on an H200 at the paper's batch both trained slower than without them
    (docs/benchmarks.md, "GPU").
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
                # an ensemble's members, not the ensemble: its KD target (soft_logits) calls them directly
                for net in network.members if isinstance(network, EnsembleTeacher) else [network]:
                    if isinstance(net, torch.nn.Module) and getattr(net, "_compiled_call_impl", None) is None:
                        net.compile(mode=self.compile_mode, backend=self.compile_backend)

    @property
    def replays_cuda_graphs(self) -> bool:
        """Whether the compiled networks run as CUDA graphs (torch.compile's modes that use them)."""
        return self.compile and self.compile_mode in ("reduce-overhead", "max-autotune")

    def begin_step(self) -> None:
        """Mark a step's start for CUDA graphs. Without marks, every compiled call made with no backward pending (a
        frozen teacher's, each ensemble member's, every evaluation call) starts a new iteration that may reuse the
        previous call's output memory; with them, all outputs of one step stay valid until the next step. Once
        marked, torch stops detecting iterations by itself for the rest of the process: a compiled call made outside
        a marked batch joins the last step's iteration (nothing here keeps such outputs: the by-products measure an
        uncompiled copy)."""
        if self.replays_cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.begin_step()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.begin_step()

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.begin_step()
