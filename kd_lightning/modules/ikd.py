"""Intermediate KD (IKD): RKD plus FitNets-style feature matching at chosen stages.

Forward hooks (``kd_lightning/hooks.py``) read the stage outputs of both unmodified torchvision
networks; a 1x1 convolution per stage maps student channels to teacher channels, and the MSE between
adapted student and teacher maps, summed over stages and weighted by ``feature_weight``, is added to
the RKD loss. Adapters train jointly with the student from the first step; there is no separate
hint-pretraining stage (FitNets' stage 1), as in most KD codebases. With an ensemble teacher the hints come
from member 0's stages (:func:`kd_lightning.models.hint_network`) and the soft labels from the whole ensemble.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from kd_lightning.hooks import FeatureTap
from kd_lightning.losses import feature_matching_loss
from kd_lightning.models import hint_network
from kd_lightning.modules.rkd import RKDStudent
from kd_lightning.seeding import isolated_rng


def adapter_key(stage: str) -> str:
    return stage.replace(".", "__")  # ModuleDict keys cannot contain dots


@torch.no_grad()
def probe_feature_shapes(model: nn.Module, tap: FeatureTap, input_shape: Sequence[int]) -> dict[str, torch.Size]:
    """Shapes (C, H, W) of each tapped stage for one input, found by a forward pass in eval mode."""
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, *input_shape))
        return {k: v.shape[1:] for k, v in tap.pop().items()}
    finally:
        model.train(was_training)


class IKDStudent(RKDStudent):
    def __init__(
        self,
        net: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        teacher: nn.Module,
        input_shape: Sequence[int],
        alpha: float = 0.7,
        temperature: float = 4.0,
        feature_weight: float = 1.0,
        stages: Sequence[str] = ("layer1", "layer2", "layer3", "layer4"),
        scheduler: Mapping[str, Any] | None = None,
        top_k: Sequence[int] = (1,),
        dataset: str | None = None,
        teacher_info: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            net=net,
            optimizer=optimizer,
            teacher=teacher,
            alpha=alpha,
            temperature=temperature,
            scheduler=scheduler,
            top_k=top_k,
            dataset=dataset,
            teacher_info=teacher_info,
        )
        self.feature_weight = feature_weight
        self.stages = list(stages)
        self.student_tap = FeatureTap(self.net, self.stages)
        hints = hint_network(self.teacher)
        self.teacher_tap = FeatureTap(hints, self.stages)
        student_shapes = probe_feature_shapes(self.net, self.student_tap, input_shape)
        teacher_shapes = probe_feature_shapes(hints, self.teacher_tap, input_shape)
        adapters = {}
        for stage in self.stages:  # shapes checked first, then initialised below on a private stream
            s, t = student_shapes[stage], teacher_shapes[stage]
            if s[1:] != t[1:]:
                raise ValueError(
                    f"method.stages: stage {stage!r} gives student maps {tuple(s)} but teacher maps {tuple(t)}; "
                    "spatial sizes must match (use the same model.stem for teacher and student)."
                )
            adapters[adapter_key(stage)] = (s[0], t[0])
        # the adapters' initialisation must not move the global stream the data and the rest of
        # training draw from: the IKD student of a seed stays paired with its scratch and RKD twins
        with isolated_rng():
            self.adapters = nn.ModuleDict(
                {k: nn.Conv2d(cin, cout, kernel_size=1, bias=False) for k, (cin, cout) in adapters.items()}
            )

    def loss_terms(self, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        self.student_tap.attach()  # no-op unless a teardown removed them
        self.teacher_tap.attach()
        logits, terms = super().loss_terms(images, labels)  # runs both forwards, filling the taps
        student, teacher = self.student_tap.pop(), self.teacher_tap.pop()
        adapted = {stage: self.adapters[adapter_key(stage)](student[stage]) for stage in self.stages}
        terms["feat"] = self.feature_weight * feature_matching_loss(adapted, teacher)
        return logits, terms

    def validation_step(self, batch, batch_idx):
        super().validation_step(batch, batch_idx)
        self.student_tap.features.clear()  # evaluation needs no features; free them at once

    def test_step(self, batch, batch_idx):
        super().test_step(batch, batch_idx)
        self.student_tap.features.clear()
        self.teacher_tap.features.clear()

    def teardown(self, stage: str) -> None:
        """Remove the forward hooks when Lightning is done with the module (after fit, after test):
        the networks (the registry's teacher above all) run untapped afterwards; a new fit re-attaches."""
        super().teardown(stage)
        self.remove_hooks()

    def remove_hooks(self) -> None:
        self.student_tap.remove()
        self.teacher_tap.remove()
