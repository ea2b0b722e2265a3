"""How hard a labelled image set is: linear probe, N3, Fisher's F1, intrinsic dimension, CSG.

Numbers in, numbers out: images and labels in, a dict of measures out. Why these measures, the fixed
embedding (pixels -> PCA-50), the stratified subsampling and every formula with its reference are in
docs/factors.md ("Measured complexity"); the one-line formula of each measure is in its docstring. The
per-configuration cache (one JSON per data identity) is :func:`kd_lightning.run.measuring.dataset_complexity`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch import Tensor

__all__ = [
    "COMPLEXITY_VERSION",
    "DEFAULT_PARAMS",
    "MEASURES",
    "complexity_cache_key",
    "complexity_measures",
    "compute_complexity",
    "cumulative_spectral_gradient",
    "distinct",
    "fisher_f1",
    "linear_probe_accuracy",
    "mle_intrinsic_dimension",
    "n3_error",
    "pixel_features",
    "stratified_subsample",
]

#: bump when a measure's definition changes: old cache entries are then not reused
COMPLEXITY_VERSION = 2  # 2: N3 and CSG over distinct (image, label) pairs, as MLE over distinct images
DEFAULT_PARAMS: dict[str, Any] = {
    "n_subsample": 3000,
    "subsample_seeds": [0, 1, 2],
    "n_components": 50,
    "id_k": 20,
    "csg_per_class": 100,
    "csg_k": 10,
    "probe_C": 1.0,
    "probe_max_iter": 1000,
}
MEASURES = ("probe_acc", "n3", "f1", "f1_inv", "intrinsic_dim", "csg")


# -- inputs ------------------------------------------------------------------------------------------
def _numpy(x: Tensor | np.ndarray | Sequence) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def pixel_features(images: Tensor | np.ndarray) -> np.ndarray:
    """``(N, ...)`` images -> ``(N, D)`` float32; uint8 pixels are scaled to ``[0, 1]`` (floats are kept)."""
    x = _numpy(images)
    flat = x.reshape(len(x), -1)
    return flat.astype(np.float32) / 255.0 if flat.dtype == np.uint8 else flat.astype(np.float32)


def stratified_subsample(labels: Tensor | np.ndarray, n: int, seed: int) -> np.ndarray:
    """``min(n, N)`` sorted positions, per-class counts proportional to the class shares
    (largest remainder, ties to the lower class id), drawn with ``numpy.random.default_rng(seed)``."""
    y = _numpy(labels).astype(np.int64)
    if n >= len(y):
        return np.arange(len(y))
    classes, counts = np.unique(y, return_counts=True)
    quotas = counts * n / len(y)
    take = np.floor(quotas).astype(np.int64)
    remainder = quotas - take
    for i in sorted(range(len(classes)), key=lambda i: (-remainder[i], i))[: n - int(take.sum())]:
        take[i] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(y == c), size=t, replace=False) for c, t in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


# -- the measures on one embedded sample --------------------------------------------------------------
def distinct(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` without repeated (row, label) pairs, first occurrences in order: a bootstrap resample's copies
    would be each other's nearest neighbours and make the data look easier to a neighbour measure."""
    y = np.asarray(y)
    rows = np.ascontiguousarray(np.column_stack([np.asarray(x, dtype=np.float64), y.astype(np.float64)]))
    _, first = np.unique(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))), return_index=True)
    keep = np.sort(first)
    return np.asarray(x)[keep], y[keep]


def n3_error(x: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-out 1-nearest-neighbour error (Ho & Basu 2002, N3) over distinct points (:func:`distinct`).
    O(n log n) with a tree / O(n^2) brute."""
    from sklearn.neighbors import NearestNeighbors

    x, y = distinct(x, y)
    _, ind = NearestNeighbors(n_neighbors=2).fit(x).kneighbors(x)
    own = np.arange(len(x))
    # with exact duplicates the point itself need not come first: take the first neighbour that is not itself
    nearest = np.where(ind[:, 0] == own, ind[:, 1], ind[:, 0])
    return float(np.mean(y[nearest] != y))


def fisher_f1(x: np.ndarray, y: np.ndarray) -> float:
    """Fisher's maximum discriminant ratio F1 = max_j sum_c n_c (mu_cj - mu_j)^2 / sum_c sum_{i in c} (x_ij - mu_cj)^2
    (Ho & Basu 2002; multi-class form of Mollineda et al. 2005). Higher = easier."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    mu = x.mean(0)
    between = np.zeros(x.shape[1])
    within = np.zeros(x.shape[1])
    for c in np.unique(y):
        xc = x[y == c]
        mc = xc.mean(0)
        between += len(xc) * (mc - mu) ** 2
        within += ((xc - mc) ** 2).sum(0)
    ratio = between / np.maximum(within, 1e-12 * max(float(between.max(initial=0.0)), 1e-300))
    return float(ratio.max())


def mle_intrinsic_dimension(x: np.ndarray, k: int = 20) -> float:
    """Levina-Bickel MLE of the intrinsic dimension with ``k`` neighbours, combined over points as
    ``1 / mean(1 / m_k(x))`` (MacKay & Ghahramani). Exact duplicate rows are dropped first."""
    from sklearn.neighbors import NearestNeighbors

    x = np.unique(np.asarray(x, dtype=np.float64), axis=0)
    k = min(k, len(x) - 1)
    if k < 2:
        raise ValueError(f"MLE intrinsic dimension needs at least 3 distinct points, got {len(x)}")
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    t = dist[:, 1:]  # T_1..T_k, self dropped
    logs = np.log(t[:, -1:] / t[:, :-1]).sum(1)  # sum_{j<k} ln(T_k / T_j)
    inv = logs / (k - 1)  # 1 / m_k(x)
    inv = inv[np.isfinite(inv)]
    return float(1.0 / inv.mean())


def cumulative_spectral_gradient(
    x: np.ndarray, y: np.ndarray, per_class: int = 100, k: int = 10, seed: int = 0
) -> float:
    """CSG of Branchaud-Charron et al. 2019 over distinct points (:func:`distinct`): k-NN class shares among a
    sample of ``per_class`` points a class, with no Parzen-window volume (docs/factors.md)."""
    from sklearn.neighbors import NearestNeighbors

    x, y = distinct(x, y)
    classes = np.unique(y)
    n_cls = len(classes)
    if n_cls < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in classes]
    idx = np.concatenate(picks)
    xs, ys = x[idx], np.searchsorted(classes, y[idx])
    kk = min(k, len(xs) - 1)
    _, ind = NearestNeighbors(n_neighbors=kk + 1).fit(xs).kneighbors(xs)
    own = np.arange(len(xs))[:, None]
    # drop the point itself (wherever duplicates put it), keep kk others
    others = np.array([row[row != i][:kk] for row, i in zip(ind, own[:, 0])])
    share = np.zeros((len(xs), n_cls))
    for j in range(n_cls):
        share[:, j] = (ys[others] == j).mean(1)
    s = np.stack([share[ys == c].mean(0) for c in range(n_cls)])
    s = s / s.sum(1, keepdims=True)
    w = np.zeros((n_cls, n_cls))
    for i in range(n_cls):
        for j in range(n_cls):
            if i != j:
                w[i, j] = 1.0 - np.abs(s[i] - s[j]).sum() / np.abs(s[i] + s[j]).sum()
    lap = np.diag(w.sum(1)) - w
    eig = np.sort(np.linalg.eigvalsh(lap))
    ratios = np.diff(eig) / (n_cls - np.arange(n_cls - 1))
    return float(np.maximum.accumulate(ratios).sum())


def linear_probe_accuracy(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    C: float = 1.0,
    max_iter: int = 1000,
) -> float:
    """Accuracy on ``(x_eval, y_eval)`` of an L2 multinomial logistic regression fitted on standardised ``x_train``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    probe.fit(x_train, y_train)
    return float(probe.score(x_eval, y_eval))


def complexity_measures(
    x: np.ndarray,
    y: np.ndarray,
    x_eval: np.ndarray | None = None,
    y_eval: np.ndarray | None = None,
    seed: int = 0,
    id_k: int = 20,
    csg_per_class: int = 100,
    csg_k: int = 10,
    probe_C: float = 1.0,
    probe_max_iter: int = 1000,
) -> dict[str, float]:
    """All measures on one (already embedded) sample; the probe is scored on ``x_eval`` or, without it,
    on a stratified held-out 25 % of ``(x, y)`` (fitted on the other 75 %)."""
    y = np.asarray(y)
    if x_eval is None:
        from sklearn.model_selection import train_test_split

        _, counts = np.unique(y, return_counts=True)
        stratify = y if counts.min() >= 2 else None
        xtr, xev, ytr, yev = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=stratify)
    else:
        xtr, ytr, xev, yev = x, y, x_eval, np.asarray(y_eval)
    f1 = fisher_f1(x, y)
    return {
        "probe_acc": linear_probe_accuracy(xtr, ytr, xev, yev, C=probe_C, max_iter=probe_max_iter),
        "n3": n3_error(x, y),
        "f1": f1,
        "f1_inv": 1.0 / (1.0 + f1),
        "intrinsic_dim": mle_intrinsic_dimension(x, k=id_k),
        "csg": cumulative_spectral_gradient(x, y, per_class=csg_per_class, k=csg_k, seed=seed),
    }


def _params(overrides: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(overrides) - set(DEFAULT_PARAMS))
    if unknown:
        raise TypeError(f"unknown complexity parameters {unknown}; known: {sorted(DEFAULT_PARAMS)}")
    params = {**DEFAULT_PARAMS, **overrides}
    params["subsample_seeds"] = [int(s) for s in params["subsample_seeds"]]
    return params


def compute_complexity(
    images: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    eval_images: Tensor | np.ndarray | None = None,
    eval_labels: Tensor | np.ndarray | None = None,
    **params: Any,
) -> dict[str, Any]:
    """The measures of one data configuration, uncached: for each subsample seed, a stratified subsample
    of ``n_subsample`` training images -> PCA-``n_components`` fitted on it -> :func:`complexity_measures`
    (probe scored on the evaluation images projected with the same PCA); then mean and sd over seeds."""
    from sklearn.decomposition import PCA

    p = _params(params)
    feats = pixel_features(images)
    y = _numpy(labels).astype(np.int64)
    if len(feats) != len(y):
        raise ValueError(f"{len(feats)} images but {len(y)} labels")
    eval_feats = None if eval_images is None else pixel_features(eval_images)
    y_eval = None if eval_labels is None else _numpy(eval_labels).astype(np.int64)
    per_seed = []
    for seed in p["subsample_seeds"]:
        pos = stratified_subsample(y, p["n_subsample"], seed)
        xs = feats[pos]
        n_comp = min(p["n_components"], xs.shape[0], xs.shape[1])
        pca = PCA(n_components=n_comp, svd_solver="randomized", random_state=seed).fit(xs)
        values = complexity_measures(
            pca.transform(xs),
            y[pos],
            None if eval_feats is None else pca.transform(eval_feats),
            y_eval,
            seed=seed,
            id_k=p["id_k"],
            csg_per_class=p["csg_per_class"],
            csg_k=p["csg_k"],
            probe_C=p["probe_C"],
            probe_max_iter=p["probe_max_iter"],
        )
        values["pca_explained_variance"] = float(pca.explained_variance_ratio_.sum())
        per_seed.append({"seed": seed, "n": int(len(pos)), **values})
    names = [k for k in per_seed[0] if k not in ("seed", "n")]
    return {
        "measures": {k: float(np.mean([r[k] for r in per_seed])) for k in names},
        "std": {k: float(np.std([r[k] for r in per_seed], ddof=1)) if len(per_seed) > 1 else 0.0 for k in names},
        "per_seed": per_seed,
        "n_train": int(len(y)),
        "n_eval": None if y_eval is None else int(len(y_eval)),
        "probe_scored_on": "eval" if eval_feats is not None else "held-out 25% of the subsample",
        "params": p,
    }


# -- the cache key ---------------------------------------------------------------------------------------
def complexity_cache_key(identity: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> str:
    """16-hex SHA-256 of the data identity, the measure parameters and :data:`COMPLEXITY_VERSION`."""
    blob = {"identity": identity, "params": _params(params or {}), "version": COMPLEXITY_VERSION}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]
