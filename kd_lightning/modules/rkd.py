"""Response-based KD (RKD, Hinton et al.): not relational KD. Loss: Eq. 4 of the paper."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from kd_lightning.losses import kd_loss
from kd_lightning.models import distillation_logits
from kd_lightning.modules.base import ClassifierModule

TEACHER_PREFIX = "teacher."


class RKDStudent(ClassifierModule):
    """``(1 - alpha) * CE + alpha * T^2 * KL(teacher/T || student/T)`` against a frozen teacher.

    The teacher is frozen for the whole run: no gradients, not in the optimizer, run in inference
    mode, always in eval mode (so its BatchNorm statistics never move, even when Lightning calls
    ``.train()`` on this module), and left out of this module's checkpoints (it has its own).

    The teacher is one network or a :class:`~kd_lightning.models.EnsembleTeacher`, whose KD target is the mean of
    its members' probabilities at ``T``: ``KL(mean_k softmax(t_k/T) || softmax(s/T))``.
    """

    requires_teacher = True

    def __init__(
        self,
        net: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        teacher: nn.Module,
        alpha: float = 0.7,
        temperature: float = 4.0,
        scheduler: Mapping[str, Any] | None = None,
        top_k: Sequence[int] = (1,),
        dataset: str | None = None,
        teacher_info: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(net=net, optimizer=optimizer, scheduler=scheduler, top_k=top_k, dataset=dataset)
        self.alpha = alpha
        self.temperature = temperature
        self.teacher = teacher.eval().requires_grad_(False)

    @property
    def reference_teacher(self) -> nn.Module:
        return self.teacher

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()
        return self

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (p for name, p in self.named_parameters() if not name.startswith(TEACHER_PREFIX) and p.requires_grad)

    def loss_terms(self, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        logits = self.net(images)
        teacher_logits = distillation_logits(self.teacher, images, self.temperature)
        return logits, {
            "ce": (1.0 - self.alpha) * F.cross_entropy(logits, labels),
            "kd": self.alpha * kd_loss(logits, teacher_logits, self.temperature),
        }

    # -- keep the teacher out of student checkpoints -------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)  # the base refuses weights a non-finite loss has touched
        checkpoint["state_dict"] = {
            k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(TEACHER_PREFIX)
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Put the (unchanged) teacher back so strict loading still checks every student key.
        checkpoint["state_dict"].update({TEACHER_PREFIX + k: v for k, v in self.teacher.state_dict().items()})
