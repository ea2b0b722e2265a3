"""The methods a user can train: one YAML in ``conf/method/`` each, naming its LightningModule. Tools that list
methods (the bench, the grids, the report's fallback for records from before run identities) ask here, so a new
method is one module and one YAML.

A method's role comes from its class: ``publishes_teacher`` (the teacher), ``requires_teacher`` (a distilling
student); neither: a student trained on labels alone (the control every KD gain is measured against)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from kd_lightning import PROJECT_ROOT

METHOD_DIR = PROJECT_ROOT / "conf" / "method"


def _targets(dirs: Sequence[Path]) -> dict[str, str]:
    """Method name -> its ``_target_``, from every ``*.yaml`` of the folders (an earlier folder wins)."""
    from omegaconf import OmegaConf

    found: dict[str, str] = {}
    for folder in dirs:
        for file in sorted(Path(folder).glob("*.yaml")):
            found.setdefault(file.stem, str(OmegaConf.load(file)._target_))
    return found


def _order(dirs: Sequence[Path]) -> list[tuple[tuple, str, type]]:
    return _order_cached(tuple(Path(d).resolve() for d in dirs))


@functools.cache
def _order_cached(dirs: tuple[Path, ...]) -> list[tuple[tuple, str, type]]:
    """Read once per process: the report asks for roles many times."""
    from hydra.utils import get_class

    rows = []
    for name, target in _targets(dirs).items():
        cls = get_class(target)
        rows.append(((not cls.publishes_teacher, cls.requires_teacher, len(cls.__mro__), name), name, cls))
    return sorted(rows)


def available_methods(extra_dirs: Sequence[str | Path] = ()) -> tuple[str, ...]:
    """Every method of conf/method/ (and ``extra_dirs``, e.g. a Hydra search path's ``method/``): the teacher
    first, then students without a teacher, then those distilling from one; a method built on another after it."""
    return tuple(name for _, name, _ in _order([*map(Path, extra_dirs), METHOD_DIR]))


def distilling_methods(extra_dirs: Sequence[str | Path] = ()) -> tuple[str, ...]:
    """The methods whose students learn from a teacher (``requires_teacher``), in :func:`available_methods`' order."""
    return tuple(name for _, name, cls in _order([*map(Path, extra_dirs), METHOD_DIR]) if cls.requires_teacher)


def teacher_methods(extra_dirs: Sequence[str | Path] = ()) -> tuple[str, ...]:
    """The methods that train a teacher (``publishes_teacher``)."""
    return tuple(name for _, name, cls in _order([*map(Path, extra_dirs), METHOD_DIR]) if cls.publishes_teacher)


def control_methods(extra_dirs: Sequence[str | Path] = ()) -> tuple[str, ...]:
    """The students trained on labels alone (neither publishing nor requiring a teacher)."""
    rows = _order([*map(Path, extra_dirs), METHOD_DIR])
    return tuple(name for _, name, cls in rows if not cls.publishes_teacher and not cls.requires_teacher)
