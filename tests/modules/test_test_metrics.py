"""Fidelity, calibration and soft-label entropy of a test split, against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kd_lightning.modules import base
from kd_lightning.modules.base import ECE_BINS, SOFT_LABEL_TEMPERATURE

STUDENT = np.array([[3.0, 0, 0], [0, 2, 0], [0, 0, 1], [1, 0, 0]])
TEACHER = np.array([[2.0, 0, 0], [0, 0, 2], [0, 0, 1], [0, 1, 0]])
LABELS = np.array([0, 1, 1, 2])


def softmax(z: np.ndarray, t: float = 1.0) -> np.ndarray:
    e = np.exp(z / t - (z / t).max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_metrics_on_tiny_logits_equal_hand_computed_values():
    metrics = base.TestMetrics(3)
    # two batches: the metrics accumulate over the split
    for rows in (slice(0, 3), slice(3, 4)):
        metrics.update(
            torch.tensor(STUDENT[rows], dtype=torch.float32),
            torch.tensor(LABELS[rows]),
            torch.tensor(TEACHER[rows], dtype=torch.float32),
        )
    out = metrics.compute()

    p_s, p_t = softmax(STUDENT), softmax(TEACHER)
    assert out["agreement"] == pytest.approx(0.5)  # argmax 0,1,2,0 vs 0,2,2,1
    assert out["kl_teacher_student"] == pytest.approx(np.mean(np.sum(p_t * (np.log(p_t) - np.log(p_s)), 1)), rel=1e-5)
    assert out["nll"] == pytest.approx(-np.mean(np.log(p_s[np.arange(4), LABELS])), rel=1e-5)
    # ECE: confidences .909 (right), .787 (right), .576 (wrong), .576 (wrong), in 15 equal-width bins
    confidence, correct = p_s.max(1), (p_s.argmax(1) == LABELS).astype(float)
    bins = np.minimum((confidence * ECE_BINS).astype(int), ECE_BINS - 1)
    ece = sum(np.sum(bins == b) / 4 * abs(correct[bins == b].mean() - confidence[bins == b].mean()) for b in set(bins))
    assert ece == pytest.approx((1 - 0.9094) / 4 + (1 - 0.7870) / 4 + 2 * 0.5761 / 4, abs=1e-3)
    assert out["ece"] == pytest.approx(ece, rel=1e-5)
    soft = softmax(STUDENT, SOFT_LABEL_TEMPERATURE)
    assert out["soft_label_entropy"] == pytest.approx(np.mean(-np.sum(soft * np.log(soft), 1)), rel=1e-5)
    assert out["soft_label_entropy"] <= math.log(3)


def test_without_a_teacher_fidelity_is_left_out_and_state_resets():
    metrics = base.TestMetrics(3)
    metrics.update(torch.tensor(STUDENT, dtype=torch.float32), torch.tensor(LABELS), None)
    first = metrics.compute()
    assert first["agreement"] is None and first["kl_teacher_student"] is None
    metrics.update(torch.tensor(STUDENT[:1], dtype=torch.float32), torch.tensor(LABELS[:1]), None)
    assert metrics.compute()["nll"] == pytest.approx(-math.log(softmax(STUDENT[:1])[0, 0]), rel=1e-5)


class SharedOutput(torch.nn.Module):
    """A network whose every call writes its output into one shared tensor and returns it: what a CUDA-graph
    replay under torch.compile(mode="reduce-overhead") does to the previous call's output."""

    def __init__(self, logits: np.ndarray, buffer: torch.Tensor) -> None:
        super().__init__()
        self.logits, self.buffer = torch.tensor(logits, dtype=torch.float32), buffer

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.buffer.copy_(self.logits[: images.shape[0]])


def test_the_test_step_reads_the_students_logits_before_another_network_call_can_overwrite_them():
    from kd_lightning.modules import ScratchStudent

    buffer = torch.zeros(STUDENT.shape)
    module = ScratchStudent(net={"arch": "resnet18", "num_classes": 3, "in_channels": 1}, optimizer={"lr": 0.1})
    module.net = SharedOutput(STUDENT, buffer)
    module.set_reference_teacher(SharedOutput(TEACHER, buffer))
    with pytest.warns(UserWarning, match="self.log"):  # no Trainer: the loss log is skipped, the metrics still update
        module.test_step((torch.zeros(4, 1, 8, 8), torch.tensor(LABELS)), 0)
    out = module.test_extra.compute()
    assert out["agreement"] == pytest.approx(0.5)  # 1.0 if the teacher's call had overwritten the student's logits
    p_s, p_t = softmax(STUDENT), softmax(TEACHER)
    assert out["kl_teacher_student"] == pytest.approx(np.mean(np.sum(p_t * (np.log(p_t) - np.log(p_s)), 1)), rel=1e-5)


class FixedLogits(torch.nn.Module):
    def __init__(self, logits: np.ndarray) -> None:
        super().__init__()
        self.logits = torch.tensor(logits, dtype=torch.float32)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits[: images.shape[0]]


def test_an_ensembles_soft_label_entropy_is_its_kd_targets():
    """The mean of the members' softmaxes at T = 4, what the students match; not the softmax at T = 4 of the
    ensemble's T = 1 prediction, log mean_k softmax(z_k) (2 confident members that disagree: 0.545 against 0.535)."""
    from kd_lightning.models import EnsembleTeacher
    from kd_lightning.modules import ScratchStudent

    module = ScratchStudent(net={"arch": "resnet18", "num_classes": 3, "in_channels": 1}, optimizer={"lr": 0.1})
    module.net = EnsembleTeacher([FixedLogits(STUDENT * 10), FixedLogits(TEACHER * 10)])
    with pytest.warns(UserWarning, match="self.log"):
        module.test_step((torch.zeros(4, 1, 8, 8), torch.tensor(LABELS)), 0)
    entropy = module.test_extra.compute()["soft_label_entropy"]
    target = (softmax(STUDENT * 10, SOFT_LABEL_TEMPERATURE) + softmax(TEACHER * 10, SOFT_LABEL_TEMPERATURE)) / 2
    assert entropy == pytest.approx(np.mean(-np.sum(target * np.log(target), 1)), rel=1e-5)
    at_one = np.log((softmax(STUDENT * 10) + softmax(TEACHER * 10)) / 2)
    wrong = softmax(at_one, SOFT_LABEL_TEMPERATURE)
    assert abs(entropy - np.mean(-np.sum(wrong * np.log(wrong), 1))) > 5e-3  # the two differ on this input
