"""Calibration of the factor verdicts on sweeps with the real structure (issue 29), vectorised with numpy.

Each simulated sweep has S seeds × L levels; per student k, seed s and level l the paired gain over scratch is

    g_ksl = μ_k(x_l) + a_s + c_sl + e_ksl − e_sl(scratch)

with a seed main effect a_s ~ N(0, seed_sd²), the seed's own chain of data draws c_s· ~ AR(1) over the levels
(ordered by position) with stationary sd ``chain_sd`` and correlation ρ between adjacent levels, shared by both
students, own noise e_ksl and the scratch run's noise e_sl (shared by both students' gains), each N(0, noise_sd²).
The decision rule is the report's: per-seed slope (or contrast), one-sided t-test over seeds, every student
must pass at α (supported), any student in the opposite direction at α / students (contradicted).
``python -m kd_lightning.report calibrate`` prints the table docs/factors.md holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kd_lightning.report import stats

#: the committed USPS sweep's levels (train_fraction 1, 0.2, 0.1, 0.05) as positions: halvings of the data
USPS_POSITIONS = tuple(float(-np.log2(f)) for f in (1.0, 0.2, 0.1, 0.05))
#: the issue's concave positive control: RKD's gain at full / 20% / 10% / 5% (pp); IKD the same
CONCAVE_GAINS = (0.3, 6.9, 8.0, 8.2)
TESTS: dict[str, Callable[[Sequence[float], np.ndarray], np.ndarray]] = {
    "slope": stats.per_seed_slopes,
    "contrast": stats.per_seed_contrast,
}


@dataclass(frozen=True)
class Noise:
    """The sd of each part of a simulated gain (pp); defaults near the committed USPS sweep's (FIELD-NOTES §10)."""

    seed_sd: float = 0.5
    chain_sd: float = 0.5
    noise_sd: float = 0.45
    rho: float = 0.5


def simulate_gains(
    rng: np.random.Generator, n: int, seeds: int, means: np.ndarray, noise: Noise, students: int = 2
) -> np.ndarray:
    """Gains of shape (students, n, seeds, levels); ``means`` (levels,) or (students, levels): μ_k(x_l)."""
    levels = np.asarray(means).shape[-1]
    seed = rng.normal(0, noise.seed_sd, size=(n, seeds, 1))
    chain = np.empty((n, seeds, levels))
    chain[..., 0] = rng.normal(0, noise.chain_sd, size=(n, seeds))
    innovation = noise.chain_sd * np.sqrt(1 - noise.rho**2)
    for level in range(1, levels):
        chain[..., level] = noise.rho * chain[..., level - 1] + rng.normal(0, innovation, size=(n, seeds))
    scratch = rng.normal(0, noise.noise_sd, size=(n, seeds, levels))
    own = rng.normal(0, noise.noise_sd, size=(students, n, seeds, levels))
    mu = np.broadcast_to(np.asarray(means, dtype=float), (students, levels))[:, None, None, :]
    return mu + seed + chain + own - scratch


def decide(
    positions: Sequence[float], gains: np.ndarray, test: str, alpha: float = stats.ALPHA
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(supported, contradicted) per simulated sweep under the report's rule, and each student's t-test."""
    res = stats.t_over_units(TESTS[test](positions, gains))
    students = gains.shape[0]
    supported = np.all(res["p_greater"] < alpha, axis=0)
    contradicted = np.any(res["p_less"] * students < alpha, axis=0)
    return supported, contradicted, res


def printed_mdes(positions: Sequence[float], pilots: np.ndarray, test: str, alpha: float) -> np.ndarray:
    """The MDE the report prints for each simulated pilot sweep (both students, each sd at its upper limit)."""
    res = stats.t_over_units(TESTS[test](positions, pilots))
    n, df = res["n"], res["df"]
    out = []
    for sds in np.asarray(res["sd"]).T:  # (pilots, students)
        ses = [stats.sd_upper_limit(float(sd), df) / np.sqrt(n) for sd in sds]
        out.append(stats.verdict_mde(ses, [df] * len(ses), alpha))
    return np.asarray(out)


def power_at_printed_mde(
    rng: np.random.Generator,
    positions: Sequence[float],
    seeds: int,
    noise: Noise,
    test: str,
    pilots: int,
    per_pilot: int,
    alpha: float = stats.ALPHA,
) -> float:
    """Share of "supported" when each pilot's printed MDE is fed back as the true effect (linear in position for a
    slope, at the hardest level for a contrast) into ``per_pilot`` new sweeps of the same design."""
    x = np.asarray(positions, dtype=float)
    mdes = printed_mdes(x, simulate_gains(rng, pilots, seeds, np.zeros(len(x)), noise), test, alpha)
    shape = (x - x.min()) if test == "slope" else (x == x.max()).astype(float)
    hits = 0.0
    for mde in mdes:
        supported, _, _ = decide(x, simulate_gains(rng, per_pilot, seeds, mde * shape, noise), test, alpha)
        hits += supported.mean()
    return hits / len(mdes)


def calibration_table(
    n: int = 20_000,
    pilots: int = 200,
    per_pilot: int = 100,
    rhos: Sequence[float] = (0.0, 0.5, 0.9),
    level_counts: Sequence[int] = (3, 4),
    seed_counts: Sequence[int] = (3, 5, 10),
    seed: int = 0,
) -> pd.DataFrame:
    """False supported, false contradicted (null: no effect) and power at the printed MDE, per test and design.

    Levels: the first ``L`` of full data, 20%, 10%, 5% ... (train_fraction halving positions)."""
    rows = []
    for rho in rhos:
        for levels in level_counts:
            x = np.asarray((USPS_POSITIONS + (float(-np.log2(0.025)),))[:levels])
            for seeds in seed_counts:
                rng = np.random.default_rng([seed, int(rho * 10), levels, seeds])
                noise = Noise(rho=rho)
                null = simulate_gains(rng, n, seeds, np.zeros(levels), noise)
                for test in TESTS:
                    supported, contradicted, res = decide(x, null, test)
                    rows.append(
                        {
                            "rho": rho,
                            "levels": levels,
                            "seeds": seeds,
                            "test": test,
                            "false_supported": float(supported.mean()),
                            "false_contradicted": float(contradicted.mean()),
                            "one_student_false_positive": float(np.mean(res["p_greater"][0] < stats.ALPHA)),
                            "power_at_printed_mde": power_at_printed_mde(rng, x, seeds, noise, test, pilots, per_pilot),
                        }
                    )
    return pd.DataFrame(rows)


def level_mean_rule_false_positive(rng: np.random.Generator, n: int, seeds: int, rho: float) -> float:
    """One student's false-positive rate under the rule this replaces (level means, slope on L − 2 df)."""
    x = np.asarray(USPS_POSITIONS)
    gains = simulate_gains(rng, n, seeds, np.zeros(len(x)), Noise(rho=rho, chain_sd=1.0))[0]
    return float(np.mean(stats.slope_test(np.arange(1, len(x) + 1), gains.mean(axis=-2))["p_greater"] < stats.ALPHA))
