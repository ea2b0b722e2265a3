"""Tiny datasets in each dataset's exact on-disk format for the tests (see kd_lightning/data/synthetic.py)."""

from kd_lightning.data.synthetic import CLASSES, SIZES, synthetic_images, write_all, write_dataset, write_usps

__all__ = ["CLASSES", "SIZES", "synthetic_images", "write_all", "write_dataset", "write_usps"]
