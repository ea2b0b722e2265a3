"""The Speedups callback changes how the networks run, never what they compute or how they are saved."""

import copy

import pytest
import torch

from kd_lightning.models import build_resnet
from kd_lightning.modules.ikd import IKDStudent
from kd_lightning.run.callbacks import Speedups

NET = {"arch": "resnet18", "num_classes": 10, "in_channels": 3}
OPTIMIZER = {"_target_": "torch.optim.SGD", "lr": 0.01, "momentum": 0.9}


def ikd_student() -> IKDStudent:
    torch.manual_seed(0)
    return IKDStudent(
        net=NET,
        optimizer=OPTIMIZER,
        teacher=build_resnet("resnet18", 10, 3),
        input_shape=[3, 32, 32],
        stages=["layer2", "layer4"],
    )


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(4, 3, 32, 32, generator=gen), torch.tensor([0, 1, 2, 3])


@pytest.mark.parametrize(
    "switches",
    [{"channels_last": True}, pytest.param({"compile": True, "compile_backend": "eager"}, marks=pytest.mark.slow)],
    ids=["channels_last", "compile"],
)
def test_same_loss_same_gradients_same_checkpoint_keys(switches):
    plain, fast = ikd_student().train(), ikd_student().train()
    Speedups(**switches).setup(None, fast, "fit")
    if switches.get("channels_last"):
        assert fast.net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
        assert fast.teacher.layer1[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    else:
        assert fast.net._compiled_call_impl is not None and fast.teacher._compiled_call_impl is not None
    assert list(fast.state_dict()) == list(plain.state_dict())  # checkpoints load either way

    images, labels = batch()
    results = []
    for module in (plain, fast):
        logits, terms = module.loss_terms(images, labels)  # IKD's hooks must still see every stage
        sum(terms.values()).backward()
        results.append((logits, {k: v.detach() for k, v in terms.items()}, copy.deepcopy(module.net.fc.weight.grad)))
    (l0, t0, g0), (l1, t1, g1) = results
    torch.testing.assert_close(l1, l0, atol=1e-4, rtol=1e-4)
    assert t1.keys() == t0.keys() == {"ce", "kd", "feat"}
    for key in t0:
        torch.testing.assert_close(t1[key], t0[key], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(g1, g0, atol=1e-4, rtol=1e-4)


def test_off_by_default_changes_nothing():
    module = ikd_student()
    Speedups().setup(None, module, "fit")
    assert not module.net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert getattr(module.net, "_compiled_call_impl", None) is None


def test_compile_reaches_an_ensembles_members():
    """The KD target of an ensemble (EnsembleTeacher.soft_logits) calls its members, not its forward: they are the
    networks to compile."""
    from kd_lightning.models import EnsembleTeacher
    from kd_lightning.modules.rkd import RKDStudent

    teacher = EnsembleTeacher([build_resnet("resnet18", 10, 3), build_resnet("resnet18", 10, 3)])
    module = RKDStudent(net=NET, optimizer=OPTIMIZER, teacher=teacher)
    Speedups(compile=True, compile_backend="eager").setup(None, module, "fit")
    assert all(member._compiled_call_impl is not None for member in module.teacher.members)
    assert module.net._compiled_call_impl is not None


@pytest.mark.parametrize(("mode", "marks"), [("reduce-overhead", 3), ("max-autotune", 3), ("default", 0), (None, 0)])
def test_cuda_graph_modes_mark_every_step(monkeypatch, mode, marks):
    """Under CUDA graphs each training, validation and test batch starts a marked step, so the outputs of every
    compiled call in it (teacher, ensemble members, hooks) stay valid until the next one."""
    calls = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: calls.append(1))
    speedups = Speedups(compile=True, compile_mode=mode)
    speedups.on_train_batch_start(None, None, None, 0)
    speedups.on_validation_batch_start(None, None, None, 0)
    speedups.on_test_batch_start(None, None, None, 0)
    assert len(calls) == marks
    Speedups(compile=False, compile_mode=mode).begin_step()
    assert len(calls) == marks  # compile off: nothing to mark
