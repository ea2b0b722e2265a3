"""Image folders written by the tests (PNG files), in the layouts ``dataset=folder`` reads (docs/own-data.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from kd_lightning.datasets.synthetic import synthetic_images


def write_images(tree: Path, images: np.ndarray, labels: np.ndarray, names: list[str]) -> Path:
    """``images`` uint8 ``(N, H, W, C)`` as ``tree/<class name>/<i>.png``."""
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = tree / names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(folder / f"{i:05d}.png")
    return tree


def synthetic_tree(
    root: Path,
    num_classes: int = 3,
    per_class: int = 10,
    size: int = 16,
    channels: int = 1,
    train_test: bool = False,
    seed: int = 0,
) -> Path:
    """Class-dependent images (a bright square per class): one tree, or ``train/`` and ``test/`` trees."""
    names = [f"class_{c}" for c in range(num_classes)]
    labels = np.repeat(np.arange(num_classes), per_class)
    images, _ = synthetic_images(len(labels), size, num_classes, channels, seed)
    images, _ = _with_labels(images, labels, size)
    if not train_test:
        return write_images(root, images, labels, names)
    test_images, _ = _with_labels(synthetic_images(len(labels), size, num_classes, channels, seed + 1)[0], labels, size)
    write_images(root / "train", images, labels, names)
    write_images(root / "test", test_images, labels, names)
    return root


def _with_labels(images: np.ndarray, labels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Redraw the bright square for ``labels`` (balanced classes, unlike synthetic_images' random ones)."""
    images = np.minimum(images, 59)
    cell = max(size // 4, 2)
    for i, label in enumerate(labels):
        r, c = divmod(int(label) % 16, 4)
        images[i, r * cell : (r + 1) * cell, c * cell : (c + 1) * cell, :] = 255
    return images, labels


def digits_tree(root: Path) -> Path:
    """scikit-learn's UCI handwritten digits (1,797 8x8 images, 0-16 levels, shipped with the package) as
    one ImageFolder tree of grayscale PNGs, classes "0".."9"."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
    return write_images(root, images, digits.target, [str(d) for d in range(10)])
