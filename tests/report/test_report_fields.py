"""Per-run fields of results.json: fidelity and calibration, gap closed, teacher provenance, efficiency,
and sweeps holding several recipes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kd_lightning import report
from tests.report.test_report import paper_config

ACC = {"teacher": [0.95, 0.93], "scratch": [0.90, 0.89], "rkd": [0.92, 0.90], "ikd": [0.94, 0.92]}
FIELDS = {
    "nll": {"teacher": 0.20, "scratch": 0.35, "rkd": 0.30, "ikd": 0.25},
    "ece": {"teacher": 0.02, "scratch": 0.05, "rkd": 0.03, "ikd": 0.01},
}
AGREE = {"rkd": [0.96, 0.94], "ikd": [0.98, None]}  # ikd seed 1: no teacher was available -> null


def _write(root: Path, dataset: str, method: str, seed: int, acc: float, recipe: str = "paper", **extra) -> None:
    run = root / recipe / dataset / method / f"seed{seed}"
    run.mkdir(parents=True)
    best = {"acc": acc, "f1": acc, "nll": FIELDS["nll"][method] + 0.01 * seed, "ece": FIELDS["ece"][method]}
    if method in AGREE:
        best["agreement"] = AGREE[method][seed]
        best["kl_teacher_student"] = None if AGREE[method][seed] is None else 0.1 * (seed + 1)
    record = {
        "status": "completed",
        "dataset": dataset,
        "method": method,
        "seed": seed,
        "config": paper_config(method, **{"recipe.name": recipe}),
        "test_best": best,
        "test_last": {"acc": acc - 0.01},
        **extra,
    }
    if method == "teacher":
        record.setdefault("teacher_key", f"resnet50-aaaa{seed}")
    (run / "results.json").write_text(json.dumps(record))


def _teacher(key: str, stale: bool = False) -> dict:
    return {
        "teacher": {
            "key": key,
            "checkpoint": f"/teachers/{key}/teacher.ckpt",
            "test_acc": 0.95,
            "run_dir": f"/runs/{key}",
            "stale": stale,
            "source": "registry",
        }
    }


@pytest.fixture()
def sweep(tmp_path) -> Path:
    for method, values in ACC.items():
        for seed, acc in enumerate(values):
            extra = {}
            if method == "rkd":
                extra = _teacher(f"resnet50-aaaa{seed}")
            if method == "ikd":  # seed 0 used another teacher than the sweep's, seed 1 a stale one
                extra = _teacher("resnet50-bbbb0") if seed == 0 else _teacher("resnet50-aaaa1", stale=True)
            _write(tmp_path, "usps", method, seed, acc, **extra)
    return tmp_path


def test_fidelity_and_calibration_table(sweep):
    table = report.fidelity_table(report.load_sweep(sweep)).set_index(["dataset", "method"])
    ikd = table.loc[("usps", "ikd")]
    assert ikd["acc_mean"] == pytest.approx(93.0) and ikd["acc_n"] == 2
    assert ikd["nll_mean"] == pytest.approx(0.255) and ikd["nll_std"] == pytest.approx(np.std([0.25, 0.26], ddof=1))
    assert ikd["ece_mean"] == pytest.approx(1.0)
    assert ikd["agreement_mean"] == pytest.approx(98.0) and ikd["agreement_n"] == 1  # the null is left out
    assert ikd["kl_mean"] == pytest.approx(0.1) and math.isnan(ikd["kl_std"])
    scratch = table.loc[("usps", "scratch")]
    assert scratch["agreement_n"] == 0 and math.isnan(scratch["agreement_mean"])
    last = report.fidelity_table(report.load_sweep(sweep), "test_last").set_index(["dataset", "method"])
    assert last.loc[("usps", "ikd"), "acc_mean"] == pytest.approx(92.0)
    assert math.isnan(last.loc[("usps", "ikd"), "nll_mean"])  # absent in test_last -> n/a


def test_gap_closed_by_hand(sweep):
    table = report.gap_closed_table(report.load_sweep(sweep)).set_index("student")
    # teacher − scratch: 5, 4 -> 4.5; ikd − scratch: 4, 3 -> 3.5; rkd − scratch: 2, 1 -> 1.5
    assert table.loc["ikd", "teacher_gap_mean"] == pytest.approx(4.5)
    assert table.loc["ikd", "gain_mean"] == pytest.approx(3.5)
    assert table.loc["ikd", "gap_closed"] == pytest.approx(3.5 / 4.5)
    assert table.loc["rkd", "gap_closed"] == pytest.approx(1.5 / 4.5)
    assert table.loc["rkd", "paper_gap_closed"] == pytest.approx((88.72 - 86.07) / (90.22 - 86.07))


def test_gap_closed_is_na_without_room():
    values = report.metric_values(_frame({"teacher": [90.5, 90.0], "scratch": [90.0, 89.8], "ikd": [91.0, 90.9]}))
    from kd_lightning.report.tables import gap_closed_from_values

    row = gap_closed_from_values(values, ("ikd",)).iloc[0]
    assert row["teacher_gap_mean"] == pytest.approx(0.35) and math.isnan(row["gap_closed"])


def _frame(acc: dict[str, list[float]]):
    import pandas as pd

    return pd.DataFrame(
        [
            {"dataset": "usps", "method": m, "seed": s, "test_best.acc": a / 100}
            for m, values in acc.items()
            for s, a in enumerate(values)
        ]
    )


def test_teacher_mismatch_and_stale_teachers_are_marked(sweep):
    runs = report.load_sweep(sweep)
    checks = report.teacher_check(runs).set_index(["method", "seed"])
    assert checks.loc[("ikd", 0), "teacher_match"] == "no"
    assert checks.loc[("ikd", 0), "sweep_teacher_key"] == "resnet50-aaaa0"
    assert checks.loc[("ikd", 1), "teacher_match"] == "yes"
    assert (checks.loc["rkd", "teacher_match"] == "yes").all()
    issues = report.find_issues(runs)
    problems = issues[["method", "seed", "status"]].values.tolist()
    assert ["ikd", 0, "teacher mismatch"] in problems and ["ikd", 1, "stale teacher"] in problems
    assert len(issues) == 2
    text = report.write_report(sweep).read_text()
    assert "Students with another teacher than the sweep's: 1 (USPS ikd seed 0)" in text
    assert "Students with a stale teacher: 1 (resnet50-aaaa1)" in text
    assert "**teacher mismatch** (1)" in text
    claim3 = text.split("### Claim 3", 1)[1].split("## Runs", 1)[0]
    # the mismatched student stays in the tables (marked) but not in the comparison with the sweep's teacher
    assert "Left out of IKD − Teacher: 1 student run(s) distilled from another teacher" in claim3
    assert "(1 pairs), not tested (needs 2 paired seeds)" in claim3


def test_teacher_unknown_is_not_a_mismatch(tmp_path):
    _write(tmp_path, "usps", "teacher", 0, 0.9, teacher_key=None)
    _write(tmp_path, "usps", "ikd", 0, 0.9, **_teacher("resnet50-cccc"))
    _write(tmp_path, "usps", "rkd", 0, 0.9)  # an old record without provenance
    checks = report.teacher_check(report.load_sweep(tmp_path))
    assert list(checks["teacher_match"]) == ["n/a", "n/a"]


def _efficiency(params: int, flops: int, latency: float) -> dict:
    return {
        "efficiency": {
            "params": params,
            "flops_per_image": flops,
            "checkpoint_mb": params * 4e-6,
            "latency_ms_b1": {"median": latency, "p90": latency * 1.2, "threads": 2},
            "throughput_b64_img_s": 1000 / latency,
        }
    }


def test_what_the_student_buys(tmp_path):
    cost = {
        "teacher": (23_500_000, 330_000_000, 12.0),
        "scratch": (11_200_000, 150_000_000, 4.0),
        "rkd": (11_200_000, 150_000_000, 4.0),
        "ikd": (11_200_000, 150_000_000, 5.0),
    }
    for method, values in ACC.items():
        for seed, acc in enumerate(values):
            _write(tmp_path, "usps", method, seed, acc, **_efficiency(*cost[method]))
    runs = report.load_sweep(tmp_path)
    buys = report.student_buys_table(runs).set_index("student")
    assert buys.loc["ikd", "accuracy_kept"] == pytest.approx(100 * 93.0 / 94.0)
    assert buys.loc["ikd", "gap_to_teacher"] == pytest.approx(-1.0)
    assert buys.loc["ikd", "speed_up"] == pytest.approx(12.0 / 5.0)
    assert buys.loc["rkd", "size_reduction"] == pytest.approx(23.5 / 11.2)
    assert buys.loc["rkd", "flops_reduction"] == pytest.approx(330 / 150)
    out = report.write_report(tmp_path, tmp_path / "out")
    text = out.read_text()
    assert "## What the student buys" in text and "2.40×" in text
    assert (tmp_path / "out" / "figures" / "accuracy_vs_latency.png").stat().st_size > 1000


def test_efficiency_absent_is_skipped(sweep):
    runs = report.load_sweep(sweep)
    assert report.efficiency_table(runs).empty and report.student_buys_table(runs).empty
    assert "## What the student buys" not in report.write_report(sweep).read_text()


def test_recipes_are_never_pooled(tmp_path):
    for recipe, shift in (("paper", 0.0), ("strong", 0.05)):
        for method, values in ACC.items():
            for seed, acc in enumerate(values):
                _write(tmp_path, "usps", method, seed, acc + shift, recipe=recipe)
    runs = report.load_sweep(tmp_path)
    assert report.recipes_in(runs) == ["paper", "strong"]
    assert report.find_issues(runs).empty  # same dataset/method/seed under two recipes: not duplicates
    summary = report.summary_table(runs).set_index(["recipe", "method"])
    assert summary.loc[("paper", "ikd"), "mean"] == pytest.approx(93.0)
    assert summary.loc[("strong", "ikd"), "mean"] == pytest.approx(98.0)
    assert summary.loc[("strong", "ikd"), "n"] == 2
    assert summary.loc["strong", "paper_comparable"].all()  # another name, the paper's values: comparable
    paired = report.paired_comparison(runs, "ikd", "scratch").set_index("recipe")
    assert paired.loc["paper", "n_pairs"] == 2 and paired.loc["strong", "n_pairs"] == 2
    claims = report.evaluate_claims(runs)
    assert [(c.recipe, c.number) for c in claims] == [
        ("paper", 1),
        ("paper", 2),
        ("paper", 3),
        ("strong", 1),
        ("strong", 2),
        ("strong", 3),
    ]
    text = report.write_report(tmp_path).read_text()
    assert "| Recipe |" in text and "recipe `strong`" in text
    assert (tmp_path / "report" / "figures" / "accuracy_strong.png").is_file()
    assert (
        tmp_path / "report" / "figures" / "gain_by_recipe.png"
    ).is_file() and "KD gain over scratch under each recipe" in text


def test_a_timing_slowed_by_another_process_does_not_move_the_cost(tmp_path):
    """Costs are medians over seeds: one latency measured while the machine was busy stays an outlier."""
    for method in ("teacher", "scratch"):
        for seed, latency in enumerate((10.0, 11.0, 900.0) if method == "teacher" else (4.0, 4.0, 4.0)):
            (tmp_path / "paper" / "usps" / method / f"seed{seed}").mkdir(parents=True)
            record = {
                "status": "completed",
                "dataset": "usps",
                "method": method,
                "seed": seed,
                "config": paper_config(method),
                "test_best": {"acc": 0.9},
                **_efficiency(10_000, 1_000, latency),
            }
            (tmp_path / "paper" / "usps" / method / f"seed{seed}" / "results.json").write_text(json.dumps(record))
    table = report.efficiency_table(report.load_sweep(tmp_path)).set_index("method")
    assert table.loc["teacher", "latency_ms_b1"] == pytest.approx(11.0) and table.loc[
        "scratch", "latency_ms_b1"
    ] == pytest.approx(4.0)


def test_sweeps_of_two_recipes_in_two_folders_report_as_one(tmp_path):
    """`python -m kd_lightning.report A B`: runs of each folder, side by side per recipe, one report."""
    for folder, recipe, shift in (("paper_sweep", "paper", 0.0), ("strong_sweep", "strong", 0.05)):
        for method, values in ACC.items():
            for seed, acc in enumerate(values):
                _write(tmp_path / folder, "usps", method, seed, acc + shift, recipe=recipe)
    from kd_lightning.report.cli import main

    assert main([str(tmp_path / "paper_sweep"), str(tmp_path / "strong_sweep"), "--out", str(tmp_path / "both")]) == 0
    text = (tmp_path / "both" / "report.md").read_text()
    assert "strong_sweep" in text and "paper_sweep" in text and "recipe `strong`" in text and "recipe `paper`" in text
    runs = report.load_sweep([tmp_path / "paper_sweep", tmp_path / "strong_sweep"])
    assert len(runs) == 2 * sum(len(v) for v in ACC.values()) and report.recipes_in(runs) == ["paper", "strong"]
    with pytest.raises(SystemExit):  # a missing folder is named, not skipped
        main([str(tmp_path / "paper_sweep"), str(tmp_path / "nowhere")])


def test_differences_say_whose_they_are_when_only_some_methods_have_them():
    from kd_lightning.report.runs import differences_label

    arms = pd.DataFrame(
        {
            "method": ["teacher", "teacher", "scratch"],
            "paper_differences": [
                "trainer.max_epochs=3 (paper 20); recipe.optimizer.lr=0.1 (paper 0.001)",
                "trainer.max_epochs=3 (paper 20); recipe.optimizer.lr=0.1 (paper 0.001)",
                "trainer.max_epochs=3 (paper 10); recipe.optimizer.lr=0.1 (paper 0.001)",
            ],
        }
    )
    assert differences_label(arms) == (
        "teacher: trainer.max_epochs=3 (paper 20); recipe.optimizer.lr=0.1 (paper 0.001); "
        "scratch: trainer.max_epochs=3 (paper 10)"
    )
    assert differences_label(arms.assign(paper_differences="")) == "paper-configured"
    assert (
        differences_label(arms[arms["method"] == "teacher"])
        == "trainer.max_epochs=3 (paper 20); recipe.optimizer.lr=0.1 (paper 0.001)"
    )
