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

    ``augmentation`` holds ``rotation`` (degrees), ``hflip`` and ``vflip`` (probabilities), and for the
    strong recipe ``translate`` (pixels) and ``scale`` (relative zoom range); ``None`` (or all zero)
    trains on the evaluation transform. The tensor pipeline's ``BatchAugment`` draws integer shifts;
    this per-image path uses torchvision's ``RandomAffine`` (the same ranges).
    """
    steps: list = [v2.ToImage()]
    aug = dict(augmentation or {})
    translate, scale = int(aug.get("translate", 0) or 0), float(aug.get("scale", 0) or 0)
    if translate or scale:
        steps.append(_PixelAffine(float(aug.get("rotation", 0) or 0), translate, scale))
    elif aug.get("rotation", 0):
        steps.append(v2.RandomRotation(float(aug["rotation"])))
    if aug.get("hflip", 0):
        steps.append(v2.RandomHorizontalFlip(float(aug["hflip"])))
    if aug.get("vflip", 0):
        steps.append(v2.RandomVerticalFlip(float(aug["vflip"])))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


class _PixelAffine(v2.Transform):
    """``v2.RandomAffine`` with the shift given in pixels (``translate`` px on either axis)."""

    def __init__(self, degrees: float, translate: int, scale: float) -> None:
        super().__init__()
        self.degrees, self.translate, self.scale = degrees, translate, scale

    def forward(self, *inputs):
        image = inputs[0] if len(inputs) == 1 else inputs
        height, width = v2.functional.get_size(image)
        affine = v2.RandomAffine(
            self.degrees,
            translate=(self.translate / width, self.translate / height) if self.translate else None,
            scale=(1 - self.scale, 1 + self.scale) if self.scale else None,
        )
        return affine(*inputs)
