"""Tiny datasets in each dataset's exact on-disk format for the tests (see kd_lightning/datasets/synthetic.py)."""

from kd_lightning.datasets.synthetic import (
    CLASSES,
    SIZES,
    synthetic_images,
    write_all,
    write_dataset,
    write_usps,
)

__all__ = ["CLASSES", "SIZES", "synthetic_images", "write_all", "write_dataset", "write_usps"]
