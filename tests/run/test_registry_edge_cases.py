"""The registry's and the data's digests at the edges a second cold review found (2026-12-04): a download inside
the run, a ``teacher_ckpt=`` that is not its run's best checkpoint, entries and rows from before the digests, an
ensemble measured on another copy of the data, a row whose registry entry was moved away, an unfinished run kept
as it was (kd_lightning/run/teachers.py, teacher_kinds.py, data_files.py; kd_lightning/tools/train.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kd_lightning.datasets.datamodules import ImageClassificationDataModule
from kd_lightning.datasets.synthetic import write_usps
from kd_lightning.run import teachers
from kd_lightning.run.data_files import DataChangedError
from kd_lightning.tools.train import run
from tests.helpers import compose_cfg, preempted_at_step

SEED = ["dataset=usps", "seed=0"]


@pytest.mark.parametrize("method", ["rkd", "teacher"])
def test_files_a_run_downloads_are_checked_against_its_teacher(usps_copy, tmp_path, monkeypatch, method):
    """A student, and an ensemble teacher row (which downloads them while it measures the ensemble)."""
    out, ensemble = tmp_path / "out", ["teacher=ensemble", "teacher.members=2"]
    run(compose_cfg(["method=teacher", *SEED, *ensemble], usps_copy, out))
    for cache in out.glob("teachers/usps/ensemble2-*"):
        shutil.rmtree(cache)  # e.g. a registry copied without its caches
    shutil.rmtree(usps_copy / "USPS")  # gone: the next run downloads them again, and gets another copy
    original = ImageClassificationDataModule._load

    def download(self, train, download=False):
        if download and not (usps_copy / "USPS" / "usps.bz2").is_file():
            write_usps(usps_copy, 104, 40)
        return original(self, train, False)

    monkeypatch.setattr(ImageClassificationDataModule, "_load", download)
    with pytest.raises(DataChangedError, match="registry teacher"):
        run(compose_cfg([f"method={method}", *SEED, *ensemble, "dataset.download=true", "name=new"], usps_copy, out))


def test_a_teacher_ckpt_other_than_its_runs_best_resumes(tmp_path, fake_data_dir):
    """The resume check compares registry teachers only: a ``teacher_ckpt=`` file is in the identity by its hash."""
    teacher = run(compose_cfg(["method=teacher", *SEED, "trainer.max_epochs=3"], fake_data_dir, tmp_path))
    last = Path(teacher["run_dir"]) / "checkpoints" / "last.ckpt"
    student = ["method=rkd", *SEED, "trainer.max_epochs=2", f"teacher_ckpt={last}", "name=tc"]
    with pytest.MonkeyPatch.context() as patch, preempted_at_step(patch, 5):
        run(compose_cfg(student, fake_data_dir, tmp_path))
    assert run(compose_cfg(student, fake_data_dir, tmp_path))["resumed_from"] is not None


def test_a_row_of_an_entry_from_before_the_digests_is_recorded_anew_when_it_is_replaced(tmp_path, fake_data_dir):
    first = run(compose_cfg(["method=teacher", *SEED], fake_data_dir, tmp_path))
    entry = teachers.entry_dir(compose_cfg(["method=rkd", *SEED], fake_data_dir, tmp_path))
    meta = teachers.read_entry(entry)
    legacy = {k: v for k, v in meta.items() if k not in ("weights_sha256", "data_files_sha256")}
    (entry / teachers.METADATA_FILE).write_text(json.dumps(legacy))
    row = run(compose_cfg(["method=teacher", *SEED, "name=row"], fake_data_dir, tmp_path))
    assert row["weights_sha256"] == first["weights_sha256"]  # read from the checkpoint when the row is recorded
    other = run(compose_cfg(["method=teacher", *SEED, "recipe.optimizer.lr=0.2", "name=o"], fake_data_dir, tmp_path))
    teachers.publish(entry, other["best_checkpoint"], other, meta["teacher_key"], meta["teacher_identity"])
    again = run(compose_cfg(["method=teacher", *SEED, "name=row"], fake_data_dir, tmp_path))
    assert again["weights_sha256"] == other["weights_sha256"] and again["test_best"] == other["test_best"]


def test_an_ensemble_measured_on_another_copy_is_measured_again(usps_copy, tmp_path):
    out, ensemble = tmp_path / "out", [*SEED, "teacher=ensemble", "teacher.members=2"]
    row = run(compose_cfg(["method=teacher", *ensemble], usps_copy, out))
    (cache,) = out.glob("teachers/usps/ensemble2-*/seed0/ensemble.json")
    cache.unlink()  # never measured yet, or a member retrained since
    shutil.copytree(usps_copy / "USPS", tmp_path / "original")
    shutil.copyfile(usps_copy / "USPS" / "usps.bz2", usps_copy / "USPS" / "usps.t.bz2")  # other test images
    with pytest.raises(DataChangedError):
        run(compose_cfg(["method=rkd", *ensemble], usps_copy, out))  # measures the ensemble, then is refused
    shutil.rmtree(usps_copy / "USPS")
    shutil.copytree(tmp_path / "original", usps_copy / "USPS")
    again = run(compose_cfg(["method=teacher", *ensemble, "name=again"], usps_copy, out))
    assert again["test_best"] == row["test_best"]  # measured on the members' own files, not the cached copy's


def test_a_row_whose_registry_entry_was_moved_away_trains_the_teacher(tmp_path, fake_data_dir):
    run(compose_cfg(["method=teacher", *SEED], fake_data_dir, tmp_path))
    row = run(compose_cfg(["method=teacher", *SEED, "name=row"], fake_data_dir, tmp_path))
    assert row["reused_from"]
    entry = teachers.entry_dir(compose_cfg(["method=rkd", *SEED], fake_data_dir, tmp_path))
    shutil.move(entry, tmp_path / "moved-away")
    again = run(compose_cfg(["method=teacher", *SEED, "name=row"], fake_data_dir, tmp_path))
    assert not again.get("reused_from") and teachers.read_entry(entry) is not None
    assert list((tmp_path / "row" / "usps" / "teacher" / "seed0" / "archive").glob("*/results.json"))


def test_an_unfinished_run_that_starts_afresh_is_archived_as_it_was(usps_copy, tmp_path, monkeypatch):
    out, overrides = tmp_path / "out", ["method=scratch", *SEED, "trainer.max_epochs=2"]
    with preempted_at_step(monkeypatch, 5):
        run(compose_cfg(overrides, usps_copy, out))
    folder = out / "default" / "usps" / "scratch" / "seed0"
    curves = (folder / "csv" / "metrics.csv").read_text()
    write_usps(usps_copy, 104, 40)
    assert run(compose_cfg(overrides, usps_copy, out))["resumed_from"] is None
    (archived,) = folder.glob("archive/*/csv/metrics.csv")
    assert archived.read_text() == curves


def test_a_finished_grid_reruns_where_its_data_files_are_not(usps_copy, tmp_path):
    """A rerun recognises finished runs without reading the data (an unmounted data folder): rows and students of a
    single and of an ensemble teacher (a third review: the ensemble row measured itself again first, and failed)."""
    out, ensemble = tmp_path / "out", ["teacher=ensemble", "teacher.members=2", "name=ensemble"]
    grid = [[*SEED, f"method={m}", *kind] for kind in ([], ensemble) for m in ("teacher", "rkd")]
    done = [run(compose_cfg(overrides, usps_copy, out)) for overrides in grid]
    entry = teachers.entry_dir(compose_cfg(["method=rkd", *SEED], usps_copy, out))
    shutil.move(entry, tmp_path / "moved-away")  # the teacher row re-registers it from its own checkpoint
    shutil.move(usps_copy / "USPS", tmp_path / "unmounted")
    for overrides, record in zip(grid, done):
        assert run(compose_cfg(overrides, usps_copy, out))["finished_at"] == record["finished_at"]
    assert teachers.read_entry(entry) is not None
