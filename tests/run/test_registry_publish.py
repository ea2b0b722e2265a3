"""Publishing a registry teacher (kd_lightning/run/teachers.py): the checkpoint goes in by rename, as a hard link to
the finished run's file where the file system allows, as a copy where it does not; a cut publish leaves nothing
that stops the next."""

from __future__ import annotations

import json
import os

import pytest

from kd_lightning.run import teachers


@pytest.fixture
def finished_checkpoint(tmp_path):
    checkpoint = tmp_path / "entry" / "run" / "checkpoints" / "best-epoch003.ckpt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(os.urandom(4096))
    return checkpoint


def publish(checkpoint):
    entry = checkpoint.parents[2]
    teachers.publish(entry, checkpoint, {"status": "completed"}, "resnet18-abc", {"net": "x"})
    return entry / teachers.CHECKPOINT_FILE


def test_the_registry_links_the_finished_checkpoint(finished_checkpoint):
    published = publish(finished_checkpoint)
    assert os.path.samefile(published, finished_checkpoint)  # one copy of the bytes on disk
    meta = json.loads((published.parent / teachers.METADATA_FILE).read_text())
    assert meta["teacher_key"] == "resnet18-abc" and meta["source_checkpoint"] == str(finished_checkpoint)


def test_without_hard_links_the_registry_copies(finished_checkpoint, monkeypatch):
    def no_links(*_):
        raise OSError("hard links not supported")

    monkeypatch.setattr(teachers.os, "link", no_links)
    published = publish(finished_checkpoint)
    assert not os.path.samefile(published, finished_checkpoint)
    assert published.read_bytes() == finished_checkpoint.read_bytes()


def test_a_cut_publish_leaves_nothing_in_the_way(finished_checkpoint):
    entry = finished_checkpoint.parents[2]
    (entry / (teachers.CHECKPOINT_FILE + ".tmp")).write_bytes(b"half a file")
    published = publish(finished_checkpoint)
    assert published.read_bytes() == finished_checkpoint.read_bytes()
    assert not (entry / (teachers.CHECKPOINT_FILE + ".tmp")).exists()


def test_an_unfinished_copy_of_a_registered_teacher_is_archived_whole(tmp_path, fake_data_dir, monkeypatch):
    """A teacher run stopped mid-epoch, then rerun after the same teacher was registered by another run: it records
    the registry's teacher and archives its own outputs as they were (s16 review: its curves were first cut back
    to its last checkpoint, as for a resume, losing the stopped epoch's rows)."""
    from kd_lightning.tools import train
    from tests.helpers import compose_cfg, preempted_at_step

    base = ["dataset=usps", "method=teacher", "trainer.max_epochs=3"]
    with preempted_at_step(monkeypatch, 5):  # in the second epoch, after its first steps were logged
        train.run(compose_cfg([*base, "name=a"], fake_data_dir, tmp_path))
    stopped = tmp_path / "a" / "usps" / "teacher" / "seed0"
    rows = (stopped / "csv" / "metrics.csv").read_text()
    train.run(compose_cfg([*base, "name=b"], fake_data_dir, tmp_path))  # the same teacher, registered by b
    record = train.run(compose_cfg([*base, "name=a"], fake_data_dir, tmp_path))
    assert record["reused_from"] and record["status"] == "completed"
    archived = list(stopped.glob("archive/*/csv/metrics.csv"))
    assert len(archived) == 1 and archived[0].read_text() == rows
