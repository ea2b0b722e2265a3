"""The project's own Lightning callbacks, driven through their hooks with a fake clock."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from kd_lightning.run import callbacks
from kd_lightning.run.callbacks import ThroughputMeter


@pytest.fixture
def clock(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: now[0])
    return now


def _epoch(meter: ThroughputMeter, clock: list[float], batches: list[tuple[float, float, int]]) -> None:
    """Each batch: (seconds before its start hook: loading, seconds of its step, images)."""
    module = SimpleNamespace(device=torch.device("cpu"))
    meter.on_train_epoch_start(None, module)
    for index, (load, step, images) in enumerate(batches):
        batch = (torch.zeros(images, 1), torch.zeros(images))
        clock[0] += load
        meter.on_train_batch_start(None, module, batch, index)
        clock[0] += step
        meter.on_train_batch_end(None, module, None, batch, index)
    meter.on_validation_start(None, module)
    clock[0] += 100.0  # validation between epochs never counts
    meter.on_train_epoch_end(None, module)


def test_one_batch_epochs_are_measured_from_the_batch_start(clock):
    """Under the training budget a 5% subsample has one batch an epoch; its steps must still be timed."""
    meter = ThroughputMeter()
    for _ in range(3):
        _epoch(meter, clock, [(5.0, 2.0, 192)])  # 5 s of worker start-up before each, 2 s of step
    assert meter.images_per_second == pytest.approx(192 / 2.0)


def test_later_batches_count_their_loading_and_the_first_does_not(clock):
    meter = ThroughputMeter()
    _epoch(meter, clock, [(9.0, 1.0, 64), (0.5, 1.0, 64), (0.5, 1.0, 32)])
    assert meter.images_per_second == pytest.approx(160 / (1.0 + 1.5 + 1.5))


def test_windows_are_cut_from_the_running_time(clock):
    """The benchmark's windows: what was timed since the previous cut, paused time left out."""
    meter, cpu = ThroughputMeter(), torch.device("cpu")
    meter.start(cpu)
    clock[0] += 2.0
    meter.count(10)
    assert meter.cut(cpu) == (10, 2.0)
    clock[0] += 50.0  # stopped: not timed
    meter.start(cpu)
    clock[0] += 1.0
    meter.count(4)
    meter.stop(cpu)
    meter.count(99)  # counted only while running
    assert meter.cut(cpu) == (4, 1.0) and meter.windows == [(10, 2.0), (4, 1.0)]
    assert meter.images_per_second == pytest.approx(14 / 3.0)


def test_the_device_is_synchronised_at_edges_only(clock, monkeypatch):
    """On a GPU a synchronisation per step is a cost of its own: twice per stretch of batches, never per batch."""
    calls = []
    monkeypatch.setattr(callbacks, "synchronize", lambda device: calls.append(device))
    meter = ThroughputMeter()
    _epoch(meter, clock, [(0.1, 1.0, 8)] * 20)
    assert len(calls) == 2


def test_nothing_trained_reports_none():
    assert ThroughputMeter().images_per_second is None


def test_rng_states_resume_on_fewer_gpus_and_a_cpu_run_creates_no_cuda_context(monkeypatch):
    """One CUDA state per GPU visible when saved; a resume under a launcher that narrowed CUDA_VISIBLE_DEVICES sees
    fewer. A run that never initialised CUDA (trainer=cpu on a GPU host) saves none, so none is created for it."""
    rng = callbacks.RNGStateCheckpoint()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU host
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)  # a CPU run on it
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("creates a CUDA context"))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: pytest.fail("creates a CUDA context"))
    state = rng.state_dict()
    assert "cuda" not in state
    rng.load_state_dict({**state, "cuda": ["gpu0", "gpu1"]})  # resuming a GPU run's checkpoint on the CPU
    # a GPU run saves one state per visible GPU and restores those the resumed process sees
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: ["gpu0", "gpu1"])
    assert rng.state_dict()["cuda"] == ["gpu0", "gpu1"]
    restored = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    rng.load_state_dict({**state, "cuda": ["gpu0", "gpu1"]})
    assert restored == [["gpu0"]]


def test_a_moved_run_folder_resumes_with_its_best_checkpoint(fake_data_dir, tmp_path):
    """Lightning drops a checkpoint callback's best record when its folder changed; at lr 0.2 the tiny network's
    first epoch is its best, so a lost record would make a worse later epoch "best" (as without the relocation)."""
    import shutil

    from kd_lightning.tools import train
    from tests.helpers import FAST, compose_cfg

    run = [*FAST, "method=scratch", "trainer.max_epochs=3", "trainer.limit_val_batches=4", "recipe.optimizer.lr=0.2"]
    full = train.run(compose_cfg(run, data_dir=fake_data_dir, out_dir=tmp_path / "full"))
    preempt = ["+callbacks.preempt._target_=tests.helpers.PreemptAfterFirstEpoch", "+callbacks.preempt.at_epoch=2"]
    with pytest.raises(RuntimeError, match="preempted"):
        train.run(compose_cfg([*run, *preempt], data_dir=fake_data_dir, out_dir=tmp_path / "here"))
    shutil.move(tmp_path / "here", tmp_path / "there")
    moved = train.run(compose_cfg(run, data_dir=fake_data_dir, out_dir=tmp_path / "there"))
    assert moved["resumed_from"].startswith(str(tmp_path / "there"))
    assert full["best_epoch"] < 2  # the best epoch was before the cut: the record must survive the move
    assert (moved["best_epoch"], moved["best_val_acc"]) == (full["best_epoch"], full["best_val_acc"])
    assert moved["test_best"]["acc"] == full["test_best"]["acc"]
    assert sorted(p.name for p in Path(moved["last_checkpoint"]).parent.glob("best-*")) == [
        Path(full["best_checkpoint"]).name
    ]


@pytest.mark.parametrize(
    "every", ["trainer.val_check_interval=2 trainer.check_val_every_n_epoch=null", "trainer.val_check_interval=0.67"]
)
def test_validating_by_steps_still_tests_the_last_epochs_weights(every, fake_data_dir, tmp_path):
    """3 epochs of 3 steps validated every 2 steps: the last validation is at step 8, the last step is 9."""
    from kd_lightning.tools import train
    from tests.helpers import FAST, compose_cfg

    overrides = [*FAST, "method=scratch", "trainer.max_epochs=3", "trainer.limit_train_batches=3", *every.split()]
    record = train.run(compose_cfg(overrides, data_dir=fake_data_dir, out_dir=tmp_path))
    last = torch.load(record["last_checkpoint"], weights_only=False, map_location="cpu")
    assert last["global_step"] == record["global_steps"] == 9


def test_a_damaged_last_checkpoint_is_archived_and_the_run_starts_afresh(fake_data_dir, tmp_path):
    """Half a last.ckpt (a disk that filled up mid-copy) used to fail every rerun, force=true included."""
    from kd_lightning.tools import train
    from tests.helpers import FAST, compose_cfg

    run = [*FAST, "method=scratch", "trainer.max_epochs=2"]
    preempt = ["+callbacks.preempt._target_=tests.helpers.PreemptAfterFirstEpoch", "+callbacks.preempt.at_epoch=1"]
    with pytest.raises(RuntimeError, match="preempted"):
        train.run(compose_cfg([*run, *preempt], data_dir=fake_data_dir, out_dir=tmp_path))
    last = next(tmp_path.rglob("checkpoints/last.ckpt"))
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    record = train.run(compose_cfg(run, data_dir=fake_data_dir, out_dir=tmp_path))
    assert record["status"] == "completed" and record["resumed_from"] is None
    archived = list(last.parents[1].glob("archive/*/checkpoints/last.ckpt"))
    assert len(archived) == 1 and archived[0].stat().st_size < last.stat().st_size  # kept, not deleted


def test_checkpoints_are_written_beside_their_target_and_renamed(tmp_path, monkeypatch):
    from kd_lightning.run.records import OutputError
    from kd_lightning.run.rundir import AtomicCheckpointIO

    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 1}, path)

    def full_disk(obj, handle):
        handle.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OutputError, match="No space left"):
        AtomicCheckpointIO().save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"epoch": 1} and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
