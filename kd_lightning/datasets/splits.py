"""The paper's split (Table 4), in one place.

The official training set trains. The official test set is shuffled once with ``split_seed`` and cut
``val_fraction`` / rest into validation / test. ``split_seed`` is independent of the run seed, so
every run of every method is validated and tested on exactly the same images.
"""

from __future__ import annotations

import math

import torch


def split_sizes(num_official_test: int, val_fraction: float = 0.7) -> tuple[int, int]:
    """(validation, test) sizes: ``floor(n * val_fraction)`` and the rest (USPS 2,007 -> 1,404 / 603)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"dataset.val_fraction must be in (0, 1), got {val_fraction}")
    num_val = math.floor(num_official_test * val_fraction)
    return num_val, num_official_test - num_val


def split_official_test(
    num_official_test: int, val_fraction: float = 0.7, split_seed: int = 1234
) -> tuple[list[int], list[int]]:
    """Disjoint index lists (validation, test) into the official test set, fixed by ``split_seed``."""
    num_val, _ = split_sizes(num_official_test, val_fraction)
    order = torch.randperm(num_official_test, generator=torch.Generator().manual_seed(split_seed)).tolist()
    return sorted(order[:num_val]), sorted(order[num_val:])
