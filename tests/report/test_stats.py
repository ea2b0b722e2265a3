"""The report's statistics against values worked out independently of kd_lightning.report.stats."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from kd_lightning.report import stats

# Two-sided 95% Student t critical values from printed tables.
T95 = {1: 12.7062, 2: 4.3027, 4: 2.7764, 30: 2.0423}


@pytest.mark.parametrize("df", sorted(T95))
def test_t_critical_matches_printed_tables(df):
    assert stats.t_critical(df) == pytest.approx(T95[df], abs=1e-4)


def test_t_critical_undefined_below_one_df():
    assert math.isnan(stats.t_critical(0))


def test_paired_t_by_hand():
    """Differences 3, 0, 4: mean 7/3, sd sqrt(13/3), t = mean / (sd / sqrt 3), two-sided p from t(2)."""
    res = stats.paired_t([3.0, 0.0, 4.0])
    sd = math.sqrt(((3 - 7 / 3) ** 2 + (0 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    t = (7 / 3) / (sd / math.sqrt(3))
    assert res["mean"] == pytest.approx(7 / 3)
    assert res["std"] == pytest.approx(sd)
    assert res["t"] == pytest.approx(t)
    # p(|T| > t) for t(2) has a closed form: 1 - t / sqrt(t^2 + 2)
    assert res["p"] == pytest.approx(1 - t / math.sqrt(t * t + 2))
    assert res["ci_low"] == pytest.approx(7 / 3 - 4.3027 * sd / math.sqrt(3), abs=1e-3)
    assert res["p"] == pytest.approx(sps.ttest_1samp([3.0, 0.0, 4.0], 0.0).pvalue)


@pytest.mark.parametrize("diffs", [[1.0], [2.0, 2.0, 2.0], []])
def test_paired_t_undefined_without_spread_or_pairs(diffs):
    res = stats.paired_t(diffs)
    assert math.isnan(res["p"]) and math.isnan(res["ci_low"])


def test_holm_by_hand():
    """p = (0.01, 0.04, 0.03, 0.005, NaN): the NaN is out of the family (m = 4).
    Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.02, 0.03, 0.06, 0.06."""
    adjusted, level = stats.holm([0.01, 0.04, 0.03, 0.005, math.nan])
    np.testing.assert_allclose(adjusted[:4], [0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[4]) and math.isnan(level[4])
    np.testing.assert_allclose(level[:4], [1 - 0.05 / 3, 1 - 0.05 / 1, 1 - 0.05 / 2, 1 - 0.05 / 4])


def test_holm_caps_at_one():
    adjusted, _ = stats.holm([0.6, 0.7])
    np.testing.assert_allclose(adjusted, [1.0, 1.0])


def _enumerated_p(ranks, values):
    """Exact permutation p-values by brute force over every ordering, with scipy's own Spearman."""
    observed = sps.spearmanr(ranks, values).statistic
    null = np.array([sps.spearmanr(ranks, perm).statistic for perm in itertools.permutations(values)])
    return observed, np.mean(null >= observed - 1e-12), np.mean(null <= observed + 1e-12)


@pytest.mark.parametrize(
    "values",
    [
        [0.1, 0.5, 0.3, 0.9, 1.2],  # rho 0.9
        [1.0, 2.0, 3.0, 4.0, 5.0],  # perfect: p = 1/120
        [3.0, 1.0, 2.0, 2.0, 0.5],  # ties, declining
        [0.2, -0.1, 0.4, 0.3],  # four datasets
    ],
)
def test_trend_test_matches_exact_enumeration(values):
    ranks = list(range(1, len(values) + 1))
    rho, p_greater, p_less = _enumerated_p(ranks, values)
    res = stats.trend_test(ranks, values)
    assert res["rho"] == pytest.approx(rho)
    assert res["p_greater"] == pytest.approx(p_greater)
    assert res["p_less"] == pytest.approx(p_less)


def test_trend_test_matches_scipy_permutation_test():
    ranks, values = [1, 2, 3, 4, 5], [0.3, 0.1, 0.8, 0.7, 1.5]

    def statistic(y, axis=-1):
        return np.apply_along_axis(lambda v: sps.spearmanr(ranks, v).statistic, axis, y)

    ref = sps.permutation_test((values,), statistic, permutation_type="pairings", alternative="greater")
    assert stats.trend_test(ranks, values)["p_greater"] == pytest.approx(ref.pvalue)


def test_trend_test_many_datasets_uses_random_orderings():
    ranks = list(range(1, 11))
    res = stats.trend_test(ranks, ranks, n_resamples=2000)
    assert res["rho"] == pytest.approx(1.0)
    assert res["p_greater"] < 0.005 and res["p_less"] == pytest.approx(1.0)


def test_spearman_over_no_datasets_is_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(stats.spearman_rho([], np.zeros(0)))
        rows = stats.spearman_rho([], np.zeros((3, 0)))
    assert rows.shape == (3,) and np.isnan(rows).all()


def test_smallest_permutation_p():
    assert stats.min_permutation_p(3) == pytest.approx(1 / 6)
    assert stats.min_permutation_p(4) == pytest.approx(1 / 24)
    assert stats.min_permutation_p(5) == pytest.approx(1 / 120)


def test_bootstrap_rho_interval():
    rng = np.random.default_rng(1)
    clean = [rank + rng.normal(0, 0.05, 3) for rank in range(1, 6)]
    low, high = stats.bootstrap_rho([1, 2, 3, 4, 5], clean)
    assert low == pytest.approx(1.0) and high == pytest.approx(1.0)  # no resample can reorder them
    noisy = [rng.normal(0, 1, 3) for _ in range(5)]
    low, high = stats.bootstrap_rho([1, 2, 3, 4, 5], noisy)
    assert -1 <= low < high <= 1
    assert stats.bootstrap_rho([1, 2, 3, 4, 5], noisy) == (low, high)  # seeded
    assert all(map(math.isnan, stats.bootstrap_rho([1, 2, 3], [[1.0], [2.0], [3.0]])))


def _power_by_integration(effect, sd, n, alpha=0.05):
    """P(|T| > c), T = (Z + nc) / sqrt(V / df), integrating the normal cdf over V ~ chi2(df): no noncentral t."""
    df, nc = n - 1, effect * math.sqrt(n) / sd
    c = sps.t.ppf(1 - alpha / 2, df)

    def given_v(v):
        s = math.sqrt(v / df)
        return (sps.norm.sf(c * s - nc) + sps.norm.cdf(-c * s - nc)) * sps.chi2.pdf(v, df)

    return integrate.quad(given_v, 0, np.inf, limit=200)[0]


@pytest.mark.parametrize("n", [2, 3, 5, 10, 30])
def test_mde_has_80_percent_power(n):
    mde = stats.minimum_detectable_effect(1.0, n)
    assert _power_by_integration(mde, 1.0, n) == pytest.approx(0.80, abs=2e-4)
    assert stats.paired_t_power(mde, 1.0, n) == pytest.approx(0.80, abs=1e-6)


def test_mde_scales_with_sd_and_approaches_the_normal_formula():
    assert stats.minimum_detectable_effect(2.5, 3) == pytest.approx(2.5 * stats.minimum_detectable_effect(1.0, 3))
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.80)
    n = 2000
    assert stats.minimum_detectable_effect(1.0, n) == pytest.approx(z / math.sqrt(n), rel=2e-3)
    assert math.isnan(stats.minimum_detectable_effect(1.0, 1))
    assert math.isnan(stats.minimum_detectable_effect(0.0, 3))


@pytest.mark.parametrize("effect,sd", [(2.65, 1.0), (0.5, 1.0), (-1.5, 1.73), (4.0, 1.0)])
def test_pairs_needed_is_the_smallest_n_with_80_percent_power(effect, sd):
    n = int(stats.pairs_needed(effect, sd))
    assert _power_by_integration(abs(effect), sd, n) >= 0.80 - 1e-6
    if n > 2:
        assert _power_by_integration(abs(effect), sd, n - 1) < 0.80


def test_pairs_needed_undefined():
    assert math.isnan(stats.pairs_needed(0.0, 1.0))
    assert math.isnan(stats.pairs_needed(1.0, math.nan))
    assert stats.pairs_needed(1e-4, 10.0) == math.inf


def test_pairing_recovers_the_difference_variance():
    """sd(t − c)² = s_t² + s_c² − 2ρ s_t s_c, by hand on numbers with known structure."""
    t, c = np.array([97.0, 98.0, 96.5, 97.5]), np.array([96.8, 98.1, 96.0, 97.2])
    out = stats.pairing(t, c)
    assert out["treatment_std"] == pytest.approx(np.std(t, ddof=1))
    assert out["control_std"] == pytest.approx(np.std(c, ddof=1))
    rebuilt = (
        out["treatment_std"] ** 2
        + out["control_std"] ** 2
        - 2 * out["corr"] * out["treatment_std"] * out["control_std"]
    )
    assert rebuilt == pytest.approx(np.var(t - c, ddof=1))
    assert out["corr"] > 0.9  # the arms move together
    assert stats.pairing(t, t[::-1])["corr"] < 0  # reversed: anti-correlated, the pairing hurts
    assert math.isnan(stats.pairing([97.0], [96.0])["corr"])


@pytest.mark.parametrize("df", [1, 2, 3, 7, 31, 200])
def test_student_t_helpers_are_scipys_distribution_bit_for_bit(df):
    """t_sf, t_cdf and t_critical skip scipy.stats.t's argument handling, not its numbers (committed reports'
    p values and intervals regenerate identically)."""
    for t in (-40.0, -3.2, -1e-9, 0.0, 0.4, 2.7, 55.0):
        assert stats.t_sf(t, df) == float(sps.t.sf(t, df))
        assert stats.t_cdf(t, df) == float(sps.t.cdf(t, df))
    for confidence in (0.8, 0.95, 0.99, 1 - 0.05 / 7):
        assert stats.t_critical(df, confidence) == float(sps.t.ppf(0.5 + confidence / 2, df))
    assert math.isnan(stats.t_critical(0.5))
