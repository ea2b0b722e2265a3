"""The paper's split (Table 4), in one place.

The official training set trains. The official test set is shuffled once with ``split_seed`` and cut
``val_fraction`` / rest into validation / test. ``split_seed`` is independent of the run seed, so
every run of every method is validated and tested on exactly the same images.

A user's own folder (``dataset=folder``) cuts within each class instead (:func:`split_by_class`): with a few
held-out images a class, the plain cut can leave a class out of validation or test altogether.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from kd_lightning.seeding import generator

#: how an own folder's official test set is cut (``dataset.val_test_split``): within each class, or the plain cut
VAL_TEST_SPLITS = ("by_class", "plain")


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


def split_by_class(
    labels: Sequence[int], val_fraction: float = 0.7, split_seed: int = 1234
) -> tuple[list[int], list[int]]:
    """(validation, test) indices, cut within each class c of ``n_c`` images: ``floor(n_c * val_fraction)`` to
    validation, kept between 1 and ``n_c - 1`` so each side has the class (a class of one image goes to test).
    Each class is shuffled on its own stream of ``split_seed``; both lists are sorted."""
    split_sizes(len(labels), val_fraction)  # the same check of val_fraction
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(i)
    val: list[int] = []
    for c, idx in sorted(by_class.items()):
        n = len(idx)
        num_val = min(max(math.floor(n * val_fraction), 1), n - 1)
        order = torch.randperm(n, generator=generator(split_seed, "val_test", c)).tolist()
        val += [idx[j] for j in order[:num_val]]
    chosen = set(val)
    return sorted(val), [i for i in range(len(labels)) if i not in chosen]
