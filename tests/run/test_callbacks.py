"""The project's own Lightning callbacks, driven through their hooks with a fake clock."""

from __future__ import annotations

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
