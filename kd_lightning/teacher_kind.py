"""What a teacher kind (conf/teacher/, conf/teacher_variant/) is called: one name for the records, the logs and the
report's conditions.

Torch-free, so the report can name conditions without importing the training stack.
"""

from __future__ import annotations


def label(
    members: int, arch: str, data: str = "same", variant: str | None = None, student_arch: str | None = None
) -> str:
    """``resnet50``, ``born-again resnet18`` (one member of the student's architecture; of another, the K = 1 point
    of an ensemble-size sweep: ``ensemble of 1 resnet50``), ``ensemble of 4 resnet18``; then in brackets
    ``full-data`` for a teacher trained on the full training split while its students train on a subsample, and
    the variant of its training (``patient``, ``bootstrap``, ...) when it has one."""
    born_again = members == 1 and student_arch in (None, arch)
    name = arch if members == 0 else f"born-again {arch}" if born_again else f"ensemble of {members} {arch}"
    tags = ["full-data"] * (data == "full") + [variant] * bool(variant)
    return name + (f" ({', '.join(tags)})" if tags else "")


def condition_label(
    members: int, arch: str, data: str = "same", variant: str | None = None, student_arch: str | None = None
) -> str | None:
    """The teacher's part of a report condition: None for the paper's design (one teacher on the run's seed and
    the students' data, trained by their recipe), so reports of earlier sweeps keep their labels; else
    :func:`label`."""
    paper = members == 0 and data == "same" and not variant
    return None if paper else label(members, arch, data, variant, student_arch)
