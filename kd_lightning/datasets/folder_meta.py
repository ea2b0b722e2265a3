"""A folder dataset's metadata, measured from its files and cached beside its content fingerprint.

Model configs interpolate ``${dataset.num_classes}``, ``${dataset.channels}`` and ``${dataset.image_size}``
when the config is composed, so conf/dataset/folder.yaml fills those keys through the ``${kd_folder:<field>}``
resolver (registered in ``kd_lightning/__init__.py``), which calls :func:`metadata_field`.

**The cache.** ``<dataset.cache_dir>/<hash of the folder's absolute path>.json`` holds the folder's file list
(relative path, size, modification and inode change times, inode), its content fingerprint (SHA-256 over every
file's relative path, size and bytes: :mod:`folder_read`) and, per set of reading options (resize, convert,
holdout share, split seed), the measured metadata: classes, channels, image size, training-split mean and std,
split sizes.
On first use the folder is read once (decoding and hashing in one pass); afterwards a stat of the files
(no reading) confirms the cache. A folder whose file list, sizes, times or inodes differ from its cache entry is
**fingerprinted again, with a warning** that says so and gives both fingerprints; runs and teachers of the
old content keep their own folders, since the fingerprint is part of the identity. (The DataModule refuses
instead when the files change between composing a run and reading them, and drops the cache entry, so the
next command fingerprints the folder again: ``folder.py``.)

The path is not part of the fingerprint: a folder moved elsewhere gets a new cache entry and the same
fingerprint, so it finds its runs and teachers again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from torchvision.datasets.folder import IMG_EXTENSIONS

from kd_lightning.datasets.folder_read import FolderData, read_folder
from kd_lightning.datasets.folder_scan import FileStat, FolderError, Listing, scan
from kd_lightning.run.records import write_json

log = logging.getLogger("kd_lightning")
CACHE_VERSION = 3  # 2: the file list holds ctime and inode; 3: 16-bit images scaled, validation split counted
#: images per chunk when summing pixel values and their squares (the mean and std)
STATS_CHUNK = 4096
FIELDS = ("fingerprint", "tag", "layout", "classes", "num_classes", "channels", "image_size", "mean", "std")
#: (folder, cache, options) -> (file list it was measured on, metadata): one stat per config access, no reading
_MEMO: dict[tuple[str, str, str], tuple[tuple[FileStat, ...], dict[str, Any]]] = {}


@dataclass(frozen=True)
class FolderOptions:
    """The dataset keys that decide which pixels a folder yields (part of the cache key), and where the cache is."""

    path: str
    cache_dir: str | None
    resize: int | None = None
    convert: str | None = None
    holdout_fraction: float = 0.3
    split_seed: int = 1234

    @classmethod
    def from_node(cls, node: DictConfig) -> FolderOptions:
        if OmegaConf.is_missing(node, "path") or node.get("path") in (None, ""):
            raise FolderError(
                "dataset=folder needs dataset.path=<folder>: a folder of class folders, a folder with train/ and "
                "test/ class folders, or a .npz file (docs/own-data.md)."
            )
        get = node.get
        return cls(
            str(get("path")),
            None if get("cache_dir") is None else str(get("cache_dir")),
            get("resize"),
            get("convert"),
            float(get("holdout_fraction", 0.3)),
            int(get("split_seed", 1234)),
        )

    def reading_key(self) -> str:
        values = {k: v for k, v in asdict(self).items() if k not in ("path", "cache_dir")}
        return json.dumps(values, sort_keys=True)


def metadata_field(field: str, node: DictConfig) -> Any:
    """``${kd_folder:<field>}``: one measured value of the dataset config ``node``."""
    if field not in FIELDS:
        raise ValueError(f"${{kd_folder:{field}}}: unknown field; choose one of {list(FIELDS)}")
    try:
        return measure(FolderOptions.from_node(node))[field]
    except FolderError:
        if field == "tag":  # in the run folder's name, which Hydra resolves before the run starts: the error is
            return "invalid"  # raised by validate_config instead, where it reads as one clear message
        raise


def measure(options: FolderOptions) -> dict[str, Any]:
    """The folder's metadata: from memory or the cache when its files are unchanged, else read and cached."""
    listing = scan(options.path, options.holdout_fraction, options.split_seed)
    memo_key = (str(listing.root), str(options.cache_dir), options.reading_key())
    known = _MEMO.get(memo_key)
    if known is not None and known[0] == listing.files:
        return known[1]
    cache_file = _cache_file(options.cache_dir, listing.root)
    cached = _read_cache(cache_file)
    files = [list(asdict(f).values()) for f in listing.files]
    meta = None
    if cached is not None and cached["files"] == files:
        meta = cached["metadata"].get(options.reading_key())
    if meta is None:
        if listing.skipped:  # said once, when the folder is read, not at every config access
            log.warning(
                "%s: %d file(s) left out, not images of a known type (%s) in a class folder: e.g. %s",
                listing.root,
                len(listing.skipped),
                ", ".join(IMG_EXTENSIONS),
                ", ".join(listing.skipped[:3]),
            )
        data = read_folder(listing, options.resize, options.convert)
        if cached is not None and cached["files"] != files:
            _warn_changed(listing, cached, data.fingerprint)
        meta = describe(data, listing)
        same = cached is not None and cached["fingerprint"] == data.fingerprint
        by_reading = {**(cached["metadata"] if same else {}), options.reading_key(): meta}
        if cache_file is not None:
            entry = {"version": CACHE_VERSION, "path": str(listing.root), "fingerprint": data.fingerprint}
            write_json(cache_file, {**entry, "files": files, "metadata": by_reading})
    _MEMO[memo_key] = (listing.files, meta)
    return meta


def describe(data: FolderData, listing: Listing) -> dict[str, Any]:
    """Metadata from the pixels: mean and std per channel on the training split only (values in [0, 1])."""
    x = data.train_images
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mean, std = [], []
    for c in range(x.shape[1]):
        total = squares = 0
        for start in range(0, x.shape[0], STATS_CHUNK):  # integer sums, a chunk at a time: no float copy of it all
            chunk = x[start : start + STATS_CHUNK, c].astype(np.int64)
            total += int(chunk.sum())
            squares += int(np.vdot(chunk, chunk))
        m = total / n / 255.0
        var = max(squares / n / 255.0**2 - m * m, 0.0)
        mean.append(round(m, 6))
        std.append(round(max(var**0.5, 1 / 255), 6))  # a constant channel: no division by zero
    return {
        "fingerprint": data.fingerprint,
        "tag": data.fingerprint[:8],
        "layout": listing.layout,
        "classes": list(data.classes),
        "num_classes": len(data.classes),
        "channels": int(x.shape[1]),
        "image_size": int(x.shape[2]),
        "mean": mean,
        "std": std,
        "num_train": int(x.shape[0]),
        "num_test": int(data.test_images.shape[0]),  # the official test set: validation and test
        "num_val": data.num_val,  # a validation tree's images (the first of them), else null: cut by class
    }


def forget(root: str | Path, cache_dir: str | None) -> None:
    """Drop what is known of the folder at ``root`` (memory and cache entry): its next use reads it again."""
    resolved = str(Path(root).expanduser().resolve())
    for key in [k for k in _MEMO if k[0] == resolved]:
        del _MEMO[key]
    cache_file = _cache_file(cache_dir, Path(resolved))
    if cache_file is not None:
        cache_file.unlink(missing_ok=True)


def _cache_file(cache_dir: str | None, root: Path) -> Path | None:
    if cache_dir is None:
        return None
    return Path(cache_dir) / f"{hashlib.sha256(str(root).encode()).hexdigest()[:16]}.json"


def _read_cache(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    try:
        cached = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a damaged cache is measured again
    return cached if cached.get("version") == CACHE_VERSION else None


def _warn_changed(listing: Listing, cached: dict[str, Any], fingerprint: str) -> None:
    old = {row[0]: row[1:] for row in cached["files"]}
    new = {f.rel: list(asdict(f).values())[1:] for f in listing.files}
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    modified = sorted(rel for rel in set(new) & set(old) if new[rel] != old[rel])
    changes = "; ".join(
        f"{len(files)} {what} (e.g. {', '.join(files[:3])})"
        for what, files in (("added", added), ("removed", removed), ("modified", modified))
        if files
    )
    outcome = (
        f"the content is unchanged (fingerprint {fingerprint}): only file times changed"
        if fingerprint == cached["fingerprint"]
        else f"new fingerprint {fingerprint}: runs and teachers of the old content keep their own folders"
    )
    log.warning(
        "%s changed since its fingerprint %s was cached (%s): fingerprinted it again; %s",
        listing.root,
        cached["fingerprint"],
        changes,
        outcome,
    )
