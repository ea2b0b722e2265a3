"""One node, several GPUs, ``k`` runs per GPU: each job of a multirun claims a GPU slot before CUDA starts.

Neither of Hydra's local launchers spreads jobs across GPUs: joblib sets nothing (every job trains on
GPU 0) and submitit's local executor hands every job GPUs ``0..n-1``. With ``launcher=gpu_node``
(conf/launcher/gpu_node.yaml) the Hydra callback :class:`GpuSlots` runs in each job's own process
before the task function, i.e. before CUDA initialises, and

- claims a free slot from a pool of ``gpus x slots_per_gpu`` lock files (``filelock``, the same lock
  as the teacher registry's), one job per GPU before a second on any;
- sets ``CUDA_VISIBLE_DEVICES`` to that slot's GPU, so the job's ``devices=1`` is that GPU;
- caps CPU threads to ``cores // jobs`` (``torch.set_num_threads`` and ``OMP_NUM_THREADS`` /
  ``MKL_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` for children): ``jobs`` runs at once would otherwise each
  start one thread per core and spin on each other.

A slot is held for the life of the process that claimed it: loky reuses a worker process for several
jobs, and CUDA, once initialised in a process, stays on the device it first saw. A lock held by a
process that dies (crash, ``kill -9``) is released by the operating system, so no slot is lost. Where a
claim fails, the job fails before training with the reason (:func:`raise_if_claim_failed`), since
Hydra turns a callback's exception into a warning.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: where the launcher's settings live (error messages name them)
CONFIG_KEY = "hydra.callbacks.gpu_slots"
log = logging.getLogger("kd_lightning")


class GpuSlotError(RuntimeError):
    """No GPU slot could be claimed, or the pool's settings are unusable; the message says which key to change."""


@dataclass(frozen=True)
class Slot:
    """One claimed place on one GPU, and what the job holding it was given."""

    device: str  # the value of CUDA_VISIBLE_DEVICES given to the job (an index or a GPU UUID)
    gpu: int  # position of that device among the pool's devices
    number: int  # which of the GPU's slots_per_gpu places
    jobs: int  # jobs the pool runs at once (gpus x slots_per_gpu)
    threads: int  # CPU threads the job may use
    pool_dir: str

    def record(self) -> dict[str, Any]:
        return asdict(self)


#: the devices this process was given when it started, before a claim narrowed them to one
_STARTUP_VISIBLE: str | None = os.environ.get(VISIBLE_ENV)
#: this process's slot and its held lock; the error of its last failed claim
_held: tuple[Slot, FileLock] | None = None
_claim_error: BaseException | None = None


def _nvml_gpu_count() -> int | None:
    """Every GPU NVML sees, whatever ``CUDA_VISIBLE_DEVICES`` says now (a reused worker's earlier claim narrowed it;
    this count is used only where it was unset at startup); 0 for a torch built without CUDA, None where NVML cannot
    be read. Not ``torch.cuda.device_count()``: it obeys the narrowed variable, and without NVML it asks the CUDA
    driver, which initialises it in this process."""
    import torch  # here, not at the top: results.json's environment record imports this module, the report reads it

    if not torch.backends.cuda.is_built():
        return 0
    raw_count = getattr(torch.cuda, "_raw_device_count_nvml", None)  # private: what device_count() builds on
    try:
        count = raw_count() if raw_count is not None else -1
    except Exception:  # noqa: BLE001 - NVML's library missing (OSError) or failing to start: "cannot be read"
        count = -1
    return count if count >= 0 else None


def visible_devices(gpus: int | str = "auto") -> list[str]:
    """The device ids the pool hands out, as ``CUDA_VISIBLE_DEVICES`` values.

    The ``CUDA_VISIBLE_DEVICES`` this process started with (not the one a claim set) lists them when it
    is set, else they are ``0..n-1``. ``gpus="auto"`` takes every visible device, counted through NVML (see
    :func:`_nvml_gpu_count`); an integer takes the first ``gpus`` of them.
    """
    env = _STARTUP_VISIBLE
    listed = [d.strip() for d in env.split(",") if d.strip()] if env is not None else None
    if gpus == "auto":
        count = _nvml_gpu_count() if listed is None else len(listed)
        if count is None:
            raise GpuSlotError(
                f"{CONFIG_KEY}.gpus=auto: NVML cannot be read here, and counting GPUs without it would initialise "
                f"CUDA in this process, which then ignores the {VISIBLE_ENV} a slot sets (every job on GPU 0). "
                "Give the count (launcher=gpu_node hydra.callbacks.gpu_slots.gpus=4), or use launcher=joblib on a "
                "CPU machine"
            )
        devices = listed if listed is not None else [str(i) for i in range(count)]
        if not devices:
            raise GpuSlotError(
                f"{CONFIG_KEY}.gpus=auto: no GPU is visible ({VISIBLE_ENV}={env!r}, NVML counts 0). "
                "Give the count (launcher=gpu_node hydra.callbacks.gpu_slots.gpus=4), "
                "or use launcher=joblib on a CPU machine"
            )
        return devices
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise GpuSlotError(f"{CONFIG_KEY}.gpus={gpus!r}: must be 'auto' or an integer >= 1")
    if listed is not None and gpus > len(listed):
        raise GpuSlotError(
            f"{CONFIG_KEY}.gpus={gpus}: only {len(listed)} device(s) visible ({VISIBLE_ENV}={env!r}); "
            "lower it or use gpus=auto"
        )
    return listed[:gpus] if listed is not None else [str(i) for i in range(gpus)]


def pool_size(gpus: int | str, slots_per_gpu: int) -> int:
    """Jobs the pool runs at once: the launcher's ``n_jobs`` (resolver ``${kd_gpu_jobs:gpus,slots_per_gpu}``)."""
    _check_slots_per_gpu(slots_per_gpu)
    return len(visible_devices(gpus)) * slots_per_gpu


def cpu_cores() -> int:
    """Cores this process may run on (its CPU affinity, which taskset, cgroups and SLURM narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """``cores // jobs``, at least 1: ``jobs`` runs share the cores instead of each taking all of them."""
    return max(1, (cpu_cores() if cores is None else cores) // max(1, jobs))


def _check_slots_per_gpu(slots_per_gpu: Any) -> None:
    if isinstance(slots_per_gpu, bool) or not isinstance(slots_per_gpu, int) or slots_per_gpu < 1:
        raise GpuSlotError(
            f"{CONFIG_KEY}.slots_per_gpu={slots_per_gpu!r}: must be an integer >= 1 (runs sharing one GPU)"
        )


def _lock_file(pool_dir: Path, device: str, number: int) -> Path:
    return pool_dir / f"gpu-{re.sub(r'[^A-Za-z0-9._-]', '_', device)}-slot{number}.lock"


def claim(
    pool_dir: str | os.PathLike,
    devices: Sequence[str],
    slots_per_gpu: int,
    wait_s: float = 0.0,
    only_device: str | None = None,
    cores: int | None = None,
    poll_s: float = 0.1,
) -> tuple[Slot, FileLock]:
    """Claim a free slot (one job per GPU before a second on any), waiting up to ``wait_s`` seconds.

    Slots are named by device id, so multiruns that share ``pool_dir`` share the GPUs correctly.
    ``only_device`` restricts the claim to one device (a process whose CUDA is already bound to it).
    Returns the slot and its held lock; releasing the lock, dropping the last reference to it, or the
    process ending frees the slot.
    """
    _check_slots_per_gpu(slots_per_gpu)
    if not devices:
        raise GpuSlotError(f"{CONFIG_KEY}.gpus: the pool has no device")
    pool = Path(pool_dir)
    pool.mkdir(parents=True, exist_ok=True)
    jobs = len(devices) * slots_per_gpu
    order = [(g, n) for n in range(slots_per_gpu) for g, d in enumerate(devices) if only_device in (None, d)]
    deadline = time.monotonic() + max(0.0, wait_s)
    while True:
        for gpu, number in order:
            lock = FileLock(str(_lock_file(pool, devices[gpu], number)), thread_local=False)
            if _try_acquire(lock):
                slot = Slot(devices[gpu], gpu, number, jobs, threads_per_job(jobs, cores), str(pool))
                return slot, lock
        if time.monotonic() >= deadline:
            where = (
                f"on device {only_device}" if only_device is not None else f"on {len(devices)} GPU(s) x {slots_per_gpu}"
            )
            raise GpuSlotError(
                f"all GPU slots {where} in {pool} were held for {wait_s:g}s. More jobs run at once than the pool has "
                f"slots: keep hydra.launcher.n_jobs <= {jobs}, raise {CONFIG_KEY}.slots_per_gpu, or {CONFIG_KEY}.wait_s"
            )
        time.sleep(poll_s)


def _try_acquire(lock: FileLock) -> bool:
    try:
        lock.acquire(blocking=False)
    except Timeout:  # another process (or thread) holds it
        return False
    return True


def apply(slot: Slot) -> None:
    """Give this process the slot's GPU and thread budget
    (before CUDA initialises: afterwards the GPU cannot change)."""
    import torch

    os.environ[VISIBLE_ENV] = slot.device
    for name in THREAD_ENV:  # read by OpenMP/MKL in child processes (DataLoader workers, exporters)
        os.environ[name] = str(slot.threads)
    torch.set_num_threads(slot.threads)


def claim_for_process(
    pool_dir: str | os.PathLike, devices: Sequence[str], slots_per_gpu: int, wait_s: float = 0.0
) -> Slot:
    """The slot of this process: the one it holds in ``pool_dir``, else a newly claimed one, applied.

    A process whose CUDA is already initialised keeps its device (a claim in another pool is restricted
    to it), since CUDA_VISIBLE_DEVICES no longer takes effect there.
    """
    import torch

    global _held
    pool = str(Path(pool_dir))
    bound = _held[0].device if _held is not None else None
    if _held is not None and _held[0].pool_dir == pool and _held[0].device in devices:
        apply(_held[0])
        return _held[0]
    if torch.cuda.is_initialized() and bound is None:
        raise GpuSlotError(
            "CUDA was initialised in this process before a GPU slot was claimed: "
            f"{CONFIG_KEY} must run before any CUDA call"
        )
    release()
    only = bound if torch.cuda.is_initialized() else None
    slot, lock = claim(pool, devices, slots_per_gpu, wait_s=wait_s, only_device=only)
    _held = (slot, lock)
    apply(slot)
    return slot


def release() -> None:
    """Free this process's slot (the process ending frees it too)."""
    global _held
    if _held is not None:
        _held[1].release(force=True)
        _held = None


def held_slot() -> dict[str, Any] | None:
    """What results.json records: this process's slot, or None outside ``launcher=gpu_node``."""
    return _held[0].record() if _held is not None else None


def raise_if_claim_failed() -> None:
    """Called by the job before training: a failed claim fails the job (Hydra only warns on a callback's error)."""
    if _claim_error is not None:
        raise GpuSlotError(f"no GPU slot for this job: {_claim_error}") from _claim_error


class GpuSlots(Callback):
    """Hydra callback of ``launcher=gpu_node``: claim a GPU slot in each job's process before it trains."""

    def __init__(
        self, gpus: int | str = "auto", slots_per_gpu: int = 1, pool_dir: str = ".gpu-slots", wait_s: float = 600.0
    ) -> None:
        _check_slots_per_gpu(slots_per_gpu)
        self.gpus, self.slots_per_gpu, self.pool_dir, self.wait_s = gpus, slots_per_gpu, pool_dir, float(wait_s)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _claim_error
        _claim_error = None
        try:
            slot = claim_for_process(self.pool_dir, visible_devices(self.gpus), self.slots_per_gpu, self.wait_s)
        except Exception as exc:  # noqa: BLE001 - reported by the job itself (raise_if_claim_failed)
            _claim_error = exc
            log.error("no GPU slot: %s", exc)
            return
        log.info(
            "GPU slot %d of GPU %s (%s=%s), %d CPU thread(s), pid %d",
            slot.number,
            slot.gpu,
            VISIBLE_ENV,
            slot.device,
            slot.threads,
            os.getpid(),
        )
