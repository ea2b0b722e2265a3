"""The seed as the unit (issue 29): per-seed statistics, the primary claim, detectable effects that mean what they
say, the planning command, and calibration on sweeps with the real structure (each seed its own AR(1) chain of
draws across levels, a seed main effect, both students sharing the chain and the scratch run).

The suite runs the calibration at a small simulation count; ``python -m kd_lightning.report calibrate`` runs it in
full (docs/factors.md holds the table).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from kd_lightning.report import calibration, stats
from kd_lightning.report.claims import PRIMARY, SUPPORTED, report_claims
from kd_lightning.report.claims_text import claim_test, evidence, gate_line, part_name
from kd_lightning.report.cli import main
from kd_lightning.report.plan import plan_frame
from kd_lightning.report.primary import PrimaryClaim, parse_primary, primary_from_runs
from kd_lightning.report.records import load_runs, load_sweep

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "reports" / "usps_train_fraction_fast"


# --------------------------------------------------------------------------------------------------
# Statistics


def test_per_seed_slope_and_contrast_by_hand():
    x = [0.0, 1.0, 3.0]  # x̄ 4/3, Sxx = 16/9 + 1/9 + 25/9 = 42/9
    gains = np.array([[1.0, 2.0, 4.0], [0.0, 0.0, 3.0]])
    slope_0 = ((-4 / 3) * 1 + (-1 / 3) * 2 + (5 / 3) * 4) / (42 / 9)
    np.testing.assert_allclose(stats.per_seed_slopes(x, gains)[0], slope_0)
    np.testing.assert_allclose(stats.per_seed_contrast(x, gains), [3.0, 3.0])
    shifted = gains + np.array([[5.0], [-2.0]])  # a seed main effect cancels in both
    np.testing.assert_allclose(stats.per_seed_slopes(x, shifted), stats.per_seed_slopes(x, gains))


def test_t_over_units_is_scipys_one_sample_t():
    v = np.array([0.3, -0.1, 0.8, 0.5])
    res = stats.t_over_units(v)
    ref = sps.ttest_1samp(v, 0.0, alternative="greater")
    assert res["t"] == pytest.approx(ref.statistic) and res["p_greater"] == pytest.approx(ref.pvalue)
    assert math.isnan(stats.t_over_units(np.array([1.0, 1.0]))["t"])


def test_the_sd_upper_limit_covers_the_true_sd_as_often_as_it_says():
    rng = np.random.default_rng(0)
    sds = rng.normal(0, 2.0, size=(20_000, 3)).std(axis=1, ddof=1)
    limits = np.array([stats.sd_upper_limit(sd, 2) for sd in sds[:2000]])
    assert abs(np.mean(limits >= 2.0) - stats.SD_CONFIDENCE) < 0.03
    assert stats.sd_upper_limit(1.0, 2) == pytest.approx(math.sqrt(2 / sps.chi2.ppf(0.2, 2)))


def test_seeds_needed_is_the_first_count_with_the_power():
    sds = [0.6, 0.9]
    n = int(stats.seeds_needed(0.8, sds))

    def power(k: int) -> float:
        return stats.verdict_power(0.8, [sd / math.sqrt(k) for sd in sds], [k - 1] * 2)

    assert power(n) >= 0.8 > power(n - 1)
    assert stats.seeds_needed(0.8, sds[:1]) <= n  # one student needs no more than both
    assert stats.seeds_needed(0.8, sds, alpha=0.01) > n  # a smaller α needs more
    assert math.isnan(stats.seeds_needed(0.0, sds))


# --------------------------------------------------------------------------------------------------
# Calibration with the real structure (small simulation counts; full table from the calibrate command)


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("test", ["slope", "contrast"])
def test_no_effect_is_rarely_supported_or_contradicted(rho, test):
    n = 6000
    rng = np.random.default_rng([29, int(10 * rho)])
    x = calibration.USPS_POSITIONS
    gains = calibration.simulate_gains(rng, n, 3, np.zeros(len(x)), calibration.Noise(rho=rho))
    supported, contradicted, res = calibration.decide(x, gains, test)
    se = math.sqrt(0.05 * 0.95 / n)
    assert supported.mean() <= 0.05 + 3 * se and contradicted.mean() <= 0.05 + 3 * se
    assert abs(np.mean(res["p_greater"][0] < 0.05) - 0.05) < 4 * se  # each student's test is exact


def test_the_level_mean_rule_it_replaces_is_anti_conservative_on_chains():
    rng = np.random.default_rng(3)
    assert calibration.level_mean_rule_false_positive(rng, 20_000, 3, rho=0.5) > 0.06


@pytest.mark.parametrize("test", ["slope", "contrast"])
def test_the_printed_mde_fed_back_is_supported_at_least_75_percent(test):
    rng = np.random.default_rng([30, len(test)])
    power = calibration.power_at_printed_mde(
        rng, calibration.USPS_POSITIONS, 3, calibration.Noise(rho=0.5), test, pilots=15, per_pilot=200
    )
    assert power >= 0.75


@pytest.mark.parametrize("test", ["slope", "contrast"])
def test_the_concave_effect_of_the_issue_is_supported(test):
    """RKD and IKD gain +0.3 pp at full data, +6.9 / +8.0 / +8.2 at 20 / 10 / 5% (concave; 4 levels × 3 seeds)."""
    rng = np.random.default_rng(31)
    noise = calibration.Noise(seed_sd=0.5, chain_sd=0.7, noise_sd=0.65, rho=0.5)  # the sweep's IKD-like noise
    gains = calibration.simulate_gains(rng, 2000, 3, np.asarray(calibration.CONCAVE_GAINS), noise)
    supported, contradicted, _ = calibration.decide(calibration.USPS_POSITIONS, gains, test)
    assert supported.mean() >= 0.9 and contradicted.mean() == 0


# --------------------------------------------------------------------------------------------------
# The primary claim: named in advance, tested first at the full α


def write(
    root: Path, level: float, method: str, seed: int, acc: float, primary: dict | None, recipe: str = "fast", **extra
) -> None:
    factors = {} if level == 1.0 else {"train_fraction": level, "factor_seed": seed}
    path = root / f"f{level}" / "usps" / method / f"seed{seed}"
    path.mkdir(parents=True)
    config = {"recipe": {"name": recipe}, "dataset": {"image_size": 16, "num_classes": 10}}
    if primary is not None:
        config["claims"] = {"primary": primary}
    record = {
        "dataset": "usps",
        "method": method,
        "seed": seed,
        "status": "completed",
        "config": config,
        "data_factors": {"identity": factors},
        "finished_at": "2026-01-01T00:00:00",
        "test_best": {"acc": acc, "agreement": 0.9},
        "test_last": {"acc": acc, "agreement": 0.9},
        **extra,
    }
    (path / "results.json").write_text(json.dumps(record))


def concave_sweep(root: Path, primary: dict | None, seeds: int = 3, recipe: str = "fast") -> None:
    rng = np.random.default_rng(4)
    for level, gain in zip((1.0, 0.2, 0.1, 0.05), calibration.CONCAVE_GAINS):
        for seed in range(seeds):
            base = 0.9 - 0.02 * math.log2(1 / level) + rng.normal(0, 0.005)
            for method, acc in (("teacher", base + 0.01), ("scratch", base)):
                write(root, level, method, seed, acc, primary, recipe)
            for method in ("rkd", "ikd"):
                write(root, level, method, seed, base + (gain + rng.normal(0, 0.6)) / 100, primary, recipe)


def test_parse_primary_from_text_and_config():
    text = parse_primary("factor=train_fraction,student=rkd,test=contrast,direction=greater")
    assert text == PrimaryClaim("train_fraction", ("rkd",), "contrast", "greater")
    assert parse_primary({"factor": "imbalance", "student": "all"}).students == ()
    assert parse_primary(None) is None
    with pytest.raises(ValueError):
        parse_primary({"factor": "train_fraction", "test": "rank"})


def test_the_recorded_primary_is_tested_first_at_the_full_alpha(tmp_path):
    concave_sweep(tmp_path, {"factor": "train_fraction", "student": "rkd", "test": "contrast"})
    runs = load_sweep(tmp_path)
    assert primary_from_runs(runs) == PrimaryClaim("train_fraction", ("rkd",), "contrast")
    claims = report_claims(runs)
    (first,) = [c for c in claims if c.family == PRIMARY]
    assert first.order == 1 and first.alpha == 0.05 and first.verdict == SUPPORTED
    assert [part_name(p).split(" ")[0] for p in first.parts] == ["RKD"] and "hardest minus easiest" in claim_test(first)
    others = [c for c in claims if c.family != PRIMARY]
    assert all(c.order > 1 for c in others if not math.isnan(c.alpha))
    assert first.mde > 0 and "Detectable with 80% power for this verdict as decided" in evidence(first)


def test_runs_that_name_different_primaries_are_an_error(tmp_path):
    concave_sweep(tmp_path, {"factor": "train_fraction"}, seeds=2)
    other = tmp_path / "f1.0" / "usps" / "rkd" / "seed0" / "results.json"
    record = json.loads(other.read_text())
    record["config"]["claims"] = {"primary": {"factor": "imbalance"}}
    other.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="different primary claims"):
        primary_from_runs(load_sweep(tmp_path))


def test_a_primary_the_sweep_cannot_test_says_so(tmp_path):
    concave_sweep(tmp_path, None, seeds=2)
    claims = report_claims(load_sweep(tmp_path), primary=PrimaryClaim("imbalance"))
    (first,) = [c for c in claims if c.family == PRIMARY]
    assert first.verdict == "not testable" and "no levels of imbalance" in claim_test(first)


RKD_CONTRAST = {"factor": "train_fraction", "student": "rkd", "test": "contrast"}


def _factor(claims: list, number: int):
    return next(c for c in claims if c.number == number)


def test_the_students_a_primary_leaves_out_get_its_test_as_an_exploratory_claim(tmp_path):
    """The pre-registration's exploratory "IKD's contrast": the same test beside RKD's primary, in Holm's family."""
    concave_sweep(tmp_path, RKD_CONTRAST)
    claims = report_claims(load_sweep(tmp_path))
    primary, ikd = _factor(claims, 101), _factor(claims, 102)
    assert (primary.family, primary.students) == (PRIMARY, ("rkd",))
    assert (ikd.family, ikd.students, ikd.statistic, ikd.direction) == ("exploratory", ("ikd",), "contrast", "greater")
    assert ikd.holm_step > 0 and ikd.order > primary.order


def test_seeds_missing_a_level_are_named_and_the_level_means_are_over_the_tested_seeds(tmp_path):
    concave_sweep(tmp_path, RKD_CONTRAST)
    shutil.rmtree(tmp_path / "f0.05" / "usps" / "rkd" / "seed2")  # seed 2 never finished its 5% RKD run
    runs = load_sweep(tmp_path)
    (part,) = _factor(report_claims(runs), 101).parts
    assert part.detail["seed_ids"] == [0, 1] and part.detail["dropped_seeds"] == [2]
    assert "paired: 0, 1; left out, a pair missing at a level: seed(s) 2;" in evidence(
        _factor(report_claims(runs), 101)
    )
    levels = dict(part.detail["levels"])
    values = runs.set_index(["recipe", "method", "seed"])["test_best.acc"] * 100
    full = [values[("fast", "rkd", s)] - values[("fast", "scratch", s)] for s in (0, 1)]
    assert levels[1.0] == pytest.approx(np.mean(full))  # seeds 0 and 1 only: the means add up to the contrast
    assert levels[0.05] - levels[1.0] == pytest.approx(part.detail["mean"])


def test_a_contrast_reads_only_the_easiest_and_the_hardest_level(tmp_path):
    concave_sweep(tmp_path, RKD_CONTRAST)
    shutil.rmtree(tmp_path / "f0.1" / "usps" / "rkd" / "seed2")  # a level the contrast does not read
    (part,) = _factor(report_claims(load_sweep(tmp_path)), 101).parts
    assert part.detail["seeds"] == 3 and part.detail["dropped_seeds"] == []


def test_a_primary_that_matches_two_conditions_is_an_error(tmp_path):
    concave_sweep(tmp_path / "fast", RKD_CONTRAST, seeds=2)
    concave_sweep(tmp_path / "strong", RKD_CONTRAST, seeds=2, recipe="strong")
    with pytest.raises(ValueError, match="matches 2 conditions"):
        report_claims(load_sweep(tmp_path))


def test_students_of_another_teacher_are_left_out_of_the_factor_claim(tmp_path):
    for level in (1.0, 0.05):
        for seed in range(3):
            base = 0.9 - 0.01 * math.log2(1 / level) + 0.002 * seed
            key = {"teacher": {"key": "wrong" if (level, seed) == (0.05, 2) else f"t{seed}"}}
            write(tmp_path, level, "teacher", seed, base + 0.02, RKD_CONTRAST, teacher_key=f"t{seed}")
            write(tmp_path, level, "scratch", seed, base, RKD_CONTRAST)
            write(tmp_path, level, "rkd", seed, base + 0.01 * (level < 1) + 0.001 * seed, RKD_CONTRAST, **key)
    claim = _factor(report_claims(load_sweep(tmp_path)), 101)
    assert claim.left_out == 1 and claim.parts[0].detail["dropped_seeds"] == [2]
    assert "1 student run(s) distilled from another teacher" in evidence(claim)


def test_a_report_regenerated_without_its_run_folders_keeps_its_primary(tmp_path):
    sweep, first, again = tmp_path / "sweep", tmp_path / "first", tmp_path / "again"
    concave_sweep(sweep, RKD_CONTRAST, seeds=2)
    assert main([str(sweep), "--out", str(first)]) == 0
    shutil.rmtree(sweep)  # the runs are gone; the report's runs.csv remains
    assert main([str(first), "--out", str(again)]) == 0
    families = {c["number"]: c["family"] for c in json.loads((again / "claims.json").read_text())}
    assert families[101] == PRIMARY and families[102] == "exploratory"
    csv = first / "tables" / "runs.csv"  # a runs.csv from before the column, of a report that had a primary
    pd.read_csv(csv).drop(columns="claims_primary").to_csv(csv, index=False)
    with pytest.warns(UserWarning, match="pass --primary"):
        assert primary_from_runs(load_runs(first)) is None
    assert primary_from_runs(load_runs(COMMITTED)) is None  # the first sweep named none: no warning, none


def test_the_gate_line_names_each_condition_it_qualified_and_did_not():
    gate = pd.DataFrame(
        [
            {
                "recipe": "fast",
                "dataset": "usps",
                "n": 32,
                "diff": 0.4,
                "ci_low": 0.1,
                "ci_high": 0.7,
                "qualified": False,
            },
            {
                "recipe": "fast · train_fraction=0.05",
                "dataset": "usps",
                "n": 32,
                "diff": 3.0,
                "ci_low": 2.5,
                "ci_high": 3.5,
                "qualified": True,
            },
        ]
    )
    line = gate_line(gate, "fast")
    assert line.startswith("**Its teacher was not qualified in every condition** (teacher − scratch < 0.5 pp at USPS")
    assert (
        "`fast` +0.40 pp [+0.10, +0.70] over 32 seed(s); qualified at USPS `fast · train_fraction=0.05` +3.00" in line
    )
    assert gate_line(gate.assign(qualified=True), "fast").startswith("Teacher gate: qualified in every condition")


# --------------------------------------------------------------------------------------------------
# Planning from the committed pilot's CSVs


def test_plan_reads_the_committed_report_and_sizes_each_claim():
    frame = plan_frame(load_runs(COMMITTED), 0.5)
    assert set(frame["test"]) == {"slope", "contrast"} and set(frame["students"]) == {"rkd", "ikd", "rkd + ikd"}
    for _, group in frame.groupby(["test", "students"]):
        primary, exploratory = group.iloc[0], group.iloc[1]
        assert primary["alpha"] == 0.05 and exploratory["alpha"] < 0.05
        assert exploratory["seeds needed"] >= primary["seeds needed"] >= 2
    both = frame[(frame["students"] == "rkd + ikd") & (frame["as"] == "primary")].set_index("test")["seeds needed"]
    alone = frame[(frame["students"] != "rkd + ikd") & (frame["as"] == "primary")].groupby("test")["seeds needed"]
    assert (both.sort_index() >= alone.max().sort_index()).all()


def test_plan_command_prints_the_table(capsys):
    assert main(["plan", str(COMMITTED), "--effect", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "| train_fraction | contrast | rkd + ikd |" in out and "halving of the training set" in out


def test_the_primary_claim_key_composes_and_changes_no_identity():
    from kd_lightning.run.compose import compose_run_config
    from kd_lightning.run.identity import fingerprint

    plain = compose_run_config(["dataset=usps", "method=rkd"])
    named = compose_run_config(
        ["dataset=usps", "method=rkd", "claims.primary={factor:train_fraction,student:rkd,test:contrast}"]
    )
    assert plain.claims.primary is None
    assert parse_primary(dict(named.claims.primary)) == PrimaryClaim("train_fraction", ("rkd",), "contrast")
    assert fingerprint(plain) == fingerprint(named)
