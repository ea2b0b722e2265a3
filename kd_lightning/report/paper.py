"""The paper beside the sweep: its reported numbers, its tables and claims, display labels, and its protocol, with
which values a run's resolved config differs in. (Its complexity ranking orders every table: ``runs.py`` reads it.)

Numbers: test accuracy in percent (Tables 5, 6 and 7 of the paper), one value per dataset and method;
the paper reports single numbers (no seeds, spread or intervals).

Protocol: a run is set beside the paper's numbers only when its resolved ``config`` (in results.json)
equals the paper's at every key of :data:`PROTOCOL_KEYS`, whatever the recipe is called: a recipe named
``paper`` with ``trainer.max_epochs=3`` is not the paper's protocol, and a renamed copy of it is. The
reference values are composed from ``conf/`` (``recipe=paper``, the method's yaml, the model yamls):
the paper's section 4.1 plus this project's documented defaults for what it leaves unstated, typed once.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from kd_lightning.run.compose import compose_run_config

#: the paper's printed numbers, methods, labels, tables and claims (paper.yaml): report code names no method
PAPER: dict[str, Any] = OmegaConf.to_container(OmegaConf.load(Path(__file__).with_name("paper.yaml")))
#: the paper's methods in its tables' order
METHODS: tuple[str, ...] = tuple(PAPER["methods"])
PAPER_ACCURACY: dict[str, dict[str, float]] = PAPER["accuracy"]
DATASET_LABELS: dict[str, str] = PAPER["datasets"]
METHOD_LABELS: dict[str, str] = PAPER["methods"]
#: claim 1's students, claim 2's (treatment, control) and claim 3's student
CLAIM_STUDENTS: tuple[str, ...] = tuple(PAPER["claims"]["students"])
CLAIM_BEATS: tuple[str, str] = tuple(PAPER["claims"]["beats"])
CLAIM_BEATS_TEACHER: str = PAPER["claims"]["beats_teacher"]


@dataclass(frozen=True)
class Comparison:
    """A two-arm table; ``diff = treatment - control``, paired by seed."""

    key: str
    title: str
    first: str  # column order as the title reads
    second: str
    treatment: str
    control: str


#: the paper's Tables 5-7 and the two comparisons behind claims 2 and 3
TABLES: tuple[Comparison, ...] = tuple(Comparison(*row) for row in PAPER["comparisons"])


def paper_accuracy(dataset: str, method: str) -> float | None:
    """The paper's test accuracy (%) for one cell, or None where the paper has no such cell."""
    return PAPER_ACCURACY.get(dataset, {}).get(method)


def paper_diffs(treatment: str, control: str) -> dict[str, float]:
    """The paper's ``treatment - control`` (pp) on each dataset it printed both for, in its complexity order."""
    cells = {d: (paper_accuracy(d, treatment), paper_accuracy(d, control)) for d in DATASET_LABELS}
    return {d: t - c for d, (t, c) in cells.items() if t is not None and c is not None}


def dataset_label(dataset: Any) -> str:
    return DATASET_LABELS.get(dataset, str(dataset))


def method_label(method: Any) -> str:
    return METHOD_LABELS.get(method, str(method))


#: the recipe and split keys that define the paper's protocol (paths into the resolved config)
PROTOCOL_KEYS: tuple[str, ...] = tuple(
    "recipe.batch_size recipe.optimizer._target_ recipe.optimizer.lr recipe.optimizer.momentum "
    "recipe.optimizer.weight_decay recipe.scheduler recipe.augmentation.rotation "
    "recipe.augmentation.hflip recipe.augmentation.vflip dataset.val_fraction trainer.max_epochs".split()
)
#: the method's own hyperparameters (Eq. 4: alpha, tau; IKD's stages and weight), where the method has them
METHOD_KEYS: tuple[str, ...] = ("method.alpha", "method.temperature", "method.feature_weight", "method.stages")
#: sub-configs in which any key beyond the reference ones must be off (None, False, 0, empty)
CLOSED_GROUPS = ("recipe.optimizer", "recipe.augmentation")
#: trainer limits: every batch of every split, no step or time limit
FULL_BATCHES = ("trainer.limit_train_batches", "trainer.limit_val_batches", "trainer.limit_test_batches")
NO_LIMIT = {"trainer.max_steps": (-1, None), "trainer.max_time": (None,)}
#: data factors (conf/factors/none.yaml): the paper's data has every factor off; records from before data
#: factors existed do not carry them. (factor_seed draws nothing while every factor is off.)
PAPER_DATA_FACTORS: dict[str, Any] = {
    "dataset.factors.train_fraction": 1.0,
    "dataset.factors.label_noise": 0.0,
    "dataset.factors.classes": None,
    "dataset.factors.resolution": None,
    "dataset.factors.grayscale": False,
    "dataset.factors.imbalance": 1.0,
}


@functools.cache
def _paper_run(method: str) -> dict[str, Any]:
    """The resolved config of the paper's run of ``method`` (``recipe=paper``), composed from ``conf/``."""
    return OmegaConf.to_container(compose_run_config(["recipe=paper", f"method={method}"]), resolve=True)


def paper_epochs(method: str) -> int | None:
    """Epochs of the paper's run of ``method`` (conf/recipe/paper.yaml); None for an unknown method."""
    return _paper_run(method)["trainer"]["max_epochs"] if method in METHODS else None


def reference_values(method: str) -> dict[str, Any]:
    """Every checked config path of a method's paper run and its value: the protocol, the method's
    hyperparameters, and the networks it uses (its own, and the teacher's when it distils)."""
    run = _paper_run(method)
    keys = [*PROTOCOL_KEYS, *(k for k in METHOD_KEYS if _get(run, k) is not _MISSING)]
    own = "teacher_model" if run["method"]["net"] == run["teacher_model"] else "student_model"
    models = [own] + (["teacher_model"] if own == "student_model" and "alpha" in run["method"] else [])
    keys += [f"{m}.{k}" for m in models for k in ("arch", "stem")]
    return {k: _get(run, k) for k in keys}


_MISSING = object()


def _get(config: dict[str, Any], path: str) -> Any:
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _same(value: Any, reference: Any) -> bool:
    if isinstance(reference, bool) or reference is None or isinstance(value, bool):
        return value is reference if reference is None else value == reference and type(value) is type(reference)
    if isinstance(reference, (int, float)):
        return isinstance(value, (int, float)) and math.isclose(
            float(value), float(reference), rel_tol=1e-9, abs_tol=1e-12
        )
    if isinstance(reference, (list, tuple)):
        return isinstance(value, (list, tuple)) and len(value) == len(reference) and all(map(_same, value, reference))
    return value == reference


def _show(value: Any) -> str:
    if value is _MISSING:
        return "not recorded"
    if value is None:
        return "none"
    if isinstance(value, dict):
        return str(value.get("_target_") or json.dumps(value, sort_keys=True, default=str))
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


def _off(value: Any) -> bool:
    return value is None or value is False or (isinstance(value, (int, float)) and value == 0) or value in ("", [], {})


def _is_full_batches(limit: Any) -> bool:
    """Lightning: None or the float 1.0 means every batch; an int is a batch count."""
    return limit is None or (isinstance(limit, float) and not isinstance(limit, bool) and limit == 1.0)


def paper_differences(config: dict[str, Any] | None, method: str | None) -> list[str]:
    """How a run's resolved config differs from the paper's protocol, e.g. ``trainer.max_epochs=3 (paper 10)``;
    empty when the run is paper-configured. Values a record does not hold count as differences."""
    if not isinstance(config, dict) or not config:
        return ["config not recorded"]
    if method not in METHODS:
        return [f"method {method!r} is not one of the paper's"]
    out = []
    for path, reference in reference_values(method).items():
        value = _get(config, path)
        if path == "trainer.max_epochs" and value is _MISSING:
            out.append(f"{path} not recorded (paper {reference})")
        elif value is _MISSING and path not in ("recipe.scheduler",):
            out.append(f"{path} not recorded (paper {_show(reference)})")
        elif not _same(None if value is _MISSING else value, reference):
            out.append(f"{path}={_show(value)} (paper {_show(reference)})")
    for group in CLOSED_GROUPS:
        node = _get(config, group)
        if isinstance(node, dict):
            for key, value in node.items():
                path = f"{group}.{key}"
                if path not in PROTOCOL_KEYS and not _off(value):
                    out.append(f"{path}={_show(value)} (paper: none)")
    for path in FULL_BATCHES:
        value = _get(config, path)
        if value is not _MISSING and not _is_full_batches(value):
            out.append(f"{path}={_show(value)} (paper: all batches)")
    for path, reference in PAPER_DATA_FACTORS.items():
        value = _get(config, path)
        if value is not _MISSING and not _same(value, reference):
            out.append(f"{path}={_show(value)} (paper {_show(reference)})")
    for path, allowed in NO_LIMIT.items():
        value = _get(config, path)
        if value is not _MISSING and not any(_same(value, a) for a in allowed):
            out.append(f"{path}={_show(value)} (paper: no limit)")
    return out
