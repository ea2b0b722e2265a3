"""The confirmatory sweep's config is the design docs/preregistration.md fixed before its first run (issue 31): an
edit to conf/experiment/confirmatory_usps.yaml or to what it inherits that changes the design fails here, and must
be listed under the pre-registration's "Deviations" before this test is changed."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from kd_lightning.run import teacher_kinds, teachers
from kd_lightning.run.resolvers import register_resolvers
from tests.helpers import CONF_DIR

EXPERIMENT = "experiment=confirmatory_usps"


def sweep_config(*overrides: str):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[EXPERIMENT, *overrides], return_hydra_config=True)


def test_the_grid_is_the_preregistered_one():
    params = sweep_config().hydra.sweeper.params
    assert list(params) == ["seed", "dataset.factors.train_fraction", "method"]  # seed slowest: every seed counts
    assert params["seed"] == "range(3,35)"  # 32 seeds, 3-34: the pilot's 0-2 are not reused
    assert [float(v) for v in params["dataset.factors.train_fraction"].split(",")] == [1.0, 0.05]
    assert params["method"].split(",") == ["teacher", "scratch", "rkd"]  # IKD: exploratory, a second command


@pytest.mark.parametrize("fraction", [1.0, 0.05])
def test_every_level_distils_from_the_same_full_data_ensemble(fraction):
    cfg = sweep_config("method=rkd", "seed=7", f"dataset.factors.train_fraction={fraction}")
    assert cfg.recipe.name == "fast" and cfg.dataset.name == "usps"
    recipe = (cfg.recipe.batch_size, cfg.recipe.epochs, cfg.recipe.optimizer.lr, cfg.recipe.optimizer.nesterov)
    assert recipe == (192, 12, 0.03, True) and cfg.recipe.scheduler._target_.endswith("OneCycleLR")
    assert cfg.recipe.min_steps == (444 if fraction < 1 else None)  # at 5%: the full-data run's optimizer steps
    checkpoint = cfg.callbacks.model_checkpoint
    assert (checkpoint.monitor, checkpoint.mode) == ("val/acc", "max")  # the endpoint: the best-validation checkpoint
    assert cfg.teacher.members == 4 and cfg.teacher.data == "full"
    assert cfg.teacher_model.arch == cfg.student_model.arch == "resnet18"
    assert (cfg.method.alpha, cfg.method.temperature) == (0.7, 4)
    assert cfg.dataset.factors.factor_seed == 7  # each seed draws its own subsample
    assert OmegaConf.to_container(cfg.claims.primary) == {
        "factor": "train_fraction",
        "student": "rkd",
        "test": "contrast",
        "direction": "greater",
    }
    full = sweep_config("method=rkd", "seed=7", "dataset.factors.train_fraction=1.0")
    member, member_at_full = teacher_kinds.member_config(cfg, 0), teacher_kinds.member_config(full, 0)
    assert member.dataset.factors.train_fraction == 1.0 and member.method.name == "teacher"
    assert member.recipe == full.recipe and member.teacher_model == cfg.student_model  # trained like a scratch student
    assert teachers.teacher_key(member) == teachers.teacher_key(member_at_full)
    assert cfg.paths.run_dir.endswith(f"confirmatory_usps/f{fraction}/fast/usps/rkd/seed7")


def test_the_exploratory_ikd_arm_is_the_preregistered_one():
    cfg = sweep_config("method=ikd", "seed=3", "dataset.factors.train_fraction=0.05")
    assert (cfg.method.alpha, cfg.method.temperature, cfg.method.feature_weight) == (0.7, 4, 1.0)
    assert cfg.teacher.members == 4 and cfg.teacher.data == "full"  # hints from member 0 (docs/teachers.md)
