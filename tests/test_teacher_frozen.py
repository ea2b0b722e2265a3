"""The teacher inside a student never changes and never travels inside the student's checkpoint."""

import copy

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from kd_lightning.models import build_resnet
from kd_lightning.modules.ikd import IKDStudent
from kd_lightning.modules.rkd import RKDStudent
from tests.helpers import compose_cfg

NET = {"arch": "resnet18", "num_classes": 10, "in_channels": 1}
OPTIMIZER = {"_target_": "torch.optim.SGD", "lr": 0.05, "momentum": 0.9}


def make(cls, teacher):
    extra = {"input_shape": [1, 16, 16]} if cls is IKDStudent else {}
    return cls(net=NET, optimizer=OPTIMIZER, teacher=teacher, **extra)


@pytest.mark.parametrize("cls", [RKDStudent, IKDStudent])
def test_teacher_weights_and_batchnorm_statistics_do_not_change(cls, fake_data_dir, tmp_path):
    teacher = build_resnet("resnet50", 10, 1)
    before = copy.deepcopy(teacher.state_dict())
    module = make(cls, teacher)
    student_before = copy.deepcopy(module.net.state_dict())
    dm = instantiate(compose_cfg(["dataset=usps"], data_dir=fake_data_dir).dataset, _convert_="all")
    trainer = L.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=1, logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=dm)

    assert not module.teacher.training  # Lightning called .train() on the module: the teacher stayed in eval
    for key, value in module.teacher.state_dict().items():
        torch.testing.assert_close(value, before[key], msg=f"teacher {key} changed")
    assert any("running_mean" in k for k in before)
    # the student did learn (its BatchNorm statistics and weights moved)
    assert any(not torch.equal(v, student_before[k]) for k, v in module.net.state_dict().items())
    assert all(not p.requires_grad for p in module.teacher.parameters())

    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimized.isdisjoint(id(p) for p in module.teacher.parameters())
    assert {id(p) for p in module.net.parameters()} <= optimized
    if cls is IKDStudent:
        assert {id(p) for p in module.adapters.parameters()} <= optimized

    path = tmp_path / "student.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert not any(k.startswith("teacher.") for k in saved)
    assert any(k.startswith("net.") for k in saved)
    # and it loads back strictly into a student that has its teacher
    trainer.test(module, datamodule=dm, ckpt_path=str(path), verbose=False)
