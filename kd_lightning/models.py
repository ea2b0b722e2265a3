"""Teacher and student networks: torchvision ResNets with two small adaptations.

ResNet10 (tests, smoke runs) is torchvision's ResNet class with one BasicBlock per stage.

Only the first convolution (input channels, optional CIFAR stem) and the classifier
(``num_classes``) change; the stage modules keep torchvision's names (``layer1`` ... ``layer4``)
so forward hooks can find them by path.

:func:`load_network` is the one reader of a kd-lightning checkpoint's network (the teacher registry,
the ONNX export and the after-test measures all use it); :func:`network_copy` gives the same clean
network from one held in memory.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision import models

from kd_lightning.seeding import isolated_rng

#: torchvision's ResNets, and ResNet10: torchvision's ResNet class with one BasicBlock per stage (the stage widths
#: and module names of ResNet18, 4.9M parameters instead of 11.2M; not in the paper: smoke runs, laptops, tests)
ARCHITECTURES = ("resnet10", "resnet18", "resnet34", "resnet50", "resnet101")
#: the architectures torchvision has no builder for: their blocks per stage
_BLOCKS_PER_STAGE = {"resnet10": [1, 1, 1, 1]}
STEMS = ("imagenet", "cifar")
#: the keys of ``hyper_parameters["net"]``: build_resnet's arguments
NET_KEYS = ("arch", "num_classes", "in_channels", "stem")
NET_PREFIX = "net."
#: what torch.compile puts in front of a wrapped module's parameter names
COMPILED_PREFIX = "_orig_mod."


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
    if arch in _BLOCKS_PER_STAGE:
        net = models.ResNet(models.resnet.BasicBlock, _BLOCKS_PER_STAGE[arch], num_classes=num_classes)
    else:
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


class EnsembleTeacher(nn.Module):
    """K trained networks as one teacher (Hinton et al. 2015; Stanton et al. 2021).

    - ``forward(x)``: the ensemble's prediction, ``log mean_k softmax(z_k)``: logits whose softmax is the mean of
      the members' probabilities (what accuracy, agreement and KL(teacher || student) are measured on);
    - :meth:`soft_logits` ``(x, T)``: ``T * log mean_k softmax(z_k / T)``, whose softmax at temperature ``T`` is
      the KD target ``mean_k softmax(z_k / T)``; averaging logits instead would be a different (sharper) target;
    - :attr:`hint_network`: member 0, whose stage outputs are IKD's feature hints. Independently trained
      networks' channels are not aligned, so their feature maps have no meaningful average: IKD with an
      ensemble matches member 0's features and the ensemble's soft labels.
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    @property
    def hint_network(self) -> nn.Module:
        return self.members[0]

    def soft_logits(self, images: Tensor, temperature: float = 1.0) -> Tensor:
        log_probs = torch.stack([(m(images) / temperature).log_softmax(-1) for m in self.members])
        return temperature * (torch.logsumexp(log_probs, dim=0) - math.log(len(self.members)))

    def forward(self, images: Tensor) -> Tensor:
        return self.soft_logits(images, 1.0)


def hint_network(teacher: nn.Module) -> nn.Module:
    """The network whose stages give feature hints: the teacher itself, or an ensemble's member 0."""
    return teacher.hint_network if isinstance(teacher, EnsembleTeacher) else teacher


def distillation_logits(teacher: nn.Module, images: Tensor, temperature: float) -> Tensor:
    """Frozen logits whose softmax at ``temperature`` is the teacher's KD target: a single network's own logits
    (unchanged, so every single-teacher run computes exactly what it always did), an ensemble's
    :meth:`EnsembleTeacher.soft_logits`."""
    if isinstance(teacher, EnsembleTeacher):
        with torch.inference_mode():
            out = teacher.soft_logits(images, temperature)
        return out.clone()
    return frozen_forward(teacher, images)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class CheckpointError(ValueError):
    """A file that is not a kd-lightning module checkpoint, or whose ``net.*`` weights do not fit its network."""


def network_from_state(net_cfg: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> nn.Module:
    """``build_resnet(**net_cfg)`` loaded strictly with ``state`` (a compiled network's ``_orig_mod.``
    dropped), in eval mode. Built on a private random stream: the caller's stream does not move.

    Raises :class:`CheckpointError` when ``net_cfg`` is not a network or ``state`` does not fit it.
    """
    try:
        with isolated_rng():
            net = build_resnet(**{k: net_cfg[k] for k in NET_KEYS if k in net_cfg})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"hyper_parameters['net']={dict(net_cfg)} does not describe a kd-lightning network ({exc})"
        ) from None
    try:
        net.load_state_dict({k.replace(COMPILED_PREFIX, ""): v for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"its net.* weights do not fit {dict(net_cfg)} ({str(exc).splitlines()[0]})") from None
    return net.eval()


def weights_digest(state: Mapping[str, Tensor]) -> str:
    """SHA-256 of a network's weights: each tensor's name, dtype, shape and bytes, in name order (a compiled
    network's ``_orig_mod.`` dropped). The same weights give the same digest in any file; what else a checkpoint
    holds (optimizer state, epoch, paths) does not count, so a retrained teacher with identical weights is the same
    teacher."""
    sha = hashlib.sha256()
    for name in sorted(state, key=lambda k: k.replace(COMPILED_PREFIX, "")):
        tensor = state[name].detach().cpu().contiguous()
        sha.update(f"{name.replace(COMPILED_PREFIX, '')}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        sha.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def load_network(checkpoint: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """The trained network of a kd-lightning checkpoint (its ``net.*`` weights), on the CPU in eval mode, and
    ``{"checkpoint", "net", "dataset", "epoch", "global_step", "hyper_parameters", "skipped_keys",
    "weights_sha256"}`` (:func:`weights_digest` of the network's weights).

    Works for teacher, scratch, RKD and IKD checkpoints and the teacher registry's ``teacher.ckpt``; other
    weights in the file (IKD's adapters) are listed in ``skipped_keys`` and not loaded. Raises
    :class:`CheckpointError` (its message starts with the path) for anything else.
    """
    path = Path(checkpoint)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many kinds; all mean "not a checkpoint"
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(
            f"{path}: not readable as a PyTorch checkpoint with weights_only=True "
            f"({type(exc).__name__}: {first_line}). "
            "Pass a .ckpt written by kd_lightning.train."
        ) from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, Mapping) else None
    net_cfg = hparams.get("net") if isinstance(hparams, Mapping) else None
    state = ckpt.get("state_dict") if isinstance(ckpt, Mapping) else None
    if not isinstance(net_cfg, Mapping) or not isinstance(state, Mapping):
        raise CheckpointError(
            f"{path}: not a kd-lightning run checkpoint (it has no hyper_parameters['net'] and state_dict). Use a "
            "checkpoint written by kd_lightning.train (a run's checkpoints/*.ckpt or a registry teacher.ckpt)."
        )
    weights = {k[len(NET_PREFIX) :]: v for k, v in state.items() if k.startswith(NET_PREFIX)}
    try:
        net = network_from_state(net_cfg, weights)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    info = {
        "checkpoint": str(path),
        "net": dict(net_cfg),
        "dataset": hparams.get("dataset"),
        "epoch": ckpt.get("epoch"),
        "global_step": ckpt.get("global_step"),
        "hyper_parameters": dict(hparams),
        "skipped_keys": sorted({k.split(".")[0] for k in state if not k.startswith(NET_PREFIX)}),
        "weights_sha256": weights_digest(weights),
    }
    return net, info


def network_copy(net: nn.Module, net_cfg: Mapping[str, Any]) -> nn.Module:
    """A fresh CPU fp32 network, eval mode, with ``net``'s weights: without the compile wrapper, forward
    hooks, device or memory format the training left on ``net`` (what the deployment measures time)."""
    return network_from_state(net_cfg, {k: v.detach().cpu() for k, v in net.state_dict().items()})
