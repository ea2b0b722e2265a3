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
    clock[0] += 100.0  # validation between epochs never counts


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


def test_nothing_trained_reports_none():
    assert ThroughputMeter().images_per_second is None
