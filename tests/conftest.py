from __future__ import annotations

import os
import shutil
from pathlib import Path

# One intra-op thread, in this process and in the runs tests start as subprocesses (they inherit it): the test
# networks are tiny, and on a CPU shared with other jobs two OpenMP threads spin on each other (a training
# step measured 0.05 s with one thread, 0.2-1.5 s with two, on a loaded 2-core machine). Set
# OMP_NUM_THREADS to choose another count.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import ctypes  # noqa: E402
import ctypes.util  # noqa: E402

import pytest  # noqa: E402

from kd_lightning.run.resolvers import register_resolvers  # noqa: E402

#: glibc's malloc settings for the test processes: keep freed memory (up to 2 GiB) for the next allocation instead
#: of returning it to the kernel, and serve blocks below 32 MiB from that heap. A test run allocates and frees a
#: network's tensors hundreds of times; on a VM a fresh page costs a fault and zeroing, and with glibc's defaults
#: (blocks >= 128 KiB mmapped and unmapped at each free) one FAST run (tests/helpers.py) spent more CPU in the
#: kernel than in PyTorch: 4 runs, user 4.9 + sys 5.9 s, 333k page faults; with these, 4.6 + 2.6 s, 45k faults
#: (tests/tools/test_train.py alone: 1.22M -> 0.40M faults, 40 -> 37 CPU-s; the whole suite's sys time is mostly
#: checkpoint writes, which this does not change: 153 -> 144 s).
#: Numbers are unchanged (an allocator setting). Set for this process (mallopt) and, through the environment,
#: for the processes tests start (pytest-xdist's workers, runs started as subprocesses).
MALLOC_SETTINGS = {"MMAP_THRESHOLD": (-3, 32 << 20), "TRIM_THRESHOLD": (-1, (2 << 30) - 1), "TOP_PAD": (-2, 256 << 20)}


def _keep_freed_memory() -> None:
    libc_name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(libc_name).mallopt if libc_name else None
    except (OSError, AttributeError):  # not glibc (macOS, musl): its allocator's defaults stay
        mallopt = None
    if mallopt is None:
        return
    for name, (param, value) in MALLOC_SETTINGS.items():
        os.environ.setdefault(f"MALLOC_{name}_", str(value))
        mallopt(param, int(os.environ[f"MALLOC_{name}_"], 0))  # glibc also reads 0x...


_keep_freed_memory()

# tests compose configs with Hydra directly (initialize_config_dir), as the entry points do after registering
register_resolvers()
# torch and Lightning are imported where tests run, not here: pytest-xdist's controller process loads this file
# too, and only hands out tests (importing them cost it ~9 CPU-s per session)

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session", autouse=True)
def _intra_op_threads() -> None:
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def fake_data_dir(tmp_path_factory) -> Path:
    """All five datasets, ~100 images each, in torchvision's on-disk formats."""
    from tests.fakedata import write_all

    return write_all(tmp_path_factory.mktemp("data"))


@pytest.fixture
def usps_copy(fake_data_dir, tmp_path) -> Path:
    """A data folder of this test's own holding the fake USPS files: a test may rewrite, move or delete them."""
    shutil.copytree(fake_data_dir / "USPS", tmp_path / "data" / "USPS")
    return tmp_path / "data"


@pytest.fixture(autouse=True)
def _skip_cifar_md5(request):
    """torchvision checks CIFAR files against the real archives' MD5s; fake files cannot pass that
    (torchvision's own tests patch the same check). Tests marked ``cifar_md5`` keep the check."""
    from kd_lightning.datasets.synthetic import unverified_cifar

    with unverified_cifar(request.node.get_closest_marker("cifar_md5") is None):
        yield


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch):
    monkeypatch.delenv("KD_DATA_DIR", raising=False)


def real_usps_dir() -> Path | None:
    """Folder holding USPS/usps.bz2: $KD_DATA_DIR, else ../shared/datasets beside the checkout."""
    for candidate in (os.environ.get("KD_DATA_DIR"), SHARED_DATASETS):
        if candidate and (Path(candidate) / "USPS" / "usps.bz2").is_file():
            return Path(candidate)
    return None
