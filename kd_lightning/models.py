"""Teacher and student networks: unmodified torchvision ResNets with two small adaptations.

Only the first convolution (input channels, optional CIFAR stem) and the classifier
(``num_classes``) change; the stage modules keep torchvision's names (``layer1`` ... ``layer4``)
so forward hooks can find them by path.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision import models

ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "resnet101")
STEMS = ("imagenet", "cifar")


def build_resnet(arch: str, num_classes: int, in_channels: int = 3, stem: str = "imagenet") -> nn.Module:
    """A randomly initialised torchvision ResNet for ``num_classes`` and ``in_channels``.

    ``stem="imagenet"`` keeps the 7x7 stride-2 convolution and max-pool of the paper's Table 3;
    ``stem="cifar"`` swaps in a 3x3 stride-1 convolution and drops the max-pool, the usual choice
    for 32x32 images (spatial maps stay 8x larger).
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"model.arch={arch!r} is not supported; choose one of {ARCHITECTURES}")
    if stem not in STEMS:
        raise ValueError(f"model.stem={stem!r} is not supported; choose one of {STEMS}")
    if num_classes < 2 or in_channels < 1:
        raise ValueError(f"need num_classes >= 2 and in_channels >= 1, got {num_classes}, {in_channels}")
    net = getattr(models, arch)(weights=None, num_classes=num_classes)
    if stem == "cifar":
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    if stem == "cifar" or in_channels != 3:
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    return net


def frozen_forward(model: nn.Module, images: Tensor) -> Tensor:
    """Output of a frozen network (the teacher), computed in inference mode.

    Inference mode skips all autograd bookkeeping, more than ``no_grad`` does. Its outputs may not be
    saved for a backward pass, and the KD loss must save the teacher's probabilities, so the (small)
    output is cloned into a normal tensor.
    """
    with torch.inference_mode():
        out = model(images)
    return out.clone()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
