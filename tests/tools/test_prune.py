"""``python -m kd_lightning.prune``: completed runs only, nothing without --apply, identical checkpoints linked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kd_lightning.tools import prune


def run_folder(path: Path, status: str, files: dict[str, bytes]) -> Path:
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps({"status": status}))
    for rel, data in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(data)
    return path


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    """A completed and a running student, a completed run's archive, and a registry teacher published by copy."""
    done = {"checkpoints/best-epoch001.ckpt": b"best" * 100, "checkpoints/last.ckpt": b"last" * 100}
    run_folder(tmp_path / "sweep/usps/rkd/seed0", "completed", {**done, "export/model.onnx": b"onnx" * 50})
    run_folder(tmp_path / "sweep/usps/rkd/seed1", "running", {**done, "export/model.onnx": b"onnx" * 50})
    run_folder(tmp_path / "sweep/usps/rkd/seed0/archive/20260101", "completed", {"export/model.onnx": b"old"})
    entry = tmp_path / "teachers/usps/resnet18-abc/seed7"
    run_folder(
        entry / "run", "completed", {"checkpoints/best-epoch000.ckpt": b"teacher" * 100, "checkpoints/last.ckpt": b"t"}
    )
    (entry / "teacher.ckpt").write_bytes(b"teacher" * 100)  # a copy, as the pinned sweep code publishes
    (entry / "teacher.json").write_text(json.dumps({"status": "completed"}))
    return tmp_path


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_without_apply_nothing_changes_and_the_plan_is_printed(outputs, capsys):
    before = files(outputs)
    assert prune.main([str(outputs), "--exports", "--last-checkpoints"]) == 0
    assert files(outputs) == before
    printed = capsys.readouterr().out
    assert "delete " in printed and "seed0/export/model.onnx" in printed and "link   " in printed
    assert "seed1" not in printed and "archive" not in printed  # a running run and an archive are never touched
    assert "2 file(s) to delete, 1 to link: 0.00 GB (--apply does it)" in printed


def test_apply_links_identical_checkpoints_and_deletes_only_what_was_asked(outputs):
    entry = outputs / "teachers/usps/resnet18-abc/seed7"
    teacher, best = entry / "teacher.ckpt", entry / "run/checkpoints/best-epoch000.ckpt"
    before = files(outputs)
    assert not os.path.samefile(teacher, best)
    assert prune.main([str(outputs), "--apply"]) == 0
    assert os.path.samefile(teacher, best) and files(outputs) == before  # linked: the same bytes, one file

    assert prune.main([str(outputs), "--exports", "--last-checkpoints", "--apply"]) == 0
    after = files(outputs)
    gone = set(before) - set(after)
    assert gone == {"sweep/usps/rkd/seed0/export/model.onnx", "sweep/usps/rkd/seed0/checkpoints/last.ckpt"}
    # a registry teacher keeps last.ckpt: an ensemble's last-epoch test loads its members'
    assert "teachers/usps/resnet18-abc/seed7/run/checkpoints/last.ckpt" in after
    assert all(after[k] == before[k] for k in after)  # nothing kept was changed
    assert "teachers/usps/resnet18-abc/seed7/teacher.ckpt" in after
    assert "sweep/usps/rkd/seed1/checkpoints/last.ckpt" in after  # the running run resumes from it


def test_a_missing_folder_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as info:
        prune.main([str(tmp_path / "nowhere")])
    assert info.value.code == 2
