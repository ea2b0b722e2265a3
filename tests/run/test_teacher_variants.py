"""Teacher variants (conf/teacher_variant/, kd_lightning/run/teachers.py): settings of the teacher's own run that
never reach its students, a label of their own, an identity of their own, and refusals before any training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kd_lightning import PROJECT_ROOT
from kd_lightning.datasets.factors import apply_train_factors, factor_identity
from kd_lightning.report.records import load_sweep
from kd_lightning.run import teacher_kinds, teachers
from kd_lightning.run.config import ConfigError, validate_config
from kd_lightning.run.identity import identity
from kd_lightning.seeding import member_seed
from kd_lightning.tools.train import run
from tests.helpers import compose_cfg

VARIANTS = sorted(p.stem for p in (PROJECT_ROOT / "conf" / "teacher_variant").glob("*.yaml") if p.stem != "plain")


def test_patient_settings_reach_the_teacher_and_not_its_students(fake_data_dir, tmp_path):
    small = ["method=rkd", "dataset=usps", "recipe=fast", "dataset.factors.train_fraction=0.05"]
    plain = compose_cfg(small, fake_data_dir, tmp_path, fast=False)
    patient = compose_cfg([*small, "teacher_variant=patient"], fake_data_dir, tmp_path, fast=False)
    teacher = teachers.teacher_config(patient)
    assert teacher.trainer.max_epochs == 2 * patient.recipe.epochs
    assert teacher.recipe.min_steps == 2 * patient.recipe.step_floor
    assert patient.trainer.max_epochs == plain.trainer.max_epochs == patient.recipe.epochs  # the student's own
    assert patient.recipe.min_steps == plain.recipe.min_steps == patient.recipe.step_floor
    assert identity(patient) == identity(plain)  # the same student settings; only its teacher differs
    assert teachers.teacher_key(patient) != teachers.teacher_key(plain)
    full = compose_cfg(["method=rkd", "dataset=usps", "recipe=fast", "teacher_variant=patient"], fake_data_dir)
    assert teachers.teacher_config(full).recipe.min_steps is None  # no step floor at full data, doubled or not


@pytest.mark.parametrize("teacher", ["resnet50", "ensemble"])
def test_the_teachers_own_run_is_valid_and_keeps_its_settings(fake_data_dir, teacher):
    """The run that trains a variant's teacher (from a student's demand, or as a member) validates: its settings are
    applied once, its identity stays the variant's."""
    cfg = compose_cfg(["method=rkd", "dataset=usps", f"teacher={teacher}", "teacher_variant=heavy_aug"], fake_data_dir)
    run_cfg = teachers.teacher_config(cfg) if teacher == "resnet50" else teacher_kinds.member_config(cfg, 0)
    validate_config(run_cfg)
    assert run_cfg.teacher.variant.name == "heavy-aug" and list(run_cfg.teacher.variant.overrides) == []
    assert run_cfg.recipe.augmentation.rotation == 20 != cfg.recipe.augmentation.rotation  # the students keep theirs
    assert teachers.teacher_key(run_cfg) == teachers.teacher_key(teachers.teacher_config(run_cfg))


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_shipped_variant_is_a_teacher_of_its_own(fake_data_dir, tmp_path, variant):
    overrides = ["method=rkd", "dataset=usps", "teacher=ensemble", "dataset.factors.train_fraction=0.5"]
    plain = compose_cfg(overrides, fake_data_dir, tmp_path)
    cfg = compose_cfg([*overrides, f"teacher_variant={variant}"], fake_data_dir, tmp_path)
    validate_config(cfg)
    name = cfg.teacher.variant.name
    assert teacher_kinds.teacher_label(cfg) == f"ensemble of 4 resnet10 ({name})"
    assert teachers.teacher_key(teacher_kinds.member_config(cfg, 0)) != teachers.teacher_key(
        teacher_kinds.member_config(plain, 0)
    )
    assert identity(cfg) == identity(plain)


def test_bootstrap_members_resample_the_students_subsample_each_their_own_way(fake_data_dir, tmp_path):
    cfg = compose_cfg(
        ["method=rkd", "dataset=usps", "teacher=ensemble", "teacher_variant=bootstrap", "seed=3"], fake_data_dir
    )
    members = [teacher_kinds.member_config(cfg, k) for k in range(2)]
    assert [m.dataset.factors.resample_seed for m in members] == [member_seed(3, k) for k in range(2)]
    assert all(m.dataset.factors.factor_seed == 3 for m in members)  # the students' own draw, resampled
    assert all(m.teacher.variant.name == "bootstrap" for m in members)  # named in the member's own record


def test_the_resample_factor_is_a_stratified_bootstrap_on_its_own_stream():
    labels = torch.arange(60) % 3
    images = torch.arange(60, dtype=torch.uint8).view(60, 1, 1, 1).expand(60, 1, 4, 4).contiguous()
    base = {"train_fraction": 0.5, "factor_seed": 7}
    sub_images, sub_labels, _ = apply_train_factors(images, labels, base, 3)
    draws = [apply_train_factors(images, labels, {**base, "resample_seed": s}, 3) for s in (1, 1, 2)]
    (a, la, info), (b, lb, _), (c, _, _) = draws
    assert torch.equal(a, b) and torch.equal(la, lb)  # the same seed draws the same bootstrap
    assert not torch.equal(a, c)
    assert torch.bincount(la, minlength=3).tolist() == torch.bincount(sub_labels, minlength=3).tolist()
    picked = a[:, 0, 0, 0]
    assert set(picked.tolist()) <= set(sub_images[:, 0, 0, 0].tolist())  # only images of the subsample
    assert info["resample_distinct"] == len(set(picked.tolist())) < len(picked)  # with replacement
    assert torch.equal(la, labels[picked.long()])  # each label travels with its image
    assert factor_identity({**base, "resample_seed": 1})["resample_seed"] == 1
    assert factor_identity({**base, "resample_seed": None}) == factor_identity(base)  # off: identities unchanged


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["teacher.variant.overrides=['trainer.max_epochs=3']"], "teacher.variant.name is not"),
        (
            ["teacher.variant.name=x", "teacher.variant.overrides=['trainer.max_epoch=3']"],
            "'trainer.max_epoch' is no key",
        ),
        (["teacher.variant.name=x", "teacher.variant.overrides=[trainer.max_epochs]"], "is not key=value"),
        (["teacher.variant.name=x", "teacher.variant.overrides=['efficiency.measure=false']"], "do not change"),
        (["teacher_variant=patient", "teacher_ckpt=/no/where"], "teacher_ckpt: a checkpoint is trained already"),
    ],
)
def test_unusable_variants_are_refused_before_training(fake_data_dir, overrides, message):
    cfg = compose_cfg(["method=rkd", "dataset=usps", *overrides], fake_data_dir)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        validate_config(cfg)


def test_a_variants_students_form_their_own_condition_in_the_report(fake_data_dir, tmp_path):
    common = ["dataset=usps", "teacher=ensemble", "teacher.members=2", "dataset.factors.train_fraction=0.5"]
    record = run(compose_cfg(["method=rkd", *common, "teacher_variant=bootstrap"], fake_data_dir, tmp_path))
    assert record["teacher"]["label"] == "ensemble of 2 resnet10 (bootstrap)"
    members = [json.loads(p.read_text()) for p in sorted((tmp_path / "teachers").rglob("teacher.json"))]
    seeds = sorted(m["data_factors"]["identity"]["resample_seed"] for m in members)
    assert seeds == sorted(member_seed(0, k) for k in range(2))
    assert len({m["data_factors"]["indices_sha1"] for m in members}) == 2
    runs = load_sweep(tmp_path / "default")
    assert np.all(runs["recipe"].str.contains(r"ensemble of 2 resnet10 \(bootstrap\)"))
