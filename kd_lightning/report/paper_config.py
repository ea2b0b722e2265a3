"""What "trained the paper's way" means, as values, and which of them a run's resolved config differs in.

A run is set beside the paper's numbers only when the values below equal those in the run's
``config`` (the full resolved Hydra config in results.json), whatever the recipe is called: a recipe
named ``paper`` with ``trainer.max_epochs=3`` is not the paper's protocol, and a renamed copy of the
paper recipe is. These are the values of ``conf/recipe/paper.yaml``, ``conf/method/{rkd,ikd}.yaml`` and
``conf/model/*.yaml`` (the paper's section 4.1 plus this project's documented defaults for what the
paper leaves unstated); ``tests/test_report_paper_config.py`` checks that the two agree.
"""

from __future__ import annotations

import json
import math
from typing import Any

from kd_lightning.paper import PAPER_EPOCHS

#: recipe and split values (paths into the resolved config)
PAPER_RECIPE_VALUES: dict[str, Any] = {
    "recipe.batch_size": 64,
    "recipe.optimizer._target_": "torch.optim.SGD",
    "recipe.optimizer.lr": 0.001,
    "recipe.optimizer.momentum": 0.9,
    "recipe.optimizer.weight_decay": 0.0,
    "recipe.scheduler": None,
    "recipe.augmentation.rotation": 15,
    "recipe.augmentation.hflip": 0.5,
    "recipe.augmentation.vflip": 0.5,
    "dataset.val_fraction": 0.7,
}
#: sub-configs in which any key beyond the reference ones must be off (None, False, 0, empty)
CLOSED_GROUPS = ("recipe.optimizer", "recipe.augmentation")

#: method hyperparameters (Eq. 4: alpha = 0.7, tau = 4; IKD's stages and weight are this project's defaults)
PAPER_METHOD_VALUES: dict[str, dict[str, Any]] = {
    "teacher": {},
    "scratch": {},
    "rkd": {"method.alpha": 0.7, "method.temperature": 4.0},
    "ikd": {"method.alpha": 0.7, "method.temperature": 4.0, "method.feature_weight": 1.0,
            "method.stages": ["layer1", "layer2", "layer3", "layer4"]},
}

#: networks (Table 3: torchvision ResNet50 teacher, ResNet18 student, ImageNet stem), by the method that uses them
_STUDENT = {"student_model.arch": "resnet18", "student_model.stem": "imagenet"}
_TEACHER = {"teacher_model.arch": "resnet50", "teacher_model.stem": "imagenet"}
PAPER_NETWORK_VALUES: dict[str, dict[str, Any]] = {
    "teacher": _TEACHER, "scratch": _STUDENT, "rkd": {**_STUDENT, **_TEACHER}, "ikd": {**_STUDENT, **_TEACHER},
}

#: trainer limits: every batch of every split, no step or time limit (max_epochs is PAPER_EPOCHS[method])
FULL_BATCHES = ("trainer.limit_train_batches", "trainer.limit_val_batches", "trainer.limit_test_batches")
NO_LIMIT = {"trainer.max_steps": (-1, None), "trainer.max_time": (None,)}

#: data factors (conf/factors/none.yaml, mounted at dataset.factors): the paper's data has every factor off.
#: Optional: records from before data factors existed do not carry them.
PAPER_DATA_FACTORS: dict[str, Any] = {
    "dataset.factors.train_fraction": 1.0,
    "dataset.factors.label_noise": 0.0,
    "dataset.factors.classes": None,
    "dataset.factors.resolution": None,
    "dataset.factors.grayscale": False,
    "dataset.factors.imbalance": 1.0,
}

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
        return isinstance(value, (int, float)) and math.isclose(float(value), float(reference), rel_tol=1e-9, abs_tol=1e-12)
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


def reference_values(method: str) -> dict[str, Any]:
    """Every checked config path of a method's paper run and its value (max_epochs included)."""
    return {**PAPER_RECIPE_VALUES, **PAPER_METHOD_VALUES.get(method, {}), **PAPER_NETWORK_VALUES.get(method, {}),
            "trainer.max_epochs": PAPER_EPOCHS.get(method)}


def paper_differences(config: dict[str, Any] | None, method: str | None) -> list[str]:
    """How a run's resolved config differs from the paper's protocol, e.g. ``trainer.max_epochs=3 (paper 10)``;
    empty when the run is paper-configured. Values a record does not hold count as differences."""
    if not isinstance(config, dict) or not config:
        return ["config not recorded"]
    if method not in PAPER_EPOCHS:
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
                if path not in PAPER_RECIPE_VALUES and not _off(value):
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
