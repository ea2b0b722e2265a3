"""Synthetic datasets written in each dataset's exact torchvision on-disk format.

Used by the tests and by the benchmark where the real files cannot be fetched: torchvision's own
readers then load them, so the real loading code is what runs. Images are class-dependent (noise
plus a bright square whose position encodes the label, never all-zero), so a few training steps
already beat chance.
"""

from __future__ import annotations

import bz2
import contextlib
import pickle
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

SIZES = {"mnist": 28, "fashion_mnist": 28, "usps": 16, "cifar10": 32, "cifar100": 32}
CLASSES = {"mnist": 10, "fashion_mnist": 10, "usps": 10, "cifar10": 10, "cifar100": 100}


def synthetic_images(n: int, size: int, num_classes: int, channels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, size, size, channels) and int labels with a label-dependent bright patch."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n)
    images = rng.integers(0, 60, (n, size, size, channels), dtype=np.uint8)
    cell = max(size // 4, 2)
    for i, label in enumerate(labels):
        r, c = divmod(int(label) % 16, 4)
        images[i, r * cell : (r + 1) * cell, c * cell : (c + 1) * cell, :] = 255
    return images, labels


def _write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x00000803 if array.ndim == 3 else 0x00000801
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        for dim in array.shape:
            f.write(struct.pack(">I", dim))
        f.write(array.astype(np.uint8).tobytes())


def write_mnist_like(root: Path, folder: str, n_train: int, n_test: int) -> None:
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = synthetic_images(n, 28, 10, 1, seed)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images[..., 0])
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)


def write_usps(root: Path, n_train: int, n_test: int) -> None:
    folder = root / "USPS"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("usps.bz2", n_train, 0), ("usps.t.bz2", n_test, 1)):
        images, labels = synthetic_images(n, 16, 10, 1, seed)
        values = images[..., 0].reshape(n, -1) / 127.5 - 1.0  # libsvm values in [-1, 1]
        lines = [
            f"{label + 1} " + " ".join(f"{j + 1}:{v:.6f}" for j, v in enumerate(row))
            for label, row in zip(labels, values)
        ]
        (folder / name).write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))


def write_cifar(root: Path, hundred: bool, n_train: int, n_test: int) -> None:
    num_classes = 100 if hundred else 10
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)
    label_key = "fine_labels" if hundred else "labels"

    def batch(n: int, seed: int) -> dict:
        images, labels = synthetic_images(n, 32, num_classes, 3, seed)
        data = images.transpose(0, 3, 1, 2).reshape(n, 3072)  # 1024 R, 1024 G, 1024 B, row-major
        out = {"data": data, label_key: [int(x) for x in labels]}
        if hundred:
            out["coarse_labels"] = [int(x) // 5 for x in labels]
        return out

    def dump(name: str, obj: dict) -> None:
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f)

    if hundred:
        dump("train", batch(n_train, 0))
        dump("test", batch(n_test, 1))
        dump(
            "meta",
            {
                "fine_label_names": [f"class{i}" for i in range(100)],
                "coarse_label_names": [f"super{i}" for i in range(20)],
            },
        )
    else:
        for i, part in enumerate(np.array_split(np.arange(n_train), 5)):
            dump(f"data_batch_{i + 1}", batch(len(part), 10 + i))
        dump("test_batch", batch(n_test, 1))
        dump("batches.meta", {"label_names": [f"class{i}" for i in range(10)]})


WRITERS = {
    "mnist": lambda root, n_train, n_test: write_mnist_like(root, "MNIST", n_train, n_test),
    "fashion_mnist": lambda root, n_train, n_test: write_mnist_like(root, "FashionMNIST", n_train, n_test),
    "usps": write_usps,
    "cifar10": lambda root, n_train, n_test: write_cifar(root, False, n_train, n_test),
    "cifar100": lambda root, n_train, n_test: write_cifar(root, True, n_train, n_test),
}


def write_dataset(root: str | Path, name: str, n_train: int, n_test: int) -> Path:
    """Write dataset ``name`` under ``root`` in the layout ``paths.data_dir`` expects; returns ``root``."""
    if name not in WRITERS:
        raise ValueError(f"no synthetic writer for dataset {name!r}; choose one of {sorted(WRITERS)}")
    root = Path(root)
    WRITERS[name](root, n_train, n_test)
    return root


def write_all(root: str | Path, n_train: int = 96, n_test: int = 40) -> Path:
    """Write all five datasets under ``root``."""
    for name in WRITERS:
        write_dataset(root, name, n_train, n_test)
    return Path(root)


@contextlib.contextmanager
def unverified_cifar(active: bool) -> Iterator[None]:
    """Synthetic CIFAR files cannot match torchvision's MD5s of the real archives: skip those checks.

    torchvision checks the data files (``CIFAR10._check_integrity``) and, separately, the label-name
    file (``_load_meta`` through the module's ``check_integrity``); both are switched off, then restored."""
    if not active:
        yield
        return
    import torchvision.datasets.cifar as cifar

    with contextlib.ExitStack() as undo:
        for owner, name in ((cifar.CIFAR10, "_check_integrity"), (cifar, "check_integrity")):
            original = owner.__dict__[name]
            setattr(owner, name, lambda *args, **kwargs: True)  # CIFAR100 inherits CIFAR10's
            undo.callback(setattr, owner, name, original)
        yield
