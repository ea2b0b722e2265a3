"""The teacher (ResNet50 in the paper): plain cross-entropy training."""

from kd_lightning.modules.base import ClassifierModule


class TeacherModule(ClassifierModule):
    """Trains the teacher on labels alone; its best-validation checkpoint is what students distil from."""

    publishes_teacher = True
