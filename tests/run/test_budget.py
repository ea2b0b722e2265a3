"""The training budget (recipe.min_steps, kd_lightning/run/budget.py): a floor on optimizer steps that scales
the epochs of small training sets, spans the one-cycle schedule, survives resume, is part of identity (only
when set) and is recorded in results.json and stated in the report."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import open_dict

from kd_lightning.run import teachers
from kd_lightning.run.budget import budget_epochs, budget_plan
from kd_lightning.run.config import ConfigError, validate_config
from kd_lightning.run.identity import fingerprint, identity
from kd_lightning.tools import train
from tests.helpers import MOMENTUM, compose_cfg

#: FAST's ResNet10 teacher trained with the strong recipe's one-cycle schedule, on every training batch of the split
RUN = [
    "method=teacher",
    "recipe=strong",
    MOMENTUM,  # Nesterov needs the momentum FAST switches off
    "recipe.batch_size=16",
    "trainer.limit_train_batches=null",
    "trainer.limit_val_batches=1",
    "trainer.max_epochs=1",
    "efficiency.measure=false",
]


def test_the_rule():
    assert budget_epochs(30, 56, None) == 30  # no floor: the configured epochs
    assert budget_epochs(30, 56, 1680) == 30  # full USPS at the strong recipe: the floor does not bind
    assert budget_epochs(30, 2, 1680) == 840  # train_fraction 0.05 (365 images, 2 steps an epoch)
    assert budget_epochs(30, 3, 100) == 34  # ceil: at least min_steps steps
    assert budget_epochs(30, 0, 100) == 30  # no full batch: nothing to scale (the run refuses it)


def test_validation_keeps_the_configured_cadence():
    """(epochs, validate every n): as many validations as the configured schedule, the last epoch among them."""
    assert budget_plan(12, 37, 444) == (12, 1)  # full USPS at the fast recipe: unchanged
    assert budget_plan(12, 1, 444) == (444, 37)  # 5%: one step an epoch, 12 validations
    assert budget_plan(12, 3, 444) == (156, 12)  # 10%: 148 epochs rounded up to a multiple of 12
    assert budget_plan(30, 2, 1680) == (840, 28)
    assert budget_plan(30, 56, 1680, validate_every=2) == (30, 2)  # a configured cadence is kept when not scaled
    assert budget_plan(10, 3, 100, validate_every=2) == (36, 6)
    for configured, per_epoch, floor, every in [(12, 1, 444, 1), (12, 3, 444, 1), (7, 2, 101, 3), (30, 5, 1680, 1)]:
        epochs, validate_every = budget_plan(configured, per_epoch, floor, every)
        assert epochs * per_epoch >= floor and epochs % validate_every == 0
        assert configured // every <= epochs // validate_every <= 2 * configured // every + 1


def test_unset_floor_leaves_identity_as_before_and_a_floor_changes_run_and_teacher(fake_data_dir):
    paper = compose_cfg(["method=rkd"], data_dir=fake_data_dir)
    assert paper.recipe.min_steps is None and "recipe.min_steps" not in identity(paper)
    full = compose_cfg(["method=rkd", "recipe=strong"], data_dir=fake_data_dir)  # the strong floor: subsamples only
    removed = compose_cfg(["method=rkd", "recipe=strong"], data_dir=fake_data_dir)
    with open_dict(removed):
        del removed.recipe["min_steps"]  # the recipe as it was before the key existed
    assert full.recipe.min_steps is None and fingerprint(full) == fingerprint(removed)
    assert teachers.teacher_key(full) == teachers.teacher_key(removed)
    floored = compose_cfg(["method=rkd", "recipe=strong", "recipe.min_steps=1680"], data_dir=fake_data_dir)
    assert identity(floored)["recipe.min_steps"] == 1680
    assert fingerprint(floored) != fingerprint(full) and teachers.teacher_key(floored) != teachers.teacher_key(full)


@pytest.mark.parametrize(
    ("factor", "floor"),
    [("train_fraction=0.05", 1680), ("imbalance=10", 1680), ("train_fraction=1.0", None), ("label_noise=0.2", None)],
)
def test_the_strong_recipe_floors_subsampled_training_sets_only(factor, floor, fake_data_dir):
    strong = compose_cfg(["recipe=strong", f"dataset.factors.{factor}"], data_dir=fake_data_dir)
    assert strong.recipe.min_steps == floor
    assert compose_cfg([f"dataset.factors.{factor}"], data_dir=fake_data_dir).recipe.min_steps is None  # paper


@pytest.mark.parametrize("bad", ["0", "-5", "1.5", "true"])
def test_bad_floor_is_named(bad, fake_data_dir):
    with pytest.raises(ConfigError, match=r"recipe\.min_steps"):
        validate_config(compose_cfg([f"recipe.min_steps={bad}"], data_dir=fake_data_dir))


def _steps_on_record(record: dict) -> tuple[int, dict]:
    budget = record["budget"]
    assert budget["optimizer_steps"] == budget["epochs"] * budget["steps_per_epoch"] == record["global_steps"]
    assert record["epochs"] == budget["epochs"]
    state = torch.load(record["last_checkpoint"], weights_only=False)["lr_schedulers"][0]
    assert state["total_steps"] == state["last_epoch"] == record["global_steps"]  # the one-cycle spans the run
    return record["global_steps"], budget


@pytest.mark.parametrize("fraction", [0.5, 1.0])
def test_two_fractions_get_the_stated_optimizer_steps(fraction, fake_data_dir, tmp_path):
    cfg = compose_cfg(
        [*RUN, f"dataset.factors.train_fraction={fraction}", "recipe.min_steps=9"],
        data_dir=fake_data_dir,
        out_dir=tmp_path,
    )
    record = train.run(cfg)
    steps, budget = _steps_on_record(record)
    per_epoch = record["data_factors"]["num_train"] // 16  # drop_last
    assert budget == {
        "min_steps": 9,
        "steps_per_epoch": per_epoch,
        "configured_epochs": 1,
        "epochs": math.ceil(9 / per_epoch),
        "optimizer_steps": math.ceil(9 / per_epoch) * per_epoch,
        "validate_every_n_epochs": math.ceil(9 / per_epoch),  # one configured epoch: validated once, at the end
    }
    assert 9 <= steps < 9 + per_epoch and budget["epochs"] > 1  # the floor binds at both levels


def test_the_floor_is_not_applied_when_the_data_give_enough_steps(fake_data_dir, tmp_path):
    """limit_train_batches=3 and accumulate_grad_batches=2: ceil(3 / 2) = 2 optimizer steps an epoch."""
    cfg = compose_cfg(
        [
            *RUN,
            "trainer.limit_train_batches=3",
            "trainer.accumulate_grad_batches=2",
            "trainer.max_epochs=3",
            "recipe.min_steps=5",
        ],
        data_dir=fake_data_dir,
        out_dir=tmp_path,
    )
    steps, budget = _steps_on_record(train.run(cfg))
    assert budget == {
        "min_steps": 5,
        "steps_per_epoch": 2,
        "configured_epochs": 3,
        "epochs": 3,
        "optimizer_steps": 6,
        "validate_every_n_epochs": 1,
    }


def test_a_floored_run_validates_every_k_epochs_and_at_the_last(fake_data_dir, tmp_path):
    """2 configured epochs of 2 steps, floor 10: 5 epochs -> every 2, rounded up to 6 epochs, validated at 2, 4, 6."""
    cfg = compose_cfg(
        [*RUN, "trainer.limit_train_batches=2", "trainer.max_epochs=2", "recipe.min_steps=10"],
        data_dir=fake_data_dir,
        out_dir=tmp_path,
    )
    record = train.run(cfg)
    assert record["budget"]["epochs"] == 6 and record["budget"]["validate_every_n_epochs"] == 2
    metrics = pd.read_csv(Path(record["last_checkpoint"]).parents[1] / "csv" / "metrics.csv")
    validated = sorted(metrics.loc[metrics["val/acc"].notna(), "epoch"].astype(int).unique())
    assert validated == [1, 3, 5]
    assert record["best_epoch"] in validated


def test_a_training_split_without_a_full_batch_is_refused(fake_data_dir, tmp_path):
    cfg = compose_cfg(
        [*RUN, "dataset.factors.train_fraction=0.2", "recipe.batch_size=512"], data_dir=fake_data_dir, out_dir=tmp_path
    )
    with pytest.raises(ValueError, match=r"no full batch of recipe\.batch_size=512.*dataset\.factors\.train_fraction"):
        train.run(cfg)


def test_a_run_cut_after_its_first_epoch_resumes_to_the_same_budget(fake_data_dir, tmp_path):
    # 2 configured epochs, floor 8: 4 epochs of 2 steps, validated (and checkpointed) after epochs 2 and 4
    common = [*RUN, "trainer.limit_train_batches=2", "trainer.max_epochs=2", "recipe.min_steps=8"]
    full = train.run(compose_cfg(common, data_dir=fake_data_dir, out_dir=tmp_path / "full"))
    cut = compose_cfg(
        [
            *common,
            "+callbacks.preempt._target_=tests.helpers.PreemptAfterFirstEpoch",
            "+callbacks.preempt.at_epoch=3",
        ],
        data_dir=fake_data_dir,
        out_dir=tmp_path / "cut",
    )  # its own teacher registry too
    with pytest.raises(RuntimeError, match="preempted"):
        train.run(cut)
    resumed = train.run(compose_cfg(common, data_dir=fake_data_dir, out_dir=tmp_path / "cut"))
    assert resumed["resumed_from"].endswith("last.ckpt")
    assert _steps_on_record(resumed) == _steps_on_record(full) == (8, resumed["budget"])
    assert resumed["budget"]["epochs"] == 4


def test_the_report_reads_the_budget_and_states_the_rule(tmp_path):
    import json

    from kd_lightning.report.markdown import budget_note
    from kd_lightning.report.records import load_sweep

    budget = {"min_steps": 1680, "steps_per_epoch": 2, "configured_epochs": 30, "epochs": 840, "optimizer_steps": 1680}
    for seed, extra in ((0, {"budget": budget}), (1, {})):  # a run from before the budget was recorded
        folder = tmp_path / "usps" / "scratch" / f"seed{seed}"
        folder.mkdir(parents=True)
        record = {"dataset": "usps", "method": "scratch", "seed": seed, "status": "completed", **extra}
        (folder / "results.json").write_text(json.dumps(record))
    runs = load_sweep(tmp_path).sort_values("seed")
    assert runs["min_steps"].tolist()[0] == 1680 and runs["optimizer_steps"].tolist()[0] == 1680
    assert runs["min_steps"].isna().tolist() == [False, True]
    assert "`recipe.min_steps` = 1680" in budget_note(runs)[0] and budget_note(runs[runs.seed == 1]) == []
