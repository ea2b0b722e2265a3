"""Shared test helpers: compose the real Hydra config with settings that make runs take seconds."""

from __future__ import annotations

import contextlib
import copy
import shutil
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

# CONF_DIR: for tests that compose by hand
from kd_lightning.run.compose import CONF_DIR, compose_run_config  # noqa: F401
from kd_lightning.run.resolvers import register_resolvers

#: SGD without momentum keeps no momentum buffers: checkpoints half the size (~45 MB for a ResNet18), and
#: writing them was a third of a FAST run's time. Tests that resume the optimizer state, and every recipe=strong
#: run (Nesterov needs momentum), put it back with MOMENTUM.
NO_MOMENTUM = "recipe.optimizer.momentum=0"
#: the momentum of both recipes (conf/recipe/paper.yaml, strong.yaml), after FAST's NO_MOMENTUM
MOMENTUM = "recipe.optimizer.momentum=0.9"

#: the networks of test runs, teacher and student: ResNet10 (torchvision's ResNet, one block per stage: ResNet18's
#: stage widths and module names), ~20 MB checkpoints instead of ResNet50's ~190 MB and ResNet18's ~45 MB. A FAST
#: RKD run with its teacher took half the CPU time of the same with ResNet18s (4.6 -> 2.1 s), most of the saving
#: in the kernel (fresh pages for checkpoints). Tests about the production networks (ResNet50 teacher, ResNet18
#: student) compose without FAST.
TINY_NETWORKS = ["model@teacher_model=resnet10", "model@student_model=resnet10"]

#: one epoch, three training batches of 8 images (one to validate, one to test), SGD without momentum, ResNet10s
#: (production: a ResNet50 teacher and ResNet18 students, pinned by tests/run/test_identity_pinned.py), and none of
#: the by-products a run measures after training (deployment cost and ONNX export: kd_lightning/run/byproducts.py;
#: data complexity: complexity.py): enough to exercise every code path of a run. Tests about those by-products
#: switch them back on.
FAST = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
    "recipe.batch_size=8",
    "dataset.num_workers=0",
    "efficiency.measure=false",
    "efficiency.quick=true",
    "efficiency.export_onnx=false",
    "complexity.measure=false",
    *TINY_NETWORKS,
    NO_MOMENTUM,
]
#: overrides that put the deployment costing back into a FAST run (quick timings, no ONNX unless asked)
MEASURE_EFFICIENCY = ["efficiency.measure=true"]


def compose_cfg(
    overrides: list[str] | tuple[str, ...] = (),
    data_dir: Path | None = None,
    out_dir: Path | None = None,
    fast: bool = True,
) -> DictConfig:
    args = list(FAST if fast else [])
    if data_dir is not None:
        args.append(f"paths.data_dir={data_dir}")
    if out_dir is not None:
        args.append(f"paths.output_dir={out_dir}")
    return compose_like_hydra(args + list(overrides))


#: configs composed from config-group choices alone, by those choices (compose_like_hydra hands out copies)
_BY_GROUPS: dict[tuple[str, ...], DictConfig] = {}


def compose_like_hydra(overrides: list[str]) -> DictConfig:
    """``compose_run_config(overrides)``, in ~10 ms instead of ~0.2 s when the config-group choices were composed
    before.

    Hydra composes in two steps: the defaults list that the config-group overrides (``dataset=usps``,
    ``model@teacher_model=resnet10``) select is merged into one config, then every other override is applied to
    it, in order (``ConfigLoaderImpl._apply_overrides_to_config``). The first step, ~0.2 s, is what hundreds of
    tests repeat with the same choices: it is done once per session for each list of choices, and Hydra's own
    second step runs on a copy. Values stay unresolved, as Hydra leaves them. Sweeps and ``hydra.*`` overrides
    (which need Hydra's own node) and dict values (``dataset={batch_size: 9}``: a group's name with a dict value is
    a value, where it stands) are composed by Hydra in one go; tests/run/test_config.py checks both ways agree.
    """
    parsed = OverridesParser.create().parse_overrides(overrides)

    def whole(o) -> bool:
        """Hydra's own node, a sweep, or a dict value: Hydra decides whether a group's name with a dict value sets
        values by the value's type, where it stands among the overrides."""
        in_hydra = o.key_or_group.split(".")[0].split("/")[0] == "hydra"
        return o.is_sweep_override() or in_hydra or isinstance(o.value(), dict)

    if any(whole(o) for o in parsed):
        return compose_run_config(overrides)
    chooses = [o.package is not None or (CONF_DIR / o.key_or_group).is_dir() for o in parsed]
    groups = tuple(o.input_line for o, group in zip(parsed, chooses) if group)
    values = [o for o, group in zip(parsed, chooses) if not group]
    if groups not in _BY_GROUPS:
        _BY_GROUPS[groups] = compose_run_config(list(groups))
    register_resolvers()  # as compose_run_config does
    cfg = copy.deepcopy(_BY_GROUPS[groups])
    ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
    return cfg


class PreemptAfterFirstEpoch(L.Callback):
    """Stands in for a job killed at its time limit: stops the run when epoch ``at_epoch`` starts (by default once
    epoch 1's checkpoint exists)."""

    def __init__(self, at_epoch: int = 1) -> None:
        self.at_epoch = at_epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.at_epoch:
            raise RuntimeError("preempted (test)")


@contextlib.contextmanager
def preempted_at_step(monkeypatch, call: int) -> Iterator[None]:
    """Inside the block, the ``call``-th training step (of any module, counted from 1) raises RuntimeError
    "preempted (test)", and the block expects it: a run killed mid-epoch, after the checkpoints of the epochs
    before (FAST's 3 steps per epoch: call 5 is in the second epoch)."""
    from kd_lightning.modules.base import ClassifierModule

    original, calls = ClassifierModule.training_step, []

    def preempted(self, batch, batch_idx):
        calls.append(batch_idx)
        if len(calls) == call:
            raise RuntimeError("preempted (test)")
        return original(self, batch, batch_idx)

    with monkeypatch.context() as patch, pytest.raises(RuntimeError, match="preempted"):
        patch.setattr(ClassifierModule, "training_step", preempted)
        yield


def remove_unless_failed(request, path: Path) -> None:
    """End of a module- or session-scoped fixture: delete its run folders (checkpoints!) unless a test of the
    session failed, as pyproject's tmp_path_retention_policy = "failed" does for each test's tmp_path."""
    if request.session.testsfailed == 0:
        shutil.rmtree(path, ignore_errors=True)
