"""Statistics of the report: paired t-intervals, Holm's correction, permutation and bootstrap trend tests,
power, minimum detectable effect and seeds needed. Plain numbers in, plain numbers out (no DataFrames).

Everything uses scipy.stats distributions (no hand-written critical values):

- **Paired difference** of two arms over the seeds both have: mean, sample sd (ddof=1), a two-sided
  t-test of "mean difference = 0" and its 95% t-interval, df = pairs - 1. Undefined (NaN) with fewer
  than 2 pairs or when every pair differs by exactly the same amount (no spread: variance unknown).
- **Holm** (1979) step-down adjustment of a family of p-values: sort ascending, multiply the k-th
  smallest by (m - k + 1), take the running maximum, cap at 1. A hypothesis is rejected at level alpha
  when its adjusted p-value is below alpha; that controls the family-wise error rate at alpha for any
  dependence between the tests. The interval shown beside it is the t-interval at the confidence level
  at which Holm tests it, 1 - alpha / (m - k + 1).
- **Trend test**: Spearman's rho between a per-dataset value and the dataset's complexity rank; its
  p-value is a permutation test over the datasets' orderings: exact enumeration of all n! orderings for
  n <= 8 (vectorised), ``scipy.stats.permutation_test`` with random orderings beyond. Valid when, with no
  trend, every ordering of the per-dataset values is equally likely. The smallest attainable one-sided
  p-value is 1/n!: 0.167 with 3 datasets, 0.042 with 4, 0.0083 with 5.
- **Trend over the levels of a data factor, the level as the unit** (the seeds at a level share its data): one
  value per level (its mean paired gain over the seeds), OLS of it on the level's fixed position x_l, slope
  b = Sxy / Sxx, residual sd s = sqrt(RSS / (L - 2)), t = b / (s / sqrt(Sxx)) on L - 2 df, one-sided p-values;
  with equal seeds per level the exact test of the slope in the random-level-effects model
  y_ls = a + b x_l + u_l + e_ls. Power: noncentral t with ncp = b sqrt(Sxx) / sigma on L - 2 df.
- **The seed as the unit** (each seed draws its own nested chain of data across the levels, so a seed's levels
  correlate): per seed, b_s = sum_l (x_l - x̄) g_sl / Sxx (its slope) or g_s,hardest - g_s,easiest (its contrast);
  one-sample t-test of the b_s over the S seeds on S - 1 df. Exact for any correlation within a seed.
- **Bootstrap interval for rho**: resampling seeds with replacement within each dataset (stratified),
  recomputing the per-dataset means and rho; percentile interval. Descriptive only (with 3 seeds a
  dataset has only 10 distinct resamples), never used for a verdict.
- **Power** of the two-sided paired t-test: P(|T| > t_crit) with T ~ noncentral t(df = n - 1,
  nc = effect * sqrt(n) / sd). The minimum detectable effect (MDE) is the effect with 80% power at
  alpha = 0.05 for the observed sd and number of pairs; "pairs needed" is the smallest n reaching 80%
  power for a given effect (the paper's difference) at the observed sd.
- **Power of a verdict** that needs every part (both students) to pass a one-sided t-test at the claim's alpha:
  the product of the parts' noncentral-t powers (a lower bound when the parts correlate positively), each sd at
  its one-sided upper confidence limit sd · sqrt(df / chi2_{1-c}(df)), c = SD_CONFIDENCE, because an sd from a
  few units can be far from the true one. The verdict's MDE and the seeds it needs follow from it.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import optimize, special, stats

ALPHA = 0.05
POWER = 0.80
CONFIDENCE = 0.95
#: gap closed is reported only where the teacher beats the control by at least this much (pp): below it there is
#: no room to close
GAP_MIN_PP = 1.0
#: teacher − scratch (pp) at or above which a teacher is worth distilling (issue 28, ``teacher_gate.py``)
GATE_MARGIN = 0.5
MAX_PAIRS = 100_000  # "pairs needed" beyond this is reported as not reachable
EXACT_PERMUTATIONS_UP_TO = 8  # n! orderings enumerated exactly up to 8 datasets (40,320)


# --------------------------------------------------------------------------------------------------
# Intervals and tests


def t_critical(df: float, confidence: float = CONFIDENCE) -> float:
    """Two-sided critical value of Student's t (``scipy.stats.t.ppf``'s ``special.stdtrit``, see :func:`t_sf`); NaN
    for df < 1."""
    if not df >= 1:
        return math.nan
    return float(special.stdtrit(df, 0.5 + confidence / 2))


def t_sf(t: float, df: float) -> float:
    """P(T >= t) for Student's t with ``df`` degrees of freedom: what ``scipy.stats.t.sf`` computes
    (``special.stdtr(df, -t)``, the same bits) without its argument handling, which cost 50-100x more per call in
    the report's many small tests."""
    return float(special.stdtr(df, -t))


def t_cdf(t: float, df: float) -> float:
    """P(T <= t): ``scipy.stats.t.cdf``'s ``special.stdtr(df, t)`` (see :func:`t_sf`)."""
    return float(special.stdtr(df, t))


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, float]:
    """Mean, sample std and t-interval of the mean; NaN where n is too small to say."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    half = t_critical(n - 1, confidence) * std / math.sqrt(n) if n > 1 else math.nan
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def paired_t(diffs: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, float]:
    """One-sample t-test of paired differences against 0 (two-sided) and the t-interval of their mean."""
    d = np.asarray(diffs, dtype=float)
    out = mean_ci(d, confidence)
    n, sd = out["n"], out["std"]
    if n < 2 or not sd > 0:
        return {
            **out,
            "se": math.nan,
            "t": math.nan,
            "p": math.nan,
            "p_greater": math.nan,
            "p_less": math.nan,
            "ci_low": math.nan,
            "ci_high": math.nan,
        }
    se = sd / math.sqrt(n)
    t = out["mean"] / se
    return {
        **out,
        "se": se,
        "t": t,
        "p": 2 * t_sf(abs(t), n - 1),
        "p_greater": t_sf(t, n - 1),
        "p_less": t_cdf(t, n - 1),
    }


def pairing(treatment: Sequence[float], control: Sequence[float]) -> dict[str, float]:
    """Each arm's sample sd over the pairs and their correlation ρ: how much the pairing removes.

    var(t − c) = s_t² + s_c² − 2 ρ s_t s_c, so the paired difference is tighter than either arm only when ρ > 0;
    with ρ = 0 (nothing shared) its sd is √(s_t² + s_c²), larger than either arm's.
    """
    t, c = np.asarray(treatment, dtype=float), np.asarray(control, dtype=float)
    if len(t) < 2:
        return {"treatment_std": math.nan, "control_std": math.nan, "corr": math.nan}
    st, sc = float(np.std(t, ddof=1)), float(np.std(c, ddof=1))
    corr = float(np.corrcoef(t, c)[0, 1]) if st > 0 and sc > 0 else math.nan
    return {"treatment_std": st, "control_std": sc, "corr": corr}


def t_interval(mean: float, se: float, n: int, confidence: float) -> tuple[float, float]:
    """Mean ± t_crit(df = n - 1) · se at the given two-sided confidence."""
    if n < 2 or not se > 0 or not 0 < confidence < 1:
        return math.nan, math.nan
    half = t_critical(n - 1, confidence) * se
    return mean - half, mean + half


def holm(pvalues: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down adjusted p-values and the confidence level at which each hypothesis is tested.

    NaN p-values (tests that could not be run) are left out of the family and stay NaN.
    Returns (adjusted, level) with level = 1 - ALPHA / (m - k + 1) for the k-th smallest p-value.
    """
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    level = np.full(p.shape, math.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = len(idx)
    if m == 0:
        return adjusted, level
    order = idx[np.argsort(p[idx], kind="stable")]
    factors = m - np.arange(m)  # m, m-1, ..., 1
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(p[order] * factors))
    level[order] = 1 - ALPHA / factors
    return adjusted, level


def paired_family(
    arms: Mapping[str, Any], paper_diffs: Mapping[str, float], alpha: float = ALPHA, power: bool = True
) -> dict[str, dict[str, Any]]:
    """A family of paired comparisons (one per dataset), as the tables and the claims both read it.

    ``arms``: per dataset, the paired values as rows of (treatment, control). Per dataset: the paired t-test of
    treatment − control and its 95% interval, each arm's sd and their correlation, the MDE and the pairs that
    would detect the paper's difference (NaN unless ``power``). Then Holm across the family: the adjusted p, the
    interval at the level Holm tests it at, and ``resolved`` (+/− where the adjusted p < alpha)."""
    rows = {}
    for key, pairs in arms.items():
        t, c = np.asarray(pairs, dtype=float).T
        test, paper = paired_t(t - c), paper_diffs.get(key, math.nan)
        rows[key] = {
            "n_pairs": test["n"],
            "diff_mean": test["mean"],
            "diff_std": test["std"],
            **pairing(t, c),
            **{k: test[k] for k in ("ci_low", "ci_high", "p", "se")},
            "mde": minimum_detectable_effect(test["std"], test["n"], alpha) if power else math.nan,
            "paper_diff": paper,
            "pairs_needed_paper": pairs_needed(paper, test["std"], alpha) if power else math.nan,
        }
    for row, p_holm, level in zip(rows.values(), *holm([row["p"] for row in rows.values()])):
        low, high = t_interval(row["diff_mean"], row["se"], row["n_pairs"], level)
        sign = "+" if row["diff_mean"] > 0 else "−" if row["diff_mean"] < 0 else ""
        row.update(
            p_holm=p_holm, holm_level=level, holm_low=low, holm_high=high, resolved=sign if p_holm < alpha else ""
        )
    return rows


# --------------------------------------------------------------------------------------------------
# Trend over datasets


def spearman_rho(x: Sequence[float], y: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Spearman's rho (Pearson correlation of average ranks) of ``x`` with each row of ``y``; NaN when
    either side has no spread. Vectorised over leading axes of ``y``."""
    y = np.asarray(y, dtype=float)
    if len(x) == 0:  # no datasets: no correlation (and no mean-of-empty warnings)
        none = np.full(np.delete(np.array(y.shape, dtype=int), axis), np.nan)
        return float(none) if none.ndim == 0 else none
    rx = stats.rankdata(np.asarray(x, dtype=float))
    ry = stats.rankdata(y, axis=axis)
    rx = rx - rx.mean()
    ry = ry - ry.mean(axis=axis, keepdims=True)
    den = np.sqrt((rx**2).sum() * (ry**2).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ry * rx).sum(axis=axis) / den
    rho = np.where(den > 1e-12, rho, np.nan)
    return float(rho) if np.ndim(rho) == 0 else rho


def min_permutation_p(n: int) -> float:
    """Smallest one-sided p-value an exact permutation test of rho over n datasets can give (1/n!)."""
    return 1.0 / math.factorial(n) if n >= 1 else math.nan


#: fewest datasets whose exact permutation test can reach p < ALPHA (1/4! = 0.042)
MIN_TREND_DATASETS = next(n for n in range(2, 10) if min_permutation_p(n) < ALPHA)


def trend_test(
    ranks: Sequence[float], values: Sequence[float], n_resamples: int = 20_000, seed: int = 0
) -> dict[str, float]:
    """Spearman's rho of ``values`` against ``ranks`` and its one-sided permutation p-values.

    ``p_greater`` = P(rho >= observed) and ``p_less`` = P(rho <= observed) over the orderings of
    ``values`` (all n! of them for n <= 8, else ``n_resamples`` random ones).
    """
    r = np.asarray(ranks, dtype=float)
    v = np.asarray(values, dtype=float)
    n = len(v)
    out = {"n": n, "rho": math.nan, "p_greater": math.nan, "p_less": math.nan, "min_p": min_permutation_p(n)}
    if n < 3:
        return out
    rho = spearman_rho(r, v)
    out["rho"] = rho
    if math.isnan(rho):
        return out
    if n <= EXACT_PERMUTATIONS_UP_TO:  # every ordering, vectorised
        null = spearman_rho(r, v[_orderings(n)], axis=-1)
        tol = 1e-12 * max(1.0, abs(rho))
        out["p_greater"] = float(np.mean(null >= rho - tol))
        out["p_less"] = float(np.mean(null <= rho + tol))
        return out

    def statistic(y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(spearman_rho(r, y, axis=axis))

    for alternative in ("greater", "less"):
        res = stats.permutation_test(
            (v,),
            statistic,
            permutation_type="pairings",
            vectorized=True,
            n_resamples=n_resamples,
            alternative=alternative,
            rng=np.random.default_rng(seed),
        )
        out[f"p_{alternative}"] = float(res.pvalue)
    return out


def slope_test(x: Sequence[float], y: np.ndarray) -> dict[str, np.ndarray | float]:
    """OLS slope of ``y`` on ``x`` with its one-sided t-tests on ``len(x) - 2`` df (module docstring).

    Vectorised over the leading axes of ``y`` (simulations); NaN where the test is undefined (fewer than
    3 points, no spread in ``x``, or a perfect fit: no residual scatter to judge the slope against).
    """
    xv = np.asarray(x, dtype=float)
    yv = np.asarray(y, dtype=float)
    n = xv.shape[-1]
    xc = xv - xv.mean()
    sxx = float((xc**2).sum())
    nan = np.full(yv.shape[:-1], math.nan)
    out: dict[str, np.ndarray | float] = {
        "n": n,
        "df": n - 2,
        "slope": nan,
        "resid_sd": nan,
        "t": nan,
        "p_greater": nan,
        "p_less": nan,
    }
    if n < 3 or not sxx > 0:
        return _scalars(out)
    slope = (xc * (yv - yv.mean(axis=-1, keepdims=True))).sum(axis=-1) / sxx
    resid = yv - yv.mean(axis=-1, keepdims=True) - slope[..., None] * xc
    resid_sd = np.sqrt((resid**2).sum(axis=-1) / (n - 2))
    scale = np.maximum(1.0, np.abs(yv).max(axis=-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(resid_sd > 1e-9 * scale, slope / (resid_sd / math.sqrt(sxx)), math.nan)
    out.update(slope=slope, resid_sd=resid_sd, t=t, p_greater=stats.t.sf(t, n - 2), p_less=stats.t.cdf(t, n - 2))
    return _scalars(out)


def _scalars(out: dict[str, Any]) -> dict[str, Any]:
    return {k: float(v) if np.ndim(v) == 0 and isinstance(v, (np.ndarray, np.floating)) else v for k, v in out.items()}


def position_sxx(positions: Sequence[float]) -> float:
    """Sxx = sum (x - mean x)^2 of the levels' fixed positions (equally spaced ranks 1..L: L (L^2 - 1) / 12)."""
    x = np.asarray(positions, dtype=float)
    return float(((x - x.mean()) ** 2).sum())


def slope_power(slope: float, sd: float, positions: Sequence[float], alpha: float = ALPHA) -> float:
    """Power of the one-sided level-unit slope t-test (L - 2 df) at residual sd ``sd`` of the level means."""
    df = len(positions) - 2
    if df < 1 or not sd > 0 or math.isnan(slope):
        return math.nan
    return one_sided_power(slope, sd / math.sqrt(position_sxx(positions)), df, alpha)


def slope_mde(sd: float, positions: Sequence[float], alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest growth per unit of position that the one-sided level-unit slope test detects with ``power``."""
    if len(positions) < 3 or not sd > 0:
        return math.nan
    return _smallest_effect(lambda b: slope_power(b, sd, positions, alpha), sd, power)


@functools.cache
def _orderings(n: int) -> np.ndarray:
    """All n! orderings of range(n), one per row."""
    return np.array(list(itertools.permutations(range(n))), dtype=np.intp)


def bootstrap_rho(
    ranks: Sequence[float],
    samples: Sequence[Sequence[float]],
    n_resamples: int = 2000,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of rho(ranks, per-dataset means) resampling each dataset's values (seeds)
    independently with replacement (``scipy.stats.bootstrap`` with one sample per dataset)."""
    data = [np.asarray(s, dtype=float) for s in samples]
    if len(data) < 3 or any(len(s) < 2 for s in data):
        return math.nan, math.nan
    r = np.asarray(ranks, dtype=float)

    def statistic(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        means = np.stack([s.mean(axis=axis) for s in resampled], axis=-1)
        return np.asarray(spearman_rho(r, means, axis=-1))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap(
            data,
            statistic,
            paired=False,
            vectorized=True,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return low, high


# --------------------------------------------------------------------------------------------------
# Power


def paired_t_power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test (n pairs, sd of the differences) to detect ``effect``."""
    if n < 2 or not sd > 0 or math.isnan(effect):
        return math.nan
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = abs(effect) * math.sqrt(n) / sd
    upper = stats.nct.sf(crit, df, nc)
    if math.isnan(upper):
        upper = 1.0 - stats.nct.cdf(crit, df, nc)
    lower = stats.nct.cdf(-crit, df, nc)  # far below 1e-16 once nc is large; scipy can return NaN there
    return float(min(1.0, upper + (0.0 if math.isnan(lower) else lower)))


def minimum_detectable_effect(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest |mean difference| the two-sided paired t-test detects with ``power`` (same units as sd)."""
    if n < 2 or not sd > 0:
        return math.nan
    return _smallest_effect(lambda e: paired_t_power(e, sd, n, alpha), sd, power)


def _smallest_effect(power_at: Callable[[float], float], sd: float, power: float) -> float:
    """The effect at which ``power_at`` (growing with the effect) reaches ``power``: bracket by doubling from
    ``sd``, then Brent's root; inf when even 1e9 sd is not enough."""
    hi = sd
    while power_at(hi) < power:
        hi *= 2
        if hi > 1e9 * sd:
            return math.inf
    return float(optimize.brentq(lambda e: power_at(e) - power, 0.0, hi, xtol=1e-10 * sd))


def pairs_needed(effect: float, sd: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest number of pairs (seeds) giving ``power`` to detect ``effect`` at the observed ``sd``;
    NaN when undefined (no sd, no effect), inf beyond ``MAX_PAIRS``."""
    if not sd > 0 or math.isnan(effect) or effect == 0:
        return math.nan
    if paired_t_power(effect, sd, MAX_PAIRS, alpha) < power:
        return math.inf
    lo, hi = 1, 2  # power(lo) < target (n = 1 has no test), power(hi) checked below
    while paired_t_power(effect, sd, hi, alpha) < power:
        lo, hi = hi, min(hi * 2, MAX_PAIRS)
    while hi - lo > 1:  # power grows with n
        mid = (lo + hi) // 2
        if paired_t_power(effect, sd, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid
    return float(hi)


# --------------------------------------------------------------------------------------------------
# The seed as the unit (each seed draws its own chain of subsamples)


def per_seed_slopes(positions: Sequence[float], gains: np.ndarray) -> np.ndarray:
    """Each seed's OLS slope of its paired gains on the levels' fixed positions: b_s = Σ_l (x_l − x̄) g_sl / Sxx.

    ``gains`` has the levels on the last axis (seeds and simulations on the leading ones). A seed main effect
    (the same offset at every level) cancels; the levels of one seed may correlate in any way (AR(1) chain):
    the seeds, not the levels, are the independent replicates."""
    x = np.asarray(positions, dtype=float)
    xc = x - x.mean()
    return (np.asarray(gains, dtype=float) * xc).sum(axis=-1) / float((xc**2).sum())


def per_seed_contrast(positions: Sequence[float], gains: np.ndarray) -> np.ndarray:
    """Each seed's gain at the hardest level (largest position) minus its gain at the easiest (smallest)."""
    x = np.asarray(positions, dtype=float)
    g = np.asarray(gains, dtype=float)
    return g[..., int(np.argmax(x))] - g[..., int(np.argmin(x))]


def t_over_units(values: np.ndarray) -> dict[str, np.ndarray | float]:
    """One-sample t-test of mean = 0 over the last axis (the units: seeds), vectorised over leading axes.

    t = mean / (sd / sqrt(n)) on n − 1 df, one-sided p-values; NaN without spread or with fewer than 2 units."""
    v = np.asarray(values, dtype=float)
    n = v.shape[-1]
    mean = v.mean(axis=-1)
    sd = v.std(axis=-1, ddof=1) if n > 1 else np.full(mean.shape, math.nan)
    scale = np.maximum(1.0, np.abs(v).max(axis=-1)) if n else np.ones(mean.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(sd > 1e-9 * scale, mean / (sd / math.sqrt(max(n, 1))), math.nan)
    df = max(n - 1, 1)
    out = {
        "n": n,
        "df": n - 1,
        "mean": mean,
        "sd": sd,
        "t": t,
        "p_greater": stats.t.sf(t, df),
        "p_less": stats.t.cdf(t, df),
    }
    return _scalars(out)


# --------------------------------------------------------------------------------------------------
# Power of a verdict as decided (one-sided t-tests, all parts must agree)

#: the sd a power calculation plugs in is the upper limit of this one-sided confidence for the sd
SD_CONFIDENCE = 0.80
MAX_SEEDS = 1000


def sd_upper_limit(sd: float, df: float, confidence: float = SD_CONFIDENCE) -> float:
    """One-sided upper confidence limit of a normal sd estimated on ``df`` df: sd · sqrt(df / χ²_{1−c}(df)).

    With 2 df the 80% limit is 2.12 × sd (the true sd is below it in 80% of pilots); with 20 df, 1.19 ×."""
    if not df >= 1 or not sd > 0:
        return math.nan
    return float(sd * math.sqrt(df / stats.chi2.ppf(1 - confidence, df)))


def one_sided_power(effect: float, se: float, df: float, alpha: float = ALPHA) -> float:
    """P(T > t_{1−α}(df)) with T ~ noncentral t(df, effect / se): a one-sided t-test's power."""
    if not df >= 1 or not se > 0 or math.isnan(effect):
        return math.nan
    return float(stats.nct.sf(stats.t.ppf(1 - alpha, df), df, effect / se))


def verdict_power(effect: float, ses: Sequence[float], dfs: Sequence[float], alpha: float = ALPHA) -> float:
    """Power of "supported" when every part must pass its one-sided test at ``alpha`` (intersection-union).

    The product of the parts' powers: exact for independent parts, a lower bound when they correlate
    positively (students sharing one scratch run and one data chain do; Slepian's inequality)."""
    powers = [one_sided_power(effect, se, df, alpha) for se, df in zip(ses, dfs)]
    return float(np.prod(powers)) if powers else math.nan


def verdict_mde(ses: Sequence[float], dfs: Sequence[float], alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest common effect at which :func:`verdict_power` reaches ``power``; NaN when a part has no se."""
    if not ses or any(not (se > 0) for se in ses) or any(not df >= 1 for df in dfs):
        return math.nan
    return _smallest_effect(lambda e: verdict_power(e, ses, dfs, alpha), max(ses), power)


def seeds_needed(
    effect: float, sds: Sequence[float], alpha: float = ALPHA, power: float = POWER, most: int = MAX_SEEDS
) -> float:
    """Fewest seeds S at which "supported" (every part's t-test over S seeds, S − 1 df, se = sd / √S) has
    ``power`` for a true ``effect``; inf beyond ``most``, NaN for no effect or no sd."""
    if not effect > 0 or not sds or any(not (sd > 0) for sd in sds):
        return math.nan

    def power_at(n: int) -> float:
        return verdict_power(effect, [sd / math.sqrt(n) for sd in sds], [n - 1] * len(sds), alpha)

    if power_at(most) < power:
        return math.inf
    lo, hi = 2, most  # power grows with the seeds
    if power_at(lo) >= power:
        return float(lo)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if power_at(mid) >= power else (mid, hi)
    return float(hi)


def welch_interval(
    a: tuple[float, float, int], b: tuple[float, float, int], confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """(a − b, low, high) for two independent arms given as (mean, sd, n): a Welch–Satterthwaite t-interval
    (nothing pairs them, e.g. two recipes that draw different batches)."""
    (mean_a, sd_a, n_a), (mean_b, sd_b, n_b) = a, b
    var_a, var_b = sd_a**2 / n_a, sd_b**2 / n_b
    df = (var_a + var_b) ** 2 / (var_a**2 / (n_a - 1) + var_b**2 / (n_b - 1))
    diff = mean_a - mean_b
    half = t_critical(df, confidence) * math.sqrt(var_a + var_b)
    return diff, diff - half, diff + half
