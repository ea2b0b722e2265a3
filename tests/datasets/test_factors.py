"""Data factors (kd_lightning/datasets/factors.py): exact sizes, counts and noise rates, determinism under
factor_seed, evaluation splits untouched by sample-count factors, and one message per bad value."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import kd_lightning  # noqa: F401  (registers ${kd_project_root:})
from kd_lightning.datasets.factors import (
    FACTOR_KEYS,
    DataFactors,
    FactorError,
    apply_content_factors,
    apply_eval_factors,
    apply_train_factors,
    degrade_resolution,
    factor_identity,
    plan_train_factors,
    to_grayscale,
    validate_factors,
)
from kd_lightning.datasets.synthetic import synthetic_images
from tests.helpers import CONF_DIR, compose_run_config

K = 10


def _tensors(n: int, size: int = 8, channels: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = synthetic_images(n, size, K, channels, seed)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels).long()


@pytest.fixture(scope="module")
def train() -> tuple[torch.Tensor, torch.Tensor]:
    return _tensors(1000)


@pytest.fixture(scope="module")
def evalset() -> tuple[torch.Tensor, torch.Tensor]:
    return _tensors(300, seed=1)


# -- paper data ------------------------------------------------------------------------------------
def test_defaults_are_the_paper_data(train, evalset):
    images, labels = train
    composed = compose_run_config(["seed=3"]).dataset.factors  # none.yaml as a run sees it
    for factors in (None, DataFactors(), {}, composed):
        assert factor_identity(factors) == {}
        out_images, out_labels, info = apply_train_factors(images, labels, factors, K)
        assert out_images is images and out_labels is labels
        assert info["num_train"] == len(labels) and info["num_flipped"] == 0
        ev_images, ev_labels = apply_eval_factors(*evalset, factors, K)
        assert ev_images is evalset[0] and ev_labels is evalset[1]
    assert validate_factors(composed, K, 1, 16) == []


def test_none_yaml_lists_every_factor_with_its_default():
    """Every factor is off; the data draw follows the run seed (each seed draws its own subsample/flips)."""
    for seed in (0, 3):
        factors = OmegaConf.to_container(compose_run_config([f"seed={seed}"]).dataset.factors, resolve=True)
        assert factors == {**DataFactors().to_dict(), "factor_seed": seed}
    assert set(DataFactors().to_dict()) == set(FACTOR_KEYS)
    explicit = compose_run_config(["seed=3", "dataset.factors.factor_seed=7"]).dataset.factors
    assert explicit.factor_seed == 7  # a fixed draw for every seed is still possible, and then part of the label


def test_identity_is_canonical():
    assert factor_identity({"classes": [3, 1]}) == factor_identity({"classes": [1, 3]}) == {"classes": [1, 3]}
    assert factor_identity({"resolution": 16}, image_size=16) == {}
    assert factor_identity({"resolution": 8}, image_size=16) == {"resolution": 8}
    # the seed only matters when something random is on; noise_kind only with noise
    assert factor_identity({"factor_seed": 5, "grayscale": True, "noise_kind": "pairs"}) == {"grayscale": True}
    assert factor_identity({"train_fraction": 0.5, "factor_seed": 5}) == {"train_fraction": 0.5, "factor_seed": 5}
    assert factor_identity({"imbalance": 10}) == factor_identity({"imbalance": 10.0})


# -- train_fraction --------------------------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.55])
def test_train_fraction_is_exact_and_stratified(train, fraction):
    images, labels = train
    out_images, out_labels, info = apply_train_factors(images, labels, {"train_fraction": fraction}, K)
    available = np.bincount(labels.numpy(), minlength=K)
    assert len(out_labels) == len(out_images) == math.floor(fraction * len(labels) + 0.5) == info["num_train"]
    counts = np.bincount(out_labels.numpy(), minlength=K)
    assert np.all(np.abs(counts - fraction * available) < 1) and counts.tolist() == info["class_counts"]
    assert info["train_fraction_realised"] == pytest.approx(len(out_labels) / len(labels))
    # the kept images are the originals with their labels
    plan = plan_train_factors(labels, {"train_fraction": fraction}, K)
    assert torch.equal(out_images, images[torch.from_numpy(plan.indices)])
    assert torch.equal(out_labels, labels[torch.from_numpy(plan.indices)])


def test_train_fraction_keeps_every_class(train):
    _, labels = train
    plan = plan_train_factors(labels, {"train_fraction": 0.002}, K)
    assert np.bincount(plan.labels, minlength=K).min() == 1


def test_same_seed_same_indices_other_seed_other_indices_nested_levels(train):
    _, labels = train
    a = plan_train_factors(labels, {"train_fraction": 0.3, "factor_seed": 0}, K)
    b = plan_train_factors(labels, {"train_fraction": 0.3, "factor_seed": 0}, K)
    c = plan_train_factors(labels, {"train_fraction": 0.3, "factor_seed": 1}, K)
    assert np.array_equal(a.indices, b.indices) and a.info["indices_sha1"] == b.info["indices_sha1"]
    assert not np.array_equal(a.indices, c.indices) and a.info["indices_sha1"] != c.info["indices_sha1"]
    small = plan_train_factors(labels, {"train_fraction": 0.1, "factor_seed": 0}, K)
    assert set(small.indices) <= set(a.indices)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    plan_train_factors(labels, {"train_fraction": 0.3, "label_noise": 0.2}, K)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is neither read nor moved


# -- label noise -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["symmetric", "pairs"])
@pytest.mark.parametrize("noise", [0.1, 0.25])
def test_label_noise_flips_exactly(train, kind, noise):
    images, labels = train
    factors = {"label_noise": noise, "noise_kind": kind}
    out_images, out_labels, info = apply_train_factors(images, labels, factors, K)
    assert out_images.shape == images.shape  # noise never drops images
    changed = out_labels != labels
    assert int(changed.sum()) == math.floor(noise * len(labels) + 0.5) == info["num_flipped"]
    assert info["label_noise_realised"] == pytest.approx(float(changed.float().mean()))
    if kind == "pairs":
        assert torch.equal(out_labels[changed], (labels[changed] + 1) % K)
    else:
        assert len(torch.unique(out_labels[changed])) > 2
    per_class = np.bincount(labels[changed].numpy(), minlength=K) / np.bincount(labels.numpy(), minlength=K)
    assert np.all(np.abs(per_class - noise) <= 1 / np.bincount(labels.numpy(), minlength=K) + 1e-9)
    plan = plan_train_factors(labels, factors, K)
    assert np.array_equal(plan.flipped, changed.numpy()) and np.array_equal(plan.clean_labels, labels.numpy())


def test_label_noise_is_seeded_and_nested(train):
    _, labels = train
    low = plan_train_factors(labels, {"label_noise": 0.1}, K)
    again = plan_train_factors(labels, {"label_noise": 0.1}, K)
    other = plan_train_factors(labels, {"label_noise": 0.1, "factor_seed": 7}, K)
    high = plan_train_factors(labels, {"label_noise": 0.2}, K)
    assert np.array_equal(low.labels, again.labels) and low.info["flipped_sha1"] == again.info["flipped_sha1"]
    assert not np.array_equal(low.flipped, other.flipped)
    assert np.all(high.flipped[low.flipped]) and np.array_equal(high.labels[low.flipped], low.labels[low.flipped])


# -- imbalance -------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [2.0, 10.0, 50.0])
def test_imbalance_follows_the_exponential_profile(train, ratio):
    images, labels = train
    out_images, out_labels, info = apply_train_factors(images, labels, {"imbalance": ratio}, K)
    n_max = int(np.bincount(labels.numpy(), minlength=K).min())
    exact = [n_max * ratio ** (-i / (K - 1)) for i in range(K)]
    expected = [max(1, math.floor(x + 0.5)) for x in exact]
    assert np.bincount(out_labels.numpy(), minlength=K).tolist() == expected == info["class_counts"]
    assert len(out_images) == sum(expected)
    assert info["imbalance_realised"] == pytest.approx(expected[0] / expected[-1])
    assert expected[0] == n_max and all(abs(e - x) <= 0.5 for e, x in zip(expected, exact))


def test_imbalance_then_fraction_then_noise(train):
    _, labels = train
    plan = plan_train_factors(labels, {"imbalance": 10.0, "train_fraction": 0.5, "label_noise": 0.2}, K)
    n_imb = sum(plan.info["imbalance_class_counts"])
    assert plan.info["num_train"] == len(plan.indices) == math.floor(0.5 * n_imb + 0.5)
    assert plan.info["num_flipped"] == math.floor(0.2 * len(plan.indices) + 0.5)


# -- classes ---------------------------------------------------------------------------------------
def test_classes_restrict_and_remap_train_and_eval(train, evalset):
    images, labels = train
    chosen = [7, 2, 5]
    out_images, out_labels, info = apply_train_factors(images, labels, {"classes": chosen}, K)
    keep = torch.isin(labels, torch.tensor(chosen))
    assert torch.equal(out_images, images[keep])
    # ascending id order: 2 -> 0, 5 -> 1, 7 -> 2
    assert torch.equal(out_labels, torch.tensor([{2: 0, 5: 1, 7: 2}[int(y)] for y in labels[keep]]))
    assert info["num_classes"] == 3 and info["classes"] == [2, 5, 7]
    ev_images, ev_labels, positions = apply_eval_factors(*evalset, {"classes": chosen}, K, return_positions=True)
    ev_keep = torch.isin(evalset[1], torch.tensor(chosen))
    assert torch.equal(ev_images, evalset[0][ev_keep]) and torch.equal(
        torch.from_numpy(positions), ev_keep.nonzero()[:, 0]
    )
    assert set(ev_labels.tolist()) == {0, 1, 2}
    assert torch.equal(apply_train_factors(images, labels, {"classes": [2, 5, 7]}, K)[1], out_labels)


def test_classes_keep_their_draws(train):
    _, labels = train
    full = plan_train_factors(labels, {"train_fraction": 0.3}, K)
    some = plan_train_factors(labels, {"train_fraction": 0.3, "classes": [3, 8]}, K)
    # a kept class draws the same samples as without the restriction (per-class random streams)
    assert set(some.indices) == {i for i in full.indices if int(labels[i]) in (3, 8)}


# -- evaluation splits -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "factors", [{"train_fraction": 0.2}, {"label_noise": 0.3, "noise_kind": "pairs"}, {"imbalance": 20.0}]
)
def test_sample_count_factors_never_touch_eval(evalset, factors):
    images, labels = evalset
    ev_images, ev_labels = apply_eval_factors(images.clone(), labels.clone(), factors, K)
    assert torch.equal(ev_images, images) and torch.equal(ev_labels, labels)


def test_content_factors_touch_eval_like_train(train, evalset):
    factors = {"resolution": 4, "grayscale": True, "train_fraction": 0.5}
    ev_images, ev_labels = apply_eval_factors(*evalset, factors, K)
    assert torch.equal(ev_images, to_grayscale(degrade_resolution(evalset[0], 4))) and torch.equal(
        ev_labels, evalset[1]
    )
    tr_images, tr_labels, _ = apply_train_factors(*train, factors, K)
    plan = plan_train_factors(train[1], factors, K)
    assert torch.equal(tr_images, apply_content_factors(train[0][torch.from_numpy(plan.indices)], factors))


# -- content transforms ----------------------------------------------------------------------------
def test_resolution_removes_detail_and_keeps_shape():
    checker = ((torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 255).to(torch.uint8)
    images = torch.stack([checker, torch.full((16, 16), 77, dtype=torch.uint8)])[:, None]
    out = degrade_resolution(images, 8)
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert out[0].float().std() < 5 and (out[0].float().mean() - 127.5).abs() < 2  # 2x2 checker averages out
    assert torch.equal(out[1], images[1])  # flat images are unchanged
    assert degrade_resolution(images, 16) is images  # native = identity
    images_rgb, _ = _tensors(20, size=32, seed=3)
    assert apply_content_factors(images_rgb, {"resolution": 32}) is images_rgb


def test_grayscale_is_luma_on_three_channels():
    rgb = torch.zeros(3, 3, 2, 2, dtype=torch.uint8)
    for c in range(3):
        rgb[c, c] = 255
    gray = to_grayscale(rgb)
    assert gray.shape == rgb.shape
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 0], gray[:, 2])
    assert gray[:, 0, 0, 0].tolist() == [76, 150, 29]  # round(255 * (0.299, 0.587, 0.114))
    with pytest.raises(FactorError, match="3-channel"):
        to_grayscale(torch.zeros(1, 1, 2, 2, dtype=torch.uint8))


# -- validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("factors", "key", "channels"),
    [
        ({"train_fraction": 1.5}, "dataset.factors.train_fraction=1.5", 1),
        ({"train_fraction": 0.0}, "dataset.factors.train_fraction=0.0", 1),
        ({"train_fraction": "half"}, "dataset.factors.train_fraction='half'", 1),
        ({"label_noise": 1.0}, "dataset.factors.label_noise=1.0", 1),
        ({"label_noise": -0.1}, "dataset.factors.label_noise=-0.1", 1),
        ({"label_noise": 0.5, "noise_kind": "pairs"}, "dataset.factors.label_noise=0.5", 1),
        ({"label_noise": 0.95}, "dataset.factors.label_noise=0.95", 1),
        ({"label_noise": 0.6, "classes": [0, 1]}, "dataset.factors.label_noise=0.6", 1),
        ({"noise_kind": "random"}, "dataset.factors.noise_kind='random'", 1),
        ({"classes": [0, 10]}, "dataset.factors.classes=[0, 10]: unknown class ids [10]", 1),
        ({"classes": [-1, 2]}, "dataset.factors.classes=[-1, 2]: unknown class ids [-1]", 1),
        ({"classes": [1, 1, 2]}, "dataset.factors.classes=[1, 1, 2]: class ids [1] are repeated", 1),
        ({"classes": [4]}, "dataset.factors.classes=[4]: keep at least 2", 1),
        ({"classes": "0,1"}, "dataset.factors.classes='0,1'", 1),
        ({"resolution": 32}, "dataset.factors.resolution=32: larger than the native 16", 1),
        ({"resolution": 2}, "dataset.factors.resolution=2: below the minimum of 4", 1),
        ({"resolution": 7.5}, "dataset.factors.resolution=7.5", 1),
        ({"grayscale": True}, "dataset.factors.grayscale=true: dataset has 1 channel", 1),
        ({"grayscale": "yes"}, "dataset.factors.grayscale='yes'", 3),
        ({"imbalance": 0.5}, "dataset.factors.imbalance=0.5: must be >= 1", 1),
        ({"factor_seed": -1}, "dataset.factors.factor_seed=-1", 1),
        ({"trian_fraction": 0.5}, "dataset.factors.trian_fraction: unknown data factor", 1),
    ],
)
def test_every_bad_value_is_named(factors, key, channels):
    problems = validate_factors(factors, num_classes=K, channels=channels, image_size=16, min_size=4)
    assert len(problems) == 1 and problems[0].startswith(key), problems


def test_validation_lists_every_problem_and_accepts_good_values():
    bad = OmegaConf.create(
        {
            "train_fraction": 2.0,
            "label_noise": 1.0,
            "classes": [0, 0],
            "resolution": 99,
            "grayscale": True,
            "imbalance": 0.1,
        }
    )
    problems = validate_factors(bad, K, 1, 28)
    keys = [m.split("=")[0] for m in problems]
    assert keys == [
        f"dataset.factors.{k}"
        for k in ("train_fraction", "classes", "classes", "label_noise", "resolution", "grayscale", "imbalance")
    ]
    good = {
        "train_fraction": 0.5,
        "label_noise": 0.4,
        "noise_kind": "pairs",
        "classes": [0, 3, 9],
        "resolution": 8,
        "grayscale": True,
        "imbalance": 10,
        "factor_seed": 3,
    }
    assert validate_factors(good, K, 3, 32) == []
    assert validate_factors({"resolution": 8}, K, 1, 16, pipeline="pil")[0].startswith("dataset.pipeline='pil'")
    assert validate_factors({}, K, 1, 16, pipeline="pil") == []
    with pytest.raises(FactorError, match="dataset.factors.train_fraction=1.5"):
        apply_train_factors(*_tensors(20), {"train_fraction": 1.5}, K)
    with pytest.raises(FactorError, match="unknown data factor"):
        DataFactors.from_config({"noise": 0.1})


# -- the experiment configs ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wired_conf(tmp_path_factory) -> Path:
    """conf/ with the factors group mounted at dataset.factors, as the wiring will do in train.yaml."""
    conf = tmp_path_factory.mktemp("conf") / "conf"
    shutil.copytree(CONF_DIR, conf)
    train_yaml = conf / "train.yaml"
    text = train_yaml.read_text()
    if "factors@dataset.factors" not in text:
        text = text.replace("  - dataset: usps\n", "  - dataset: usps\n  - factors@dataset.factors: none\n")
        assert "factors@dataset.factors" in text
        train_yaml.write_text(text)
    return conf


@pytest.mark.parametrize(
    ("experiment", "override", "sweep_key", "folder", "factor", "value"),
    [
        (
            "factor_train_fraction",
            "dataset.factors.train_fraction=0.1",
            "dataset.factors.train_fraction",
            "factor_train_fraction/f0.1",
            "train_fraction",
            0.1,
        ),
        (
            "factor_label_noise",
            "dataset.factors.label_noise=0.2",
            "dataset.factors.label_noise",
            "factor_label_noise/symmetric0.2",
            "label_noise",
            0.2,
        ),
        (
            "factor_imbalance",
            "dataset.factors.imbalance=10.0",
            "dataset.factors.imbalance",
            "factor_imbalance/i10.0",
            "imbalance",
            10.0,
        ),
        (
            "factor_grayscale",
            "dataset.factors.grayscale=true",
            "dataset.factors.grayscale",
            "factor_grayscale/gTrue",
            "grayscale",
            True,
        ),
        ("factor_resolution", "factor_level=r8", "factor_level", "factor_resolution/r8", "resolution", 8),
        ("factor_resolution", "factor_level=native", "factor_level", "factor_resolution/native", "resolution", None),
        ("factor_classes", "factor_level=k2", "factor_level", "factor_classes/k2", "classes", [0, 1]),
        (
            "factor_sweep",
            "dataset.factors.label_noise=0.1",
            None,
            "factor_sweep/f1.0-nsymmetric0.1-cNone-rNone-gFalse-i1.0",
            "label_noise",
            0.1,
        ),
    ],
)
def test_factor_experiments_give_each_level_its_own_folder(
    wired_conf, experiment, override, sweep_key, folder, factor, value
):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(wired_conf), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"experiment={experiment}", override, "method=rkd", "paths.output_dir=/out"],
            return_hydra_config=True,
        )
    dataset = "cifar10" if experiment == "factor_grayscale" else "usps"
    assert cfg.paths.run_dir == f"/out/{folder}/{dataset}/rkd/seed0"
    assert cfg.hydra.sweep.dir == f"/out/{folder}"
    factors = OmegaConf.to_container(cfg.dataset.factors, resolve=True)
    assert factors[factor] == value and set(factors) == set(FACTOR_KEYS)
    assert (
        validate_factors(cfg.dataset.factors, cfg.dataset.num_classes, cfg.dataset.channels, cfg.dataset.image_size)
        == []
    )
    params = cfg.hydra.sweeper.params
    assert params["method"] == "glob(*)" and params["seed"] == "0,1,2"  # every method of conf/method/
    if sweep_key:
        assert sweep_key in params


def test_resolution_levels_fit_the_smallest_dataset(wired_conf):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(wired_conf), version_base="1.3"):
        cfg = compose(
            "train", overrides=["experiment=factor_resolution", "dataset=usps"], return_hydra_config=True
        )  # 16 px: smallest
    levels = OmegaConf.to_container(cfg.factor_levels)
    assert cfg.hydra.sweeper.params["factor_level"].split(",") == list(levels)
    for value in levels.values():
        assert (
            validate_factors(
                {"resolution": value}, cfg.dataset.num_classes, cfg.dataset.channels, cfg.dataset.image_size
            )
            == []
        )
