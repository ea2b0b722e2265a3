"""The teacher inside a student never changes and never travels inside the student's checkpoint."""

import copy

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from kd_lightning.losses import feature_matching_loss, kd_loss
from kd_lightning.models import build_resnet
from kd_lightning.modules.ikd import IKDStudent, adapter_key
from kd_lightning.modules.rkd import RKDStudent
from tests.helpers import compose_cfg

NET = {"arch": "resnet18", "num_classes": 10, "in_channels": 1}
OPTIMIZER = {"_target_": "torch.optim.SGD", "lr": 0.05, "momentum": 0.9}


def make(cls, teacher):
    extra = {"input_shape": [1, 16, 16]} if cls is IKDStudent else {}
    return cls(net=NET, optimizer=OPTIMIZER, teacher=teacher, **extra)


@pytest.mark.parametrize("cls", [RKDStudent, IKDStudent])
def test_teacher_weights_and_batchnorm_statistics_do_not_change(cls, fake_data_dir, tmp_path):
    teacher = build_resnet("resnet18", 10, 1)  # any torchvision ResNet: a small one keeps the test quick
    before = copy.deepcopy(teacher.state_dict())
    module = make(cls, teacher)
    student_before = copy.deepcopy(module.net.state_dict())
    dm = instantiate(compose_cfg(["dataset=usps"], data_dir=fake_data_dir).dataset, _convert_="all")
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
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
    if cls is IKDStudent:  # torn down after fit and test: the (registry's) teacher runs untapped
        assert not module.teacher_tap.attached and not module.student_tap.attached
        assert all(not m._forward_hooks for m in module.teacher.modules()) and all(
            not m._forward_hooks for m in module.net.modules()
        )
        _, terms = module.loss_terms(torch.randn(2, 1, 16, 16), torch.tensor([0, 1]))  # training again taps them again
        assert module.teacher_tap.attached and float(terms["feat"]) > 0


@pytest.mark.parametrize("cls", [RKDStudent, IKDStudent])
def test_teacher_runs_in_inference_mode_and_the_loss_is_unchanged(cls):
    torch.manual_seed(0)
    module = make(cls, build_resnet("resnet50", 10, 1)).train()
    modes = []
    module.teacher.register_forward_hook(lambda *_: modes.append(torch.is_inference_mode_enabled()))
    images, labels = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 3])
    logits, terms = module.loss_terms(images, labels)
    assert modes == [True]
    sum(terms.values()).backward()  # teacher outputs were saved for backward: they must be normal tensors
    assert all(p.grad is not None for p in module.net.parameters())
    assert all(p.grad is None for p in module.teacher.parameters())
    # the same numbers as a plain no_grad teacher forward
    with torch.no_grad():
        teacher_logits = module.teacher(images)
    expected = module.alpha * kd_loss(logits, teacher_logits, module.temperature)
    torch.testing.assert_close(terms["kd"], expected)
    if cls is IKDStudent:  # refill both taps by plain forwards (train-mode BN: same maps on the same batch)
        with torch.inference_mode():
            module.teacher(images)
        with torch.no_grad():
            module.net(images)
        teacher_maps, student_maps = module.teacher_tap.pop(), module.student_tap.pop()
        assert not any(f.is_inference() for f in teacher_maps.values())  # pop() hands back normal tensors
        adapted = {s: module.adapters[adapter_key(s)](student_maps[s]) for s in module.stages}
        torch.testing.assert_close(terms["feat"], module.feature_weight * feature_matching_loss(adapted, teacher_maps))
