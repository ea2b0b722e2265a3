"""What a run leaves behind: results.json, written atomically, with versions and git commit.

The one atomic JSON writer (:func:`write_json`) and the one environment record (:func:`environment`,
:func:`package_versions`, :func:`device_info`) of the project: runs, the teacher registry, the
complexity cache and the benchmark all write through them.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from kd_lightning import PROJECT_ROOT

RESULTS_FILE = "results.json"
#: folders whose records are kept, not current: a rerun's ``archive/<time>/`` (rundir.archive)
SKIP_DIRS = frozenset({"archive"})


def find_results(folder: str | Path) -> list[Path]:
    """Every results.json under ``folder``, except anything kept under an ``archive/`` folder."""
    root = Path(folder)
    found = (p for p in root.rglob(RESULTS_FILE) if not SKIP_DIRS.intersection(p.relative_to(root).parts[:-1]))
    return sorted(found)


def _held_slot() -> dict[str, Any] | None:
    """launcher=gpu_node's slot of this process; None where that launcher's callback was never imported."""
    gpu_slots = sys.modules.get("kd_lightning.run.gpu_slots")
    return gpu_slots.held_slot() if gpu_slots is not None else None


_PACKAGES = ("torch", "torchvision", "lightning", "hydra-core", "omegaconf", "torchmetrics", "numpy", "kd-lightning")


class OutputError(OSError):
    """A result could not be written (disk full, no permission, a file where a folder should be)."""

    def __init__(self, path: Path, cause: OSError) -> None:
        super().__init__(
            cause.errno,
            f"could not write {path}: {cause.strerror or cause}. "
            "Free disk space, fix the folder's permissions, or choose another paths.output_dir",
        )
        self.path = path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None], durable: bool = True) -> None:
    """``write`` into a temporary file in the same folder, then rename: readers never see half a file, and a
    full disk or a kill mid-write leaves the previous file whole (a temporary file elsewhere, e.g. /tmp, would
    be copied, not renamed, onto another file system). ``durable``: flushed to disk before the rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide records from a shared sweep's other users
    except OSError as exc:
        raise OutputError(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(path, exc) from exc
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """``text`` (UTF-8) by :func:`atomic_write`."""
    atomic_write(path, lambda handle: handle.write(text.encode()))


def write_json(path: str | os.PathLike, data: Any, sort_keys: bool = False) -> None:
    """``data`` as indented JSON (values JSON does not know written as ``str``), by :func:`atomic_write_text`."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=sort_keys, default=str) + "\n")


def read_results(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(run_dir) / RESULTS_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # a damaged record is treated as "not completed": the run is redone


def git_commit() -> dict[str, Any]:
    """Commit of the source tree and whether it had uncommitted changes (None outside a git checkout)."""

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a result depends on, and of CUDA and cuDNN (``None``: not there)."""
    import torch

    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["cuda"] = torch.version.cuda
    versions["cudnn"] = str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None
    return versions


def device_info(device: Any) -> dict[str, Any]:
    """The machine a measurement ran on: device type and name, CPU, core count, load average (and a
    GPU's memory and compute capability)."""
    import torch

    device = torch.device(device)
    info: dict[str, Any] = {
        "type": device.type,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            name=props.name, memory_gib=round(props.total_memory / 2**30, 1), capability=f"{props.major}.{props.minor}"
        )
    else:
        info["name"] = f"cpu ({os.cpu_count()} cores)"
    try:
        info["load_average_at_start"] = list(os.getloadavg())
    except OSError:
        pass
    return info


def environment() -> dict[str, Any]:
    """Where a run ran, for results.json: Python, platform, package versions, device, CPU threads, GPU slot
    and code version (none of it is part of its identity)."""
    import torch

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": package_versions(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cpu_threads": torch.get_num_threads(),
        # launcher=gpu_node: which GPU slot this run's process held (kd_lightning/run/gpu_slots.py)
        "gpu_slot": _held_slot(),
        "git": git_commit(),
    }
