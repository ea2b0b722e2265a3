"""BatchAugment and load_as_uint8_tensors against the per-image torchvision path they replace."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from torchvision import datasets
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from kd_lightning import PROJECT_ROOT
from kd_lightning.datasets.batched import (
    AugmentParams,
    BatchAugment,
    load_as_uint8_tensors,
)
from kd_lightning.datasets.transforms import eval_transform

DATASETS = {
    "mnist": lambda root, train: datasets.MNIST(str(root), train=train),
    "fashion_mnist": lambda root, train: datasets.FashionMNIST(str(root), train=train),
    "usps": lambda root, train: datasets.USPS(str(root / "USPS"), train=train),
    "cifar10": lambda root, train: datasets.CIFAR10(str(root), train=train),
    "cifar100": lambda root, train: datasets.CIFAR100(str(root), train=train),
}


def dataset_cfg(name: str):
    return OmegaConf.load(PROJECT_ROOT / "conf" / "dataset" / f"{name}.yaml")


def per_image(image: torch.Tensor, angle: float, hflip: bool, vflip: bool, mean, std) -> torch.Tensor:
    """The DataModule's path for one image with fixed parameters (what v2.RandomRotation/Flip do once drawn)."""
    out = TF.rotate(image, angle, interpolation=v2.InterpolationMode.NEAREST, fill=0.0)
    if hflip:
        out = TF.horizontal_flip(out)
    if vflip:
        out = TF.vertical_flip(out)
    return TF.normalize(TF.to_dtype(out, torch.float32, scale=True), list(mean), list(std))


# -- loading the raw arrays ---------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DATASETS))
def test_raw_arrays_match_per_image_path(fake_data_dir, name):
    cfg = dataset_cfg(name)
    ds = DATASETS[name](fake_data_dir, True)
    images, labels = load_as_uint8_tensors(ds)
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert tuple(images.shape) == (len(ds), cfg.channels, cfg.image_size, cfg.image_size)
    assert labels.tolist() == [ds[i][1] for i in range(len(ds))]  # same labels as __getitem__
    to_image = v2.ToImage()
    for i in (0, 7, len(ds) - 1):
        assert torch.equal(images[i], to_image(ds[i][0]).as_subclass(torch.Tensor))  # same pixels as PIL -> ToImage


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_no_augmentation_equals_eval_transform(fake_data_dir, name):
    cfg = dataset_cfg(name)
    images, _ = load_as_uint8_tensors(DATASETS[name](fake_data_dir, True))
    eval_ds = DATASETS[name](fake_data_dir, True)
    eval_ds.transform = eval_transform(cfg.mean, cfg.std)
    expected = torch.stack([eval_ds[i][0].as_subclass(torch.Tensor) for i in range(len(eval_ds))])

    off = BatchAugment.from_config(cfg.mean, cfg.std, None)
    assert not off.augments
    torch.testing.assert_close(off(images), expected, atol=1e-5, rtol=0)
    paper = BatchAugment.from_config(cfg.mean, cfg.std, {"rotation": 15, "hflip": 0.5, "vflip": 0.5}).eval()
    torch.testing.assert_close(paper(images), expected, atol=1e-5, rtol=0)  # eval mode: normalise only
    assert paper.last_params is None
    # the statistics the normalisation produces are the same too
    out = off(images)
    assert abs(out.mean().item() - expected.mean().item()) < 1e-5
    assert abs(out.std().item() - expected.std().item()) < 1e-5


def test_subset_follows_indices(fake_data_dir):
    ds = DATASETS["usps"](fake_data_dir, False)
    images, labels = load_as_uint8_tensors(ds)
    sub_images, sub_labels = load_as_uint8_tensors(torch.utils.data.Subset(ds, [3, 1, 4]))
    assert torch.equal(sub_images, images[[3, 1, 4]]) and torch.equal(sub_labels, labels[[3, 1, 4]])


# -- the transform -----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 32, 32), (1, 20, 28)])
def test_zero_rotation_no_flip_is_identity(shape):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, *shape), dtype=torch.uint8, generator=gen)
    aug = BatchAugment([0.0] * shape[0], [1.0] * shape[0])
    out = aug(images, params=AugmentParams.identity(6))
    assert torch.equal(out, aug.normalize(images))  # exactly the normalised input
    assert torch.equal((out * 255).round().to(torch.uint8), images)


@pytest.mark.parametrize("shape", [(1, 16, 16), (1, 28, 28), (3, 32, 32), (3, 20, 28)])
def test_each_sample_matches_torchvision_per_image(shape):
    """Per-sample angles and flips give, image by image, what torchvision's rotate/flip give."""
    gen = torch.Generator().manual_seed(1)
    n = 12
    images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=gen)
    mean, std = [0.3] * shape[0], [0.25] * shape[0]
    aug = BatchAugment(mean, std)
    torch.manual_seed(1)
    params = aug.sample_params(n)
    params = AugmentParams(torch.cat([params.angle[:-2], torch.tensor([-15.0, 15.0])]), params.hflip, params.vflip)
    out = aug(images, params=params)
    for i in range(n):
        expected = per_image(images[i], float(params.angle[i]), bool(params.hflip[i]), bool(params.vflip[i]), mean, std)
        torch.testing.assert_close(out[i], expected, atol=1e-5, rtol=0)


def test_flips_are_exact_and_ordered_after_rotation():
    images = torch.arange(2 * 16 * 16, dtype=torch.int64).remainder(251).to(torch.uint8).view(2, 1, 16, 16)
    aug = BatchAugment([0.0], [1.0])
    both = AugmentParams(torch.tensor([0.0, 10.0]), torch.tensor([True, True]), torch.tensor([True, False]))
    out = aug(images, params=both) * 255
    torch.testing.assert_close(out[0], images[0].flip(-1).flip(-2).float(), atol=1e-4, rtol=0)
    rotated_then_flipped = TF.horizontal_flip(TF.rotate(images[1], 10.0)).float()
    torch.testing.assert_close(out[1], rotated_then_flipped, atol=1e-4, rtol=0)


def test_forward_samples_per_sample_params_on_the_batch_device():
    aug = BatchAugment([0.5], [0.5])
    images = torch.randint(0, 256, (64, 1, 16, 16), dtype=torch.uint8)
    torch.manual_seed(3)
    out = aug(images)
    assert out.dtype == torch.float32 and out.shape == images.shape and out.device == images.device
    params = aug.last_params
    assert params is not None and len(params) == 64
    assert params.angle.unique().numel() == 64  # every image its own angle
    assert 0 < int(params.hflip.sum()) < 64 and 0 < int(params.vflip.sum()) < 64
    torch.testing.assert_close(aug(images, params=params), out)  # replaying the params replays the output


def test_rejects_non_uint8_or_wrong_channels():
    aug = BatchAugment([0.5], [0.5])
    with pytest.raises(TypeError, match="uint8"):
        aug(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="shape"):
        aug(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


# -- the parameter distribution ------------------------------------------------------------------
N_SAMPLES = 200_000


def test_angles_uniform_in_range():
    aug = BatchAugment([0.5], [0.5], rotation=15.0)
    torch.manual_seed(4)
    angle = aug.sample_params(N_SAMPLES).angle.double()
    assert angle.min() >= -15.0 and angle.max() <= 15.0
    assert angle.min() < -14.9 and angle.max() > 14.9  # the whole range is reached
    # U[-15, 15]: mean 0, variance 15^2 / 3 = 75; tolerances are 5 standard errors
    sd = 15.0 / math.sqrt(3.0)
    assert abs(angle.mean().item()) < 5 * sd / math.sqrt(N_SAMPLES)
    var_se = math.sqrt((15.0**4 / 5.0 - 75.0**2) / N_SAMPLES)  # sqrt((E[x^4] - var^2) / n)
    assert abs(angle.var().item() - 75.0) < 5 * var_se
    # flat: each of 10 equal bins holds 1/10 of the samples (binomial tolerance)
    counts = torch.histc(angle, bins=10, min=-15.0, max=15.0)
    p = 0.1
    assert (counts - N_SAMPLES * p).abs().max() < 5 * math.sqrt(N_SAMPLES * p * (1 - p))


def test_flip_rates_are_half_and_independent():
    aug = BatchAugment([0.5], [0.5], hflip=0.5, vflip=0.5)
    torch.manual_seed(5)
    params = aug.sample_params(N_SAMPLES)
    tol = 5 * math.sqrt(0.25 / N_SAMPLES)
    assert abs(params.hflip.double().mean().item() - 0.5) < tol
    assert abs(params.vflip.double().mean().item() - 0.5) < tol
    both = (params.hflip & params.vflip).double().mean().item()
    assert abs(both - 0.25) < 5 * math.sqrt(0.25 * 0.75 / N_SAMPLES)


def test_params_come_from_the_global_rng():
    """Exact resume restores torch's RNG state (RNGStateCheckpoint); that must replay the augmentation."""
    aug = BatchAugment([0.5], [0.5])
    state = torch.get_rng_state()
    first = aug.sample_params(64)
    torch.set_rng_state(state)
    again = aug.sample_params(64)
    assert (
        torch.equal(first.angle, again.angle)
        and torch.equal(first.hflip, again.hflip)
        and torch.equal(first.vflip, again.vflip)
    )
    assert not torch.equal(aug.sample_params(64).angle, first.angle)


def test_from_config_reads_recipe_keys():
    recipe = OmegaConf.load(PROJECT_ROOT / "conf" / "recipe" / "paper.yaml")
    aug = BatchAugment.from_config([0.5], [0.5], recipe.augmentation)
    assert (aug.rotation, aug.hflip, aug.vflip) == (15.0, 0.5, 0.5)
    never = BatchAugment([0.5], [0.5], rotation=0.0, hflip=0.0, vflip=0.0)
    params = never.sample_params(1000)
    assert not params.hflip.any() and not params.vflip.any() and not params.angle.any()


def test_the_device_side_neither_reads_back_nor_copies_from_the_host():
    """On a GPU both wait for the device: a value read (``.item()``, ``bool(t)``: ``_local_scalar_dense``) and a
    tensor built from Python numbers (``torch.tensor([...], device=...)``: ``lift_fresh``, then a blocking copy).
    ``apply`` and ``normalize`` run on the device every step, with every augmentation the recipes turn on."""
    augment = BatchAugment([0.5], [0.25], rotation=15.0, hflip=0.5, vflip=0.5, translate=2, scale=0.1)
    images = torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8)
    params = augment.sample_params(4)
    assert params.is_affine
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        augment.apply(images, params)
        augment.normalize(images)
    names = [event.name for event in profile.events()]
    assert "aten::warp_affine" in names or "aten::grid_sampler_2d" in names  # the affine path did run
    assert [n for n in names if n in ("aten::_local_scalar_dense", "aten::lift_fresh")] == []


def test_statistics_follow_the_batch_device():
    """The DataModule moves its BatchAugment to the training device; a split read afterwards on the CPU (the ONNX
    export, the data measures) is normalised with it. FakeTensorMode's "cuda" tensors check devices as CUDA does."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    augment = BatchAugment([0.5], [0.25], rotation=15.0)
    images = torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8)
    params = augment.sample_params(4)
    with FakeTensorMode(allow_non_fake_inputs=True):
        on_device = augment.to("cuda")
        assert on_device.mean.device.type == "cuda"
        assert on_device.normalize(images).device.type == "cpu"
        assert on_device.apply(images, params).device.type == "cpu"
