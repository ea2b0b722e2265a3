"""The factor study's verdicts: the level is the unit, pairs never cross conditions, every shipped factor
sweep can reach a verdict, and the report's claims are one Holm-controlled family.

Calibration (issue 20): simulated sweeps whose levels carry their own chance effect (sd 1-3x the paired
noise: a level's data draw or class subset is shared by all its seeds), 3 and 5 levels, 2 and 3 seeds.
Without an effect "supported" must come out in at most 5% of them; a clean trend of the size the
report's detectable-effect line names must be supported 80% of the time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from scipy.stats import rankdata

from kd_lightning.report import stats
from kd_lightning.report.claims import (
    CONTRADICTED,
    FACTOR,
    NOT_TESTABLE,
    SUPPORTED,
    Claim,
    control_family,
    evaluate_claims,
    factor_claims,
    report_claims,
)
from kd_lightning.report.claims_text import (
    FACTOR_TEXT,
    claim_test,
    claims_frame,
    claims_markdown,
    claims_summary,
    evidence,
    part_name,
    part_text,
    statement,
)
from kd_lightning.report.problems import find_issues
from kd_lightning.report.records import load_sweep
from kd_lightning.report.runs import (
    DEFAULT_LEVEL,
    DIFFICULTY_SIGN,
    PAIRS_NOISE,
    factor_points,
    level_positions,
    paired_by_level,
)
from kd_lightning.report.tables import factor_table
from kd_lightning.report.writer import write_report
from kd_lightning.run.compose import CONF_DIR, compose_run_config
from kd_lightning.run.rundir import RunPlan, record_failure, record_keys, start_record

SETTINGS = [(level_sd, levels, seeds) for level_sd in (1.0, 2.0, 3.0) for levels in (3, 5) for seeds in (2, 3)]


# --------------------------------------------------------------------------------------------------
# Calibration of the level-unit trend test (vectorised: the statistics the report uses, 20,000 sweeps)


def simulated_gains(rng, n: int, levels: int, seeds: int, level_sd: float, slope: float = 0.0):
    """Paired gains over scratch of RKD and IKD, shape (n, levels, seeds), paired noise sd 1.

    Each level carries a chance offset shared by its seeds and mostly by both students (its data draw)."""
    shared = rng.normal(0, level_sd, size=(n, levels, 1))
    own = rng.normal(0, level_sd * 0.3, size=(2, n, levels, 1))
    trend = slope * np.arange(levels)[None, :, None]
    scratch = rng.normal(0, math.sqrt(0.5), size=(n, levels, seeds))
    students = rng.normal(0, math.sqrt(0.5), size=(2, n, levels, seeds))
    return [trend + shared + own[i] + students[i] - scratch for i in range(2)]


def claim_rates(gains, levels: int) -> tuple[float, float, float]:
    """(part supported, claim supported, claim contradicted) with the report's rule on level means."""
    x = np.arange(1, levels + 1)
    tests = [stats.slope_test(x, g.mean(axis=-1)) for g in gains]
    part = float(np.mean(tests[0]["p_greater"] < stats.ALPHA))
    supported = np.maximum(tests[0]["p_greater"], tests[1]["p_greater"]) < stats.ALPHA
    contradicted = 2 * np.minimum(tests[0]["p_less"], tests[1]["p_less"]) < stats.ALPHA
    return part, float(supported.mean()), float(contradicted.mean())


@pytest.mark.parametrize(("level_sd", "levels", "seeds"), SETTINGS, ids=lambda v: str(v))
def test_chance_level_effects_are_rarely_supported(level_sd, levels, seeds):
    n = 20_000
    rng = np.random.default_rng([7, int(level_sd), levels, seeds])
    part, supported, contradicted = claim_rates(simulated_gains(rng, n, levels, seeds, level_sd), levels)
    print(
        f"\nnull, level sd {level_sd}x, {levels} levels x {seeds} seeds: part {part:.4f}, claim supported "
        f"{supported:.4f}, contradicted {contradicted:.4f}"
    )
    se = math.sqrt(0.05 * 0.95 / n)
    assert supported <= 0.05 and contradicted <= 0.05 + 3 * se
    assert abs(part - 0.05) < 4 * se  # the slope test itself is exact: nominal 5%, not conservative by accident


@pytest.mark.parametrize(("level_sd", "levels", "seeds"), SETTINGS, ids=lambda v: str(v))
def test_a_trend_of_the_detectable_size_is_supported_80_percent_of_the_time(level_sd, levels, seeds):
    n = 20_000
    level_mean_sd = math.sqrt((level_sd**2) * (1 + 0.3**2) + 1.0 / seeds)  # sd of one level's mean gain
    mde = stats.slope_mde(level_mean_sd, np.arange(1, levels + 1))
    rng = np.random.default_rng([8, int(level_sd), levels, seeds])  # independent draws per setting
    part, _, _ = claim_rates(simulated_gains(rng, n, levels, seeds, level_sd, slope=mde), levels)
    print(f"\nMDE {mde:.2f} pp/step at level sd {level_sd}x, {levels}x{seeds}: supported {part:.4f}")
    assert part >= 0.80 - 3 * math.sqrt(0.8 * 0.2 / n)  # 80% up to Monte-Carlo error (sd 0.3 points)


def test_the_old_rule_of_counting_seeds_as_units_is_what_made_chance_look_like_a_trend():
    """Permuting (level, seed) points treats a level's offset as evidence: far above 5% with level effects."""
    rng = np.random.default_rng(1)
    gains = simulated_gains(rng, 400, 3, 3, level_sd=3.0)[0]
    x = np.repeat(np.arange(3), 3)
    pseudo = [stats.trend_test(x, g.ravel(), n_resamples=400)["p_greater"] < 0.05 for g in gains]
    honest = stats.slope_test(np.arange(3), gains.mean(axis=-1))["p_greater"] < 0.05
    assert np.mean(pseudo) > 0.15 and np.mean(honest) < 0.08


# --------------------------------------------------------------------------------------------------
# Every shipped factor sweep reaches each verdict (levels read from conf/experiment/factor_*.yaml)


def shipped_levels(factor: str) -> tuple[str, list]:
    """(dataset, the factor identities of the shipped sweep's levels) from its experiment file."""
    name = "label_noise" if factor == PAIRS_NOISE else factor
    exp = OmegaConf.load(CONF_DIR / "experiment" / f"factor_{name}.yaml")
    params = OmegaConf.to_container(exp.hydra.sweeper.params)
    dataset = "cifar10" if factor == "grayscale" else "usps"
    if "factor_level" in params:
        values = [exp.factor_levels[k] for k in str(params["factor_level"]).split(",")]
        values = [OmegaConf.to_container(v) if not isinstance(v, (int, float, type(None))) else v for v in values]
    else:
        ((key, text),) = params.items()
        values = [
            {"true": True, "false": False}.get(t, None) if t in ("true", "false") else float(t) for t in text.split(",")
        ]
    identities = []
    for value in values:
        default = value in (None, False) or (factor in ("train_fraction", "imbalance") and value == 1.0) or value == 0.0
        if default:
            identities.append({})
            continue
        ident = {name: value}
        if factor == PAIRS_NOISE or name == "label_noise":
            ident["noise_kind"] = "pairs" if factor == PAIRS_NOISE else "symmetric"
        identities.append(ident)
    return dataset, identities


FACTORS = ["train_fraction", "label_noise", PAIRS_NOISE, "classes", "resolution", "imbalance", "grayscale"]
RANDOM = ("train_fraction", "label_noise", "imbalance")


def _level_value(factor: str, ident: dict, dataset: str) -> float:
    key = "label_noise" if factor == PAIRS_NOISE else factor
    value = ident.get(key)
    if value is None:
        return {"classes": 10.0, "resolution": 32.0 if dataset == "cifar10" else 16.0}.get(
            factor, DEFAULT_LEVEL.get(factor, 0.0)
        )
    return float(len(value)) if factor == "classes" else float(value)


def factor_runs(factor: str, rng, gain_per_step: float, seeds: int = 3, level_sd: float = 0.3, noise: float = 0.3):
    """A shipped factor sweep's runs (teacher, scratch, RKD, IKD); the students' gain grows by
    ``gain_per_step`` per step of difficulty, plus seed noise and a chance offset of the data: per level for a
    factor without a random draw (every seed sees the level's data), per level and seed for a random factor
    (each seed draws its own data: ``factor_seed = seed``)."""
    dataset, identities = shipped_levels(factor)
    values = [_level_value(factor, ident, dataset) for ident in identities]
    steps = rankdata([DIFFICULTY_SIGN[factor] * v for v in values]) - 1  # 0 = easiest
    x = level_positions(factor, values)  # the effect is linear in the factor's fixed position
    along = (len(values) - 1) * (x - x.min()) / (x.max() - x.min())
    rows = []
    for step, position, ident in zip(steps, along, identities):
        random = factor in RANDOM or factor == PAIRS_NOISE
        offset = 0.0 if random else rng.normal(0, level_sd)  # a random factor's default level draws nothing
        for seed in range(seeds):
            factors = dict(ident)
            if any(k in factors for k in RANDOM):
                factors["factor_seed"] = seed
                offset = rng.normal(0, level_sd)  # this seed's own draw
            base = 90 - 5 * step + rng.normal(0, 1)
            accs = {"teacher": base + 2, "scratch": base + rng.normal(0, noise)}
            for student in ("rkd", "ikd"):
                accs[student] = base + gain_per_step * position + offset + rng.normal(0, noise)
            recipe = (
                "paper · " + ",".join(f"{k}={v}" for k, v in factors.items() if k != "factor_seed")
                if factors
                else "paper"
            )
            for method, value in accs.items():
                rows.append(
                    {
                        "dataset": dataset,
                        "method": method,
                        "seed": seed,
                        "status": "completed",
                        "recipe": recipe,
                        "base_recipe": "paper",
                        "factors": factors,
                        "image_size": 32 if dataset == "cifar10" else 16,
                        "num_classes": 10,
                        "test_best.acc": value / 100,
                        "test_best.agreement": 0.9,
                        "path": f"/x/{recipe}/{method}/{seed}",
                        "finished_at": "t",
                    }
                )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("factor", FACTORS)
def test_every_shipped_sweep_has_the_levels_its_verdict_needs(factor):
    points = factor_points(factor_runs(factor, np.random.default_rng(0), 0.0, seeds=1))
    assert points["factor"].eq(factor).any()
    assert points.loc[points["factor"] == factor, "level"].nunique() == (2 if factor == "grayscale" else 3)


@pytest.mark.parametrize("factor", FACTORS)
def test_each_shipped_factor_supports_a_clean_effect_and_not_a_null(factor):
    rng = np.random.default_rng(5)
    big = 6.0
    # grayscale's two conditions are fixed transformations (no random draw): an offset between them is the
    # effect itself, so its null has none; the other factors' levels carry a chance offset of 1x the noise
    chance = 0.0 if factor == "grayscale" else 1.0
    clean = [factor_claims(factor_runs(factor, rng, big))[0] for _ in range(6)]
    reverse = [factor_claims(factor_runs(factor, rng, -big))[0] for _ in range(6)]
    null = [factor_claims(factor_runs(factor, rng, 0.0, level_sd=chance))[0] for _ in range(20)]
    assert all(FACTOR_TEXT[factor] in statement(c) for c in clean)
    assert sum(c.verdict == SUPPORTED for c in clean) >= 5, [claim_test(c) for c in clean]
    assert sum(c.verdict == CONTRADICTED for c in reverse) >= 5, [claim_test(c) for c in reverse]
    assert sum(c.verdict == SUPPORTED for c in null) <= 1
    seed_unit = factor == "grayscale" or factor in RANDOM or factor == PAIRS_NOISE
    unit = "unit: the seed" if seed_unit else "unit: the level (3 level(s)"
    assert unit in evidence(clean[0])


def test_the_full_class_level_counts_as_num_classes():
    points = factor_points(factor_runs("classes", np.random.default_rng(0), 1.0))
    assert sorted(points["level"].unique()) == [2.0, 5.0, 10.0]


def test_too_few_levels_say_how_many_more_are_needed():
    runs = factor_runs("classes", np.random.default_rng(0), 6.0)  # fixed levels: the level is the unit
    two = runs[runs["factors"].map(lambda f: len(f.get("classes", [])) != 5)]
    claim = factor_claims(two)[0]
    assert claim.verdict == NOT_TESTABLE and "Add 1 level(s)" in evidence(claim)
    assert math.isnan(claim.p_support)


# --------------------------------------------------------------------------------------------------
# Pairing never crosses conditions; nothing is dropped without a reason


def write_run(
    root,
    folder: str,
    method: str,
    seed: int,
    acc: float,
    factors: dict,
    status: str = "completed",
    agreement: dict | None = None,
    **extra,
) -> None:
    path = root / folder / "usps" / method / f"seed{seed}"
    path.mkdir(parents=True)
    record = {
        "dataset": "usps",
        "method": method,
        "seed": seed,
        "status": status,
        "config": {"recipe": {"name": "paper"}, "dataset": {"image_size": 16, "num_classes": 10}},
        "data_factors": {"identity": factors},
        "finished_at": "2026-01-01T00:00:00",
        **extra,
    }
    if status == "completed":
        record["test_best"] = {"acc": acc, "agreement": (agreement or {}).get("best", 0.9)}
        record["test_last"] = {"acc": acc - 0.01, "agreement": (agreement or {}).get("last", 0.5)}
    (path / "results.json").write_text(json.dumps(record))


def test_two_data_draws_at_one_level_are_never_paired_with_each_other(tmp_path):
    """Seed 0 ran on factor seed 0 (its own draw) and, in another folder, on factor seed 1: RKD of one
    draw is compared with scratch of the same draw only (true gain +2 on both)."""
    for folder, factor_seed, scratch in (("a", 0, 0.70), ("b", 1, 0.60)):
        factors = {"train_fraction": 0.1, "factor_seed": factor_seed}
        write_run(tmp_path, folder, "scratch", 0, scratch, factors)
        write_run(
            tmp_path,
            folder,
            "rkd",
            0,
            scratch + 0.02,
            factors,
            finished_at="2026-01-02" if folder == "a" else "2026-01-01",
        )
    runs = load_sweep(tmp_path)
    assert set(runs["recipe"]) == {"paper · train_fraction=0.1", "paper · train_fraction=0.1,factor_seed=1"}
    points = factor_points(runs.assign(factors=runs["factors"]))
    assert len(points) == 0  # one level only: no factor study, but...
    every = factor_points(
        pd.concat([runs, runs.assign(factors=[{}] * len(runs), recipe="paper", path=runs["path"] + "/plain")])
    )
    pairs = paired_by_level(every[every["factor"] == "train_fraction"], "rkd", "scratch")
    assert sorted(pairs.loc[pairs["level"] == 0.1, "diff"].round(6)) == [2.0, 2.0]
    assert find_issues(runs).empty  # both draws kept: neither is a duplicate of the other


def test_pair_flip_noise_is_its_own_factor():
    rng = np.random.default_rng(2)
    both = pd.concat([factor_runs("label_noise", rng, 1.0), factor_runs(PAIRS_NOISE, rng, 1.0)])
    points = factor_points(both)
    assert set(points["factor"]) >= {"label_noise", PAIRS_NOISE}
    for factor in ("label_noise", PAIRS_NOISE):
        # 3 levels x 3 seeds x 4 methods each, the shared noise-free level counted once per factor
        assert len(points[points["factor"] == factor].drop_duplicates(["level", "seed", "method"])) == 36


def test_every_column_comes_from_the_checkpoint_the_metric_names(tmp_path):
    for level in (0.1, 0.3):
        for method in ("teacher", "scratch", "rkd", "ikd"):
            write_run(tmp_path, f"f{level}", method, 0, 0.8, {"train_fraction": level, "factor_seed": 0})
    for method in ("teacher", "scratch", "rkd", "ikd"):
        write_run(tmp_path, "plain", method, 0, 0.9, {})
    runs = load_sweep(tmp_path)
    assert factor_table(runs, "test_best.acc")["agreement"].eq(0.9).all()
    assert factor_table(runs, "test_last.acc")["agreement"].eq(0.5).all()


def test_a_failed_run_is_reported_at_its_own_level(tmp_path):
    """Seen on a real sweep: an IKD run stopped on a non-finite loss was listed under the plain recipe."""

    cfg = compose_run_config(["dataset=usps", "method=ikd", "seed=1", "dataset.factors.train_fraction=0.05"])
    run_dir = tmp_path / "f0.05" / "usps" / "ikd" / "seed1"
    run_dir.mkdir(parents=True)
    start_record(RunPlan(run_dir, "fp"), record_keys(cfg), {}, {})  # it started, then failed mid-training
    record_failure(run_dir, record_keys(cfg), FloatingPointError("non-finite loss"))
    for method in ("teacher", "scratch", "rkd"):
        write_run(tmp_path, "f0.05", method, 1, 0.3, {"train_fraction": 0.05, "factor_seed": 1})
    write_run(tmp_path, "f0.05", "ikd", 2, 0.3, {"train_fraction": 0.05, "factor_seed": 2})
    runs = load_sweep(tmp_path)
    failed = runs[runs["status"] == "failed"].iloc[0]
    assert failed["recipe"] == "paper · train_fraction=0.05" and failed["base_recipe"] == "paper"
    issues = find_issues(runs)
    listed = {(r["method"], r["seed"]): (r["status"], r["detail"]) for r in issues.to_dict("records")}
    assert listed[("ikd", 1)][0] == "failed" and listed[("ikd", 1)][1].startswith("FloatingPointError: non-finite")
    # seed 2 has only its IKD run: the other methods there are missing; the failed IKD of seed 1 is not also missing
    assert {k for k, (status, _) in listed.items() if status == "missing"} == {
        ("teacher", 2),
        ("scratch", 2),
        ("rkd", 2),
    }


def test_a_config_refused_before_training_adds_nothing_to_the_grid(tmp_path):
    """Seen by a new user: a wrong dataset path left a failed record in ``<label>-invalid/``; the report then made
    that label a dataset of the grid and called every other method "missing" there. A run that never started but
    belongs to the grid (its teacher could not be had) is failed, not also missing."""
    cfg = compose_run_config(["dataset=mnist", "method=rkd", "seed=0"])
    record_failure(tmp_path / "mnist-invalid" / "rkd" / "seed0", record_keys(cfg), ValueError("no such folder"))
    for method in ("teacher", "scratch"):
        write_run(tmp_path, "plain", method, 0, 0.9, {}, started_at="2026-01-01T00:00:00")
    issues = find_issues(load_sweep(tmp_path))
    assert list(issues["status"]) == ["failed"], issues
    detail = issues.iloc[0]["detail"]
    assert detail.startswith("before this run started") and "no such folder" in detail
    # the same in the grid: seed 1's RKD could not get its teacher; seed 0's RKD completed
    write_run(tmp_path, "plain", "rkd", 0, 0.9, {}, started_at="2026-01-01T00:00:00")
    for method in ("teacher", "scratch"):
        write_run(tmp_path, "plain", method, 1, 0.9, {}, started_at="2026-01-01T00:00:00")
    keys = record_keys(compose_run_config(["dataset=usps", "method=rkd", "seed=1"]))
    record_failure(tmp_path / "plain" / "usps" / "rkd" / "seed1", keys, RuntimeError("no teacher"))
    issues = find_issues(load_sweep(tmp_path))
    assert sorted(zip(issues["method"], issues["seed"], issues["status"])) == [
        ("rkd", 0, "failed"),
        ("rkd", 1, "failed"),
    ]


def test_students_of_another_teacher_are_left_out_of_the_comparison_with_the_sweep_teacher():
    rows = []
    for seed in range(3):
        for method, acc in (("teacher", 90.0 + seed), ("scratch", 85.0), ("rkd", 86.0), ("ikd", 88.0 + seed * 0.5)):
            row = {
                "dataset": "usps",
                "method": method,
                "seed": seed,
                "status": "completed",
                "recipe": "paper",
                "test_best.acc": acc / 100,
                "path": f"/x/{method}/{seed}",
                "finished_at": "t",
                "teacher_key": "resnet50-aaaa" if method == "teacher" else None,
                "teacher.key": None,
            }
            if method in ("rkd", "ikd"):
                row["teacher.key"] = "resnet50-aaaa"
            rows.append(row)
    runs = pd.DataFrame(rows)
    # seed 2's IKD learnt from another teacher and, against the sweep's teacher row, looks 30 points better
    runs.loc[(runs["method"] == "ikd") & (runs["seed"] == 2), ["teacher.key", "test_best.acc"]] = ["resnet50-bbbb", 1.2]
    claim3 = evaluate_claims(runs)[2]
    assert "(2 pairs)" in part_text(claim3.parts[0])[1] and "Left out of IKD − Teacher: 1" in evidence(claim3)
    table = factor_table(runs)  # a plain sweep: no factor rows, nothing to drop
    assert table.empty


# --------------------------------------------------------------------------------------------------
# One family for the whole report


def claim(p_support: float, p_contradict: float = 1.0) -> Claim:
    return Claim(3, FACTOR, NOT_TESTABLE, p_support=p_support, p_contradict=p_contradict)


def test_the_family_holds_the_chance_of_any_false_supported_at_5_percent():
    rng = np.random.default_rng(4)
    any_before = any_after = 0
    draws = 4000
    for _ in range(draws):
        claims = [claim(p) for p in rng.uniform(size=15)]  # 15 null conditions (recipes x levels)
        any_before += any(c.p_support < 0.05 for c in claims)
        any_after += any(c.verdict == SUPPORTED for c in control_family(claims))
    assert any_before / draws > 0.45 and any_after / draws <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / draws)


def test_a_claim_strong_enough_survives_the_family_and_the_test_line_says_so():
    out = control_family([claim(0.001), claim(0.04), claim(0.5), claim(math.nan)])
    assert [c.verdict for c in out[:3]] == [SUPPORTED, "inconclusive", "inconclusive"]
    assert out[3].verdict == NOT_TESTABLE
    assert out[0].p_support_family == pytest.approx(0.003)  # Holm over the 3 testable claims
    assert "family: exploratory, Holm over 3 claim(s), step 1 (α 0.01667): Holm-adjusted p 0.003" in claim_test(out[0])
    assert out[0].order == 1 and out[1].order == 2 and out[0].alpha == pytest.approx(0.05 / 3)
    assert out[1].alpha == pytest.approx(0.05 / 2) and all(c.family == "exploratory" for c in out)


def test_a_contradicted_claim_names_the_step_of_the_opposite_directions_family():
    """Holm runs once per direction: a claim contradicted at step 1 of the opposite family (of 3) is not described
    by its step in the support family (of 2)."""
    claims = [claim(0.5, 0.001), claim(0.01, 0.9), claim(math.nan, 0.9)]
    out = control_family([dataclasses.replace(c, factor="train_fraction") for c in claims])
    contradicted = out[0]
    assert [c.verdict for c in out[:2]] == [CONTRADICTED, SUPPORTED]
    assert (contradicted.holm_size_contradict, contradicted.holm_step_contradict) == (3, 1)
    assert contradicted.alpha_contradict == pytest.approx(0.05 / 3)
    assert contradicted.p_contradict_family == pytest.approx(0.003)
    line = claim_test(contradicted)
    assert "Holm for the opposite over 3 claim(s), step 1 (α 0.01667)" in line and "Holm over 2" not in line
    assert "Holm over 2 claim(s), step 1 (α 0.025)" in claim_test(out[1])  # support: the support family's step
    assert claims_summary(out)["Family (order, α)"][0] == "exploratory (opposite: step 1 of 3, 0.01667)"
    untested = claim_test(out[2])  # no p for support: only the opposite's family, where it is step 3 of 3
    assert "not testable for support; Holm for the opposite over 3 claim(s), step 3 (α 0.05)" in untested
    row = claims_frame(out).iloc[0]  # claims.json / claims.csv carry both families
    assert (row["holm_step"], row["holm_step_contradict"], row["holm_size_contradict"]) == (2, 1, 3)
    assert row["alpha_contradict"] == pytest.approx(0.05 / 3)
    # contradicted with no p for support at all: decided in the opposite family alone
    alone = control_family([dataclasses.replace(claim(math.nan, 0.001), factor="train_fraction"), out[1]])[0]
    assert alone.verdict == CONTRADICTED and "Holm for the opposite over 2 claim(s), step 1" in claim_test(alone)


def test_the_claims_section_states_the_unit_and_the_family(tmp_path):
    rng = np.random.default_rng(0)
    for level in (0.05, 0.1, 0.3, 1.0):
        factors = {} if level == 1.0 else {"train_fraction": level}
        for seed in range(2):
            ident = {**factors, "factor_seed": seed} if factors else {}
            base = 80 + 10 * level
            for method, acc in (
                ("teacher", base + 3),
                ("scratch", base),
                ("rkd", base + 1 + rng.normal(0, 0.3)),
                ("ikd", base + 1.5 + rng.normal(0, 0.3)),
            ):
                write_run(tmp_path, f"f{level}", method, seed, acc / 100, ident)
    claims = report_claims(load_sweep(tmp_path))
    assert sum(c.number > 100 for c in claims) == 1 and len(claims) == 3 * 4 + 1
    text = "\n".join(claims_markdown(claims, "test_best.acc"))
    assert "**No primary claim** was named in advance" in text and "the other 13, Holm's step-down" in text
    assert "unit: the seed (2 seed(s) with all 4 level(s) paired: 0, 1; each seed draws its own data" in text
    assert "Detectable with 80% power for this verdict as decided (every student named at α" in text


def test_results_json_factors_reach_the_written_report(tmp_path):
    """load_sweep reads data_factors and data_complexity; each level is its own condition; figures link."""
    for level, n3 in ((0.1, 0.3), (1.0, 0.1)):
        for method, acc in (("teacher", 0.9), ("scratch", 0.8), ("rkd", 0.85), ("ikd", 0.86)):
            write_run(
                tmp_path,
                f"f{level}",
                method,
                0,
                acc,
                {"train_fraction": level, "factor_seed": 0} if level < 1 else {},
                **({"data_complexity": {"measures": {"n3": n3}}} if method == "teacher" else {}),
            )
    runs = load_sweep(tmp_path)
    assert set(runs["recipe"]) == {"paper", "paper · train_fraction=0.1"}
    table = factor_table(runs)
    assert table.loc[table["level"] == 0.1, "complexity.n3"].iloc[0] == pytest.approx(0.3)
    report = write_report(tmp_path).read_text()
    assert (
        "## Data factors" in report
        and "grows as training data shrinks" in report
        and "**Exploratory claims**" in report
    )
    assert (tmp_path / "report" / "figures" / "factor_train_fraction_usps.png").is_file()
    assert (tmp_path / "report" / "figures" / "accuracy_paper_train_fraction-0.1.png").is_file()
    links = re.findall(r"\]\((figures/[^)]*)\)", report)
    assert links and all(" " not in link and (tmp_path / "report" / link).is_file() for link in links)


def test_a_new_distilling_method_joins_the_factor_claims_tables_and_figure():
    """The report asks each run whether it distils (its record's identity names a teacher), not its name."""
    from kd_lightning.report.figures import plot_factor_gain

    runs = factor_runs("train_fraction", np.random.default_rng(3), 6.0)
    crd = runs[runs["method"] == "rkd"].assign(method="crd", path=lambda f: f["path"] + "-crd")
    runs = pd.concat([runs.assign(distils=runs["method"].isin(["rkd", "ikd"])), crd.assign(distils=True)])
    claim = factor_claims(runs)[0]
    assert [part_name(p).split(" ")[0] for p in claim.parts] == ["RKD", "IKD", "crd"] and "crd" in statement(claim)
    table = factor_table(runs)
    assert set(table["student"]) == {"rkd", "ikd", "crd"}
    figure = plot_factor_gain(table, "usps", "train_fraction")
    assert "crd" in [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
