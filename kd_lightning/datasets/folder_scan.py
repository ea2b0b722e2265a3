"""The layout of a user's image folder and its file list, found from names alone (no image is opened).

Three layouts (docs/own-data.md):

- ``<path>/train/<class>/...`` and ``<path>/test/<class>/...`` (torchvision ``ImageFolder`` trees): the test
  tree plays the part of a built-in dataset's official test set; a ``val/`` (or ``valid/``, ``validation/``)
  tree beside them is the validation set as given;
- ``<path>/<class>/...``, one tree: a fixed, stratified share of every class (``holdout_fraction``, drawn
  with ``split_seed``) is held out and plays the official test set;
- ``<path>`` is a ``.npz`` file with ``x_train, y_train, x_test, y_test`` (read by ``folder_read``).

Without a validation tree, the held-out share (or the test tree) is cut into validation and test within each
class (``splits.split_by_class``). Structural problems (no class folders, an empty class, fewer than two classes,
test classes the training set lacks, a class too small for the split) are found here, in milliseconds,
before any pixel is read; each error names the path and the fix.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.datasets.folder import IMG_EXTENSIONS

from kd_lightning.datasets.datamodules import DatasetError
from kd_lightning.seeding import generator

LAYOUTS = ("train_test", "one_tree", "npz")


class FolderError(DatasetError):
    """A user's folder (or .npz) cannot be trained on as it is; the message names the path and the fix."""


@dataclass(frozen=True)
class FileStat:
    """One file the dataset reads: path relative to the root (posix), size, modification time, and the inode's
    number and change time. Tools that copy or unpack files keep their size and mtime (``cp -p``, ``rsync -t``,
    ``tar -x``) but cannot set ctime, so a rewrite in place always shows here."""

    rel: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, rel: str, st: os.stat_result) -> FileStat:
        return cls(rel, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@dataclass(frozen=True)
class Listing:
    """What a folder holds, before reading: ``train`` / ``test`` are ``(relative path, label)`` in order;
    ``files`` every file read, sorted (for an ``.npz``: the file itself, and no per-image lists); ``skipped`` the
    files in class folders that are not images the reader knows (their extension), left out like ``ImageFolder``,
    and images beside a one-tree root's class folders (they have no class)."""

    root: Path
    layout: str
    classes: tuple[str, ...]
    train: tuple[tuple[str, int], ...]
    test: tuple[tuple[str, int], ...]
    files: tuple[FileStat, ...]
    skipped: tuple[str, ...] = ()
    #: a validation tree's image count: the first ``num_val`` entries of ``test`` are its images (else None)
    num_val: int | None = None


def scan(path: str | os.PathLike, holdout_fraction: float, split_seed: int) -> Listing:
    """The listing of ``path``; raises :class:`FolderError` on a structural problem."""
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise FolderError(f"dataset.path={str(path)!r}: no such file or folder. {LAYOUT_HINT}")
    if root.is_file():
        if root.suffix != ".npz":
            raise FolderError(f"dataset.path={str(root)!r} is a file but not a .npz. {LAYOUT_HINT}")
        return Listing(root, "npz", (), (), (), (_stat(root, root.parent),))
    train_dir, test_dir = root / "train", root / "test"
    val_dirs = [root / name for name in VAL_DIRS if _is_split_tree(root / name)]
    splits = {"train": _is_split_tree(train_dir), "test": _is_split_tree(test_dir)}
    if splits["train"] != splits["test"]:
        have, lack = ("train", "test") if splits["train"] else ("test", "train")
        raise FolderError(
            f"{root} has a {have}/ folder of class folders but no {lack}/ folder: add {root / lack}/ with one "
            f"sub-folder per class, or move the class folders of {have}/ up into {root} to let the project hold out "
            f"a test share (a validation tree, {'/, '.join(VAL_DIRS)}/, goes beside train/ and test/)."
        )
    if val_dirs and not splits["train"]:
        raise FolderError(
            f"{val_dirs[0]} is a validation tree, but {root} has no train/ and test/ class trees beside it: add "
            f"them, or move its class folders into {root}'s (validation is then cut from a held-out share)."
        )
    if len(val_dirs) > 1:
        raise FolderError(f"{root} has {len(val_dirs)} validation trees ({[d.name for d in val_dirs]}): keep one.")
    skipped: list[str] = []
    if splits["train"]:
        train = _class_files(train_dir, root, skipped)
        _check_classes(train_dir, train)
        held_out = [_class_files(tree, root, skipped) for tree in (*val_dirs, test_dir)]
        for tree, held in zip((*val_dirs, test_dir), held_out):
            _check_classes(tree, held, at_least=1)
            missing = sorted(set(held) - set(train))
            if missing:
                raise FolderError(
                    f"{tree} has classes the training set lacks: {missing[:5]}{' ...' if len(missing) > 5 else ''}. "
                    f"Add them to {train_dir} (with at least one image each) or remove them from {tree}."
                )
        classes = tuple(sorted(train))
        test = tuple(entry for held in held_out for entry in _labelled(held, classes))
        num_val = len(_labelled(held_out[0], classes)) if val_dirs else None
        files = _sorted_files(train, *held_out)
        return Listing(root, "train_test", classes, _labelled(train, classes), test, files, tuple(skipped), num_val)
    tree = _class_files(root, root, skipped)
    skipped += sorted(f for f in os.listdir(root) if _is_image(f))  # images beside the class folders: no class
    _check_classes(root, tree)
    classes = tuple(sorted(tree))
    every = _labelled(tree, classes)
    kept, held = holdout_split([label for _, label in every], holdout_fraction, split_seed, root, classes)
    labelled = (tuple(every[i] for i in kept), tuple(every[i] for i in held))
    return Listing(root, "one_tree", classes, *labelled, _sorted_files(tree), tuple(skipped))


LAYOUT_HINT = (
    "Give a folder with one sub-folder per class (images inside), or train/ and test/ folders laid out that way, "
    "or a .npz file with x_train, y_train, x_test, y_test (docs/own-data.md)."
)


#: names of a validation tree beside train/ and test/ (ImageNet's val/, Kaggle's valid/)
VAL_DIRS = ("val", "valid", "validation")


def _is_split_tree(path: Path) -> bool:
    """``train/``, ``test/`` or ``val/`` as a split (it holds class folders), not a class of that name (images)."""
    return path.is_dir() and _holds_folders(path)


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


def _class_files(tree: Path, root: Path, skipped: list[str]) -> dict[str, list[FileStat]]:
    """Class folder name -> its image files (recursive, sorted, relative to ``root``), as ``ImageFolder`` reads.
    Plain strings and ``os.scandir``: a config access stats every file, so this must take milliseconds."""
    classes = sorted(d.name for d in os.scandir(tree) if d.is_dir() and not d.name.startswith("."))
    if not classes:
        loose = [f for f in os.listdir(tree) if _is_image(f)]
        found = f" (found {len(loose)} image files directly inside it)" if loose else ""
        raise FolderError(f"{tree} has no class folders{found}. {LAYOUT_HINT}")
    prefix = tree.relative_to(root).as_posix() + "/" if tree != root else ""
    return {name: _walk(str(tree / name), prefix + name + "/", skipped, set()) for name in classes}


def _walk(folder: str, prefix: str, skipped: list[str], above: set[str]) -> list[FileStat]:
    """Image files below ``folder``, recursively; ``above``: the real paths of the folders being walked, so a
    link back up is refused instead of followed forever."""
    real = os.path.realpath(folder)
    if real in above:
        raise FolderError(
            f"{folder} links back to a folder above it ({real}): remove the link (folders are read recursively)."
        )
    files, subfolders = [], []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            subfolders.append(entry)
        elif _is_image(entry.name):
            try:
                files.append(FileStat.of(prefix + entry.name, entry.stat()))
            except OSError as exc:  # a link to nothing
                raise FolderError(
                    f"{entry.path} cannot be read ({exc.strerror}: a broken link?): remove it or point it at an image."
                ) from exc
        else:
            skipped.append(prefix + entry.name)
    for entry in subfolders:
        files += _walk(entry.path, prefix + entry.name + "/", skipped, above | {real})
    return files


def _check_classes(tree: Path, classes: dict[str, list[str]], at_least: int = 2) -> None:
    empty = [name for name, files in classes.items() if not files]
    if empty:
        raise FolderError(
            f"{tree}: class folder(s) without images: {[str(tree / n) for n in empty[:5]]}"
            f"{' ...' if len(empty) > 5 else ''}. Add images ({', '.join(IMG_EXTENSIONS[:6])}, ...) or remove them."
        )
    if len(classes) < at_least:
        nested = [tree / name for name in classes if _holds_folders(tree / name)]
        deeper = (
            f" {nested[0]} holds folders: if those are the classes, set dataset.path={nested[0]}." if nested else ""
        )
        raise FolderError(
            f"{tree} holds {len(classes)} class folder(s) ({sorted(classes)}); a classifier needs at least 2. "
            f"Add a folder per class, each with its images.{deeper}"
        )


def _holds_folders(path: Path) -> bool:
    """Whether ``path`` holds visible sub-folders (``.ipynb_checkpoints`` and the like do not count)."""
    try:
        return any(sub.is_dir() and not sub.name.startswith(".") for sub in path.iterdir())
    except OSError:
        return False


def _labelled(tree: dict[str, list[FileStat]], classes: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    index = {name: i for i, name in enumerate(classes)}
    return tuple((f.rel, index[name]) for name in sorted(tree) for f in tree[name])


def _sorted_files(*trees: dict[str, list[FileStat]]) -> tuple[FileStat, ...]:
    return tuple(sorted((f for tree in trees for files in tree.values() for f in files), key=lambda f: f.rel))


def _stat(file: Path, root: Path) -> FileStat:
    return FileStat.of(file.relative_to(root).as_posix(), file.stat())


def min_class_size(holdout_fraction: float) -> int:
    """The fewest images a class needs in one tree: two held out (one can reach validation, one test) and
    one to train on."""
    n = 3
    while not (held_out_count(n, holdout_fraction) >= 2 and n - held_out_count(n, holdout_fraction) >= 1):
        n += 1
    return n


def held_out_count(n: int, holdout_fraction: float) -> int:
    return math.floor(n * holdout_fraction + 0.5)


def holdout_split(
    labels: list[int], holdout_fraction: float, split_seed: int, root: Path, classes: tuple[str, ...]
) -> tuple[list[int], list[int]]:
    """(kept, held out) indices: ``round(n_c * holdout_fraction)`` of every class, drawn with ``split_seed``
    (its own stream, so it never coincides with the validation/test cut), each list in file order."""
    if not 0.0 < holdout_fraction < 1.0:
        raise FolderError(f"dataset.holdout_fraction={holdout_fraction!r}: must be in (0, 1)")
    need = min_class_size(holdout_fraction)
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    small = {classes[c]: len(idx) for c, idx in sorted(by_class.items()) if len(idx) < need}
    if small:
        raise FolderError(
            f"{root}: class(es) too small for the split: {small} image(s); holding out dataset.holdout_fraction="
            f"{holdout_fraction} of each class needs at least {need} images per class (2 held out for validation "
            f"and test, 1 to train on). Add images, raise dataset.holdout_fraction, or give train/ and test/ folders."
        )
    held: list[int] = []
    for c, idx in sorted(by_class.items()):
        perm = torch.randperm(len(idx), generator=generator(split_seed, "holdout", c)).tolist()
        held += [idx[j] for j in perm[: held_out_count(len(idx), holdout_fraction)]]
    held_set = set(held)
    return [i for i in range(len(labels)) if i not in held_set], sorted(held)
