"""recipe=strong: composes everywhere, its schedule is the one-cycle formula, digits never flip, and its
runs and teachers never mix with the paper recipe's."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from kd_lightning.datasets.batched import BatchAugment
from kd_lightning.run import build, teachers
from kd_lightning.run.config import ConfigError, validate_config
from kd_lightning.tools import train
from tests.helpers import MOMENTUM, compose_cfg

DATASETS = ("mnist", "fashion_mnist", "usps", "cifar10", "cifar100")
DIGITS = ("mnist", "usps")
#: recipe=strong after FAST: Nesterov SGD needs the momentum FAST switches off
STRONG = ("recipe=strong", MOMENTUM)


@pytest.mark.parametrize("dataset", DATASETS)
def test_strong_recipe_composes_for_every_dataset(dataset, fake_data_dir):
    cfg = compose_cfg([f"dataset={dataset}", *STRONG, "method=ikd"], data_dir=fake_data_dir)
    validate_config(cfg)
    aug = OmegaConf.to_container(cfg.recipe.augmentation, resolve=True)
    assert (
        cfg.recipe.optimizer.nesterov
        and cfg.recipe.optimizer.weight_decay > 0
        and cfg.recipe.scheduler.interval == "step"
    )
    assert cfg.student_model.stem == cfg.teacher_model.stem == ("imagenet" if dataset in DIGITS else "cifar")
    if dataset in DIGITS:
        assert aug["hflip"] == aug["vflip"] == 0 and aug["translate"] > 0
    else:
        assert aug["hflip"] == 0.5 and aug["vflip"] == 0 and aug["translate"] >= 3
    assert cfg.method.alpha == 0.7 and cfg.method.temperature == 4.0  # the paper's KD hyperparameters


def test_every_method_trains_30_epochs_and_one_method_can_differ():
    methods = ("teacher", "scratch", "rkd", "ikd")

    def epochs(dataset: str, *overrides: str) -> dict[str, int]:
        return {
            m: compose_cfg(
                [f"dataset={dataset}", "recipe=strong", f"method={m}", *overrides], fast=False
            ).trainer.max_epochs
            for m in methods
        }

    assert epochs("usps") == epochs("cifar10") == dict.fromkeys(methods, 30)
    assert epochs("usps", "+recipe.method_epochs.ikd=2") == {**dict.fromkeys(methods, 30), "ikd": 2}
    assert epochs("usps", "trainer.max_epochs=4") == dict.fromkeys(methods, 4)


@pytest.mark.parametrize("dataset", DIGITS)
def test_digit_augmentation_never_flips_and_shifts_whole_pixels(dataset, fake_data_dir):
    cfg = compose_cfg([f"dataset={dataset}", *STRONG], data_dir=fake_data_dir)
    augment = BatchAugment.from_config(cfg.dataset.mean, cfg.dataset.std, cfg.recipe.augmentation)
    params = augment.sample_params(4096, seed=0)
    assert not params.hflip.any() and not params.vflip.any()
    assert set(params.shift.unique().tolist()) == {-2.0, -1.0, 0.0, 1.0, 2.0}
    assert 0.9 <= float(params.scale.min()) and float(params.scale.max()) <= 1.1 and params.angle.abs().max() <= 10
    # a shift by whole pixels moves a pixel exactly (crop with zero padding)
    image = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    image[0, 0, 3, 3] = 255
    moved = augment.apply(
        image,
        type(params)(
            torch.zeros(1),
            torch.zeros(1, dtype=torch.bool),
            torch.zeros(1, dtype=torch.bool),
            torch.tensor([[2.0, -1.0]]),
            None,
        ),
    )
    assert torch.nonzero(moved[0, 0] > moved.min()).tolist() == [[2, 5]]


def one_cycle(step: int, total: int, peak: float, pct: float, div: float, final_div: float) -> float:
    """OneCycleLR, two phases, cosine annealing (Smith & Topin 2017), written out independently."""
    start, end = peak / div, peak / div / final_div
    warm_end = pct * total - 1
    if step <= warm_end:
        t, a, b = step / warm_end, start, peak
    else:
        t, a, b = (step - warm_end) / (total - 1 - warm_end), peak, end
    return b + (a - b) / 2 * (math.cos(math.pi * t) + 1)


def test_schedule_learning_rate_equals_the_formula(fake_data_dir):
    cfg = compose_cfg(["dataset=usps", *STRONG, "method=scratch"], data_dir=fake_data_dir)
    module = build.build_module(cfg)

    class FakeTrainer:
        estimated_stepping_batches = 200

    module.trainer = FakeTrainer()  # what Lightning's fit provides
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    s = cfg.recipe.scheduler
    seen = {}
    for step in range(200):
        seen[step] = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
    for step in (0, 10, 29, 30, 100, 199):
        expected = one_cycle(step, 200, cfg.recipe.optimizer.lr, s.pct_start, s.div_factor, s.final_div_factor)
        assert seen[step] == pytest.approx(expected, rel=1e-6), step
    assert max(seen.values()) == pytest.approx(0.1, rel=1e-3) and seen[199] < 1e-5


def test_strong_and_paper_runs_get_different_teachers_and_folders(fake_data_dir):
    paper = compose_cfg(["dataset=usps", "method=rkd"], data_dir=fake_data_dir)
    strong = compose_cfg(["dataset=usps", "method=rkd", *STRONG], data_dir=fake_data_dir)
    assert teachers.teacher_key(paper) != teachers.teacher_key(strong)
    assert teachers.entry_dir(paper) != teachers.entry_dir(strong)
    assert paper.paths.run_dir != strong.paths.run_dir and "/strong/usps/rkd/seed0" in strong.paths.run_dir


def test_bad_augmentation_values_name_the_key(fake_data_dir):
    cfg = compose_cfg(["dataset=usps", *STRONG, "recipe.augmentations.usps.translate=-1"], data_dir=fake_data_dir)
    with pytest.raises(ConfigError, match=r"recipe\.augmentation\.translate"):
        validate_config(cfg)


@pytest.mark.slow
def test_a_strong_run_trains_with_its_step_schedule(fake_data_dir, tmp_path):
    record = train.run(
        compose_cfg(
            ["dataset=usps", *STRONG, "method=scratch", "recipe.batch_size=16"],
            data_dir=fake_data_dir,
            out_dir=tmp_path,
        )
    )
    assert record["status"] == "completed" and "/strong/usps/scratch/seed0" in record["run_dir"]
    state = torch.load(record["last_checkpoint"], weights_only=False)["lr_schedulers"][0]
    assert state["total_steps"] == record["global_steps"] and state["last_epoch"] == record["global_steps"]


@pytest.mark.slow
def test_a_strong_run_cut_after_an_epoch_resumes_to_the_uninterrupted_weights(fake_data_dir, tmp_path):
    """The per-batch one-cycle schedule and the digit jitter (drawn from seed, epoch and batch) are exact
    under resume: an RKD run cut after its first epoch and rerun ends with the uninterrupted run's weights."""
    common = ["dataset=usps", *STRONG, "method=rkd", "recipe.batch_size=16", "trainer.max_epochs=2"]
    full = train.run(compose_cfg([*common, "name=full"], data_dir=fake_data_dir, out_dir=tmp_path))
    cut = compose_cfg(
        [*common, "name=cut", "+callbacks.preempt._target_=tests.helpers.PreemptAfterFirstEpoch"],
        data_dir=fake_data_dir,
        out_dir=tmp_path,
    )
    with pytest.raises(RuntimeError, match="preempted"):
        train.run(cut)
    resumed = train.run(compose_cfg([*common, "name=cut"], data_dir=fake_data_dir, out_dir=tmp_path))
    assert resumed["resumed_from"].endswith("last.ckpt") and resumed["teacher"]["key"] == full["teacher"]["key"]
    a = torch.load(full["last_checkpoint"], weights_only=False)
    b = torch.load(resumed["last_checkpoint"], weights_only=False)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"] == full["global_steps"]
    assert a["lr_schedulers"][0]["_last_lr"] == b["lr_schedulers"][0]["_last_lr"]
    assert full["test_best"] == resumed["test_best"]


def test_the_fast_candidate_is_the_strong_recipe_with_its_stated_changes(fake_data_dir):
    """conf/recipe/fast.yaml inherits strong and changes only batch, epochs, peak lr, warm-up and the floor."""
    fast = compose_cfg(["dataset=usps", "recipe=fast", MOMENTUM, "method=ikd"], data_dir=fake_data_dir, fast=False)
    strong = compose_cfg(["dataset=usps", *STRONG, "method=ikd"], data_dir=fake_data_dir, fast=False)
    validate_config(fast)
    assert (fast.recipe.batch_size, fast.trainer.max_epochs, fast.recipe.optimizer.lr) == (192, 12, 0.03)
    assert fast.recipe.scheduler.pct_start == 0.25 and fast.recipe.step_floor == 7291 // 192 * 12
    changed = {"name", "folder", "batch_size", "epochs", "step_floor", "optimizer", "scheduler"}
    for key in set(strong.recipe) - changed:
        assert fast.recipe[key] == strong.recipe[key], key
    assert fast.recipe.optimizer.momentum == strong.recipe.optimizer.momentum and fast.recipe.optimizer.nesterov
    assert fast.paths.run_dir != strong.paths.run_dir  # its own folders
