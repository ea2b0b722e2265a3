"""A registry teacher replaced by other weights (retrained with ``force=true``): its finished students are not
skipped as done, the report marks them, and a retrain into identical weights changes nothing
(kd_lightning/run/teachers.py, ``refuse_replaced``; kd_lightning/models.py, ``weights_digest``)."""

from __future__ import annotations

import logging

import pytest
import torch

from kd_lightning.models import build_resnet, weights_digest
from kd_lightning.report import load_sweep
from kd_lightning.report.problems import find_issues
from kd_lightning.report.runs import teacher_check
from kd_lightning.run import teachers
from kd_lightning.tools.train import run
from tests.helpers import compose_cfg, preempted_at_step

STUDENT = ["dataset=usps", "seed=0"]


def test_the_weights_digest_is_the_weights_alone():
    net = build_resnet("resnet10", num_classes=10, in_channels=1)
    state = net.state_dict()
    assert weights_digest(state) == weights_digest({f"_orig_mod.{k}": v.clone() for k, v in state.items()})
    assert weights_digest(state) == weights_digest(dict(reversed(list(state.items()))))  # order of the file
    nudged = {k: v.clone() for k, v in state.items()}
    nudged["fc.bias"][3] += 1e-6
    assert weights_digest(nudged) != weights_digest(state)
    retyped = {k: (v.double() if k == "fc.bias" else v) for k, v in state.items()}  # same values, other dtype
    assert weights_digest(retyped) != weights_digest(state)
    assert torch.equal(state["fc.bias"], net.state_dict()["fc.bias"])  # the digest reads, never writes


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, fake_data_dir):
    """A teacher row, an RKD and a scratch student of it, then the registry's teacher replaced by another one's
    weights under the same key (what a force=true retrain does when training is not reproducible)."""
    out = tmp_path_factory.mktemp("replaced")
    methods = ("teacher", "rkd", "scratch")
    records = {m: run(compose_cfg([f"method={m}", *STUDENT], fake_data_dir, out)) for m in methods}
    other = run(compose_cfg(["method=teacher", *STUDENT, "recipe.optimizer.lr=0.2", "name=other"], fake_data_dir, out))
    entry = teachers.entry_dir(compose_cfg(["method=rkd", *STUDENT], fake_data_dir, out))
    meta = teachers.read_entry(entry)
    teachers.publish(entry, other["best_checkpoint"], other, meta["teacher_key"], meta["teacher_identity"])
    return out, records, other


def test_records_carry_the_weights_their_teacher_had(sweep):
    _, records, other = sweep
    registered = records["teacher"]["weights_sha256"]
    assert registered and registered != other["weights_sha256"]
    assert records["rkd"]["teacher"]["weights_sha256"] == registered == records["scratch"]["teacher"]["weights_sha256"]


def test_a_student_of_a_replaced_teacher_is_not_skipped_as_done(sweep, fake_data_dir):
    out, _, _ = sweep
    with pytest.raises(teachers.TeacherReplacedError, match=r"force=true.*replaced-"):
        run(compose_cfg(["method=rkd", *STUDENT], fake_data_dir, out))


def test_a_teacher_row_records_the_replacement_anew_without_training(sweep, fake_data_dir):
    """The row only says which registry teacher its condition has: it is recorded again from the registry, its old
    record archived. Retraining it (force=true, the students' remedy) would replace the registry's teacher once more,
    and with it the teacher of every student made since (a cold review, 2026-12-04)."""
    out, records, other = sweep
    entry = teachers.entry_dir(compose_cfg(["method=rkd", *STUDENT], fake_data_dir, out))
    backups = sorted(entry.parent.glob("*.replaced-*"))
    row = run(compose_cfg(["method=teacher", *STUDENT, "name=row"], fake_data_dir, out))  # another level's row, say
    again = run(compose_cfg(["method=teacher", *STUDENT], fake_data_dir, out))
    for recorded in (row, again):
        assert recorded["reused_from"] == str(entry) and recorded["weights_sha256"] == other["weights_sha256"]
    assert teachers.registered_weights(entry) == other["weights_sha256"]  # nothing trained, nothing replaced
    assert sorted(entry.parent.glob("*.replaced-*")) == backups
    archived = list((out / "default" / "usps" / "teacher" / "seed0" / "archive").glob("*/results.json"))
    assert len(archived) == 1 and records["teacher"]["weights_sha256"] in archived[0].read_text()


def test_a_scratch_run_is_kept_with_a_warning(sweep, fake_data_dir, caplog):
    out, records, _ = sweep
    with caplog.at_level(logging.WARNING, logger="kd_lightning"):
        again = run(compose_cfg(["method=scratch", *STUDENT], fake_data_dir, out))
    assert again["finished_at"] == records["scratch"]["finished_at"]
    assert "fidelity metrics were measured against" in caplog.text


def test_force_redoes_the_student_with_the_new_teacher_and_the_report_marks_the_mismatch(sweep, fake_data_dir):
    out, records, other = sweep
    redone = run(compose_cfg(["method=rkd", *STUDENT, "force=true"], fake_data_dir, out))
    assert redone["teacher"]["weights_sha256"] == other["weights_sha256"]
    again = run(compose_cfg(["method=rkd", *STUDENT], fake_data_dir, out))  # now done with the current teacher
    assert again["finished_at"] == redone["finished_at"]

    run(
        compose_cfg(["method=teacher", *STUDENT], fake_data_dir, out)
    )  # recorded anew (done already if the test above ran)
    runs = load_sweep(out / "default")
    (row,) = teacher_check(runs).to_dict("records")
    assert row["teacher.key"] == row["sweep_teacher_key"] and row["teacher_match"] == "yes"
    stale_row = runs.index[(runs["method"] == "teacher") & (runs["path"].str.endswith("seed0"))]
    runs.loc[stale_row, "weights_sha256"] = records["teacher"]["weights_sha256"]  # as if it had not been rerun
    (row,) = teacher_check(runs).to_dict("records")
    assert row["teacher.key"] == row["sweep_teacher_key"] and row["teacher_match"] == "no"
    assert any("retrained with force=true" in str(d) for d in find_issues(runs)["detail"])


def test_a_retrain_into_identical_weights_leaves_its_students_done(tmp_path, fake_data_dir):
    first = {m: run(compose_cfg([f"method={m}", *STUDENT], fake_data_dir, tmp_path)) for m in ("teacher", "rkd")}
    retrained = run(compose_cfg(["method=teacher", *STUDENT, "force=true"], fake_data_dir, tmp_path))
    assert retrained["finished_at"] != first["teacher"]["finished_at"]
    assert retrained["weights_sha256"] == first["teacher"]["weights_sha256"]  # same seed on a CPU: same weights
    again = run(compose_cfg(["method=rkd", *STUDENT], fake_data_dir, tmp_path))
    assert again["finished_at"] == first["rkd"]["finished_at"]


def test_an_unfinished_student_whose_teacher_was_replaced_starts_afresh(tmp_path, fake_data_dir, monkeypatch):
    """A rerun resumes an interrupted run from its last checkpoint, unless the teacher it trained with has been
    replaced since: the student would be trained half with each (a cold review, 2026-12-04)."""
    student = ["method=rkd", *STUDENT, "trainer.max_epochs=2"]
    run(compose_cfg(["method=teacher", *student[1:]], fake_data_dir, tmp_path))  # the teacher, not preempted
    with preempted_at_step(monkeypatch, 5):  # in the second epoch, after the first one's last.ckpt
        run(compose_cfg(student, fake_data_dir, tmp_path))
    other = run(
        compose_cfg(["method=teacher", *student[1:], "recipe.optimizer.lr=0.2", "name=o"], fake_data_dir, tmp_path)
    )
    entry = teachers.entry_dir(compose_cfg(student, fake_data_dir, tmp_path))
    meta = teachers.read_entry(entry)
    teachers.publish(entry, other["best_checkpoint"], other, meta["teacher_key"], meta["teacher_identity"])
    record = run(compose_cfg(student, fake_data_dir, tmp_path))
    assert record["resumed_from"] is None and record["teacher"]["weights_sha256"] == other["weights_sha256"]
    assert list((tmp_path / "default" / "usps" / "rkd" / "seed0" / "archive").glob("*/checkpoints/last.ckpt"))
