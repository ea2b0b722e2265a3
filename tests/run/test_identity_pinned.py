"""Completed runs and registered teachers stay valid across refactors.

A run's fingerprint and its teacher's key are hashes of the config, ``_target_`` paths included, so
moving a class or renaming a config key would silently orphan every finished run and registered
teacher. These values were computed on commit 4a5a4cf (before the package was restructured); a change
here must be deliberate and come with a migration note.
"""

from __future__ import annotations

import pytest
from hydra.utils import get_class

from kd_lightning.run import teachers
from kd_lightning.run.compose import compose_run_config
from kd_lightning.run.identity import fingerprint

PINNED = [
    # (overrides, run fingerprint, teacher key)
    (["dataset=usps", "method=teacher"], "48aa96810d", "resnet50-06bdb9c2"),
    (["dataset=usps", "method=scratch", "seed=1"], "f0d0a69cfa", "resnet50-06bdb9c2"),
    (["dataset=usps", "method=rkd", "seed=2"], "0d451281f2", "resnet50-06bdb9c2"),
    (["dataset=usps", "method=ikd"], "a664c8d3ee", "resnet50-06bdb9c2"),
    (["dataset=cifar10", "method=ikd", "seed=1"], "41a7b7285f", "resnet50-335e263c"),
    (["dataset=usps", "method=rkd", "recipe=strong"], "61f0b46ec2", "resnet50-7c711f3e"),
    (["dataset=mnist", "method=teacher", "recipe=strong", "seed=2"], "b656773925", "resnet50-aec98855"),
    # data factors: seed 0 draws with factor seed 0, as before factor_seed followed the run seed
    (["dataset=usps", "method=ikd", "dataset.factors.train_fraction=0.1"], "15dacaa722", "resnet50-040b0fbd"),
    (
        [
            "dataset=usps",
            "method=teacher",
            "dataset.factors.label_noise=0.2",
            "dataset.factors.factor_seed=3",
            "seed=1",
        ],
        "d26517fdc7",
        "resnet50-94e58378",
    ),
    (["dataset=cifar100", "method=scratch", "dataset.factors.classes=[0,1]"], "86e71f1e26", "resnet50-baebff46"),
]


@pytest.mark.parametrize(
    ("overrides", "run_fingerprint", "teacher_key"), PINNED, ids=lambda v: " ".join(v) if isinstance(v, list) else None
)
def test_identities_of_existing_runs_and_teachers_do_not_move(overrides, run_fingerprint, teacher_key):
    cfg = compose_run_config(overrides)
    assert teachers.teacher_key(cfg) == teacher_key
    distilled = get_class(cfg.method._target_).requires_teacher  # as train.py: only students that distil name a teacher
    assert fingerprint(cfg, teachers.teacher_reference(cfg) if distilled else None) == run_fingerprint
