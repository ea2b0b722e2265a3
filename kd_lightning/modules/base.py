"""What every method shares: the trained network, metrics, optimizer and logging.

A method only says how its loss is made, by returning ``(logits, {term_name: weighted_value})`` from
:meth:`ClassifierModule.loss_terms`; the loop here sums the terms, logs each one as ``train/<name>``
and the total as ``train/loss``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError, MulticlassF1Score

from kd_lightning.losses import kd_loss
from kd_lightning.models import EnsembleTeacher, build_resnet, distillation_logits, frozen_forward

#: bins of the expected calibration error (torchmetrics' default, as in Guo et al. 2017)
ECE_BINS = 15


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; training stops instead of writing garbage checkpoints."""


def classification_metrics(num_classes: int, top_k: Sequence[int]) -> MetricCollection:
    metrics: dict[str, Any] = {
        "acc": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
        "f1": MulticlassF1Score(num_classes, average="macro"),
    }
    for k in top_k:
        if k > 1:
            metrics[f"top{k}"] = MulticlassAccuracy(num_classes, top_k=k, average="micro")
    return MetricCollection(metrics)


def _writes_step_logs(trainer: L.Trainer) -> bool:
    """Whether Lightning writes this training step's logged values to the loggers (every
    ``trainer.log_every_n_steps`` steps, and on the last step of a stopping run): the only steps worth logging."""
    try:
        return bool(trainer._logger_connector.should_update_logs or trainer.fast_dev_run)
    except AttributeError:  # a Lightning without it: log every step, as before
        return True


class TrainLog:
    """Running sums of the training loss terms over an epoch, and the first non-finite step, held on the device.

    Why: Lightning's ``self.log`` costs milliseconds per call on a 2-core CPU (it moves its result metric to the
    device on every call), and testing the loss on the host (``if not torch.isfinite(loss)``) synchronises a GPU
    every step. Here a step only adds a few tensor ops; the host reads the watch on logging steps, before
    validation, at the epoch's end and before any checkpoint, so a non-finite loss stops the run within
    ``trainer.log_every_n_steps`` steps and before its weights are saved, with the step where it first happened.
    The sums are Lightning's own mean reduction (``value * batch_size`` summed in float32, divided by the summed
    batch sizes), so the logged epoch means are bitwise what ``self.log(..., on_epoch=True)`` gave.
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self.sums: Tensor | None = None
        self.count: Tensor | None = None
        #: global step and epoch of the first non-finite loss (-1 while none), and which terms were non-finite then
        self.first_step: Tensor | None = None
        self.first_epoch: Tensor | None = None
        self.bad_terms: Tensor | None = None

    def reset(self) -> None:
        self.sums = self.count = None

    def update(self, terms: Mapping[str, Tensor], loss: Tensor, batch_size: int, step: int, epoch: int) -> None:
        """Add one step; a handful of tensor ops, no host read (python scalars go to kernels by value)."""
        values = torch.stack([*terms.values(), loss]).detach()
        if values.dtype not in (torch.float32, torch.float64):
            values = values.to(torch.get_default_dtype())
        if self.sums is None or self.names != [*terms, "loss"]:
            self.names = [*terms, "loss"]
            self.sums = torch.zeros(len(self.names), dtype=torch.get_default_dtype(), device=values.device)
            self.count = torch.zeros((), dtype=torch.long, device=values.device)
        self.sums = self.sums + values * batch_size
        self.count = self.count + batch_size
        bad = ~torch.isfinite(values)
        if self.first_step is None or self.bad_terms.shape != bad.shape:
            self.first_step = torch.full((), -1, dtype=torch.long, device=values.device)
            self.first_epoch = torch.full((), -1, dtype=torch.long, device=values.device)
            self.bad_terms = torch.zeros_like(bad)
        first = bad.any() & (self.first_step < 0)
        self.first_step = torch.where(first, step, self.first_step)
        self.first_epoch = torch.where(first, epoch, self.first_epoch)
        self.bad_terms = torch.where(first, bad, self.bad_terms)

    def epoch_means(self) -> dict[str, Tensor]:
        if self.sums is None:
            return {}
        means = self.sums / self.count
        return {name: means[i] for i, name in enumerate(self.names)}

    def raise_if_non_finite(self) -> None:
        """One host read: raise :class:`NonFiniteLossError` naming the first non-finite step and its terms."""
        if self.first_step is None:
            return
        step = int(self.first_step)
        if step < 0:
            return
        bad = [name for name, flag in zip(self.names[:-1], self.bad_terms.tolist()) if flag]
        epoch = int(self.first_epoch)
        raise NonFiniteLossError(
            f"non-finite loss term(s) {bad} at global step {step} "
            f"(epoch {epoch + 1}, counted from 1); "
            "lower recipe.optimizer.lr or check the inputs. Checkpoints written so far are kept."
        )


#: the paper's KD temperature (Eq. 4), at which every run's soft-label entropy is measured
SOFT_LABEL_TEMPERATURE = 4.0


class TestMetrics(nn.Module):
    """What a test split says about one network beyond accuracy.

    - calibration: ``nll`` (mean cross-entropy, nats) and ``ece`` (expected calibration error,
      ``ECE_BINS`` equal-width confidence bins, torchmetrics);
    - fidelity to the teacher (Stanton et al. 2021, "Does knowledge distillation really work?"):
      ``agreement``, the share of test images where student and teacher agree on the top-1 class, and
      ``kl_teacher_student``, KL(teacher || student) at temperature 1 in nats per image (the KD loss of
      ``kd_lightning.losses`` at T = 1). Left out (``None``) when there is no teacher to compare with;
    - ``soft_label_entropy``: mean entropy (nats) of the network's own softmax at the paper's distillation
      temperature (``SOFT_LABEL_TEMPERATURE``): for a teacher run, how much "dark knowledge" its soft
      labels carry (a complexity measure of the teacher side, docs/factors.md). For an ensemble, the entropy of
      its KD target, the mean of the members' softmaxes at that temperature (``soft_logits``), which is not the
      softmax of its T = 1 prediction divided by T.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.nll = MeanMetric()
        self.ece = MulticlassCalibrationError(num_classes, n_bins=ECE_BINS, norm="l1")
        self.agreement = MeanMetric()
        self.kl_teacher_student = MeanMetric()
        self.soft_label_entropy = MeanMetric()

    def update(
        self, logits: Tensor, labels: Tensor, teacher_logits: Tensor | None, soft_logits: Tensor | None = None
    ) -> None:
        """``soft_logits``: logits whose softmax at ``SOFT_LABEL_TEMPERATURE`` is the soft label, where that is not
        ``logits``' (:func:`kd_lightning.models.distillation_logits` of an ensemble)."""
        logits = logits.float()
        self.nll.update(F.cross_entropy(logits, labels, reduction="none"))
        self.ece.update(logits.softmax(-1), labels)
        soft = ((logits if soft_logits is None else soft_logits.float()) / SOFT_LABEL_TEMPERATURE).log_softmax(-1)
        self.soft_label_entropy.update(-(soft.exp() * soft).sum(-1))
        if teacher_logits is not None:
            teacher_logits = teacher_logits.float()
            self.agreement.update((logits.argmax(-1) == teacher_logits.argmax(-1)).float())
            self.kl_teacher_student.update(kd_loss(logits, teacher_logits, 1.0), weight=labels.shape[0])

    def compute(self) -> dict[str, float | None]:
        seen_teacher = bool(self.agreement.update_called)
        out = {
            "nll": float(self.nll.compute()),
            "ece": float(self.ece.compute()),
            "agreement": float(self.agreement.compute()) if seen_teacher else None,
            "kl_teacher_student": float(self.kl_teacher_student.compute()) if seen_teacher else None,
            "soft_label_entropy": float(self.soft_label_entropy.compute()),
        }
        for metric in (self.nll, self.ece, self.agreement, self.kl_teacher_student, self.soft_label_entropy):
            metric.reset()
        return out


class ClassifierModule(L.LightningModule):
    """Trains ``net`` (built from the plain ``net`` dict) with the loss of :meth:`loss_terms`.

    All constructor arguments are plain Python values, saved as hyperparameters, so checkpoints load
    with ``torch.load(weights_only=True)`` and carry what is needed to rebuild the network.
    """

    #: whether the run must supply a trained teacher (see kd_lightning/run/teachers.py)
    requires_teacher: ClassVar[bool] = False
    #: whether a finished run publishes its best checkpoint to the teacher registry
    publishes_teacher: ClassVar[bool] = False

    def __init__(
        self,
        net: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        top_k: Sequence[int] = (1,),
        dataset: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["teacher"])
        self.net = build_resnet(**net)
        num_classes = int(net["num_classes"])
        self.train_acc = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        #: epoch sums of the training loss terms and the first non-finite step, on the device
        self.train_log = TrainLog()
        self.val_metrics = classification_metrics(num_classes, top_k)
        self.test_metrics = classification_metrics(num_classes, top_k)
        self.test_per_class_f1 = MulticlassF1Score(num_classes, average=None)
        self.test_extra = TestMetrics(num_classes)
        #: a teacher to measure fidelity against, for methods that do not train with one (scratch);
        #: held in a list so it is neither a submodule nor part of this module's checkpoints
        self._reference_teacher: list[nn.Module] = []
        #: prefix of the metrics logged by the next ``trainer.test`` (``test_best`` / ``test_last``)
        self.test_prefix = "test"
        #: filled at the end of each test run: plain floats, ready for results.json
        self.last_test_results: dict[str, Any] = {}

    # -- the part each method defines ----------------------------------------------------------
    def loss_terms(self, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits of the trained network and the weighted loss terms that sum to the training loss."""
        logits = self.net(images)
        return logits, {"ce": F.cross_entropy(logits, labels)}

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.parameters() if p.requires_grad)

    def training_loss(self, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """Logits, loss terms and their sum: the one place the training loss is assembled
        (the Lightning loop and the benchmark's bare loop both call it)."""
        logits, terms = self.loss_terms(images, labels)
        return logits, terms, torch.stack(list(terms.values())).sum()

    # -- the teacher that test-time fidelity is measured against -------------------------------
    @property
    def reference_teacher(self) -> nn.Module | None:
        return self._reference_teacher[0] if self._reference_teacher else None

    def set_reference_teacher(self, teacher: nn.Module | None) -> None:
        self._reference_teacher = [teacher.eval().requires_grad_(False)] if teacher is not None else []

    # -- shared loop ---------------------------------------------------------------------------
    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """One step. Everything per step stays on the device (epoch sums, the non-finite watch, the accuracy
        state); the host reads it and Lightning's ``log`` runs only on the steps the loggers write
        (``trainer.log_every_n_steps``) and at the epoch's end (docs/benchmarks.md, "Where a step's time goes")."""
        images, labels = batch
        logits, terms, loss = self.training_loss(images, labels)
        self.train_log.update(terms, loss, labels.shape[0], self.global_step, self.current_epoch)
        self.train_acc.update(logits.detach(), labels)
        if _writes_step_logs(self.trainer):
            self.train_log.raise_if_non_finite()
            self.log_dict({f"train/{name}_step": v.detach() for name, v in terms.items()}, on_step=True, on_epoch=False)
            # not on the progress bar: Lightning reads a bar's step values back from the device at every batch end
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False)
        return loss

    def on_train_epoch_start(self) -> None:
        self.train_log.reset()

    def on_validation_start(self) -> None:
        if not self.trainer.sanity_checking:
            self.train_log.raise_if_non_finite()  # before validation picks a checkpoint to write

    def on_train_epoch_end(self) -> None:
        self.train_log.raise_if_non_finite()
        means = self.train_log.epoch_means()
        # batch_size=1: Lightning's mean of one value is then the value itself, bit for bit
        if means:
            loss = means.pop("loss")
            self.log_dict({f"train/{name}_epoch": v for name, v in means.items()}, batch_size=1)
            self.log("train/loss_epoch", loss, prog_bar=True, batch_size=1)
        if self.train_acc.update_called:
            self.log("train/acc", self.train_acc.compute(), prog_bar=True, batch_size=1)
        self.train_acc.reset()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.train_log.raise_if_non_finite()  # no checkpoint of weights a non-finite loss has touched

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        self.log("val/loss", F.cross_entropy(logits, labels), on_epoch=True, batch_size=labels.shape[0])
        self.val_metrics.update(logits, labels)

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        if self.trainer.sanity_checking:  # never let the sanity batches count as an epoch
            return
        self.log_dict({f"val/{k}": v for k, v in values.items()}, prog_bar=True)

    def on_test_start(self) -> None:
        if self.reference_teacher is not None:
            self.reference_teacher.to(self.device)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        images, labels = batch
        # The teacher runs first: under torch.compile(mode="reduce-overhead") each inference call replays a
        # CUDA graph that may reuse the previous call's output memory, so the student's logits must come from
        # the last call (frozen_forward already returns a copy of the teacher's).
        teacher = self.reference_teacher
        teacher_logits = frozen_forward(teacher, images) if teacher is not None else None
        logits = self(images)
        self.log(f"{self.test_prefix}/loss", F.cross_entropy(logits, labels), on_epoch=True, batch_size=labels.shape[0])
        self.test_metrics.update(logits, labels)
        self.test_per_class_f1.update(logits, labels)
        ensemble = isinstance(self.net, EnsembleTeacher)  # a teacher row: the ensemble's own metrics
        soft = distillation_logits(self.net, images, SOFT_LABEL_TEMPERATURE) if ensemble else None
        self.test_extra.update(logits, labels, teacher_logits, soft)

    def on_test_epoch_end(self) -> None:
        values = {k: float(v) for k, v in self.test_metrics.compute().items()}
        per_class = self.test_per_class_f1.compute()
        self.test_metrics.reset()
        self.test_per_class_f1.reset()
        extra = self.test_extra.compute()
        self.log_dict({f"{self.test_prefix}/{k}": v for k, v in {**values, **extra}.items() if v is not None})
        self.last_test_results = {**values, **extra, "per_class_f1": [float(v) for v in per_class]}

    def configure_optimizers(self):
        """The recipe's optimizer and schedule. A scheduler config may say ``interval: step`` (stepped
        every optimizer step instead of every epoch) and ``total_steps: auto`` (the run's number of
        optimizer steps, ``trainer.estimated_stepping_batches``: what a one-cycle schedule spans)."""
        optimizer = instantiate(dict(self.hparams.optimizer), params=list(self.trainable_parameters()))
        if not self.hparams.scheduler:
            return optimizer
        settings = dict(self.hparams.scheduler)
        interval = settings.pop("interval", "epoch")
        if settings.get("total_steps") == "auto":
            settings["total_steps"] = int(self.trainer.estimated_stepping_batches)
        scheduler = instantiate(settings, optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}
