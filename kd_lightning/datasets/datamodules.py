"""One LightningDataModule per dataset, all on torchvision's own dataset classes.

The shared base does the work (locating files, splitting, transforms, loaders); each subclass only
names its torchvision class and the folder torchvision expects under ``data_dir``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets
from torchvision.datasets import VisionDataset

from kd_lightning.datasets.batched import (
    AugmentedBatches,
    AugmentParams,
    BatchAugment,
    PerImageBatches,
    SeededBatchSampler,
    load_as_uint8_tensors,
)
from kd_lightning.datasets.factors import DataFactors, apply_eval_factors, apply_train_factors
from kd_lightning.datasets.splits import split_official_test
from kd_lightning.datasets.transforms import eval_transform, train_transform

#: "tensor": uint8 tensors + batched augmentation on the device (fast); "pil": torchvision's per-image
#: transforms in DataLoader workers (the paper's original pipeline)
PIPELINES = ("tensor", "pil")


#: :meth:`ImageClassificationDataModule.files_digest` by the files' (path, size, mtime, ctime, inode)
_FILES_DIGESTS: dict[tuple, str] = {}


class DatasetError(RuntimeError):
    """Data is missing, unreadable or not what the dataset config promises."""


class ImageClassificationDataModule(L.LightningDataModule):
    """Official train set -> train; official test set -> validation / test (see ``splits.py``).

    ``name``, ``num_classes``, ``channels``, ``image_size``, ``mean``, ``std`` and ``top_k`` are the
    dataset's metadata from its config; :meth:`setup` checks the files on disk agree with them.
    """

    dataset_cls: type[VisionDataset]
    #: folder under ``data_dir`` that is passed to torchvision as ``root`` ("" = ``data_dir`` itself)
    root_folder: str = ""
    #: files torchvision reads, relative to ``root``; named in error messages
    expected_files: tuple[str, ...] = ()
    #: the same files, each named (None: ``expected_files``): what :meth:`files_digest` reads
    data_files: tuple[str, ...] | None = None

    def __init__(
        self,
        name: str,
        num_classes: int,
        channels: int,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        data_dir: str | os.PathLike = "data",
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        val_fraction: float = 0.7,
        split_seed: int = 1234,
        download: bool = False,
        augmentation: Mapping | None = None,
        pin_memory: bool | None = None,
        top_k: Sequence[int] = (1,),
        pipeline: str = "tensor",
        seed: int = 0,
        factors: Mapping | None = None,
    ) -> None:
        super().__init__()
        #: the run seed: with the tensor pipeline, data order and augmentation are functions of it
        #: (and of the epoch) alone, the same for every method (kd_lightning/seeding.py)
        self.seed = int(seed)
        self.name = name
        self.num_classes = num_classes
        self.channels = channels
        self.image_size = image_size
        self.mean, self.std = list(mean), list(std)
        #: top-k accuracies worth reporting on this dataset (top-5 on CIFAR100)
        self.top_k = list(top_k)
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.download = download
        self.augmentation = dict(augmentation) if augmentation else None
        #: None: pin when the attached Trainer trains on a GPU (a CPU run on a GPU host creates no CUDA context)
        self.pin_memory = pin_memory
        if pipeline not in PIPELINES:
            raise ValueError(f"dataset.pipeline={pipeline!r}: choose one of {PIPELINES}")
        self.pipeline = pipeline
        self.batch_augment = BatchAugment.from_config(self.mean, self.std, self.augmentation)
        #: controlled data factors (kd_lightning/datasets/factors.py); the defaults are the paper's data
        self.factors = DataFactors.from_config(factors)
        if not self.factors.is_paper_data and pipeline != "tensor":
            raise ValueError("dataset.factors act on the tensor pipeline's uint8 images: set dataset.pipeline=tensor")
        #: what the factors did to the training split (sizes, class counts, realised noise): for results.json
        self.factor_info: dict | None = None
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        #: the splits prepare_data read (by ``train``), handed to setup: each file is read once
        self._prepared: dict[bool, VisionDataset] = {}

    # -- files ---------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return self.data_dir / self.root_folder if self.root_folder else self.data_dir

    def files_digest(self) -> str | None:
        """SHA-256 of the dataset's files (each name and content, :attr:`data_files`), None while any is missing.

        A built-in dataset's identity is its config, so another copy of USPS at the same path would be the same
        data to the run identity; records carry this digest, and a run or teacher made from other files is not
        taken for this data's (kd_lightning/run/data_files.py). Read once per process while the files' size,
        times and inode stay (a multirun skipping 500 CIFAR runs would read 170 MB each time)."""
        paths = [self.root / name for name in (self.data_files if self.data_files is not None else self.expected_files)]
        if not all(path.is_file() for path in paths):
            return None
        stats = tuple(
            (str(p), p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_ctime_ns, p.stat().st_ino) for p in paths
        )
        if stats not in _FILES_DIGESTS:
            sha = hashlib.sha256()
            for path in paths:
                sha.update(f"{path.relative_to(self.root)}|".encode())
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 22), b""):
                        sha.update(block)
            _FILES_DIGESTS[stats] = sha.hexdigest()
        return _FILES_DIGESTS[stats]

    def _load(self, train: bool, download: bool = False) -> VisionDataset:
        """Build the torchvision dataset, turning its failures into one error that names the files."""
        try:
            return self.dataset_cls(str(self.root), train=train, download=download)
        except Exception as exc:  # torchvision raises RuntimeError, OSError, EOFError, ValueError...
            files = ", ".join(str(self.root / f) for f in self.expected_files) or str(self.root)
            hint = (
                "Set paths.data_dir=... (or the KD_DATA_DIR environment variable) to the folder that holds "
                f"them, or pass dataset.download=true to fetch {self.name} from the internet."
            )
            if download:
                hint = "The download failed; check the network, or place the files there by hand."
            raise DatasetError(
                f"{self.name}: could not load the {'train' if train else 'test'} split from {self.root} "
                f"({type(exc).__name__}: {exc}). Expected files: {files}. {hint} "
                "If the files exist, they may be truncated or corrupt: delete and fetch them again."
            ) from exc

    def prepare_data(self) -> None:
        """Use files already on disk (no network, no checksum-triggered download); else download if allowed.

        What is read here is kept for :meth:`setup`, and once set up the data is in memory: Lightning calls
        this again at every fit and test, and the training tool once before them (a run read real USPS's
        bz2 files ten times, ~3 s each)."""
        if self.train_set is not None:
            return
        for train in (True, False):
            if train in self._prepared:
                continue
            try:
                self._prepared[train] = self._load(train)
            except DatasetError:
                if not self.download:
                    raise
                self._prepared[train] = self._load(train, download=True)

    def _split(self, train: bool) -> VisionDataset:
        """The split prepare_data read in this process (handed over once), else read now."""
        prepared = self._prepared.pop(train, None)
        return prepared if prepared is not None else self._load(train)

    # -- splits --------------------------------------------------------------------------------
    def val_test_indices(self, official_test: VisionDataset) -> tuple[list[int], list[int]]:
        """Validation and test indices into the official test set: the project's one fixed cut (splits.py)."""
        return split_official_test(len(official_test), self.val_fraction, self.split_seed)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_raw, official_test = self._split(True), self._split(False)
        train_images, train_labels = load_as_uint8_tensors(train_raw)
        self._check_matches_config(train_images, train_labels)
        val_idx, test_idx = self.val_test_indices(official_test)
        #: indices into the official test set (the same for every run seed)
        self.val_indices, self.test_indices = val_idx, test_idx
        if self.pipeline == "tensor":
            # uint8 tensors in memory; augmentation and normalisation run batched on the training
            # device in on_after_batch_transfer, so no per-image PIL work sits in the loop
            test_images, test_labels = load_as_uint8_tensors(official_test)
            # factors: the training split subsampled / relabelled; evaluation only restricted to the
            # same classes and given the same image content, so every level is scored on the same images
            val, test = (test_images[val_idx], test_labels[val_idx]), (test_images[test_idx], test_labels[test_idx])
            if self.factors.is_paper_data:
                self.factor_info = {"identity": {}, "num_train": int(train_labels.shape[0])}
            else:
                train_images, train_labels, self.factor_info = apply_train_factors(
                    train_images, train_labels, self.factors, self.num_classes
                )
                val, test = (apply_eval_factors(*split, self.factors, self.num_classes) for split in (val, test))
            self.train_set = AugmentedBatches(train_images, train_labels, self.batch_augment, self.seed)
            self.val_set, self.test_set = AugmentedBatches(*val), AugmentedBatches(*test)
            return
        train_raw.transform = train_transform(self.mean, self.std, self.augmentation)
        official_test.transform = eval_transform(self.mean, self.std)
        self.train_set = PerImageBatches(train_raw, self.seed)
        self.val_set = PerImageBatches(Subset(official_test, val_idx))
        self.test_set = PerImageBatches(Subset(official_test, test_idx))

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Tensor pipeline: augment (training) or just normalise (evaluation) the uint8 batch on its device."""
        if self.pipeline != "tensor":
            return batch
        augment = self.batch_augment.to(batch[0].device)
        if len(batch) == 3:  # a training batch with its augmentation parameters (AugmentedBatches)
            images, labels, params = batch
            return augment.apply(images, AugmentParams(**params)), labels
        images, labels = batch
        return augment.normalize(images), labels

    def _check_matches_config(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        expected = (self.channels, self.image_size, self.image_size)
        if tuple(images.shape[1:]) != expected:
            raise DatasetError(
                f"{self.name}: images in {self.root} have shape {tuple(images.shape[1:])} but the dataset config "
                f"says (channels, H, W) = {expected} (keys dataset.channels / dataset.image_size)."
            )
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise DatasetError(
                f"{self.name}: labels in {self.root} span [{int(labels.min())}, {int(labels.max())}] "
                f"but dataset.num_classes={self.num_classes}."
            )

    # -- loaders -------------------------------------------------------------------------------
    def _trains_on_gpu(self) -> bool:
        trainer = self.trainer
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        batch_size = self.batch_size if train else self.eval_batch_size
        # A last batch of one sample breaks BatchNorm when layer4 is 1x1 (USPS, 7,291 % 90 == 1).
        drop_last = train
        common = {
            # fresh workers each epoch (persistent workers would carry hidden state into the next)
            "persistent_workers": False,
            "pin_memory": self.pin_memory if self.pin_memory is not None else self._trains_on_gpu(),
        }
        # Whole batches; order and augmentation from the seed's own streams (batched.py), in either pipeline, so
        # they do not depend on the workers. The tensor pipeline's one gather per batch needs no workers.
        sampler = SeededBatchSampler(len(dataset), batch_size, shuffle=train, drop_last=drop_last, seed=self.seed)
        workers = 0 if self.pipeline == "tensor" else self.num_workers
        return DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=workers, **common)

    def train_dataloader(self) -> DataLoader:
        loader = self._loader(self.train_set, train=True)
        if self.trainer is not None:
            # Lightning creates the first iterator (and workers start prefetching from it) before its set_epoch:
            # a resumed fit would draw epoch 0's order and augmentation in the epoch it resumes at
            loader.sampler.set_epoch(self.trainer.fit_loop.epoch_progress.current.processed)
        return loader

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)


class MNISTDataModule(ImageClassificationDataModule):
    dataset_cls = datasets.MNIST
    expected_files = tuple(
        f"MNIST/raw/{f}"
        for f in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    )


class FashionMNISTDataModule(ImageClassificationDataModule):
    dataset_cls = datasets.FashionMNIST
    expected_files = tuple(f.replace("MNIST/", "FashionMNIST/") for f in MNISTDataModule.expected_files)


class USPSDataModule(ImageClassificationDataModule):
    dataset_cls = datasets.USPS
    root_folder = "USPS"
    expected_files = ("usps.bz2", "usps.t.bz2")


class CIFAR10DataModule(ImageClassificationDataModule):
    dataset_cls = datasets.CIFAR10
    expected_files = (
        "cifar-10-batches-py/data_batch_1..5",
        "cifar-10-batches-py/test_batch",
        "cifar-10-batches-py/batches.meta",
    )
    data_files = (
        *(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
        "cifar-10-batches-py/test_batch",
        "cifar-10-batches-py/batches.meta",
    )


class CIFAR100DataModule(ImageClassificationDataModule):
    dataset_cls = datasets.CIFAR100
    expected_files = ("cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta")
