"""The training step keeps per-step work on the device (kd_lightning/modules/base.py, TrainLog): the same trained
numbers and logged curves as Lightning's per-step logging, and a non-finite loss still stops the run with its step."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch

from kd_lightning.measure.throughput import build_lightning
from kd_lightning.modules import NonFiniteLossError, ScratchStudent
from kd_lightning.modules.base import ClassifierModule, TrainLog
from kd_lightning.run.build import build_datamodule
from kd_lightning.tools import train
from tests.helpers import compose_cfg


def per_step_logging(self, batch, batch_idx):
    """The training step before TrainLog: every step logged through Lightning, the loss read back on the host."""
    images, labels = batch
    logits, terms, loss = self.training_loss(images, labels)
    if not torch.isfinite(loss):
        raise NonFiniteLossError("non-finite")
    batch_size = labels.shape[0]
    self.log_dict(
        {f"train/{name}": value.detach() for name, value in terms.items()},
        on_step=True,
        on_epoch=True,
        batch_size=batch_size,
    )
    self.log("train/loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True, batch_size=batch_size)
    self.train_acc(logits.detach(), labels)
    self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch_size)
    return loss


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if v} for row in csv.DictReader(handle)]


@pytest.mark.parametrize("method", ["scratch", "rkd"])
def test_weights_and_logged_curves_are_bitwise_those_of_per_step_logging(tmp_path, fake_data_dir, monkeypatch, method):
    overrides = [
        f"method={method}",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=4",
        "trainer.log_every_n_steps=3",
    ]
    records = {}
    for kind in ("device", "per_step"):
        with monkeypatch.context() as patch:
            if kind == "per_step":
                patch.setattr(ClassifierModule, "training_step", per_step_logging)
                for hook in ("on_train_epoch_start", "on_train_epoch_end", "on_validation_start", "on_save_checkpoint"):
                    patch.setattr(ClassifierModule, hook, getattr(L.LightningModule, hook))
            # one output folder, so one teacher registry: RKD's teacher is trained once (by the first run; the
            # teacher's own steps are the scratch case's) and both students distil from the same checkpoint
            cfg = compose_cfg([*overrides, f"name={kind}"], data_dir=fake_data_dir, out_dir=tmp_path)
            records[kind] = train.run(cfg)
    assert len(list((tmp_path / "teachers").rglob("teacher.ckpt"))) == (method != "scratch")
    weights = {k: torch.load(r["last_checkpoint"], weights_only=True)["state_dict"] for k, r in records.items()}
    assert weights["device"].keys() == weights["per_step"].keys()
    for name, value in weights["device"].items():
        assert torch.equal(value, weights["per_step"][name]), name
    assert records["device"]["test_best"] == records["per_step"]["test_best"]
    rows = {k: metrics_rows(Path(r["run_dir"])) for k, r in records.items()}
    assert rows["device"] == rows["per_step"]  # same rows, same steps, same digits: step values, epoch means, accuracy
    logged = {key for row in rows["device"] for key in row}
    assert {"train/loss_step", "train/ce_step", "train/loss_epoch", "train/ce_epoch", "train/acc"} <= logged


def explode_at(step: int):
    original = ScratchStudent.loss_terms
    calls: list[int] = []

    def loss_terms(self, images, labels):
        logits, terms = original(self, images, labels)
        calls.append(self.global_step)
        if self.global_step == step:
            terms["ce"] = terms["ce"] * float("nan")
        return logits, terms

    return loss_terms, calls


@pytest.mark.parametrize("every", [1, 3, 100])
def test_a_non_finite_loss_stops_within_the_logging_interval_with_its_step_and_no_checkpoint_of_it(
    tmp_path, fake_data_dir, monkeypatch, every
):
    """The loss is read on the host only every trainer.log_every_n_steps steps, before validation and before a
    checkpoint: the run still stops within that many steps, names the first bad step, and keeps epoch 1's weights."""
    bad, batches = 9, 8  # the second step of epoch 2 (steps 8-15)
    loss_terms, calls = explode_at(bad)
    monkeypatch.setattr(ScratchStudent, "loss_terms", loss_terms)
    overrides = [
        "method=scratch",
        "trainer.max_epochs=2",
        f"trainer.limit_train_batches={batches}",
        f"trainer.log_every_n_steps={every}",
    ]
    cfg = compose_cfg(overrides, data_dir=fake_data_dir, out_dir=tmp_path)
    message = r"non-finite loss term\(s\) \['ce'\] at global step 9 \(epoch 2, counted from 1\)"
    with pytest.raises(NonFiniteLossError, match=message):
        train.run(cfg)
    # steps run after the bad one: fewer than the logging interval, and never past the epoch's end
    assert calls[-1] - bad < every and calls[-1] < 2 * batches
    last = torch.load(Path(cfg.paths.run_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0 and all(
        torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point()
    )


def test_the_watch_keeps_the_first_bad_step_and_its_terms():
    log = TrainLog()
    finite = {"ce": torch.tensor(1.0), "kd": torch.tensor(2.0)}
    log.update(finite, torch.tensor(3.0), 8, step=0, epoch=0)
    log.raise_if_non_finite()  # nothing yet
    log.update({"ce": torch.tensor(1.0), "kd": torch.tensor(float("inf"))}, torch.tensor(float("inf")), 8, 1, 0)
    log.update({"ce": torch.tensor(float("nan")), "kd": torch.tensor(2.0)}, torch.tensor(float("nan")), 8, 2, 0)
    with pytest.raises(NonFiniteLossError, match=r"\['kd'\] at global step 1 \(epoch 1"):
        log.raise_if_non_finite()
    log.reset()  # a new epoch keeps the watch: the run must still stop
    with pytest.raises(NonFiniteLossError, match="global step 1"):
        log.raise_if_non_finite()


def test_epoch_means_are_lightnings_mean_reduction():
    log = TrainLog()
    values = [(torch.tensor(0.1234567), 7), (torch.tensor(2.7182817), 192), (torch.tensor(1e-3), 64)]
    reference_sum, reference_count = torch.tensor(0.0), torch.tensor(0)
    for value, size in values:
        log.update({"ce": value}, value, size, 0, 0)
        reference_sum, reference_count = reference_sum + value * size, reference_count + size
    means = log.epoch_means()
    assert torch.equal(means["ce"], reference_sum / reference_count) and torch.equal(means["loss"], means["ce"])


class HostReads(L.Callback):
    """Counts, between consecutive training-batch ends, the ops that read a tensor's value back to the host
    (``aten::_local_scalar_dense``: ``.item()``, ``bool(t)``, ``float(t)``): on a GPU each one waits for the device to
    finish everything queued, so the host cannot run ahead of it. A window covers a batch's fetch, device transfer,
    augmentation, step and hooks; the window of step ``k`` holds the reads made while step ``k`` ran."""

    def __init__(self) -> None:
        self.reads: dict[int, int] = {}
        self._profile: torch.profiler.profile | None = None

    def _start(self) -> None:
        self._profile = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
        self._profile.__enter__()

    def on_train_start(self, trainer, pl_module) -> None:
        self._start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._profile.__exit__(None, None, None)
        self.reads[trainer.global_step] = sum(e.name == "aten::_local_scalar_dense" for e in self._profile.events())
        self._start()

    def on_train_end(self, trainer, pl_module) -> None:
        self._profile.__exit__(None, None, None)


@pytest.mark.parametrize("method", ["scratch", "rkd"])
def test_only_logging_steps_read_the_device(tmp_path, fake_data_dir, method):
    """The paper recipe's augmentation and the progress bar included: a step that the loggers do not write reads
    nothing back from the device (docs/benchmarks.md, "Host reads per training step")."""
    overrides = [
        f"method={method}",
        "recipe=paper",
        "recipe.batch_size=8",
        "trainer.enable_progress_bar=true",
        "trainer.limit_train_batches=8",
        "trainer.log_every_n_steps=3",
    ]
    cfg = compose_cfg(overrides, data_dir=fake_data_dir, out_dir=tmp_path)
    assert cfg.recipe.augmentation.rotation > 0 and cfg.recipe.augmentation.hflip > 0
    dm = build_datamodule(cfg)
    module, trainer = build_lightning(cfg, max_steps=7, run_dir=tmp_path / "run")
    reads = HostReads()
    trainer.callbacks.append(reads)
    trainer.fit(module, dm)
    assert sorted(reads.reads) == list(range(1, 8))
    # steps 3 and 6 are logged (the watch is read in their step, the logged values after it: step 4's and 7's
    # windows); 1 starts the run; 2 and 5 are plain steps
    assert reads.reads[3] >= 1 and reads.reads[6] >= 1, reads.reads  # the counter sees reads where they are
    assert reads.reads[2] == 0 and reads.reads[5] == 0, reads.reads
