"""The factor study's report: per-level gains and a trend verdict whose false-positive rate is controlled."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from kd_lightning.report.claims import CONTRADICTED, NOT_TESTABLE, SUPPORTED, factor_claims
from kd_lightning.report.factors import factor_points, factor_table
from kd_lightning.report.runs import load_sweep
from kd_lightning.report.writer import write_report

LEVELS = (0.1, 0.3, 1.0)


def synthetic_runs(rng: np.random.Generator, gain_at, levels=LEVELS, seeds=3, noise=1.0) -> pd.DataFrame:
    """A train_fraction sweep: accuracies fall with less data for every method; the students' gain
    over scratch at level L is ``gain_at(L)`` plus seed noise."""
    rows = []
    for level in levels:
        factors = {} if level == 1.0 else {"train_fraction": level, "factor_seed": 0}
        recipe = "paper" if level == 1.0 else f"paper · train_fraction={level}"
        for seed in range(seeds):
            base = 80 + 10 * level + rng.normal(0, 2)  # the seed's data/initialisation luck, shared by its methods
            values = {"teacher": base + 3, "scratch": base + rng.normal(0, noise)}
            for student in ("rkd", "ikd"):
                values[student] = base + gain_at(level) + rng.normal(0, noise)
            for method, value in values.items():
                rows.append({"dataset": "usps", "method": method, "seed": seed, "status": "completed", "recipe": recipe,
                             "base_recipe": "paper", "factors": factors, "image_size": 16, "test_best.acc": value / 100,
                             "test_best.agreement": 0.9, "path": f"/x/{recipe}/{method}/{seed}", "finished_at": "t"})
    return pd.DataFrame(rows)


def verdicts(frames) -> list[str]:
    return [factor_claims(f)[0].verdict for f in frames]


@pytest.mark.parametrize(("levels", "seeds"), [(LEVELS, 3), ((0.1, 0.2, 0.5, 0.7, 1.0), 2)], ids=["3levels-3seeds", "5levels-2seeds"])
def test_no_effect_is_rarely_supported(levels, seeds):
    rng = np.random.default_rng(12)
    results = verdicts(synthetic_runs(rng, lambda level: 0.0, levels, seeds) for _ in range(150))
    supported, contradicted = results.count(SUPPORTED) / len(results), results.count(CONTRADICTED) / len(results)
    print(f"null factor sweeps {len(levels)}x{seeds}: supported {supported:.1%}, contradicted {contradicted:.1%}")
    assert supported <= 0.05 and contradicted <= 0.07  # nominal: 5% each (contradicted: either student at 2.5%)


def test_a_large_clean_effect_is_supported_and_its_reverse_contradicted():
    rng = np.random.default_rng(3)
    assert verdicts(synthetic_runs(rng, lambda level: 6 * (1 - level), noise=0.5) for _ in range(20)) == [SUPPORTED] * 20
    assert verdicts(synthetic_runs(rng, lambda level: -6 * (1 - level), noise=0.5) for _ in range(20)) == [CONTRADICTED] * 20


def test_too_few_levels_is_not_testable_and_the_table_holds_intervals():
    rng = np.random.default_rng(0)
    two = synthetic_runs(rng, lambda level: 6 * (1 - level), levels=(0.3, 1.0))
    assert factor_claims(two)[0].verdict == NOT_TESTABLE
    table = factor_table(synthetic_runs(rng, lambda level: 2.0))
    assert set(table["level"]) == set(LEVELS) and set(table["student"]) == {"rkd", "ikd"}
    row = table[(table["level"] == 0.1) & (table["student"] == "rkd")].iloc[0]
    assert row["n_pairs"] == 3 and row["gain_ci_low"] < row["gain"] < row["gain_ci_high"]
    # a plain sweep alone (no level varies) is no factor study
    assert factor_points(synthetic_runs(rng, lambda level: 0.0, levels=(1.0,))).empty


def test_results_json_factors_reach_the_report(tmp_path):
    """load_sweep reads data_factors and data_complexity; each level is its own condition."""
    for level, n3 in ((0.1, 0.3), (1.0, 0.1)):
        for method, acc in (("teacher", 0.9), ("scratch", 0.8), ("rkd", 0.85), ("ikd", 0.86)):
            folder = tmp_path / f"f{level}" / "usps" / method / "seed0"
            folder.mkdir(parents=True)
            record = {"dataset": "usps", "method": method, "seed": 0, "status": "completed", "test_best": {"acc": acc},
                      "config": {"recipe": {"name": "paper"}, "dataset": {"image_size": 16}},
                      "data_factors": {"identity": {"train_fraction": level, "factor_seed": 0} if level < 1 else {}}}
            if method == "teacher":
                record["data_complexity"] = {"measures": {"n3": n3}}
            (folder / "results.json").write_text(json.dumps(record))
    runs = load_sweep(tmp_path)
    assert set(runs["recipe"]) == {"paper", "paper · train_fraction=0.1"}
    table = factor_table(runs)
    assert sorted(table["level"].unique()) == [0.1, 1.0]
    assert table.loc[table["level"] == 0.1, "complexity.n3"].iloc[0] == pytest.approx(0.3)
    assert "data factors" in runs.loc[runs["recipe"] != "paper", "paper_differences"].iloc[0]
    report = write_report(tmp_path).read_text()
    assert "## Data factors" in report and "grows as training data shrinks" in report
    assert (tmp_path / "report" / "figures" / "factor_train_fraction_usps.png").is_file()
    # per-level figures get file names a Markdown link (and a shell) can hold
    assert (tmp_path / "report" / "figures" / "accuracy_paper_train_fraction-0.1.png").is_file()
    links = re.findall(r"\]\((figures/[^)]*)\)", report)
    assert links and all(" " not in link and (tmp_path / "report" / link).is_file() for link in links)
