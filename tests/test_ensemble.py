"""The ensemble teacher's targets, checked by hand on tiny networks (kd_lightning.models.EnsembleTeacher)."""

from __future__ import annotations

import torch
from torch import nn

from kd_lightning.hooks import FeatureTap
from kd_lightning.losses import kd_loss
from kd_lightning.models import EnsembleTeacher, build_resnet, distillation_logits, frozen_forward, hint_network
from kd_lightning.seeding import MEMBER_SEED_BASE, member_seed


def tiny_members(k: int = 3, classes: int = 5) -> list[nn.Module]:
    torch.manual_seed(0)
    return [nn.Linear(4, classes) for _ in range(k)]


def test_kd_target_is_the_mean_of_member_probabilities_at_t():
    members, x, t = tiny_members(), torch.randn(6, 4), 4.0
    ensemble = EnsembleTeacher(members).eval()
    by_hand = torch.stack([torch.softmax(m(x) / t, -1) for m in members]).mean(0)
    target = torch.softmax(distillation_logits(ensemble, x, t) / t, -1)
    assert torch.allclose(target, by_hand, atol=1e-6)
    # and not the softmax of the mean logits, a different (sharper) target
    mean_logits = torch.stack([m(x) for m in members]).mean(0)
    assert not torch.allclose(target, torch.softmax(mean_logits / t, -1), atol=1e-3)


def test_kd_loss_against_an_ensemble_is_kl_to_the_mean_probabilities():
    members, x, t = tiny_members(), torch.randn(6, 4), 2.0
    student = torch.randn(6, 5)
    p = torch.stack([torch.softmax(m(x) / t, -1) for m in members]).mean(0)
    q = torch.log_softmax(student / t, -1)
    by_hand = (p * (p.log() - q)).sum(-1).mean() * t**2
    assert torch.allclose(kd_loss(student, distillation_logits(EnsembleTeacher(members), x, t), t), by_hand, atol=1e-5)


def test_prediction_is_the_mean_probability_at_t1_and_single_teachers_are_unchanged():
    members, x = tiny_members(), torch.randn(6, 4)
    ensemble = EnsembleTeacher(members)
    by_hand = torch.stack([torch.softmax(m(x), -1) for m in members]).mean(0)
    assert torch.allclose(torch.softmax(frozen_forward(ensemble, x), -1), by_hand, atol=1e-6)
    single = members[0]
    assert torch.equal(distillation_logits(single, x, 4.0), frozen_forward(single, x))  # bitwise: old runs' numbers


def test_ikd_hints_come_from_member_zero():
    nets = [build_resnet("resnet18", 10, 1) for _ in range(2)]
    ensemble = EnsembleTeacher(nets).eval()
    assert hint_network(ensemble) is nets[0] and hint_network(nets[1]) is nets[1]
    tap = FeatureTap(hint_network(ensemble), ["layer1"])
    x = torch.randn(2, 1, 16, 16)
    ensemble(x)
    features = tap.pop()["layer1"]
    tap.remove()
    alone = FeatureTap(nets[0], ["layer1"])
    nets[0](x)
    assert torch.equal(features, alone.pop()["layer1"])


def test_member_seeds_never_coincide_with_a_student_seed():
    seeds = [member_seed(s, k) for s in range(200) for k in range(8)]
    assert all(MEMBER_SEED_BASE <= m < 2**32 for m in seeds)  # student seeds are below 2^31 (config rule)
    assert len(set(seeds)) == len(seeds)
    assert member_seed(3, 1) == member_seed(3, 1) != member_seed(3, 2)
