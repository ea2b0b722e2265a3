"""Read a listed folder (or .npz) into uint8 arrays, and fingerprint the very bytes that were decoded.

One pass over the files does both: every file's bytes go into the content hash and into PIL. So the
fingerprint a run records is the fingerprint of what it trained on, and reading twice costs nothing extra
(the metadata measurement and the DataModule both call :func:`read_folder`).

Pixel rules: ``convert`` (``"L"`` or ``"RGB"``) converts every image; without it, 1-bit images read as
grayscale and palette images as RGB, and every image must then have the same channel count. 16-bit grayscale
keeps its top 8 bits (the full 0-65535 range onto 0-255, as torchvision's ``convert_image_dtype`` scales; PIL's
own conversion would clip every value above 255 to white). ``resize``
resizes every image to ``resize x resize`` (bilinear); without it, every image must be square and of one
size. Problems are collected over the whole folder and reported together, the first few named.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from kd_lightning.datasets.folder_scan import FolderError, Listing

#: modes read as they are: their channel count is the image's
NATIVE_MODES = {"L": 1, "RGB": 3, "RGBA": 4}
CONVERSIONS = ("L", "RGB")
#: how many offending files an error names
SHOWN = 5


@dataclass
class FolderData:
    """uint8 images ``(N, C, H, W)`` and int64 labels of the training and the held-out (official test) split."""

    classes: tuple[str, ...]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    fingerprint: str
    #: the first ``num_val`` held-out images are a validation tree's (``Listing.num_val``), else None
    num_val: int | None = None


def read_folder(listing: Listing, resize: int | None = None, convert: str | None = None) -> FolderData:
    """Decode every listed file, check sizes and channels agree, and hash the bytes read."""
    if convert is not None and convert not in CONVERSIONS:
        raise FolderError(f"dataset.convert={convert!r}: choose one of {list(CONVERSIONS)} or null (no conversion)")
    if resize is not None and (not isinstance(resize, int) or resize < 1):
        raise FolderError(f"dataset.resize={resize!r}: give a size in pixels (an integer >= 1) or null")
    if listing.layout == "npz":
        return _read_npz(listing.root, resize, convert)
    digest = hashlib.sha256()
    pixels: dict[str, np.ndarray] = {}
    odd_modes: dict[str, str] = {}
    broken: list[str] = []
    for stat in listing.files:  # sorted by path: the hash does not depend on the split options
        try:
            data = (listing.root / stat.rel).read_bytes()
            _update(digest, stat.rel, data)
            pixels[stat.rel] = decode(data, resize, convert)
        except _ModeError as exc:
            odd_modes[stat.rel] = str(exc)
        except UnidentifiedImageError:  # its message names the in-memory buffer, not the file
            broken.append(f"{stat.rel} (not an image format PIL recognises)")
        except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError... on bad files
            broken.append(f"{stat.rel} ({type(exc).__name__}: {exc})")
    if broken:
        raise FolderError(
            f"{listing.root}: {len(broken)} file(s) cannot be read as images: {broken[:SHOWN]}"
            f"{' ...' if len(broken) > SHOWN else ''}. Delete or replace them (or move them out of the folder)."
        )
    _check_uniform(listing.root, pixels, odd_modes)
    train, test = (_stack(pixels, split) for split in (listing.train, listing.test))
    return FolderData(listing.classes, *train, *test, digest.hexdigest()[:16], listing.num_val)


def _update(digest: hashlib._Hash, rel: str, data: bytes) -> None:
    digest.update(f"{rel}\0{len(data)}\0".encode())
    digest.update(data)


class _ModeError(ValueError):
    """An image mode with no direct 8-bit reading (float, CMYK, LA...): needs ``convert``."""


#: PIL modes of 16-bit grayscale (``I`` is 32-bit: read as 16-bit when its values fit)
WIDE_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _eight_bit_gray(img: Image.Image) -> Image.Image:
    """16-bit grayscale -> 8-bit ``L``: the top 8 bits of each value (65535 -> 255, 256 -> 1)."""
    wide = np.asarray(img)
    if wide.size and (wide.min() < 0 or wide.max() > 65535):
        raise ValueError(f"mode {img.mode} with values outside 0-65535: save it as 8- or 16-bit")
    return Image.fromarray((wide.astype(np.uint32) >> 8).astype(np.uint8), "L")


def decode(data: bytes, resize: int | None, convert: str | None) -> np.ndarray:
    """One encoded image -> uint8 ``(H, W, C)``."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        if img.mode in WIDE_GRAY_MODES:
            img = _eight_bit_gray(img)
        if convert is not None:
            img = img.convert(convert)
        elif img.mode == "1":
            img = img.convert("L")
        elif img.mode == "P":
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        elif img.mode not in NATIVE_MODES:
            raise _ModeError(img.mode)
        if resize is not None and img.size != (resize, resize):
            img = img.resize((resize, resize), Image.Resampling.BILINEAR)
        array = np.asarray(img, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def _count(files: list[str]) -> str:
    return f"{len(files)} file{'s' if len(files) != 1 else ''}"


def _examples(files: list[str]) -> str:
    return ", ".join(files[:3]) + (" ..." if len(files) > 3 else "")


def _check_uniform(root: Path, pixels: dict[str, np.ndarray], odd_modes: dict[str, str]) -> None:
    """One channel count (else ``convert``) and one square size (else ``resize``), over the whole folder."""
    if odd_modes:
        files = [f"{rel} (mode {mode})" for rel, mode in odd_modes.items()]
        raise FolderError(
            f"{root}: {len(files)} image(s) have no 8-bit grayscale or RGB reading: {files[:SHOWN]}. "
            "Set dataset.convert=L (grayscale) or dataset.convert=RGB to convert every image."
        )
    by_channels: dict[int, list[str]] = {}
    by_size: dict[tuple[int, int], list[str]] = {}
    for rel, array in pixels.items():
        by_channels.setdefault(array.shape[2], []).append(rel)
        by_size.setdefault((array.shape[1], array.shape[0]), []).append(rel)
    if len(by_channels) > 1:
        groups = "; ".join(f"{c} channel(s): {_count(f)}, e.g. {_examples(f)}" for c, f in sorted(by_channels.items()))
        raise FolderError(
            f"{root}: images have different channel counts ({groups}). Set dataset.convert=L (grayscale) or "
            "dataset.convert=RGB to convert every image to one."
        )
    if len(by_size) > 1 or any(w != h for w, h in by_size):
        groups = "; ".join(f"{w}x{h}: {_count(f)}, e.g. {_examples(f)}" for (w, h), f in sorted(by_size.items()))
        what = "different sizes" if len(by_size) > 1 else "a size that is not square"
        raise FolderError(
            f"{root}: images have {what} ({groups}). Set dataset.resize=<pixels> to resize every image to a "
            "square of that size (e.g. the most common side)."
        )


def _stack(pixels: dict[str, np.ndarray], split: tuple[tuple[str, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    images = np.stack([pixels[rel] for rel, _ in split]).transpose(0, 3, 1, 2) if split else np.zeros((0, 1, 1, 1))
    return np.ascontiguousarray(images, dtype=np.uint8), np.asarray([label for _, label in split], dtype=np.int64)


# -- .npz ----------------------------------------------------------------------------------------
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _read_npz(path: Path, resize: int | None, convert: str | None) -> FolderData:
    """``x_*``: uint8 ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)``; ``y_*``: integer labels 0..K-1;
    an optional ``classes`` array names them."""
    data = path.read_bytes()
    digest = hashlib.sha256()
    _update(digest, "data.npz", data)
    try:
        arrays = dict(np.load(io.BytesIO(data), allow_pickle=False))
    except Exception as exc:  # noqa: BLE001 - a truncated zip, a pickle: one message
        raise FolderError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc}). {NPZ_HINT}") from exc
    missing = [k for k in NPZ_KEYS if k not in arrays]
    if missing:
        raise FolderError(f"{path}: missing array(s) {missing} (has {sorted(arrays)}). {NPZ_HINT}")
    y_train, y_test = (_labels(path, arrays[k], k) for k in ("y_train", "y_test"))
    num_classes = int(y_train.max()) + 1
    classes = tuple(_name(c) for c in arrays["classes"]) if "classes" in arrays else tuple(map(str, range(num_classes)))
    empty = sorted(set(range(len(classes))) - set(y_train.tolist()))
    if empty or len(classes) < num_classes:
        raise FolderError(
            f"{path}: classes without training images: {[classes[c] for c in empty[:SHOWN]] or 'beyond classes'}; "
            "labels must run 0..K-1 with every class in y_train. Relabel, or drop those classes."
        )
    if len(classes) < 2:
        raise FolderError(f"{path}: y_train holds 1 class; a classifier needs at least 2.")
    unseen = sorted(set(y_test.tolist()) - set(y_train.tolist()))
    if unseen:
        raise FolderError(
            f"{path}: y_test has classes the training set lacks: {unseen[:SHOWN]}. Add training images of them, "
            "or remove them from x_test / y_test."
        )
    train = (_npz_images(path, arrays["x_train"], "x_train", resize, convert), y_train)
    test = (_npz_images(path, arrays["x_test"], "x_test", resize, convert), y_test)
    for (x, y), key in ((train, "train"), (test, "test")):
        if len(x) != len(y):
            raise FolderError(f"{path}: x_{key} holds {len(x)} images but y_{key} {len(y)} labels.")
    if train[0].shape[1:] != test[0].shape[1:]:
        raise FolderError(
            f"{path}: x_train images are (C, H, W) = {train[0].shape[1:]}, x_test {test[0].shape[1:]}. "
            "Set dataset.resize / dataset.convert, or save both splits alike."
        )
    return FolderData(classes, *train, *test, digest.hexdigest()[:16])


NPZ_HINT = "Save it with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...), pixels as uint8."


def _name(value: object) -> str:
    """A class name from a ``classes`` array: bytes (``np.array([b"cat"])``) decoded, not written ``b'cat'``."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _labels(path: Path, y: np.ndarray, key: str) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
        raise FolderError(f"{path}: {key} must be a 1-D array of integer labels >= 0, got {y.dtype} {y.shape}.")
    if not y.size:
        raise FolderError(f"{path}: {key} is empty.")
    return y.astype(np.int64)


def _npz_images(path: Path, x: np.ndarray, key: str, resize: int | None, convert: str | None) -> np.ndarray:
    """``(N, C, H, W)`` uint8, converted and resized through PIL like image files."""
    if x.dtype != np.uint8:
        raise FolderError(f"{path}: {key} has dtype {x.dtype}; save pixels as uint8 (0-255). {NPZ_HINT}")
    if x.ndim == 3:
        x = x[..., None]
    elif x.ndim == 4 and x.shape[1] in (1, 3, 4) and x.shape[-1] not in (1, 3, 4):
        x = x.transpose(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
    elif x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise FolderError(f"{path}: {key} has shape {x.shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W).")
    if convert is not None or resize is not None:
        x = np.stack([_npz_image(image, resize, convert) for image in x])
    elif x.shape[1] != x.shape[2]:
        raise FolderError(f"{path}: {key} images are {x.shape[2]}x{x.shape[1]}, not square: set dataset.resize.")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _npz_image(image: np.ndarray, resize: int | None, convert: str | None) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return decode(buffer.getvalue(), resize, convert)
