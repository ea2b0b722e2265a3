"""The paper's training augmentation applied to a whole uint8 batch on the training device.

:func:`kd_lightning.datasets.transforms.train_transform` augments one image at a time in the DataLoader
(RandomRotation(15), RandomHorizontalFlip(0.5), RandomVerticalFlip(0.5), then ToDtype + Normalize).
:class:`BatchAugment` does the same to a ``(N, C, H, W)`` uint8 batch in one go, on whatever device the
batch lives on, with parameters drawn per sample: every image gets its own angle, uniform in
``[-rotation, rotation]`` degrees, and its own independent horizontal / vertical flip coins.

Both halves come from kornia: its augmentation samplers draw the per-sample parameters, and
``kornia.geometry.transform.rotate``
does the batched warp. With nearest interpolation and zero fill (torchvision's ``RandomRotation``
defaults) it gives torchvision's per-image ``rotate`` pixel for pixel, counter-clockwise for positive
angles; the tests check that image by image. Rotation comes before the flips, as in the per-image
pipeline; then ``x / 255`` and ``(x - mean) / std``.

The training loader draws each batch's parameters with :meth:`BatchAugment.sample_params` from a
stream of its own (``seed``: run seed, epoch and batch number, :mod:`kd_lightning.seeding`), on the CPU,
before the batch moves to the device. So every method of one seed sees the same augmentation draws
(common random numbers), the teacher and the student see the same view within a step, and a resumed
run draws exactly what an uninterrupted one drew.

:func:`load_as_uint8_tensors` reads a torchvision dataset's raw arrays (``.data`` / ``.targets``)
into one uint8 ``(N, C, H, W)`` tensor and one int64 label tensor, without going through PIL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import kornia.augmentation as K
import numpy as np
import torch
from kornia.geometry.transform import get_affine_matrix2d, rotate, warp_affine
from torch import Tensor, nn
from torch.utils.data import Dataset, Sampler, Subset, TensorDataset, default_collate

from kd_lightning.seeding import derive_seed, generator

__all__ = ["AugmentParams", "AugmentedBatches", "BatchAugment", "SeededBatchSampler", "load_as_uint8_tensors"]


@dataclass(frozen=True)
class AugmentParams:
    """Per-sample parameters of one call: angle in degrees (float), the two flip decisions (bool), and
    (optional) a shift in pixels ``(N, 2)`` (x, y) and an isotropic scale ``(N,)``."""

    angle: Tensor
    hflip: Tensor
    vflip: Tensor
    shift: Tensor | None = None
    scale: Tensor | None = None

    def __len__(self) -> int:
        return int(self.angle.shape[0])

    def _map(self, fn: Callable[[Tensor], Tensor]) -> AugmentParams:
        tensors = (self.angle, self.hflip, self.vflip, self.shift, self.scale)
        return AugmentParams(*(None if t is None else fn(t) for t in tensors))

    def to(self, device: torch.device | str, non_blocking: bool = False) -> AugmentParams:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> AugmentParams:
        """Page-locked copies, so that ``to(cuda, non_blocking=True)`` does not wait for the device."""
        return self._map(Tensor.pin_memory)

    def as_dict(self) -> dict[str, Tensor]:
        """Plain tensors, so the batch survives Lightning's device transfer (frozen dataclasses do not)."""
        out = {"angle": self.angle, "hflip": self.hflip, "vflip": self.vflip}
        out.update({k: v for k, v in (("shift", self.shift), ("scale", self.scale)) if v is not None})
        return out

    @property
    def is_affine(self) -> bool:
        """Whether shifts or zooms were drawn (``sample_params`` draws them only when the recipe turns them on), so the
        batch needs the affine resampling; else a plain rotation does. Decided from which parameters are present,
        never by reading their values back: on a GPU that read would wait for the device on every batch."""
        return self.shift is not None or self.scale is not None

    @classmethod
    def identity(cls, batch_size: int, device: torch.device | str | None = None) -> AugmentParams:
        """Rotation by 0 degrees and no flips for every sample."""
        return cls(
            torch.zeros(batch_size, device=device),
            torch.zeros(batch_size, dtype=torch.bool, device=device),
            torch.zeros(batch_size, dtype=torch.bool, device=device),
        )


class BatchAugment(nn.Module):
    """uint8 ``(N, C, H, W)`` batch -> augmented, normalised float32 batch, on the batch's device.

    ``rotation`` is the maximum angle in degrees; ``hflip`` / ``vflip`` are flip probabilities;
    ``translate`` is the maximum shift in whole pixels, drawn per sample and axis from
    ``{-t, ..., t}`` with zero fill (``translate=4`` on 32 px = torchvision's ``RandomCrop(32, padding=4)``);
    ``scale`` is the maximum relative zoom, drawn from ``U[1 - scale, 1 + scale]`` (the keys of
    ``recipe.augmentation``). In training mode (the default for a new module) :meth:`forward`
    augments; in eval mode (``.eval()``) it only normalises, exactly like ``eval_transform``. The
    parameters of the last call are kept in :attr:`last_params`.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        rotation: float = 15.0,
        hflip: float = 0.5,
        vflip: float = 0.5,
        translate: int = 0,
        scale: float = 0.0,
    ) -> None:
        super().__init__()
        if translate < 0 or int(translate) != translate:
            raise ValueError(f"translate must be a whole number of pixels >= 0, got {translate}")
        if not 0.0 <= scale < 1.0:
            raise ValueError(f"scale must be in [0, 1) (zoom range 1 +- scale), got {scale}")
        self.translate, self.scale = int(translate), float(scale)
        if len(mean) != len(std):
            raise ValueError(f"mean and std need one value per channel, got {len(mean)} and {len(std)}")
        if rotation < 0:
            raise ValueError(f"rotation must be >= 0 degrees, got {rotation}")
        for name, p in (("hflip", hflip), ("vflip", vflip)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        self.rotation = float(rotation)
        self.hflip = float(hflip)
        self.vflip = float(vflip)
        # kornia's samplers: angle ~ U[-rotation, rotation] for every sample (p=1), flips ~ Bernoulli(p).
        # Kept in a tuple, not as submodules: moving this module to a GPU must not move them, so the
        # draws are the same (CPU) numbers on every device.
        self._samplers = (
            K.RandomRotation(degrees=self.rotation, p=1.0),
            K.RandomHorizontalFlip(p=self.hflip),
            K.RandomVerticalFlip(p=self.vflip),
        )
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([float(s) for s in std]).view(1, -1, 1, 1), persistent=False)
        self.last_params: AugmentParams | None = None

    @classmethod
    def from_config(cls, mean: Sequence[float], std: Sequence[float], augmentation: Mapping | None) -> BatchAugment:
        """Same argument as :func:`~kd_lightning.datasets.transforms.train_transform` (``None`` = no augmentation)."""
        aug = dict(augmentation or {})
        return cls(
            mean,
            std,
            *(float(aug.get(k, 0) or 0) for k in ("rotation", "hflip", "vflip")),
            translate=int(aug.get("translate", 0) or 0),
            scale=float(aug.get("scale", 0) or 0),
        )

    @property
    def augments(self) -> bool:
        return self.rotation > 0 or self.hflip > 0 or self.vflip > 0 or self.translate > 0 or self.scale > 0

    def extra_repr(self) -> str:
        return (
            f"rotation={self.rotation}, hflip={self.hflip}, vflip={self.vflip}, translate={self.translate}, "
            f"scale={self.scale}, channels={self.mean.shape[1]}"
        )

    # -- parameters ----------------------------------------------------------------------------
    def sample_params(
        self, batch_size: int, device: torch.device | str | None = None, seed: int | None = None
    ) -> AugmentParams:
        """Independent per-sample parameters from kornia's samplers, drawn on the CPU, returned on ``device``.

        With ``seed`` the draws come from a private generator started at that seed (torch's global
        stream is left where it was); without, from the global stream.
        """
        shape = torch.Size([batch_size, int(self.mean.shape[1]), 1, 1])  # the samplers only read N
        rotation, hflip, vflip = self._samplers
        with contextlib.ExitStack() as stack:
            if seed is not None:
                stack.enter_context(torch.random.fork_rng(devices=[]))
                torch.default_generator.manual_seed(seed)
            params = AugmentParams(
                rotation.forward_parameters(shape)["degrees"].to(torch.float32),
                hflip.forward_parameters(shape)["batch_prob"] > 0.5,
                vflip.forward_parameters(shape)["batch_prob"] > 0.5,
            )
            # drawn after the paper's three, and only when on: the paper recipe's draws are unchanged
            if self.translate:
                params = replace(
                    params, shift=torch.randint(-self.translate, self.translate + 1, (batch_size, 2)).to(torch.float32)
                )
            if self.scale:
                params = replace(params, scale=torch.empty(batch_size).uniform_(1.0 - self.scale, 1.0 + self.scale))
        return params.to(device) if device is not None else params

    # -- the transform -------------------------------------------------------------------------
    def normalize(self, images: Tensor) -> Tensor:
        """``ToDtype(float32, scale=True)`` then ``Normalize(mean, std)``, as in ``eval_transform``."""
        _check_batch(images, self.mean.shape[1])
        return self._scale_and_normalize(images.to(torch.float32))

    def _scale_and_normalize(self, x: Tensor) -> Tensor:
        """In place on float ``x``. The statistics follow the batch's device: the DataModule moves this module to
        the training device, and a split read afterwards on the CPU (ONNX export, data measures) uses it too."""
        return x.mul_(1.0 / 255.0).sub_(self.mean.to(x.device)).div_(self.std.to(x.device))

    def apply(self, images: Tensor, params: AugmentParams) -> Tensor:
        """Rotate, flip (per sample, with ``params``), then normalise. Returns float32 on ``images.device``."""
        _check_batch(images, self.mean.shape[1])
        if len(params) != images.shape[0]:
            raise ValueError(f"params are for {len(params)} samples but the batch holds {images.shape[0]}")
        params = params.to(images.device)
        x = images.to(torch.float32)  # exact: uint8 values 0..255; nearest sampling keeps them integral
        if params.is_affine:  # rotation, zoom and shift in one resampling (about the image centre)
            n, _, h, w = x.shape
            # filled on the device: a tensor built from Python numbers would be a host copy that waits for the GPU
            centre = x.new_empty(n, 2)
            centre[:, 0].fill_((w - 1) / 2)
            centre[:, 1].fill_((h - 1) / 2)
            shift = params.shift if params.shift is not None else torch.zeros(n, 2, device=x.device)
            zoom = (
                (params.scale if params.scale is not None else torch.ones(n, device=x.device)).view(n, 1).expand(n, 2)
            )
            matrix = get_affine_matrix2d(shift, centre, zoom, params.angle)
            x = warp_affine(x, matrix[:, :2], (h, w), mode="nearest", padding_mode="zeros")
        elif self.rotation > 0:  # the configured range, not the drawn angles (no device read); 0 degrees is exact
            x = rotate(x, params.angle, mode="nearest", padding_mode="zeros")
        x = torch.where(params.hflip.view(-1, 1, 1, 1), x.flip(-1), x)
        x = torch.where(params.vflip.view(-1, 1, 1, 1), x.flip(-2), x)
        return self._scale_and_normalize(x)

    def forward(self, images: Tensor, params: AugmentParams | None = None) -> Tensor:
        if not self.training and params is None:
            self.last_params = None
            return self.normalize(images)
        if params is None:
            params = self.sample_params(images.shape[0], images.device)
        self.last_params = params
        return self.apply(images, params)


# -- the training stream: order and augmentation from the seed, not from the global RNG ----------
class SeededBatchSampler(Sampler):
    """Batches of indices whose order is a function of ``(seed, epoch)`` only.

    Yields ``(epoch, batch_number, indices)``. Lightning calls :meth:`set_epoch` before every epoch
    (also after a resume), so epoch ``e`` is shuffled the same way whichever method trains, however
    many random numbers were drawn elsewhere, and whether or not the run was interrupted. Unshuffled,
    it walks the data in order. ``drop_last`` drops the incomplete last batch (a single-sample batch
    breaks BatchNorm when ``layer4`` is 1x1).
    """

    def __init__(self, num_samples: int, batch_size: int, shuffle: bool, drop_last: bool, seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.num_samples, self.batch_size, self.shuffle, self.drop_last, self.seed = (
            num_samples,
            batch_size,
            shuffle,
            drop_last,
            seed,
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> Tensor:
        if not self.shuffle:
            return torch.arange(self.num_samples)
        return torch.randperm(self.num_samples, generator=generator(self.seed, "order", self.epoch))

    def __iter__(self) -> Iterator[tuple[int, int, list[int]]]:
        order = self.order().tolist()
        for number in range(len(self)):
            yield self.epoch, number, order[number * self.batch_size : (number + 1) * self.batch_size]

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)


class AugmentedBatches(Dataset):
    """uint8 tensors indexed by whole batches from :class:`SeededBatchSampler`.

    ``dataset[(epoch, number, indices)]`` is ``(images, labels)``, plus, when ``augment`` augments,
    the batch's augmentation parameters (a dict of CPU tensors) drawn from the stream
    ``(seed, "augment", epoch, number)``. One gather per batch instead of N item lookups and a collate.
    """

    def __init__(self, images: Tensor, labels: Tensor, augment: BatchAugment | None = None, seed: int = 0) -> None:
        self.images, self.labels, self.augment, self.seed = images, labels, augment, seed

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, key: tuple[int, int, list[int]]):
        epoch, number, indices = key
        index = torch.as_tensor(indices, dtype=torch.long)
        images, labels = self.images[index], self.labels[index]
        if self.augment is None or not self.augment.augments:
            return images, labels
        params = self.augment.sample_params(len(indices), seed=derive_seed(self.seed, "augment", epoch, number))
        return images, labels, params.as_dict()


class PerImageBatches(Dataset):
    """A per-image dataset (the PIL pipeline: torchvision transforms in DataLoader workers) indexed by whole
    batches from :class:`SeededBatchSampler`.

    Image ``p`` of batch ``(epoch, number)`` is transformed on torch's CPU stream seeded
    ``(seed, "augment", epoch, number, p)``, so a batch is the same whichever worker builds it and however many
    workers there are (drawn from the workers' own streams, the augmentation depended on ``num_workers``, which
    no identity records), and a resumed run draws what an uninterrupted one drew (its DataModule sets the epoch
    it resumes at).
    """

    def __init__(self, dataset: Dataset, seed: int = 0) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int, list[int]]):
        epoch, number, indices = key
        items = []
        for position, index in enumerate(indices):
            with torch.random.fork_rng(devices=[]):  # the CPU stream only: a worker must not initialise CUDA
                torch.random.default_generator.manual_seed(derive_seed(self.seed, "augment", epoch, number, position))
                items.append(self.dataset[index])
        return default_collate(items)


def _check_batch(images: Tensor, channels: int) -> None:
    if images.dtype != torch.uint8:
        raise TypeError(f"expected a uint8 batch (raw pixel values), got {images.dtype}")
    if images.ndim != 4 or images.shape[1] != channels:
        raise ValueError(f"expected a batch of shape (N, {channels}, H, W), got {tuple(images.shape)}")


# -- raw arrays of torchvision datasets --------------------------------------------------------
def load_as_uint8_tensors(dataset: Dataset) -> tuple[Tensor, Tensor]:
    """``(images uint8 (N, C, H, W), labels int64 (N,))`` from a torchvision dataset's raw arrays.

    Reads ``.data`` / ``.targets`` directly (the dataset's transform is not applied), in the layouts
    torchvision stores them: MNIST / FashionMNIST a uint8 tensor ``N x H x W``; USPS a numpy uint8
    array ``N x H x W``; CIFAR10 / CIFAR100 a numpy uint8 array ``N x H x W x C``. A
    ``torch.utils.data.Subset`` (e.g. the validation split) is followed to its indices.
    """
    if isinstance(dataset, AugmentedBatches):  # the DataModule's tensor pipeline already holds them
        return dataset.images, dataset.labels
    if isinstance(dataset, PerImageBatches):  # the PIL pipeline's
        return load_as_uint8_tensors(dataset.dataset)
    if isinstance(dataset, TensorDataset):
        images, labels = dataset.tensors
        return images, labels
    if isinstance(dataset, Subset):
        images, labels = load_as_uint8_tensors(dataset.dataset)
        index = torch.as_tensor(list(dataset.indices), dtype=torch.long)
        return images[index], labels[index]
    data = getattr(dataset, "data", None)
    targets = getattr(dataset, "targets", None)
    if data is None or targets is None:
        raise TypeError(
            f"{type(dataset).__name__} has no .data/.targets arrays; "
            "load_as_uint8_tensors needs a torchvision image dataset"
        )
    images = data if isinstance(data, Tensor) else torch.from_numpy(np.ascontiguousarray(data))
    if images.dtype != torch.uint8:
        raise TypeError(f"{type(dataset).__name__}.data has dtype {images.dtype}; expected uint8 pixels")
    if images.ndim == 3:  # N x H x W (MNIST, FashionMNIST, USPS)
        images = images.unsqueeze(1)
    elif images.ndim == 4:
        if images.shape[-1] in (1, 3, 4) and images.shape[1] not in (1, 3, 4):  # N x H x W x C (CIFAR)
            images = images.permute(0, 3, 1, 2)
    else:
        raise ValueError(
            f"{type(dataset).__name__}.data has shape {tuple(images.shape)}; expected N x H x W or N x H x W x C"
        )
    labels = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    if labels.shape != (images.shape[0],):
        raise ValueError(
            f"{type(dataset).__name__}: {images.shape[0]} images but targets of shape {tuple(labels.shape)}"
        )
    return images.contiguous(), labels
