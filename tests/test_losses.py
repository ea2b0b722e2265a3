import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kd_lightning.losses import feature_matching_loss, kd_loss
from kd_lightning.models import build_resnet
from kd_lightning.modules.rkd import RKDStudent


def test_kd_loss_is_zero_for_identical_logits():
    logits = torch.randn(5, 10)
    assert kd_loss(logits, logits.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_loss_matches_a_hand_computed_value():
    # one sample, two classes, T = 2: p_t = softmax([2, 0]/2), p_s = softmax([0, 0]/2) = [.5, .5]
    teacher, student = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    pt1 = math.exp(1) / (math.exp(1) + 1)
    kl = pt1 * math.log(pt1 / 0.5) + (1 - pt1) * math.log((1 - pt1) / 0.5)
    assert kd_loss(student, teacher, 2.0).item() == pytest.approx(4 * kl, rel=1e-5)  # T^2 = 4


def test_kd_loss_uses_batchmean_and_t_squared():
    s, t = torch.randn(8, 10), torch.randn(8, 10)
    for temperature in (1.0, 4.0):
        p_t = F.softmax(t / temperature, -1)
        per_sample = (p_t * (p_t.log() - F.log_softmax(s / temperature, -1))).sum(-1)
        assert kd_loss(s, t, temperature).item() == pytest.approx(temperature**2 * per_sample.mean().item(), rel=1e-5)
    # batchmean: duplicating the batch leaves the loss unchanged; "mean" would also divide by classes
    assert kd_loss(torch.cat([s, s]), torch.cat([t, t]), 4.0).item() == pytest.approx(
        kd_loss(s, t, 4.0).item(), rel=1e-5
    )


def test_rkd_weights_ce_by_one_minus_alpha_and_kd_by_alpha():
    teacher = build_resnet("resnet18", 10, 1)
    x, y = torch.randn(4, 1, 16, 16), torch.randint(0, 10, (4,))
    module = RKDStudent(
        net={"arch": "resnet18", "num_classes": 10, "in_channels": 1},
        optimizer={"_target_": "torch.optim.SGD", "lr": 0.1},
        teacher=teacher,
        alpha=0.3,
        temperature=2.0,
    )
    module.train()
    logits, terms = module.loss_terms(x, y)
    with torch.no_grad():
        t_logits = teacher(x)
    assert set(terms) == {"ce", "kd"}
    assert terms["ce"].item() == pytest.approx(0.7 * F.cross_entropy(logits, y).item(), rel=1e-5)
    assert terms["kd"].item() == pytest.approx(0.3 * kd_loss(logits, t_logits, 2.0).item(), rel=1e-5)


def test_feature_matching_loss_sums_mse_over_stages():
    a, b = (
        {"x": torch.ones(2, 3, 4, 4), "y": torch.zeros(2, 5, 2, 2)},
        {"x": torch.zeros(2, 3, 4, 4), "y": torch.full((2, 5, 2, 2), 2.0)},
    )
    assert feature_matching_loss(a, b).item() == pytest.approx(1.0 + 4.0)
    with pytest.raises(ValueError, match="stages differ"):
        feature_matching_loss(a, {"x": b["x"]})


logit_rows = arrays("float64", (3, 6), elements=st.floats(-20, 20))


@settings(max_examples=60, deadline=None)
@given(s=logit_rows, t=logit_rows, temperature=st.floats(0.5, 10), shift=st.floats(-50, 50))
def test_kd_loss_properties(s, t, temperature, shift):
    s, t = torch.tensor(s), torch.tensor(t)
    loss = kd_loss(s, t, temperature).item()
    assert loss >= -1e-9  # KL is non-negative
    # adding a constant to all logits changes no softmax, so no loss
    assert kd_loss(s + shift, t - shift, temperature).item() == pytest.approx(loss, abs=1e-6)
    # zero iff the softened distributions match
    gap = (F.softmax(s / temperature, -1) - F.softmax(t / temperature, -1)).abs().max().item()
    if gap > 1e-3:
        assert loss > 1e-8
    assert kd_loss(s, s + shift, temperature).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_loss_is_computed_in_fp32_under_bf16_autocast():
    """Softmax at T=4 of bf16 logits would lose the small probabilities KD transfers."""
    gen = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(8, 10, generator=gen), torch.randn(8, 10, generator=gen) * 5
    reference = kd_loss(student, teacher, 4.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = kd_loss(student.bfloat16(), teacher.bfloat16(), 4.0)
    assert loss.dtype == torch.float32
    # only the inputs' rounding to bf16 remains, not bf16 arithmetic
    exact_on_rounded = kd_loss(student.bfloat16().float(), teacher.bfloat16().float(), 4.0)
    assert float(loss) == pytest.approx(float(exact_on_rounded), rel=1e-6)
    assert float(loss) == pytest.approx(float(reference), rel=1e-2)
