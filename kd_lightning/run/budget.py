"""The training budget rule: a floor on optimizer steps, so smaller training sets are not under-trained.

A run trains ``max(E, ceil(min_steps / steps_per_epoch))`` epochs, where ``E`` is ``trainer.max_epochs`` as
configured (the recipe's epochs for the method) and ``steps_per_epoch`` is the number of optimizer steps one
epoch of *this* run's training set gives: the batches of its (factored) training split, the last incomplete
one dropped, cut to ``trainer.limit_train_batches``, one step per ``trainer.accumulate_grad_batches``
(Lightning's own count, as in ``trainer.estimated_stepping_batches``). ``recipe.min_steps: null`` means no
floor: the configured epochs, as before (the paper recipe).

Validation keeps the configured schedule's cadence: when the floor multiplies the epochs by ``k`` (a 5% subsample
has 20x fewer steps an epoch), the run validates (and checkpoints) every ``k`` epochs and its epochs are rounded up
to a multiple of ``k``, so the last epoch is validated and model selection sees about as many candidates as at full
data. Validating every epoch would otherwise cost more than training: one epoch of a 5% USPS subsample at batch
192 is one optimizer step, its validation 1,404 images. A training split with no full batch is refused (the last
incomplete batch is dropped, so the run would train zero steps).

:class:`TrainingBudget` applies the rule in its ``setup`` hook, which Lightning calls after the DataModule's
``setup`` and before ``configure_optimizers`` (``Trainer._run``: ``_call_setup_hook``, then
``strategy.setup``), so a step schedule (OneCycle ``total_steps: auto``) spans the scaled run. A run resumed
from ``last.ckpt`` computes the same epochs from the same data. The rule is part of a run's identity
(``recipe.min_steps``, :mod:`kd_lightning.run.identity`) and its outcome is recorded in results.json
(``budget``: :meth:`TrainingBudget.record`).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.trainer.connectors.data_connector import _parse_num_batches
from lightning.pytorch.trainer.states import RunningStage


def budget_epochs(configured_epochs: int, steps_per_epoch: int, min_steps: int | None) -> int:
    """The rule: the configured epochs, or as many more as reach ``min_steps`` optimizer steps."""
    if not min_steps or steps_per_epoch <= 0:
        return configured_epochs
    return max(configured_epochs, math.ceil(min_steps / steps_per_epoch))


def budget_plan(
    configured_epochs: int, steps_per_epoch: int, min_steps: int | None, validate_every: int = 1
) -> tuple[int, int]:
    """(epochs, validate every n epochs): the rule, with validation as often as the configured schedule had it.

    ``k = floor(epochs / configured_epochs)``; validation every ``validate_every * k`` epochs, the epochs rounded up
    to a multiple of that so the last one is validated. When the floor does not bind nothing changes.
    """
    epochs = budget_epochs(configured_epochs, steps_per_epoch, min_steps)
    if epochs == configured_epochs:
        return epochs, validate_every
    every = validate_every * max(1, epochs // configured_epochs)
    return every * math.ceil(epochs / every), every


class NoFullBatchError(ValueError):
    """The training split holds no full batch (the incomplete last one is dropped): the run would train zero steps."""


class TrainingBudget(L.Callback):
    """Sets ``trainer.fit_loop.max_epochs`` and the validation cadence by :func:`budget_plan` before the optimizers
    are configured (only the epochs when validation is by steps: ``check_val_every_n_epoch: null``).

    The optimizer steps per epoch are counted from ``len(datamodule.train_dataloader())``, which builds the
    loader without iterating it (no random draw, so resumed runs keep their data order), and checked against
    Lightning's own count when training starts.
    """

    def __init__(self, min_steps: int | None = None) -> None:
        if min_steps is not None and int(min_steps) < 1:
            raise ValueError(
                f"recipe.min_steps must be a positive number of optimizer steps or null, got {min_steps!r}"
            )
        self.min_steps = int(min_steps) if min_steps is not None else None
        self.configured_epochs: int | None = None
        self.configured_validate_every: int | None = None
        self.steps_per_epoch: int | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or trainer.datamodule is None:
            return
        if self.configured_epochs is None:  # a second fit on the same trainer keeps the configured values
            self.configured_epochs = int(trainer.fit_loop.max_epochs)
            self.configured_validate_every = trainer.check_val_every_n_epoch
        batches = _parse_num_batches(
            RunningStage.TRAINING, len(trainer.datamodule.train_dataloader()), trainer.limit_train_batches
        )
        if batches == 0:
            data = trainer.datamodule
            factors = getattr(data, "factors", None)
            subsampled = factors is not None and not factors.is_paper_data
            raise NoFullBatchError(
                f"the training split ({len(data.train_set)} images) holds no full batch of recipe.batch_size="
                f"{data.batch_size} (the last incomplete batch is dropped), so the run would train zero steps: "
                "lower recipe.batch_size" + (" or raise dataset.factors.train_fraction" if subsampled else "")
            )
        self.steps_per_epoch = math.ceil(batches / trainer.accumulate_grad_batches)
        if self.configured_validate_every is None:  # validation by steps (val_check_interval): left as configured
            trainer.fit_loop.max_epochs = budget_epochs(self.configured_epochs, self.steps_per_epoch, self.min_steps)
            return
        trainer.fit_loop.max_epochs, trainer.check_val_every_n_epoch = budget_plan(
            self.configured_epochs, self.steps_per_epoch, self.min_steps, self.configured_validate_every
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        lightning_count = math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
        if self.steps_per_epoch is not None and lightning_count != self.steps_per_epoch:
            raise RuntimeError(
                f"training budget: {self.steps_per_epoch} optimizer steps per epoch were planned, "
                f"Lightning counts {lightning_count}"
            )

    def record(self, trainer: L.Trainer) -> dict[str, Any] | None:
        """results.json's ``budget``: the rule's inputs and what it gave (``None`` when it never ran)."""
        if self.steps_per_epoch is None:
            return None
        epochs = int(trainer.fit_loop.max_epochs)
        steps = epochs * self.steps_per_epoch
        if trainer.max_steps != -1:
            steps = min(steps, int(trainer.max_steps))
        return {
            "min_steps": self.min_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "configured_epochs": self.configured_epochs,
            "epochs": epochs,
            "optimizer_steps": steps,
            "validate_every_n_epochs": trainer.check_val_every_n_epoch,
        }
