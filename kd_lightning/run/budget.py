"""The training budget rule: a floor on optimizer steps, so smaller training sets are not under-trained.

A run trains ``max(E, ceil(min_steps / steps_per_epoch))`` epochs, where ``E`` is ``trainer.max_epochs`` as
configured (the recipe's epochs for the method) and ``steps_per_epoch`` is the number of optimizer steps one
epoch of *this* run's training set gives: the batches of its (factored) training split, the last incomplete
one dropped, cut to ``trainer.limit_train_batches``, one step per ``trainer.accumulate_grad_batches``
(Lightning's own count, as in ``trainer.estimated_stepping_batches``). ``recipe.min_steps: null`` means no
floor: the configured epochs, as before (the paper recipe).

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


class TrainingBudget(L.Callback):
    """Sets ``trainer.fit_loop.max_epochs`` by :func:`budget_epochs` before the optimizers are configured.

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
        self.steps_per_epoch: int | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or trainer.datamodule is None:
            return
        if self.configured_epochs is None:  # a second fit on the same trainer keeps the configured value
            self.configured_epochs = int(trainer.fit_loop.max_epochs)
        batches = _parse_num_batches(
            RunningStage.TRAINING, len(trainer.datamodule.train_dataloader()), trainer.limit_train_batches
        )
        self.steps_per_epoch = math.ceil(batches / trainer.accumulate_grad_batches)
        trainer.fit_loop.max_epochs = budget_epochs(self.configured_epochs, self.steps_per_epoch, self.min_steps)

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
        }
