"""The distillation losses, in one place.

Eq. 4 of the paper: ``(1 - alpha) * CE(y, s) + alpha * T^2 * KL(softmax(t / T) || softmax(s / T))``.
The CE term lives in the modules; this file holds the two terms specific to distillation.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """``T^2 * KL(softmax(teacher/T) || softmax(student/T))``, averaged over the batch.

    ``batchmean`` (sum over classes, mean over samples) is the true KL per sample; the default
    ``mean`` reduction would also divide by the number of classes. The ``T^2`` factor keeps the
    gradient scale independent of ``T`` (Hinton et al., 2015). Computed in fp32 whatever the autocast
    precision: softmax at high ``T`` of bf16 logits loses most of the dark knowledge.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    with torch.autocast(student_logits.device.type, enabled=False):  # fp32 under bf16/fp16 autocast too
        dtype = torch.promote_types(torch.promote_types(student_logits.dtype, teacher_logits.dtype), torch.float32)
        return _kl_times_t2(student_logits.to(dtype), teacher_logits.to(dtype), temperature)


def _kl_times_t2(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def feature_matching_loss(student_features: Mapping[str, Tensor], teacher_features: Mapping[str, Tensor]) -> Tensor:
    """Sum over stages of the MSE between (adapted) student and teacher feature maps (FitNets hints)."""
    if student_features.keys() != teacher_features.keys():
        raise ValueError(f"stages differ: {sorted(student_features)} vs {sorted(teacher_features)}")
    losses = [F.mse_loss(student_features[k], teacher_features[k]) for k in student_features]
    return torch.stack(losses).sum()
