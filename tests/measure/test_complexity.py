"""Complexity measures (kd_lightning/measure/complexity.py) against data whose answer is known, and the cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kd_lightning.datasets.synthetic import synthetic_images
from kd_lightning.measure import complexity
from kd_lightning.measure.complexity import (
    MEASURES,
    complexity_cache_key,
    complexity_measures,
    compute_complexity,
    cumulative_spectral_gradient,
    distinct,
    fisher_f1,
    mle_intrinsic_dimension,
    n3_error,
    pixel_features,
    stratified_subsample,
)
from kd_lightning.run.measuring import dataset_complexity

K = 5


def _blobs(spread: float, n_per_class: int = 150, dim: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """K Gaussian classes in ``dim`` dimensions, unit variance, centres ``spread`` apart on average."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((K, dim)) * spread
    y = np.repeat(np.arange(K), n_per_class)
    return centres[y] + rng.standard_normal((len(y), dim)), y


def _subspace(d: int, n: int = 1500, ambient: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((ambient, d)))
    return rng.standard_normal((n, d)) @ basis.T + 3.0


def test_separated_blobs_are_easy():
    x, y = _blobs(spread=20.0)
    xe, ye = _blobs(spread=20.0, n_per_class=40, seed=0)  # same centres (same seed), fresh noise below
    xe = xe + np.random.default_rng(9).standard_normal(xe.shape) * 0.1
    m = complexity_measures(x, y, xe, ye)
    assert m["n3"] == 0.0
    assert m["probe_acc"] >= 0.99
    assert m["f1"] > 50 and m["f1_inv"] < 0.02
    assert m["csg"] == pytest.approx(0.0, abs=1e-9)


def test_overlapping_classes_are_at_chance():
    x, _ = _blobs(spread=0.0)  # every class has the same distribution
    y = np.random.default_rng(1).permutation(np.repeat(np.arange(K), 150))
    m = complexity_measures(x, y)
    chance_error = (K - 1) / K
    assert abs(m["n3"] - chance_error) < 0.07
    assert m["probe_acc"] < 1 / K + 0.1
    assert m["f1"] < 0.05 and m["f1_inv"] > 0.95
    assert m["csg"] > 0.8 * (K - 1)  # K - 1 for indistinguishable classes


def test_measures_order_easy_and_hard():
    easy = complexity_measures(*_blobs(spread=3.0))
    hard = complexity_measures(*_blobs(spread=0.3))
    assert (
        easy["n3"] < hard["n3"]
        and easy["f1"] > hard["f1"]
        and easy["csg"] < hard["csg"]
        and easy["probe_acc"] > hard["probe_acc"]
    )


@pytest.mark.parametrize("d", [2, 5, 8])
def test_mle_intrinsic_dimension_of_a_linear_subspace(d):
    estimate = mle_intrinsic_dimension(_subspace(d), k=20)
    assert abs(estimate - d) < 0.15 * d + 0.2


def test_mle_matches_scikit_dimension():
    skdim = pytest.importorskip("skdim")
    x = _subspace(4, n=800, seed=3)
    ours = mle_intrinsic_dimension(x, k=20)
    theirs = skdim.id.MLE().fit(x, n_neighbors=20).dimension_  # neighbourhood mode uses n_neighbors, not K
    assert ours == pytest.approx(theirs, rel=1e-9)


def test_mle_ignores_duplicate_points():
    x = _subspace(3, n=600)
    assert mle_intrinsic_dimension(np.concatenate([x, x[:100]]), k=10) == pytest.approx(
        mle_intrinsic_dimension(x, k=10)
    )


def test_n3_by_hand():
    x = np.array([[0.0], [1.0], [10.0], [11.0], [5.2]])
    y = np.array([0, 0, 1, 1, 1])
    # nearest other points: 0->1 (ok), 1->0 (ok), 10->11 (ok), 11->10 (ok), 5.2->1.0 (distance 4.2 < 4.8: wrong)
    assert n3_error(x, y) == pytest.approx(1 / 5)
    # an exact copy (a bootstrap resample's) counts once: otherwise it is its twin's nearest neighbour, error 0
    assert n3_error(np.array([[0.0], [0.0], [3.0], [3.0]]), np.array([0, 0, 1, 1])) == 1.0
    # the same image under two labels is two points, each the other's wrongly labelled neighbour
    assert n3_error(np.array([[0.0], [0.0], [9.0], [9.5]]), np.array([0, 1, 1, 1])) == pytest.approx(2 / 4)


def test_a_bootstrap_resample_measures_like_its_distinct_points():
    """N3 and CSG of a resample with copies equal those of the points it drew (the copies carry nothing new)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 5)) + np.repeat(np.eye(5)[:3], 100, axis=0), np.repeat(np.arange(3), 100)
    draw = rng.choice(300, size=300, replace=True)
    xs, ys = distinct(x[draw], y[draw])
    assert len(xs) < 300
    assert n3_error(x[draw], y[draw]) == n3_error(xs, ys)
    assert cumulative_spectral_gradient(x[draw], y[draw]) == cumulative_spectral_gradient(xs, ys)


def test_fisher_f1_by_hand():
    # feature 0: class means 1 and 11, overall 6: between = 2*25 + 2*25 = 100, within = 4 -> 25
    # feature 1: no class difference -> 0; F1 is the maximum over features
    x = np.array([[0.0, 1.0], [2.0, 2.0], [10.0, 1.0], [12.0, 2.0]])
    assert fisher_f1(x, np.array([0, 0, 1, 1])) == pytest.approx(25.0)


def test_csg_extremes_by_construction():
    x = np.repeat(np.arange(3.0)[:, None] * 100, 20, axis=0) + np.random.default_rng(0).standard_normal((60, 1))
    y = np.repeat(np.arange(3), 20)
    assert cumulative_spectral_gradient(x, y, per_class=20, k=5) == pytest.approx(0.0)


def test_stratified_subsample_is_exact_and_seeded():
    y = np.array([0] * 700 + [1] * 200 + [2] * 100)
    pos = stratified_subsample(y, 100, seed=0)
    assert len(pos) == 100 and np.bincount(y[pos]).tolist() == [70, 20, 10]
    assert np.array_equal(pos, stratified_subsample(y, 100, seed=0))
    assert not np.array_equal(pos, stratified_subsample(y, 100, seed=1))
    assert np.array_equal(stratified_subsample(y, 5000, seed=0), np.arange(1000))


def test_pixel_features_scale_uint8_to_unit_interval():
    images = torch.tensor([[[[0, 255], [51, 102]]]], dtype=torch.uint8)
    assert pixel_features(images) == pytest.approx(np.array([[0.0, 1.0, 0.2, 0.4]]))


def _images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = synthetic_images(n, 16, 10, 1, seed)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels).long()


SMALL = {"n_subsample": 300, "subsample_seeds": [0, 1], "n_components": 20, "csg_per_class": 20}


def test_compute_complexity_on_images():
    images, labels = _images(500, 0)
    eval_images, eval_labels = _images(120, 1)
    out = compute_complexity(images, labels, eval_images, eval_labels, **SMALL)
    assert set(MEASURES) <= set(out["measures"]) and set(out["measures"]) == set(out["std"])
    assert [r["seed"] for r in out["per_seed"]] == [0, 1] and all(r["n"] == 300 for r in out["per_seed"])
    assert out["probe_scored_on"] == "eval" and out["n_eval"] == 120 and out["n_train"] == 500
    # the synthetic images carry their label as a bright patch: an easy dataset
    assert out["measures"]["probe_acc"] > 0.95 and out["measures"]["n3"] < 0.05
    assert out["measures"]["intrinsic_dim"] <= SMALL["n_components"]
    with pytest.raises(TypeError, match="unknown complexity parameters"):
        compute_complexity(images, labels, n_subsamples=3)


def test_cache_hit_reads_the_file_without_recomputing(tmp_path, monkeypatch):
    images, labels = _images(400, 0)
    identity = {"dataset": "synthetic", "factors": {}}
    first = dataset_complexity(images, labels, identity, tmp_path, **SMALL)
    assert first["cache_hit"] is False
    path = tmp_path / f"complexity-{first['key']}.json"
    assert path.is_file() and json.loads(path.read_text())["measures"] == first["measures"]

    def boom(*args, **kwargs):
        raise AssertionError("recomputed despite the cache")

    monkeypatch.setattr(complexity, "compute_complexity", boom)
    second = dataset_complexity(images, labels, identity, tmp_path, **SMALL)
    assert second["cache_hit"] is True and second["measures"] == first["measures"] and second["key"] == first["key"]
    # another data configuration or other measure parameters are other entries
    with pytest.raises(AssertionError, match="recomputed"):
        dataset_complexity(
            images,
            labels,
            {"dataset": "synthetic", "factors": {"train_fraction": 0.5, "factor_seed": 0}},
            tmp_path,
            **SMALL,
        )
    with pytest.raises(AssertionError, match="recomputed"):
        dataset_complexity(images, labels, identity, tmp_path, **{**SMALL, "id_k": 10})
    with pytest.raises(AssertionError, match="recomputed"):
        dataset_complexity(images, labels, identity, tmp_path, recompute=True, **SMALL)
    with pytest.raises(AssertionError, match="recomputed"):  # the probe scored on other images: another number
        dataset_complexity(images, labels, identity, tmp_path, images[:50], labels[:50], **SMALL)
    # measured on one copy of a built-in dataset's files: another copy (same config) is measured again
    monkeypatch.undo()
    dataset_complexity(images, labels, identity, tmp_path, recompute=True, files="copy-a", **SMALL)
    monkeypatch.setattr(complexity, "compute_complexity", boom)
    assert dataset_complexity(images, labels, identity, tmp_path, files="copy-a", **SMALL)["cache_hit"] is True
    with pytest.raises(AssertionError, match="recomputed"):
        dataset_complexity(images, labels, identity, tmp_path, files="copy-b", **SMALL)


def test_cache_key_ignores_key_order_and_defaults():
    a = complexity_cache_key({"dataset": "usps", "factors": {"a": 1, "b": 2}})
    assert a == complexity_cache_key({"factors": {"b": 2, "a": 1}, "dataset": "usps"})
    assert a == complexity_cache_key(
        {"dataset": "usps", "factors": {"a": 1, "b": 2}}, {"n_subsample": complexity.DEFAULT_PARAMS["n_subsample"]}
    )
    assert a != complexity_cache_key({"dataset": "mnist", "factors": {"a": 1, "b": 2}})
