"""``dataset=folder``: the DataModule of a user's own labelled images (docs/own-data.md).

It is the built-in datasets' DataModule with another reader: the training split and the official test set
(the ``test/`` tree, or the held-out share of one tree, or the ``.npz`` test arrays) come as uint8 tensors,
and everything after that (the fixed validation/test split, batched on-device augmentation, data factors,
complexity, the report) is the shared code of :class:`ImageClassificationDataModule`.

The config's metadata (classes, channels, size, mean, std, fingerprint) was measured when the config was
composed (:mod:`folder_meta`). The files are read again here and their fingerprint compared with the
config's: a folder changed in between is refused (and its cache entry dropped), so a run never trains on
other data than its identity names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from kd_lightning.datasets.datamodules import ImageClassificationDataModule
from kd_lightning.datasets.folder_meta import forget
from kd_lightning.datasets.folder_read import FolderData, read_folder
from kd_lightning.datasets.folder_scan import FolderError, scan
from kd_lightning.datasets.splits import VAL_TEST_SPLITS, split_by_class

#: the strong and fast recipes' augmentation per family (conf/recipe/strong.yaml, ``recipe.augmentations``)
AUGMENTATION_FAMILIES = ("natural", "digits", "none")


class ArrayImages(Dataset):
    """uint8 images ``(N, C, H, W)`` with labels, shaped like a torchvision dataset (``.data``, ``.targets``,
    ``.transform``): :func:`load_as_uint8_tensors` reads it without copying; the PIL pipeline indexes it."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.data = torch.from_numpy(images)
        self.targets = torch.from_numpy(labels)
        self.transform = None

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __getitem__(self, index: int) -> tuple[Any, int]:
        pixels = self.data[index].permute(1, 2, 0).numpy()
        image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
        return (self.transform(image) if self.transform else image), int(self.targets[index])


class FolderDataModule(ImageClassificationDataModule):
    """A folder (or ``.npz``) at ``data_dir`` (conf/dataset/folder.yaml sets it to ``dataset.path``)."""

    def __init__(
        self,
        fingerprint: str,
        classes: Sequence[str],
        path: str | None = None,
        label: str = "folder",
        resize: int | None = None,
        convert: str | None = None,
        holdout_fraction: float = 0.3,
        augmentation_family: str = "natural",
        cache_dir: str | None = None,
        val_test_split: str = "by_class",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        del path, label, augmentation_family  # config keys read at compose time, not here
        if val_test_split not in VAL_TEST_SPLITS:
            raise FolderError(f"dataset.val_test_split={val_test_split!r}: choose one of {list(VAL_TEST_SPLITS)}")
        self.val_test_split = val_test_split
        self.cache_dir = cache_dir
        self.fingerprint = fingerprint
        self.classes = list(classes)
        self.resize, self.convert, self.holdout_fraction = resize, convert, holdout_fraction
        self._data: FolderData | None = None

    def files_digest(self) -> None:
        """None: a folder's content fingerprint is in its run identity already (``dataset.fingerprint``)."""
        return None

    def prepare_data(self) -> None:
        """Nothing to download; the layout is checked now (file names only), the pixels in :meth:`setup`."""
        scan(self.root, self.holdout_fraction, self.split_seed)

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        self._data = None  # the splits hold their own tensors now

    def val_test_indices(self, official_test: ArrayImages) -> tuple[list[int], list[int]]:
        """A validation tree as given (the first ``num_val`` images); else the held-out share (or test tree) cut
        within each class, so a small folder keeps every class in both (``dataset.val_test_split=plain``: the
        built-in datasets' cut)."""
        num_val = self._read().num_val
        if num_val is not None:
            return list(range(num_val)), list(range(num_val, len(official_test)))
        if self.val_test_split == "plain":
            return super().val_test_indices(official_test)
        return split_by_class(official_test.targets.tolist(), self.val_fraction, self.split_seed)

    def _load(self, train: bool, download: bool = False) -> ArrayImages:
        data = self._read()
        if train:
            return ArrayImages(data.train_images, data.train_labels)
        return ArrayImages(data.test_images, data.test_labels)

    def _read(self) -> FolderData:
        """Read the folder once; refuse data other than the config's fingerprint and classes name."""
        if self._data is not None:
            return self._data
        data = read_folder(scan(self.root, self.holdout_fraction, self.split_seed), self.resize, self.convert)
        if data.fingerprint != self.fingerprint:
            forget(self.root, self.cache_dir)  # the next command composes from the files, not the stale entry
            raise FolderError(
                f"{self.root} changed after this run's config was composed: its fingerprint was {self.fingerprint}, "
                f"the files read now give {data.fingerprint}. Refusing to train on data other than the run's "
                "identity names. Wait until the folder is complete, then run the command again (its cache entry is "
                "dropped, so it is fingerprinted again, and the new content gets its own runs and teachers)."
            )
        if list(data.classes) != self.classes:
            raise FolderError(
                f"{self.root}: classes {list(data.classes)} on disk, the config says {self.classes} "
                "(dataset.classes is measured: do not set it by hand)."
            )
        self._data = data
        return data
