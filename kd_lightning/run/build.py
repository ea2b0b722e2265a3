"""The objects a run is made of, built from its composed config: DataModule, LightningModule, Trainer.

The benchmark, the export tool and the complexity tool build the same objects through these functions.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from kd_lightning.run.budget import TrainingBudget
from kd_lightning.run.rundir import AtomicCheckpointIO

#: method-config keys that describe the method rather than being LightningModule arguments
_METHOD_META_KEYS = ("name",)


def build_datamodule(cfg: DictConfig, **overrides: Any) -> L.LightningDataModule:
    """The dataset's DataModule; its shuffling and augmentation streams belong to ``cfg.seed``.
    ``overrides``: DataModule arguments that replace the config's (tools: data folder, loading)."""
    return instantiate(cfg.dataset, seed=int(cfg.seed), _convert_="all", **overrides)


def build_module(
    cfg: DictConfig, teacher: torch.nn.Module | None = None, teacher_info: dict | None = None
) -> L.LightningModule:
    """The method's LightningModule from the composed config (and the trained teacher for KD methods)."""
    method = {k: v for k, v in OmegaConf.to_container(cfg.method, resolve=True).items() if k not in _METHOD_META_KEYS}
    extra: dict[str, Any] = {}
    if teacher is not None and get_class(cfg.method._target_).requires_teacher:
        extra = {"teacher": teacher, "teacher_info": teacher_info}
    module = instantiate(
        method,
        optimizer=OmegaConf.to_container(cfg.recipe.optimizer, resolve=True),
        scheduler=OmegaConf.to_container(cfg.recipe.scheduler, resolve=True) if cfg.recipe.scheduler else None,
        top_k=list(cfg.dataset.top_k),
        dataset=str(cfg.dataset.name),
        _convert_="all",
        _recursive_=False,  # optimizer/scheduler stay plain dicts; the module instantiates them itself
        **extra,
    )
    if teacher is not None and not extra:
        module.set_reference_teacher(teacher)  # scratch: the teacher only measures fidelity at test time
    return module


def build_trainer(cfg: DictConfig, resume_step: int | None = None) -> L.Trainer:
    """The Trainer with the configured callbacks and loggers; a resumed run's TensorBoard hides the
    events its interrupted part logged from ``resume_step`` on (they are logged again). The recipe's
    training budget (``recipe.min_steps``: :mod:`kd_lightning.run.budget`) is always one of the callbacks:
    it is part of the recipe, not an optional extra.

    Validating by steps (``trainer.val_check_interval`` other than 1.0) puts the last validation, where Lightning
    saves checkpoints by default, before the epoch's end; ``last.ckpt`` is then saved at each epoch's end, so the
    last-epoch test and a resume read the last epoch's weights."""
    by_steps = OmegaConf.select(cfg, "trainer.val_check_interval") not in (None, 1.0)
    callbacks = [
        instantiate(c, **({"save_on_train_epoch_end": True} if by_steps and name == "last_checkpoint" else {}))
        for name, c in (cfg.get("callbacks") or {}).items()
        if c is not None
    ]
    callbacks.append(TrainingBudget(OmegaConf.select(cfg, "recipe.min_steps", default=None)))
    loggers = []
    for c in (cfg.get("logger") or {}).values():
        if c is None:
            continue
        resumed = resume_step is not None and issubclass(get_class(c._target_), TensorBoardLogger)
        loggers.append(instantiate(c, **({"purge_step": resume_step} if resumed else {})))
    own = {} if OmegaConf.select(cfg, "trainer.plugins") else {"plugins": [AtomicCheckpointIO()]}  # yours win
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **own)
