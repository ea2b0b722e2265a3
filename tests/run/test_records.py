import errno
import json
import os

import pytest

from kd_lightning.run.records import (
    OutputError,
    atomic_write_text,
    read_results,
    write_json,
)


def test_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    write_json(target, {"status": "completed"})

    def disk_full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OutputError, match=rf"could not write {target}: No space left on device"):
        write_json(target, {"status": "failed"})
    assert json.loads(target.read_text()) == {"status": "completed"}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_unwritable_location_is_reported_with_the_path(tmp_path):
    blocker = tmp_path / "outputs"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(OutputError, match=str(blocker / "run" / "results.json")):
        atomic_write_text(blocker / "run" / "results.json", "{}")


def test_damaged_record_reads_as_absent(tmp_path):
    (tmp_path / "results.json").write_text('{"status": "compl')
    assert read_results(tmp_path) is None


def test_ctrl_c_is_recorded_as_an_interrupt_not_as_lightnings_exit(tmp_path):
    """Lightning answers KeyboardInterrupt with ``exit(1)``: the record says interrupted, KeyboardInterrupt."""
    from kd_lightning.run import rundir

    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise SystemExit(1)  # noqa: B904 - what Lightning does
    except SystemExit as exc:
        rundir.record_failure(tmp_path, {"method": "scratch"}, exc)
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "interrupted" and record["error"]["type"] == "KeyboardInterrupt"


def test_identity_changes_name_what_the_fingerprint_sees_and_stay_short():
    from kd_lightning.run.rundir import identity_changes

    before = {"recipe": {"optimizer": {"lr": 0.03}}, "n": 1, "gap": float("nan"), "big": [1] * 5000, "gone": None}
    after = {"recipe": {"optimizer": {"lr": 0.5}}, "n": 1.0, "gap": float("nan"), "big": [2] * 5000}
    text = identity_changes(before, after)
    assert "recipe.optimizer.lr: 0.03 → 0.5" in text and "n: 1 → 1.0" in text and 'gone: null → "<absent>"' in text
    assert "gap" not in text and len(text) < 600
    assert identity_changes(before, before) == "" and identity_changes(None, after) == ""


def test_records_are_readable_as_the_umask_allows(tmp_path):
    """mkstemp creates 0600 files: a shared sweep's other users could not read results.json."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "results.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "results.json").stat().st_mode) == 0o644


def test_the_summary_line_of_a_record_without_a_last_epoch_test():
    """An ensemble teacher whose members' last.ckpt were pruned records test_last: null."""
    from kd_lightning.tools.train import summary_line

    record = {"dataset": "usps", "method": "teacher", "seed": 0, "run_dir": "r", "test_best": {"acc": 0.9}}
    assert "0.9000 (best-val ckpt" in summary_line({**record, "test_last": None})
