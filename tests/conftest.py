from __future__ import annotations

import os
from pathlib import Path

import pytest

from kd_lightning.datasets.synthetic import unverified_cifar
from tests.fakedata import write_all

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session")
def fake_data_dir(tmp_path_factory) -> Path:
    """All five datasets, ~100 images each, in torchvision's on-disk formats."""
    return write_all(tmp_path_factory.mktemp("data"))


@pytest.fixture(autouse=True)
def _skip_cifar_md5(request):
    """torchvision checks CIFAR files against the real archives' MD5s; fake files cannot pass that
    (torchvision's own tests patch the same check). Tests marked ``cifar_md5`` keep the check."""
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
