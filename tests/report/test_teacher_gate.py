"""Teacher kinds in the report: every kind is its own condition, scratch is the control of each, and the gate
(teacher − scratch, paired by seed) says which teachers are worth distilling."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from kd_lightning.report.records import load_sweep
from kd_lightning.report.teacher_gate import teacher_gate
from kd_lightning.report.writer import write_report

ENSEMBLE = {"members": 4, "data": "same"}
PAPER = {"members": 0, "data": "same"}


def write_run(root: Path, name: str, method: str, seed: int, acc: float, teacher: dict, **extra) -> None:
    record = {
        "status": "completed",
        "dataset": "usps",
        "method": method,
        "seed": seed,
        "config": {"recipe": {"name": "fast"}, "teacher": teacher, "teacher_model": {"arch": "resnet18"}},
        # an ensemble's teacher row (written before 2026-12-03 16:00) named its members under "teacher" too
        "identity": {"seed": seed, **({"teacher": f"{name}/seed{seed}"} if method != "scratch" else {})},
        "test_best": {"acc": acc, "agreement": 0.9},
        "test_last": {"acc": acc},
        "finished_at": f"2026-12-03T00:00:0{seed}",
        **extra,
    }
    folder = root / name / "usps" / method / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(record))


@pytest.fixture
def sweep(tmp_path):
    for seed, (scratch, ensemble, resnet50) in enumerate([(0.95, 0.97, 0.93), (0.96, 0.97, 0.94), (0.94, 0.96, 0.95)]):
        write_run(tmp_path, "ens", "scratch", seed, scratch, ENSEMBLE)
        members = {"ensemble": {"members_mean_acc": ensemble - 0.005}}
        write_run(tmp_path, "ens", "teacher", seed, ensemble, ENSEMBLE, teacher_key="ensemble4-x", **members)
        write_run(tmp_path, "ens", "rkd", seed, scratch + 0.004, ENSEMBLE)
        write_run(tmp_path, "r50", "teacher", seed, resnet50, PAPER, teacher_key="resnet50-x")
        write_run(tmp_path, "r50", "rkd", seed, scratch - 0.002, PAPER)
    return tmp_path


def test_each_teacher_kind_is_a_condition_and_scratch_is_the_control_of_each(sweep):
    runs = load_sweep(sweep)
    conditions = sorted(runs["recipe"].unique())
    assert conditions == ["fast", "fast · teacher ensemble of 4 resnet18"]
    scratch = runs[runs["method"] == "scratch"]
    assert sorted(scratch["recipe"].value_counts().to_dict().items()) == [(c, 3) for c in conditions]
    # a copy in another kind's condition carries no fidelity: it was measured against its own run's teacher
    other = scratch[scratch["recipe"] == "fast"]
    assert other["test_best.agreement"].isna().all()
    assert (scratch[scratch["recipe"] != "fast"]["test_best.agreement"] == 0.9).all()


def test_teacher_rows_are_never_distilling_students(sweep):
    runs = load_sweep(sweep)
    assert not runs.loc[runs["method"] == "teacher", "distils"].any()
    assert runs.loc[runs["method"] == "rkd", "distils"].all()


def test_gate_pairs_teacher_and_scratch_by_seed_and_qualifies_at_the_margin(sweep):
    gate = teacher_gate(load_sweep(sweep)).set_index("recipe")
    ens, r50 = gate.loc["fast · teacher ensemble of 4 resnet18"], gate.loc["fast"]
    assert ens["n"] == 3 and ens["diff"] == pytest.approx(100 * (0.97 + 0.97 + 0.96 - 0.95 - 0.96 - 0.94) / 3)
    assert ens["qualified"] and not r50["qualified"]
    assert ens["members_mean"] == pytest.approx(ens["teacher"] - 0.5)
    assert math.isnan(r50["members_mean"])
    assert ens["ci_low"] < ens["diff"] < ens["ci_high"]
    strict = teacher_gate(load_sweep(sweep), margin=2.0).set_index("recipe")
    assert not strict.loc["fast · teacher ensemble of 4 resnet18", "qualified"]


def test_report_shows_the_gate_and_writes_claims_json(sweep, tmp_path):
    report = write_report(sweep, tmp_path / "out")
    text = report.read_text()
    assert "## Teacher gate" in text and "**no**" in text
    assert "**Its teacher was not qualified** (" in text  # the ResNet50 condition's claims say so first
    verdicts = json.loads((report.parent / "claims.json").read_text())
    assert verdicts and all({"number", "verdict", "statement"} <= set(v) for v in verdicts)
