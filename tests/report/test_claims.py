"""The claims' error control, measured on simulated sweeps (no files: plain DataFrames).

Null: every method of a dataset has the same accuracy distribution (dataset mean + noise shared by the
seed's runs + independent noise), so any "supported" is a false positive; each claim must be called
supported in at most ~5% of the draws (8% allowed for Monte-Carlo error). Positive control: large clean
effects that follow the paper (gains growing with complexity, IKD > RKD, IKD > teacher on complex data)
must make all three claims supported.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kd_lightning import report
from kd_lightning.report.claims import claims_for_values
from kd_lightning.report.claims_text import claim_test, evidence
from kd_lightning.report.runs import COMPLEXITY_RANK

COMPLEXITY_ORDER = tuple(COMPLEXITY_RANK)
METHODS = ("teacher", "scratch", "rkd", "ikd")
MAX_FALSE_POSITIVE = 0.08


def _long(acc: np.ndarray, datasets: tuple[str, ...]) -> pd.DataFrame:
    """(datasets, methods, seeds) accuracies in percent -> dataset, method, seed, value."""
    d, m, s = np.meshgrid(np.arange(len(datasets)), np.arange(len(METHODS)), np.arange(acc.shape[2]), indexing="ij")
    return pd.DataFrame(
        {
            "dataset": np.asarray(datasets)[d.ravel()],
            "method": np.asarray(METHODS)[m.ravel()],
            "seed": s.ravel(),
            "value": acc.ravel(),
        }
    )


def null_sweeps(n_draws: int, n_datasets: int, n_seeds: int, seed: int) -> list[pd.DataFrame]:
    """Accuracy (%) = dataset mean + seed-shared noise + independent noise; no method effect at all."""
    rng = np.random.default_rng(seed)
    datasets = COMPLEXITY_ORDER[:n_datasets]
    means = rng.uniform(40, 98, size=(n_draws, n_datasets, 1, 1))
    shared_sd = rng.uniform(0.2, 2.0, size=(n_draws, n_datasets, 1, 1))  # differs between datasets, not methods
    own_sd = rng.uniform(0.2, 2.0, size=(n_draws, n_datasets, 1, 1))
    shared = rng.normal(size=(n_draws, n_datasets, 1, n_seeds)) * shared_sd
    own = rng.normal(size=(n_draws, n_datasets, len(METHODS), n_seeds)) * own_sd
    acc = means + shared + own
    return [_long(a, datasets) for a in acc]


def verdict_rates(sweeps: list[pd.DataFrame]) -> dict[int, dict[str, float]]:
    counts: dict[int, dict[str, int]] = {n: {v: 0 for v in report.VERDICTS} for n in (1, 2, 3)}
    for values in sweeps:
        for claim in claims_for_values(values, detail=False):
            counts[claim.number][claim.verdict] += 1
    return {n: {v: c / len(sweeps) for v, c in row.items()} for n, row in counts.items()}


@pytest.mark.parametrize(
    "n_draws,n_datasets,n_seeds,seed", [(400, 5, 3, 11), (150, 4, 2, 12)], ids=["5datasets-3seeds", "4datasets-2seeds"]
)
def test_no_effect_is_rarely_supported(n_draws, n_datasets, n_seeds, seed):
    rates = verdict_rates(null_sweeps(n_draws, n_datasets, n_seeds, seed))
    print(
        f"\nnull, {n_draws} draws, {n_datasets} datasets x {n_seeds} seeds: "
        + "; ".join(f"claim {n}: " + ", ".join(f"{v} {r:.3f}" for v, r in row.items()) for n, row in rates.items())
    )
    for number, row in rates.items():
        assert row[report.SUPPORTED] <= MAX_FALSE_POSITIVE, (number, row)
        assert row[report.CONTRADICTED] <= MAX_FALSE_POSITIVE, (number, row)


def positive_sweep(rng: np.random.Generator, n_seeds: int = 3) -> pd.DataFrame:
    """The paper's pattern, large and clean: gains over scratch 0.5 -> 8 pp with complexity (RKD), IKD twice
    that, the teacher 3 pp above scratch (so IKD beats it on the complex datasets)."""
    datasets = COMPLEXITY_ORDER
    base = np.array([97.0, 88.0, 86.0, 63.0, 35.0])[:, None]
    growth = np.array([0.5, 1.0, 2.0, 4.0, 8.0])[:, None]
    shared = rng.normal(0, 1.0, size=(5, n_seeds))
    effect = {"teacher": 3.0, "scratch": 0.0, "rkd": growth, "ikd": 2 * growth}
    acc = np.stack([base + effect[m] + shared + rng.normal(0, 0.3, size=(5, n_seeds)) for m in METHODS], axis=1)
    return _long(acc, datasets)


def test_large_clean_effects_are_supported():
    rng = np.random.default_rng(5)
    sweeps = [positive_sweep(rng) for _ in range(20)]
    rates = verdict_rates(sweeps)
    print(
        "\npositive control, 20 draws, 5 datasets x 3 seeds: "
        + "; ".join(f"claim {n}: supported {row[report.SUPPORTED]:.2f}" for n, row in rates.items())
    )
    assert all(row[report.SUPPORTED] == 1.0 for row in rates.values()), rates


def test_evaluate_claims_takes_a_plain_frame_of_fractions():
    """The same verdicts through evaluate_claims (dataset, method, seed, metric as a fraction), with detail."""
    values = positive_sweep(np.random.default_rng(0))
    frame = values.rename(columns={"value": "test_best.acc"}).assign(
        **{"test_best.acc": lambda f: f["test_best.acc"] / 100}
    )
    claims = report.evaluate_claims(frame)
    assert [c.verdict for c in claims] == [report.SUPPORTED] * 3
    for claim in claims:
        assert claim_test(claim) and "\n" not in claim_test(claim)  # the test behind it, in one line
    assert "bootstrap-over-seeds 95% interval" in evidence(claims[0])
    assert "MDE (80% power)" in evidence(claims[2])
    frame_csv = report.claims_frame(claims)
    assert list(frame_csv["verdict"]) == [report.SUPPORTED] * 3


def _pattern(gains: dict[str, list[float]], datasets: tuple[str, ...], n_seeds: int = 3) -> pd.DataFrame:
    """Deterministic sweep: scratch 80 + seed offset, other methods + their per-dataset gain + small jitter."""
    rows = []
    for i, dataset in enumerate(datasets):
        for seed in range(n_seeds):
            base = 80.0 + seed
            for method in METHODS:
                jitter = 0.05 * (((seed + 1) * (i + 2) * (METHODS.index(method) + 3)) % 5 - 2)
                gain = 0.0 if method == "scratch" else gains[method][i]
                rows.append({"dataset": dataset, "method": method, "seed": seed, "value": base + gain + jitter})
    return pd.DataFrame(rows)


def test_contradicted_when_the_data_show_the_opposite():
    shrinking = [8.0, 4.0, 2.0, 1.0, 0.5]
    values = _pattern({"teacher": [10.0] * 5, "rkd": [2 * g for g in shrinking], "ikd": shrinking}, COMPLEXITY_ORDER)
    verdicts = [c.verdict for c in claims_for_values(values)]
    assert verdicts == [report.CONTRADICTED] * 3


def test_not_testable_with_too_few_datasets_or_seeds():
    gains = {"teacher": [3.0] * 5, "rkd": [1.0, 2.0, 3.0, 4.0, 5.0], "ikd": [3.0, 5.0, 7.0, 9.0, 11.0]}
    three = _pattern(gains, COMPLEXITY_ORDER[:3])
    verdicts = [c.verdict for c in claims_for_values(three)]
    assert verdicts[:2] == [report.NOT_TESTABLE] * 2  # 1/3! > 0.05: no trend test possible
    assert verdicts[2] == report.SUPPORTED  # per-dataset tests need no trend
    one_seed = _pattern(gains, COMPLEXITY_ORDER, n_seeds=1)
    assert [c.verdict for c in claims_for_values(one_seed)] == [report.NOT_TESTABLE] * 3
    assert [c.verdict for c in claims_for_values(one_seed.iloc[0:0])] == [report.NOT_TESTABLE] * 3
    # a claim that tested nothing enters neither Holm family (it once counted as p 1.0 for contradiction)
    no_ikd = _pattern(gains, COMPLEXITY_ORDER)
    no_ikd = no_ikd[no_ikd["method"] != "ikd"]
    claims = claims_for_values(no_ikd)
    assert [c.verdict for c in claims[1:]] == [report.NOT_TESTABLE] * 2
    assert all(np.isnan(c.p_support) and np.isnan(c.p_contradict) for c in claims[1:])
    assert report.verdicts.family_sizes(claims[1:]) == (0, 0)


def test_one_point_estimate_above_the_teacher_is_not_support():
    """The old rule ("IKD − teacher > 0 on one dataset") called this supported; the intervals cannot tell."""
    values = _pattern({"teacher": [2.0] * 5, "rkd": [0.0] * 5, "ikd": [0.0] * 5}, COMPLEXITY_ORDER)
    values.loc[(values["method"] == "ikd") & (values["dataset"] == "cifar100"), "value"] += [5.0, -3.0, 1.0]
    claim3 = claims_for_values(values)[2]
    assert claim3.verdict == report.INCONCLUSIVE


def test_every_claim_has_exactly_one_verdict():
    for values in null_sweeps(5, 5, 3, seed=3):
        claims = claims_for_values(values)
        assert [c.number for c in claims] == [1, 2, 3]
        assert all(c.verdict in report.VERDICTS for c in claims)


def test_holm_family_compares_adjusted_p_with_the_family_alpha():
    """Holm's step-down rejects where the adjusted p is below α: p 0.008 first of five claims (adjusted 0.04)
    is supported, though 0.04 is above its step's α 0.01 (comparing the two would correct twice)."""
    from kd_lightning.report.claims import FACTOR, Claim, control_family

    ps = [0.008, 0.3, 0.4, 0.5, 0.6]
    claims = [Claim(i, FACTOR, "inconclusive", p_support=p, p_contradict=1.0) for i, p in enumerate(ps)]
    first = control_family(claims)[0]
    assert first.p_support_family == pytest.approx(0.04)
    assert first.alpha == pytest.approx(0.01)
    assert first.verdict == "supported"
    assert [c.verdict for c in control_family(claims)[1:]] == ["inconclusive"] * 4
