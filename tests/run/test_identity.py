"""One identity rule for runs and teachers, and the command sequences that used to trip over it."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from kd_lightning.run import teachers
from kd_lightning.run.identity import IDENTITY_KEYS, fingerprint
from kd_lightning.tools import train
from tests.helpers import FAST, compose_cfg

pytestmark = pytest.mark.slow


def results(path: Path) -> dict:
    return json.loads((Path(path) / "results.json").read_text())


def run_cli(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["kd_lightning.train", *args])
    train.main()


COSMETIC = [
    ["trainer.enable_progress_bar=false"],
    ["trainer.enable_model_summary=true"],
    ["dataset.num_workers=3"],
    ["name=elsewhere"],
    ["logger.csv=null"],
    ["trainer.log_every_n_steps=50"],
    ["teacher_missing=fail"],
    ["force=true"],
]
MEANINGFUL = [
    ["trainer.gradient_clip_algorithm=value", "trainer.gradient_clip_val=1.0"],
    ["trainer.check_val_every_n_epoch=2"],
    ["callbacks.model_checkpoint.monitor=val/loss", "callbacks.model_checkpoint.mode=min"],
    ["trainer.limit_train_batches=2"],
    ["trainer.precision=bf16-mixed"],
    ["recipe.optimizer.lr=0.01"],
    ["dataset.split_seed=7"],
    ["recipe.augmentation.vflip=0"],
]


@pytest.mark.parametrize("change", COSMETIC, ids=lambda c: c[0])
def test_flags_that_cannot_change_the_numbers_never_change_identity(change, fake_data_dir, tmp_path):
    base = compose_cfg(["method=rkd"], data_dir=fake_data_dir)
    other = compose_cfg(["method=rkd", *change, f"paths.output_dir={tmp_path}"], data_dir=fake_data_dir)
    assert fingerprint(other, teachers.teacher_reference(other)) == fingerprint(base, teachers.teacher_reference(base))
    assert teachers.teacher_key(other) == teachers.teacher_key(base)


@pytest.mark.parametrize("change", MEANINGFUL, ids=lambda c: c[0])
def test_what_changes_the_numbers_changes_run_and_teacher_identity(change, fake_data_dir):
    base = compose_cfg(["method=teacher"], data_dir=fake_data_dir)
    other = compose_cfg(["method=teacher", *change], data_dir=fake_data_dir)
    assert fingerprint(other) != fingerprint(base)
    assert teachers.teacher_key(other) != teachers.teacher_key(base)


def test_the_rule_is_an_explicit_list_and_students_carry_their_teacher(fake_data_dir):
    assert "seed" in IDENTITY_KEYS and "callbacks.model_checkpoint.monitor" in IDENTITY_KEYS
    assert not any(k.startswith(("paths", "logger", "name")) for k in IDENTITY_KEYS)
    rkd = compose_cfg(["method=rkd"], data_dir=fake_data_dir)
    # the student's KD settings do not change its teacher, but its teacher's recipe changes the student
    assert teachers.teacher_key(
        compose_cfg(["method=ikd", "method.alpha=0.2"], data_dir=fake_data_dir)
    ) == teachers.teacher_key(rkd)
    paper, longer_teacher = (
        compose_cfg(["method=rkd", *extra], data_dir=fake_data_dir, fast=False)
        for extra in ([], ["recipe.method_epochs.teacher=7"])
    )
    assert teachers.teacher_key(longer_teacher) != teachers.teacher_key(paper)
    assert fingerprint(longer_teacher, teachers.teacher_reference(longer_teacher)) != fingerprint(
        paper, teachers.teacher_reference(paper)
    )
    # the seed is a folder below the key: same key, another seed folder
    assert (
        teachers.entry_dir(compose_cfg(["method=rkd", "seed=1"], data_dir=fake_data_dir))
        == teachers.entry_dir(rkd).parent / "seed1"
    )


def test_short_student_after_a_full_teacher_trains_its_own_teacher_in_the_registry(
    fake_data_dir, tmp_path, monkeypatch
):
    """Failure 1: a student with shortened trainer flags after a teacher run used to hit RunConflictError."""
    common = ("dataset=usps", f"paths.data_dir={fake_data_dir}", f"paths.output_dir={tmp_path}", *FAST)
    run_cli(monkeypatch, "method=teacher", *common)
    sweep_teacher = tmp_path / "default" / "usps" / "teacher" / "seed0"
    before = results(sweep_teacher)
    run_cli(monkeypatch, "method=rkd", *common, "trainer.limit_train_batches=2")
    run_cli(monkeypatch, "method=ikd", *common, "trainer.max_epochs=2")
    assert results(sweep_teacher) == before  # the sweep's teacher folder holds only its own teacher
    keys = sorted(p.name for p in (tmp_path / "teachers" / "usps").iterdir() if p.is_dir())
    assert len(keys) == 3
    for method in ("rkd", "ikd"):
        student = results(tmp_path / "default" / "usps" / method / "seed0")
        assert student["status"] == "completed" and student["teacher"]["key"] != before["teacher_key"]
        produced_by = Path(student["teacher"]["run_dir"])
        assert produced_by.name == teachers.RUN_FOLDER and produced_by.parent.parent.name == student["teacher"]["key"]
        assert results(produced_by)["teacher_key"] == student["teacher"]["key"]


def test_teacher_reused_under_other_names_twice_never_conflicts(fake_data_dir, tmp_path, monkeypatch):
    """Failure 2: `make train` then `make study` twice: the reused teacher carried the first run's fingerprint."""
    common = (
        "dataset=usps",
        "method=teacher",
        f"paths.data_dir={fake_data_dir}",
        f"paths.output_dir={tmp_path}",
        *FAST,
    )
    run_cli(monkeypatch, "-m", "name=first", *common)
    for _ in range(2):
        run_cli(monkeypatch, "-m", "name=second", *common)  # a failed run would make the multirun exit 1
    first, second = (
        results(tmp_path / "first" / "usps" / "teacher" / "seed0"),
        results(tmp_path / "second" / "usps" / "teacher" / "seed0"),
    )
    assert second["status"] == "completed" and second["reused_from"] and second["fingerprint"] == first["fingerprint"]
    assert second["test_best"] == first["test_best"] and second["teacher_key"] == first["teacher_key"]
    assert len(list((tmp_path / "teachers").rglob("teacher.ckpt"))) == 1


def test_explicit_teacher_ckpt_twice_and_stale_teachers_are_reported(fake_data_dir, tmp_path, caplog):
    teacher = train.run(compose_cfg(["method=teacher"], data_dir=fake_data_dir, out_dir=tmp_path))
    entry = teachers.entry_dir(compose_cfg(["method=teacher"], data_dir=fake_data_dir, out_dir=tmp_path))
    ckpt = entry / teachers.CHECKPOINT_FILE
    cfg = compose_cfg(["method=rkd", f"teacher_ckpt={ckpt}", "name=explicit"], data_dir=fake_data_dir, out_dir=tmp_path)
    first = train.run(cfg)
    assert train.run(cfg) == first  # the same command twice: skipped, no conflict
    assert first["teacher"]["source"] == "teacher_ckpt" and first["teacher"]["key"] == teacher["teacher_key"]
    assert first["teacher"]["test_acc"] == teacher["test_best"]["acc"] and first["identity"]["teacher"].startswith(
        "sha256:"
    )

    meta = json.loads((entry / teachers.METADATA_FILE).read_text())
    meta["code_version"] = {"commit": "0" * 40, "dirty": False}
    (entry / teachers.METADATA_FILE).write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="kd_lightning"):
        stale = train.run(compose_cfg(["method=ikd", "name=stale"], data_dir=fake_data_dir, out_dir=tmp_path))
    assert stale["status"] == "completed" and stale["teacher"]["stale"] is True
    assert stale["teacher"]["code_version"]["commit"] == "0" * 40
    assert any("trained by other code" in r.getMessage() for r in caplog.records)
