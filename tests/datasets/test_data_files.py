"""Which files a run's data came from (kd_lightning/run/data_files.py): a built-in dataset's identity is its
config, so records carry a digest of the files, and a completed run or a registry teacher made from other files
is not taken for this data's (a cold review, 2026-12-04: another USPS copy at the same path went unnoticed)."""

from __future__ import annotations

import logging
import shutil

import pytest

from kd_lightning.datasets.synthetic import write_usps
from kd_lightning.report import load_sweep
from kd_lightning.report.problems import find_issues
from kd_lightning.run.build import build_datamodule
from kd_lightning.run.data_files import RECORD_KEY, DataChangedError
from kd_lightning.tools.train import run
from tests.helpers import compose_cfg, preempted_at_step

DATASETS = ("usps", "mnist", "fashion_mnist", "cifar10", "cifar100")


def test_the_digest_reads_every_file_torchvision_reads(fake_data_dir, tmp_path):
    digests = {
        name: build_datamodule(compose_cfg([f"dataset={name}"], fake_data_dir)).files_digest() for name in DATASETS
    }
    assert all(isinstance(d, str) and len(d) == 64 for d in digests.values()) and len(set(digests.values())) == 5
    data = tmp_path / "data"
    shutil.copytree(fake_data_dir / "cifar-10-batches-py", data / "cifar-10-batches-py")
    cifar = build_datamodule(compose_cfg(["dataset=cifar10"], data))
    assert cifar.files_digest() == digests["cifar10"]  # the digest is of the content, not of the path
    batch = data / "cifar-10-batches-py" / "data_batch_4"  # one the error messages' "data_batch_1..5" stands for
    batch.write_bytes(batch.read_bytes()[:-1] + b"\0")
    assert cifar.files_digest() != digests["cifar10"]
    batch.unlink()
    assert cifar.files_digest() is None  # incomplete: nothing to compare (the run itself fails on it)


def test_runs_and_teachers_made_from_other_files_are_refused(usps_copy, tmp_path):
    out = tmp_path / "out"
    done = {m: run(compose_cfg([f"method={m}", "dataset=usps"], usps_copy, out)) for m in ("teacher", "rkd")}
    digest = build_datamodule(compose_cfg(["dataset=usps"], usps_copy)).files_digest()
    assert done["rkd"][RECORD_KEY] == done["teacher"][RECORD_KEY] == digest
    assert done["rkd"]["teacher"][RECORD_KEY] == digest

    write_usps(usps_copy, 104, 40)  # another copy of USPS at the same path (the fixture's has 96 and 40 images)
    for method in ("rkd", "teacher"):  # completed runs: not skipped as done
        with pytest.raises(DataChangedError, match=r"force=true"):
            run(compose_cfg([f"method={method}", "dataset=usps"], usps_copy, out))
    with pytest.raises(DataChangedError, match=r"registry teacher .* was trained on usps files"):
        run(compose_cfg(["method=rkd", "dataset=usps", "name=fresh"], usps_copy, out))  # its teacher is the old one
    with pytest.raises(DataChangedError, match=r"registry teacher"):
        run(compose_cfg(["method=teacher", "dataset=usps", "name=fresh"], usps_copy, out))  # nor is it reused

    write_usps(usps_copy, 96, 40)  # the files the runs were made from: done again
    assert run(compose_cfg(["method=rkd", "dataset=usps"], usps_copy, out))["finished_at"] == done["rkd"]["finished_at"]


def test_a_scratch_run_trains_without_a_teacher_of_other_files(usps_copy, tmp_path, caplog):
    """Scratch only measures its fidelity to the teacher: it trains, with a warning and no fidelity numbers."""
    out = tmp_path / "out"
    run(compose_cfg(["method=teacher", "dataset=usps"], usps_copy, out))
    run(compose_cfg(["method=scratch", "dataset=usps", "seed=1"], usps_copy, out))
    write_usps(usps_copy, 104, 40)
    with caplog.at_level(logging.WARNING, logger="kd_lightning"):
        scratch = run(compose_cfg(["method=scratch", "dataset=usps"], usps_copy, out))
    assert scratch["status"] == "completed" and scratch["teacher"] is None
    assert scratch["test_best"].get("agreement") is None and "fidelity metrics are left empty" in caplog.text
    # the report names the run made from another copy than most of the sweep's
    (issue,) = find_issues(load_sweep(out / "default")).query("status == 'other data files'").to_dict("records")
    assert (issue["method"], issue["seed"]) == ("scratch", 0) and "2 of the sweep's 3 usps runs" in issue["detail"]


def test_an_ensemble_row_of_members_trained_on_other_files_is_refused(usps_copy, tmp_path):
    out = tmp_path / "out"
    ensemble = ["method=teacher", "dataset=usps", "teacher=ensemble", "teacher.members=2"]
    row = run(compose_cfg(ensemble, usps_copy, out))
    assert row[RECORD_KEY] and all(m[RECORD_KEY] == row[RECORD_KEY] for m in row["ensemble"]["members"])
    write_usps(usps_copy, 104, 40)
    for name in ("default", "fresh"):  # its completed row, and a new row of the same members
        with pytest.raises(DataChangedError, match=r"registry teacher .* was trained on usps files"):
            run(compose_cfg([*ensemble, f"name={name}"], usps_copy, out))


def test_an_unfinished_run_on_other_files_starts_afresh(usps_copy, tmp_path, monkeypatch):
    out, overrides = tmp_path / "out", ["method=scratch", "dataset=usps", "trainer.max_epochs=2"]
    with preempted_at_step(monkeypatch, 5):  # in the second epoch, after the first one's last.ckpt
        run(compose_cfg(overrides, usps_copy, out))
    write_usps(usps_copy, 104, 40)
    record = run(compose_cfg(overrides, usps_copy, out))
    assert (
        record["resumed_from"] is None
        and record[RECORD_KEY] == build_datamodule(compose_cfg(["dataset=usps"], usps_copy)).files_digest()
    )
    assert list((out / "default" / "usps" / "scratch" / "seed0" / "archive").glob("*/checkpoints/last.ckpt"))
