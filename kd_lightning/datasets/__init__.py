from kd_lightning.datasets.datamodules import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DatasetError,
    FashionMNISTDataModule,
    ImageClassificationDataModule,
    MNISTDataModule,
    USPSDataModule,
)
from kd_lightning.datasets.splits import split_official_test, split_sizes

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "DatasetError",
    "FashionMNISTDataModule",
    "ImageClassificationDataModule",
    "MNISTDataModule",
    "USPSDataModule",
    "split_official_test",
    "split_sizes",
]
