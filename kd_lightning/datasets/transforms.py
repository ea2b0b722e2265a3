"""The paper's augmentation recipe and the evaluation transform, built from torchvision.transforms.v2."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torchvision.transforms import v2


def eval_transform(mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """PIL image -> normalised float tensor, no randomness."""
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])


def train_transform(mean: Sequence[float], std: Sequence[float], augmentation: Mapping | None) -> v2.Compose:
    """Paper section 4.1: RandomRotation(15), RandomHorizontalFlip, RandomVerticalFlip, ToTensor, Normalize.

    ``augmentation`` holds ``rotation`` (degrees), ``hflip`` and ``vflip`` (probabilities); ``None``
    (or all zero) trains on the evaluation transform.
    """
    steps: list = [v2.ToImage()]
    aug = dict(augmentation or {})
    if aug.get("rotation", 0):
        steps.append(v2.RandomRotation(float(aug["rotation"])))
    if aug.get("hflip", 0):
        steps.append(v2.RandomHorizontalFlip(float(aug["hflip"])))
    if aug.get("vflip", 0):
        steps.append(v2.RandomVerticalFlip(float(aug["vflip"])))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)
