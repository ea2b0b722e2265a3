"""The scratch student (ResNet18 on labels only): the baseline every KD gain is measured against."""

from kd_lightning.modules.base import ClassifierModule


class ScratchStudent(ClassifierModule):
    """Same loss as the teacher, smaller network: the control arm of the study."""
