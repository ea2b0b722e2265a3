from __future__ import annotations

import os
from pathlib import Path

# One intra-op thread, in this process and in the runs tests start as subprocesses (they inherit it): the test
# networks are tiny, and on a CPU shared with other jobs two OpenMP threads spin on each other (a training
# step measured 0.05 s with one thread, 0.2-1.5 s with two, on a loaded 2-core machine). Set
# OMP_NUM_THREADS to choose another count.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from kd_lightning.run.resolvers import register_resolvers  # noqa: E402

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
