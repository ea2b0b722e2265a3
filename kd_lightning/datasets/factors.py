"""Controlled data factors: change one thing about a dataset and keep everything else fixed.

Issue 12 asks *what about a dataset* changes what KD buys. Each factor below is one knob, applied as a
pure function of uint8 image tensors ``(N, C, H, W)`` and int64 labels ``(N,)``; the defaults of
:class:`DataFactors` are the paper's data (every factor off), and :func:`factor_identity` maps them to
``{}`` so "no factors" is the same data configuration (same run identity, same teacher) as no
``dataset.factors`` key at all.

========================  ================================================================  ====================
factor (``dataset.factors.*``)  what it does                                                 splits it touches
========================  ================================================================  ====================
``classes``               keep only these class ids, labels remapped to ``0..k-1`` in         train, val, test
                          ascending id order (the model then has ``k`` outputs)
``imbalance``             long-tailed subsample, ratio ``n_max / n_min`` (Cui et al. 2019)     train only
``train_fraction``        stratified subsample of the training set                             train only
``label_noise``           exactly ``round(noise * n)`` training labels changed                 train only
   ``noise_kind``         ``symmetric``: to a uniformly drawn *other* class;
                          ``pairs``: class ``c -> (c + 1) mod k``
``resolution``            down-sample to ``r x r`` (antialiased) and back to native size       train, val, test
``grayscale``             RGB -> luminance, replicated to 3 channels                           train, val, test
``factor_seed``           seeds every random choice above; independent of the run ``seed``
``resample_seed``         null, or a bootstrap of the training set: each class's images drawn  train only
                          with replacement (as many as it has), from this seed's own stream
========================  ================================================================  ====================

Rule for the splits: *sample-count* factors (which images are trained on, and with which labels:
``imbalance``, ``train_fraction``, ``label_noise``) never touch validation or test, so every level of
a sweep is scored on the same images with clean labels. *Content* factors (``resolution``,
``grayscale``) are a property of the images, so they apply to every split (a teacher trained on
16-px images is evaluated on 16-px images). ``classes`` defines the task, so validation and test are
restricted to the same classes and remapped the same way.

Order inside :func:`apply_train_factors`: classes -> imbalance -> train_fraction -> label_noise ->
resample -> content (resolution, grayscale). ``train_fraction`` is therefore a fraction of the (long-tailed)
set, and the noise rate is a rate of the final training set.

Determinism: every random choice draws from ``numpy.random.default_rng([factor_seed, stream,
original_class_id])``: a fixed stream per factor and per class. Consequences worth knowing:

- same ``factor_seed`` -> the same indices and flips (on any machine: no global RNG is read or moved);
- subsamples are **nested** across levels: for one seed, the ``train_fraction=0.1`` set is a subset of
  the ``0.3`` set, and the images relabelled at ``label_noise=0.1`` are relabelled (to the same class)
  at ``0.2`` (up to the largest-remainder rounding of the per-class counts);
- restricting ``classes`` does not change which samples of a kept class are drawn.

Exactness:

- ``train_fraction=f``: ``round(f * n)`` images in total, split over classes by the largest-remainder
  method on ``f * n_c`` (ties to the lower class id), so per-class counts are within one of
  ``f * n_c``; every class keeps at least one image (which can add up to ``k - 1`` to the total).
- ``imbalance=rho``: class of rank ``i`` (rank = remapped label, class 0 the head) keeps
  ``max(1, round(n_max * rho ** (-i / (k - 1))))`` images (round half up), ``n_max`` = the smallest
  per-class count available (so every target can be met); the realised head/tail ratio is ``rho`` up
  to that rounding (``info["imbalance_realised"]``: with ``n_max = 542`` and ``rho = 100`` the tail keeps
  5 images, ratio 108); this is the exponential profile of Cui et al., "Class-Balanced Loss Based on Effective
  Number of Samples", CVPR 2019 (also LDAM, Cao et al. 2019). ``imbalance=1`` leaves the data as it
  is (it does *not* balance an already unbalanced set such as USPS).
- ``label_noise=eta``: exactly ``round(eta * n)`` labels are changed, split over classes by largest
  remainder on ``eta * n_c`` (so the per-class rate is within ``1 / n_c`` of ``eta``); a changed label is
  always wrong, so the realised noise rate (share of wrong training labels) is exactly that count / n.
  ``symmetric`` noise must stay below ``(k - 1) / k`` and ``pairs`` noise below ``0.5``, else the wrong
  class is the plurality and the task is a relabelling, not a noisy version.

Resolution: ``torch.nn.functional.interpolate(mode="bilinear", antialias=True)`` down to ``r x r``,
then bilinear back to the native ``H x W``, rounded to uint8. The network input keeps its native size
(no architecture, stem or normalisation change), only the information content drops.
``resolution`` equal to the native size is the identity. ``min_size`` (an argument of
:func:`validate_factors`, default 4 px) bounds the levels from below: the networks themselves would
accept smaller content, because they never see the small image.

Grayscale: ITU-R 601 luma ``0.299 R + 0.587 G + 0.114 B`` (torchvision's ``rgb_to_grayscale``
weights), replicated to **3 channels**: the first convolution, the teacher architecture and
``dataset.channels`` stay as they are, so the only change is the missing colour. On a 1-channel
dataset it is an error (there is no colour to remove).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DEFAULT_MIN_SIZE",
    "FACTOR_KEYS",
    "NOISE_KINDS",
    "DataFactors",
    "FactorError",
    "TrainPlan",
    "apply_content_factors",
    "apply_eval_factors",
    "apply_train_factors",
    "eval_positions",
    "factor_identity",
    "plan_train_factors",
    "to_grayscale",
    "validate_factors",
    "degrade_resolution",
]

NOISE_KINDS = ("symmetric", "pairs")
#: default lower bound for ``resolution`` (pixels); see the module docstring
DEFAULT_MIN_SIZE = 4
#: ITU-R 601 luma weights, as torchvision.transforms.functional.rgb_to_grayscale
_LUMA = (0.299, 0.587, 0.114)
# one independent random stream per factor (numpy SeedSequence entropy [factor_seed, stream, class])
_STREAM_IMBALANCE, _STREAM_FRACTION, _STREAM_NOISE_PICK, _STREAM_NOISE_TARGET = 1, 2, 3, 4
# the bootstrap draws from [resample_seed, stream, class]: its own seed, so ensemble members resample the one
# subsample their students share (factor_seed) each in their own way
_STREAM_RESAMPLE = 5
_CHUNK = 4096  # images per interpolate call (bounds the float copy: 4096 x 3 x 32 x 32 x 4 B = 50 MB)


class FactorError(ValueError):
    """A data-factor value is malformed or impossible for this dataset; the message names the key."""


@dataclass(frozen=True)
class DataFactors:
    """One data configuration. The defaults are the paper's data (every factor off).

    ``classes`` is stored sorted (the remap is by ascending class id, so ``[3, 1]`` and ``[1, 3]`` are
    the same task). See the module docstring for the exact semantics of each field.
    """

    train_fraction: float = 1.0
    label_noise: float = 0.0
    noise_kind: str = "symmetric"
    classes: tuple[int, ...] | None = None
    resolution: int | None = None
    grayscale: bool = False
    imbalance: float = 1.0
    factor_seed: int = 0
    resample_seed: int | None = None

    def __post_init__(self) -> None:
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(sorted(int(c) for c in self.classes)))

    @classmethod
    def from_config(cls, cfg: DataFactors | Mapping[str, Any] | None, prefix: str = "dataset.factors") -> DataFactors:
        """Build from ``None`` (paper data), a ``DataFactors``, a dict or an OmegaConf ``DictConfig``.

        Raises :class:`FactorError` naming every unknown key or wrongly typed value (ranges that need
        the dataset's metadata are :func:`validate_factors`' job).
        """
        if cfg is None:
            return cls()
        if isinstance(cfg, DataFactors):
            return cfg
        raw = _plain(cfg)
        problems = _type_problems(raw, prefix)
        if problems:
            raise FactorError("invalid data factors:\n  - " + "\n  - ".join(problems))
        return cls(**_coerce(raw))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["classes"] = None if self.classes is None else list(self.classes)
        return out

    @property
    def is_paper_data(self) -> bool:
        return not factor_identity(self)


FACTOR_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(DataFactors))
_DEFAULTS = DataFactors()


# -- parsing and validation ------------------------------------------------------------------------
def _plain(cfg: Any) -> dict[str, Any]:
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency of the project
        pass
    if not isinstance(cfg, Mapping):
        raise FactorError(f"data factors must be a mapping of {list(FACTOR_KEYS)}, got {type(cfg).__name__}")
    return dict(cfg)


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, (float, np.floating))) and math.isfinite(float(v))


def _type_problems(raw: Mapping[str, Any], prefix: str) -> list[str]:
    p = prefix
    problems = [
        f"{p}.{k}: unknown data factor; known factors are {list(FACTOR_KEYS)}" for k in raw if k not in FACTOR_KEYS
    ]
    get = lambda k: raw.get(k, getattr(_DEFAULTS, k))  # noqa: E731
    for key in ("train_fraction", "label_noise", "imbalance"):
        if not _is_number(get(key)):
            problems.append(f"{p}.{key}={get(key)!r}: must be a number")
    if get("noise_kind") not in NOISE_KINDS:
        problems.append(f"{p}.noise_kind={get('noise_kind')!r}: must be one of {list(NOISE_KINDS)}")
    classes = get("classes")
    if classes is not None and (
        isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence) or not all(_is_int(c) for c in classes)
    ):
        problems.append(f"{p}.classes={classes!r}: must be null or a list of integer class ids, e.g. [0, 1]")
    resolution = get("resolution")
    if resolution is not None and not _is_int(resolution):
        problems.append(f"{p}.resolution={resolution!r}: must be null (native) or an integer number of pixels")
    if not isinstance(get("grayscale"), (bool, np.bool_)):
        problems.append(f"{p}.grayscale={get('grayscale')!r}: must be true or false")
    for key in ("factor_seed", "resample_seed"):
        seed = get(key)
        if (seed is not None or key == "factor_seed") and (not _is_int(seed) or seed < 0):
            problems.append(
                f"{p}.{key}={seed!r}: must be an integer >= 0" + (" or null" if key != "factor_seed" else "")
            )
    return problems


def _coerce(raw: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in raw.items() if k in FACTOR_KEYS}
    for key in ("train_fraction", "label_noise", "imbalance"):
        if key in out:
            out[key] = float(out[key])
    if out.get("classes") is not None:
        out["classes"] = tuple(int(c) for c in out["classes"])
    if out.get("resolution") is not None:
        out["resolution"] = int(out["resolution"])
    for key in ("grayscale",):
        if key in out:
            out[key] = bool(out[key])
    for key in ("factor_seed", "resample_seed"):
        if out.get(key) is not None:
            out[key] = int(out[key])
    return out


def validate_factors(
    factors: DataFactors | Mapping[str, Any] | None,
    num_classes: int,
    channels: int,
    image_size: int,
    min_size: int = DEFAULT_MIN_SIZE,
    *,
    pipeline: str | None = None,
    prefix: str = "dataset.factors",
) -> list[str]:
    """Every problem with ``factors`` for a dataset with this metadata, as messages naming the key.

    Needs only the config (``dataset.num_classes``, ``dataset.channels``, ``dataset.image_size``), so
    it runs before any data is read. Empty list = usable. ``pipeline`` (``dataset.pipeline``), when
    given, must be ``tensor`` unless the factors are the paper data: the factors act on the uint8
    tensors of the tensor pipeline.
    """
    if factors is None:
        return []
    p = prefix
    if isinstance(factors, DataFactors):
        raw = factors.to_dict()
    else:
        try:
            raw = _plain(factors)
        except FactorError as exc:
            return [f"{p}: {exc}"]
    problems = _type_problems(raw, p)
    get = lambda k: raw.get(k, getattr(_DEFAULTS, k))  # noqa: E731
    typed_ok = lambda k: not any(m.startswith(f"{p}.{k}=") for m in problems)  # noqa: E731

    if typed_ok("train_fraction") and not 0.0 < float(get("train_fraction")) <= 1.0:
        problems.append(f"{p}.train_fraction={get('train_fraction')!r}: must be in (0, 1] (1 = the whole training set)")

    classes = get("classes")
    k = num_classes
    if classes is not None and typed_ok("classes"):
        ids = [int(c) for c in classes]
        unknown = sorted({c for c in ids if not 0 <= c < num_classes})
        repeated = sorted({c for c in ids if ids.count(c) > 1})
        if unknown:
            problems.append(
                f"{p}.classes={ids}: unknown class ids {unknown}; this dataset has classes 0..{num_classes - 1}"
            )
        if repeated:
            problems.append(f"{p}.classes={ids}: class ids {repeated} are repeated; list each class once")
        if len(set(ids)) < 2:
            problems.append(f"{p}.classes={ids}: keep at least 2 classes (or null for all {num_classes})")
        if not unknown and len(set(ids)) >= 2:
            k = len(set(ids))

    if typed_ok("label_noise"):
        eta = float(get("label_noise"))
        kind = get("noise_kind")
        if not 0.0 <= eta < 1.0:
            problems.append(f"{p}.label_noise={get('label_noise')!r}: must be in [0, 1)")
        elif kind == "pairs" and eta >= 0.5:
            problems.append(
                f"{p}.label_noise={eta!r}: with noise_kind=pairs it must be < 0.5, "
                "else the paired class is the majority label"
            )
        elif kind == "symmetric" and eta >= (k - 1) / k:
            problems.append(
                f"{p}.label_noise={eta!r}: with noise_kind=symmetric and {k} classes "
                f"it must be < {(k - 1) / k:.4g}, else a wrong class is the plurality label"
            )

    resolution = get("resolution")
    if resolution is not None and typed_ok("resolution"):
        if resolution > image_size:
            problems.append(
                f"{p}.resolution={resolution}: larger than the native {image_size} px (dataset.image_size); "
                "up-sampling adds no information"
            )
        elif resolution < min_size:
            problems.append(f"{p}.resolution={resolution}: below the minimum of {min_size} px")

    if typed_ok("grayscale") and get("grayscale"):
        if channels == 1:
            problems.append(
                f"{p}.grayscale=true: dataset has 1 channel (dataset.channels=1), there is no colour to remove"
            )
        elif channels != 3:
            problems.append(f"{p}.grayscale=true: needs 3-channel RGB images, dataset.channels={channels}")

    if typed_ok("imbalance") and float(get("imbalance")) < 1.0:
        problems.append(f"{p}.imbalance={get('imbalance')!r}: must be >= 1 (n_max / n_min; 1 = as the dataset is)")

    if pipeline is not None and pipeline != "tensor" and not problems:
        if factor_identity(DataFactors(**_coerce(raw)), image_size):
            problems.append(f"dataset.pipeline={pipeline!r}: data factors ({p}.*) need dataset.pipeline=tensor")
    return problems


def _check(factors: DataFactors, num_classes: int) -> None:
    # the checks that need only num_classes (the caller validated the rest before reading data)
    problems = validate_factors(factors, num_classes, channels=3, image_size=10**9, min_size=0)
    problems = [m for m in problems if ".grayscale" not in m]
    if problems:
        raise FactorError("invalid data factors:\n  - " + "\n  - ".join(problems))


# -- identity --------------------------------------------------------------------------------------
def factor_identity(factors: DataFactors | Mapping[str, Any] | None, image_size: int | None = None) -> dict[str, Any]:
    """The plain values that make two data configurations the same; ``{}`` for the paper data.

    Only factors that are on appear; ``noise_kind`` only with ``label_noise > 0``; ``factor_seed``
    only when a random factor is on (``train_fraction < 1``, ``label_noise > 0``, ``imbalance > 1``);
    ``classes`` sorted; ``resolution`` equal to ``image_size`` (when given) is native and left out.
    Use it in run fingerprints, teacher keys and the complexity cache key.
    """
    f = DataFactors.from_config(factors)
    out: dict[str, Any] = {}
    if f.classes is not None:
        out["classes"] = list(f.classes)
    if f.imbalance != 1.0:
        out["imbalance"] = float(f.imbalance)
    if f.train_fraction != 1.0:
        out["train_fraction"] = float(f.train_fraction)
    if f.label_noise != 0.0:
        out["label_noise"] = float(f.label_noise)
        out["noise_kind"] = f.noise_kind
    if f.resolution is not None and f.resolution != image_size:
        out["resolution"] = int(f.resolution)
    if f.grayscale:
        out["grayscale"] = True
    if f.train_fraction != 1.0 or f.label_noise != 0.0 or f.imbalance != 1.0:
        out["factor_seed"] = int(f.factor_seed)
    if f.resample_seed is not None:
        out["resample_seed"] = int(f.resample_seed)
    return out


# -- random streams and exact allocations ---------------------------------------------------------
def _rng(seed: int, stream: int, cls: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(stream), int(cls)])


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _largest_remainder(quotas: np.ndarray, total: int, capacity: np.ndarray, minimum: int = 0) -> np.ndarray:
    """Integer counts near ``quotas`` summing to ``total`` (Hamilton's method, ties to the lower index),
    each within ``[minimum, capacity]`` (the minimum may push the sum above ``total``)."""
    base = np.minimum(np.maximum(np.floor(quotas).astype(np.int64), minimum), capacity)
    remaining = total - int(base.sum())
    if remaining > 0:
        remainder = quotas - np.floor(quotas)
        order = sorted(range(len(quotas)), key=lambda i: (-remainder[i], i))
        for i in order:
            if remaining == 0:
                break
            if base[i] < capacity[i]:
                base[i] += 1
                remaining -= 1
    return base


# -- the training-set plan -------------------------------------------------------------------------
@dataclass
class TrainPlan:
    """What :func:`apply_train_factors` does, before touching any image.

    ``indices``: positions into the original training tensors, ascending; ``labels``: the labels the
    model trains on (remapped, then noised); ``clean_labels``: remapped labels before noise;
    ``flipped``: bool mask of changed labels; ``info``: JSON-ready summary (see :func:`apply_train_factors`).
    """

    indices: np.ndarray
    labels: np.ndarray
    clean_labels: np.ndarray
    flipped: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def _class_map(f: DataFactors, num_classes: int) -> list[int]:
    """Remapped label -> original class id."""
    return list(f.classes) if f.classes is not None else list(range(num_classes))


def plan_train_factors(
    labels: Tensor | np.ndarray, factors: DataFactors | Mapping[str, Any] | None, num_classes: int
) -> TrainPlan:
    """Choose the training samples and their labels under ``factors`` (classes -> imbalance -> fraction -> noise)."""
    f = DataFactors.from_config(factors)
    _check(f, num_classes)
    y = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels).astype(np.int64)
    if y.ndim != 1:
        raise FactorError(f"labels must be 1-D, got shape {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise FactorError(f"labels span [{y.min()}, {y.max()}] but num_classes={num_classes}")
    class_ids = _class_map(f, num_classes)
    k = len(class_ids)
    seed = f.factor_seed
    info: dict[str, Any] = {"identity": factor_identity(f), "num_official_train": int(len(y))}

    # 1. classes: keep, remap to 0..k-1 in ascending id order
    lookup = np.full(num_classes, -1, dtype=np.int64)
    lookup[class_ids] = np.arange(k)
    keep = np.flatnonzero(lookup[y] >= 0)
    remapped = lookup[y[keep]]
    pools = [keep[remapped == c] for c in range(k)]  # ascending original positions, per remapped class
    counts = np.array([len(p) for p in pools], dtype=np.int64)
    empty = [class_ids[c] for c in range(k) if counts[c] == 0]
    if empty:
        raise FactorError(f"dataset.factors.classes: classes {empty} have no training images")
    info["classes"] = None if f.classes is None else list(class_ids)
    info["num_classes"] = k
    info["class_counts_available"] = counts.tolist()

    # 2. imbalance: exponential profile n_i = round(n_max * rho^(-i/(k-1))), n_max = min available count
    if f.imbalance != 1.0:
        n_max = int(counts.min())
        targets = np.array(
            [max(1, _round_half_up(n_max * f.imbalance ** (-i / (k - 1)))) for i in range(k)], dtype=np.int64
        )
        pools = [
            np.sort(_rng(seed, _STREAM_IMBALANCE, class_ids[c]).permutation(pools[c])[: targets[c]]) for c in range(k)
        ]
        info["imbalance_class_counts"] = targets.tolist()
        info["imbalance_realised"] = float(targets[0] / targets[-1])

    # 3. train_fraction: stratified, exact total round(f * n), >= 1 per class, nested across levels
    if f.train_fraction != 1.0:
        sizes = np.array([len(p) for p in pools], dtype=np.int64)
        total = _round_half_up(f.train_fraction * sizes.sum())
        take = _largest_remainder(f.train_fraction * sizes, total, sizes, minimum=1)
        pools = [np.sort(_rng(seed, _STREAM_FRACTION, class_ids[c]).permutation(pools[c])[: take[c]]) for c in range(k)]
        info["train_fraction_target_total"] = int(total)

    sizes = np.array([len(p) for p in pools], dtype=np.int64)
    n = int(sizes.sum())
    # 4. label noise: exactly round(eta * n) changed labels, stratified by clean class, nested across levels
    new_labels_per_class = [np.full(len(pools[c]), c, dtype=np.int64) for c in range(k)]
    flipped_per_class = [np.zeros(len(pools[c]), dtype=bool) for c in range(k)]
    if f.label_noise > 0.0:
        m_total = _round_half_up(f.label_noise * n)
        m = _largest_remainder(f.label_noise * sizes, m_total, sizes)
        for c in range(k):
            order = _rng(seed, _STREAM_NOISE_PICK, class_ids[c]).permutation(len(pools[c]))
            chosen = order[: m[c]]
            if f.noise_kind == "pairs":
                targets_c = np.full(len(chosen), (c + 1) % k, dtype=np.int64)
            else:  # a uniformly drawn *other* class: offset in 1..k-1, drawn per sample in permutation order
                offsets = _rng(seed, _STREAM_NOISE_TARGET, class_ids[c]).integers(1, k, size=len(pools[c]))
                targets_c = (c + offsets[: m[c]]) % k
            new_labels_per_class[c][chosen] = targets_c
            flipped_per_class[c][chosen] = True
    # 5. resample: a stratified bootstrap (each class keeps its count), labels and flips travel with their image
    if f.resample_seed is not None:
        for c in range(k):
            pick = _rng(f.resample_seed, _STREAM_RESAMPLE, class_ids[c]).integers(0, len(pools[c]), size=len(pools[c]))
            pools[c], new_labels_per_class[c], flipped_per_class[c] = (
                pools[c][pick],
                new_labels_per_class[c][pick],
                flipped_per_class[c][pick],
            )
        info["resample_distinct"] = int(sum(len(np.unique(p)) for p in pools))

    indices = np.concatenate(pools) if pools else np.zeros(0, dtype=np.int64)
    clean = np.concatenate([np.full(len(pools[c]), c, dtype=np.int64) for c in range(k)])
    noisy = np.concatenate(new_labels_per_class)
    flipped = np.concatenate(flipped_per_class)
    order = np.argsort(indices, kind="stable")  # ascending original positions
    indices, clean, noisy, flipped = indices[order], clean[order], noisy[order], flipped[order]

    info["num_train"] = n
    info["class_counts"] = np.bincount(clean, minlength=k).tolist()
    info["observed_label_counts"] = np.bincount(noisy, minlength=k).tolist()
    if f.train_fraction != 1.0:
        before = int(sum(info.get("imbalance_class_counts", info["class_counts_available"])))
        info["train_fraction_realised"] = n / before
    info["num_flipped"] = int(flipped.sum())
    info["label_noise_realised"] = float(flipped.mean()) if n else 0.0
    info["noise_kind"] = f.noise_kind if f.label_noise > 0 else None
    info["indices_sha1"] = hashlib.sha1(indices.astype("<i8").tobytes()).hexdigest()
    info["flipped_sha1"] = hashlib.sha1(
        np.flatnonzero(flipped).astype("<i8").tobytes() + noisy[flipped].astype("<i8").tobytes()
    ).hexdigest()
    return TrainPlan(indices=indices, labels=noisy, clean_labels=clean, flipped=flipped, info=info)


# -- content transforms -----------------------------------------------------------------------------
def degrade_resolution(images: Tensor, resolution: int) -> Tensor:
    """uint8 ``(N, C, H, W)`` -> the same shape, down-sampled to ``resolution`` px (antialiased
    bilinear) and back up to ``H x W`` (bilinear), rounded to uint8. Identity when ``resolution >= H``."""
    _check_images(images)
    n, c, h, w = images.shape
    if resolution >= h and resolution >= w:
        return images
    small = (resolution, max(1, round(resolution * w / h)))
    out = torch.empty_like(images)
    for s in range(0, n, _CHUNK):
        x = images[s : s + _CHUNK].float()
        x = F.interpolate(x, size=small, mode="bilinear", antialias=True, align_corners=False)
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        out[s : s + _CHUNK] = x.round_().clamp_(0, 255).to(torch.uint8)
    return out


def to_grayscale(images: Tensor) -> Tensor:
    """uint8 RGB ``(N, 3, H, W)`` -> uint8 ``(N, 3, H, W)`` whose three channels are the luma."""
    _check_images(images)
    if images.shape[1] != 3:
        raise FactorError(f"grayscale needs 3-channel RGB images, got {images.shape[1]} channel(s)")
    weights = torch.tensor(_LUMA, dtype=torch.float32).view(1, 3, 1, 1)
    out = torch.empty_like(images)
    for s in range(0, images.shape[0], _CHUNK):
        luma = (images[s : s + _CHUNK].float() * weights).sum(1, keepdim=True)
        out[s : s + _CHUNK] = luma.round_().clamp_(0, 255).to(torch.uint8).expand(-1, 3, -1, -1)
    return out


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
        raise FactorError(f"expected uint8 images (N, C, H, W), got {got}")


def apply_content_factors(images: Tensor, factors: DataFactors | Mapping[str, Any] | None) -> Tensor:
    """The content factors (``resolution``, then ``grayscale``): for every split alike."""
    f = DataFactors.from_config(factors)
    if f.resolution is not None:
        images = degrade_resolution(images, f.resolution)
    if f.grayscale:
        images = to_grayscale(images)
    return images


# -- the public entry points -------------------------------------------------------------------------
def apply_train_factors(
    images: Tensor, labels: Tensor, factors: DataFactors | Mapping[str, Any] | None, num_classes: int
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """The training split under ``factors``: ``(images uint8, labels int64, info)``.

    ``info`` (JSON-ready, for ``results.json``): ``identity`` (:func:`factor_identity`),
    ``num_official_train``, ``num_train``, ``num_classes`` (k), ``classes`` (original ids or null),
    ``class_counts_available`` (per class after the class restriction), ``imbalance_class_counts`` and
    ``imbalance_realised`` (with ``imbalance``), ``train_fraction_target_total`` and
    ``train_fraction_realised`` (with ``train_fraction``), ``class_counts`` (clean labels, final),
    ``observed_label_counts`` (the labels trained on), ``num_flipped``, ``label_noise_realised``,
    ``noise_kind``, ``indices_sha1`` / ``flipped_sha1`` (fingerprints of the chosen indices and flips).
    With the paper data this returns the inputs themselves (no copy).
    """
    f = DataFactors.from_config(factors)
    _check_images(images)
    if images.shape[0] != labels.shape[0]:
        raise FactorError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    plan = plan_train_factors(labels, f, num_classes)
    if plan.info["identity"].keys() <= {"resolution", "grayscale"}:
        out_images, out_labels = images, labels  # every sample, labels unchanged: no copy
    else:
        index = torch.from_numpy(plan.indices)
        out_images = images[index]
        out_labels = torch.from_numpy(plan.labels).to(labels.dtype if labels.dtype != torch.uint8 else torch.long)
    out_images = apply_content_factors(out_images, f)
    plan.info["image_shape"] = list(out_images.shape[1:])
    return out_images, out_labels, plan.info


def eval_positions(
    labels: Tensor | np.ndarray, factors: DataFactors | Mapping[str, Any] | None, num_classes: int
) -> np.ndarray:
    """Positions of an evaluation split kept by the class restriction (all of them without ``classes``)."""
    f = DataFactors.from_config(factors)
    y = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels).astype(np.int64)
    if f.classes is None:
        return np.arange(len(y))
    return np.flatnonzero(np.isin(y, np.asarray(f.classes)))


def apply_eval_factors(
    images: Tensor,
    labels: Tensor,
    factors: DataFactors | Mapping[str, Any] | None,
    num_classes: int,
    return_positions: bool = False,
):
    """A validation or test split under ``factors``: class restriction + remap, then the content factors.

    Sample-count factors (``train_fraction``, ``label_noise``, ``imbalance``) are ignored by design.
    Returns ``(images, labels)``, plus the kept positions (into the inputs) when ``return_positions``.
    """
    f = DataFactors.from_config(factors)
    _check_images(images)
    if images.shape[0] != labels.shape[0]:
        raise FactorError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    positions = eval_positions(labels, f, num_classes)
    if f.classes is not None:
        _check(DataFactors(classes=f.classes), num_classes)
        lookup = torch.full((num_classes,), -1, dtype=torch.long)
        lookup[list(f.classes)] = torch.arange(len(f.classes))
        index = torch.from_numpy(positions)
        images, labels = (
            images[index],
            lookup[labels[index].long()].to(labels.dtype if labels.dtype != torch.uint8 else torch.long),
        )
    images = apply_content_factors(images, f)
    return (images, labels, positions) if return_positions else (images, labels)
