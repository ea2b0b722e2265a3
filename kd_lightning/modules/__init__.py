"""The four methods of the study, one LightningModule each."""

from kd_lightning.modules.base import ClassifierModule, NonFiniteLossError
from kd_lightning.modules.ikd import IKDStudent
from kd_lightning.modules.rkd import RKDStudent
from kd_lightning.modules.scratch import ScratchStudent
from kd_lightning.modules.teacher import TeacherModule

__all__ = ["ClassifierModule", "IKDStudent", "NonFiniteLossError", "RKDStudent", "ScratchStudent", "TeacherModule"]
