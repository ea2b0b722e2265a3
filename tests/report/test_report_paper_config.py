"""Paper-comparable means paper-configured: the run's resolved config values, not the recipe's name."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from kd_lightning import PROJECT_ROOT, report
from kd_lightning.report import paper as paper_config
from kd_lightning.report.paper import METHODS
from tests.report.test_report import paper_config as config_for

CONF = PROJECT_ROOT / "conf"


#: what section 4.1 and Eq. 4 of the paper state (the rest are the project's documented defaults)
STATED = {
    "recipe.optimizer._target_": "torch.optim.SGD",
    "recipe.optimizer.lr": 0.001,
    "recipe.augmentation.rotation": 15,
    "recipe.augmentation.hflip": 0.5,
    "recipe.augmentation.vflip": 0.5,
    "dataset.val_fraction": 0.7,
}
STATED_EPOCHS = {"teacher": 20, "scratch": 10, "rkd": 10, "ikd": 10}


def test_the_protocol_composed_from_conf_is_the_papers():
    """The report types no protocol value: it composes recipe=paper with each method; the composed values
    must be the paper's stated ones, with the networks of Table 3 and Eq. 4's alpha and tau."""
    for method in METHODS:
        ref = paper_config.reference_values(method)
        assert {k: ref[k] for k in STATED} == STATED and ref["trainer.max_epochs"] == STATED_EPOCHS[method]
        assert paper_config.paper_epochs(method) == STATED_EPOCHS[method]
        own = "teacher_model" if method == "teacher" else "student_model"
        assert (
            ref[f"{own}.arch"] == ("resnet50" if method == "teacher" else "resnet18")
            and ref[f"{own}.stem"] == "imagenet"
        )
        assert ("teacher_model.arch" in ref) == (
            method in ("teacher", "rkd", "ikd")
        )  # a scratch run's teacher plays no part
        if method in ("rkd", "ikd"):
            assert ref["method.alpha"] == 0.7 and ref["method.temperature"] == 4.0
    assert paper_config.paper_epochs("crd") is None


def test_paper_configured_run_has_no_differences():
    for method in METHODS:
        assert paper_config.paper_differences(config_for(method), method) == []


def test_name_does_not_matter_values_do():
    renamed = config_for("rkd", **{"recipe.name": "my_copy"})
    assert paper_config.paper_differences(renamed, "rkd") == []


@pytest.mark.parametrize(
    "method,path,value,expected",
    [
        ("rkd", "trainer.max_epochs", 3, "trainer.max_epochs=3 (paper 10)"),
        ("rkd", "method.alpha", 0.5, "method.alpha=0.5 (paper 0.7)"),
        ("rkd", "method.temperature", 2, "method.temperature=2 (paper 4.0)"),
        ("ikd", "method.feature_weight", 0.1, "method.feature_weight=0.1 (paper 1.0)"),
        ("ikd", "method.stages", ["layer4"], "method.stages=[layer4] (paper [layer1,layer2,layer3,layer4])"),
        ("scratch", "recipe.batch_size", 192, "recipe.batch_size=192 (paper 64)"),
        ("scratch", "recipe.optimizer.lr", 0.1, "recipe.optimizer.lr=0.1 (paper 0.001)"),
        (
            "scratch",
            "recipe.optimizer._target_",
            "torch.optim.AdamW",
            "recipe.optimizer._target_=torch.optim.AdamW (paper torch.optim.SGD)",
        ),
        (
            "scratch",
            "recipe.scheduler",
            {"_target_": "torch.optim.lr_scheduler.OneCycleLR"},
            "recipe.scheduler=torch.optim.lr_scheduler.OneCycleLR (paper none)",
        ),
        ("teacher", "recipe.augmentation.vflip", 0.0, "recipe.augmentation.vflip=0.0 (paper 0.5)"),
        (
            "teacher",
            "recipe.augmentation.affine",
            {"degrees": 10},
            'recipe.augmentation.affine={"degrees": 10} (paper: none)',
        ),
        ("teacher", "teacher_model.stem", "cifar", "teacher_model.stem=cifar (paper imagenet)"),
        ("scratch", "student_model.arch", "resnet34", "student_model.arch=resnet34 (paper resnet18)"),
        ("ikd", "teacher_model.arch", "resnet101", "teacher_model.arch=resnet101 (paper resnet50)"),
        ("ikd", "trainer.limit_train_batches", 5, "trainer.limit_train_batches=5 (paper: all batches)"),
        ("ikd", "trainer.limit_val_batches", 0.5, "trainer.limit_val_batches=0.5 (paper: all batches)"),
        ("ikd", "trainer.limit_test_batches", 2, "trainer.limit_test_batches=2 (paper: all batches)"),
        ("ikd", "trainer.max_steps", 100, "trainer.max_steps=100 (paper: no limit)"),
        ("scratch", "dataset.val_fraction", 0.5, "dataset.val_fraction=0.5 (paper 0.7)"),
        ("rkd", "dataset.factors.label_noise", 0.2, "dataset.factors.label_noise=0.2 (paper 0.0)"),
        ("rkd", "dataset.factors.train_fraction", 0.1, "dataset.factors.train_fraction=0.1 (paper 1.0)"),
        ("ikd", "dataset.factors.resolution", 8, "dataset.factors.resolution=8 (paper none)"),
        ("teacher", "dataset.factors.classes", [0, 1], "dataset.factors.classes=[0,1] (paper none)"),
        ("scratch", "dataset.factors.grayscale", True, "dataset.factors.grayscale=True (paper False)"),
        ("scratch", "dataset.factors.imbalance", 10.0, "dataset.factors.imbalance=10.0 (paper 1.0)"),
    ],
)
def test_one_changed_value_is_named(method, path, value, expected):
    assert paper_config.paper_differences(config_for(method, **{path: value}), method) == [expected]


def test_data_factors_off_are_the_paper_data():
    """conf/factors/none.yaml is the paper's data: a record carrying it is paper-configured."""
    if not (CONF / "factors" / "none.yaml").is_file():
        pytest.skip("conf/factors/none.yaml not in this checkout")
    factors = OmegaConf.to_container(OmegaConf.load(CONF / "factors" / "none.yaml"))
    config = config_for("ikd")
    config["dataset"]["factors"] = factors
    assert paper_config.paper_differences(config, "ikd") == []
    for path, value in paper_config.PAPER_DATA_FACTORS.items():
        assert factors[path.split(".")[-1]] == value


def test_values_that_leave_the_protocol_unchanged():
    same = config_for(
        "ikd",
        **{
            "trainer.limit_train_batches": 1.0,
            "recipe.optimizer.nesterov": False,
            "recipe.augmentation.crop": None,
            "method.temperature": 4,
            "student_model.stem": "imagenet",
        },
    )
    assert paper_config.paper_differences(same, "ikd") == []
    # a teacher run's student network and a scratch run's teacher network play no part
    assert paper_config.paper_differences(config_for("teacher", **{"student_model.arch": "resnet34"}), "teacher") == []
    assert paper_config.paper_differences(config_for("scratch", **{"teacher_model.arch": "resnet101"}), "scratch") == []


def test_missing_config():
    assert paper_config.paper_differences({}, "rkd") == ["config not recorded"]
    partial = {"recipe": {"name": "paper"}, "trainer": {"max_epochs": 10}}
    assert "recipe.batch_size not recorded (paper 64)" in paper_config.paper_differences(partial, "rkd")


def _write(root: Path, method: str, seed: int, acc: float, **overrides) -> None:
    run = root / "usps" / method / f"seed{seed}"
    run.mkdir(parents=True)
    record = {
        "status": "completed",
        "dataset": "usps",
        "method": method,
        "seed": seed,
        "config": config_for(method, **overrides),
        "test_best": {"acc": acc},
        "test_last": {"acc": acc},
    }
    (run / "results.json").write_text(json.dumps(record))


def test_one_changed_run_takes_the_paper_columns_off_its_rows(tmp_path):
    for seed in range(2):
        _write(tmp_path, "teacher", seed, 0.90 + 0.01 * seed)
        _write(tmp_path, "scratch", seed, 0.86 + 0.01 * seed)
        # seed 1's RKD student used alpha 0.5: every row holding RKD loses the paper's numbers
        _write(tmp_path, "rkd", seed, 0.88 + 0.01 * seed, **({"method.alpha": 0.5} if seed else {}))
    runs = report.load_sweep(tmp_path)
    table5 = report.comparison_table(runs, report.TABLES[0]).set_index("dataset").loc["usps"]
    table6 = report.comparison_table(runs, report.TABLES[1]).set_index("dataset").loc["usps"]
    assert table5["paper_comparable"] and table5["paper_teacher"] == 90.22
    assert table5["differences"] == "paper-configured"
    assert not table6["paper_comparable"] and math.isnan(table6["paper_rkd"]) and math.isnan(table6["paper_diff"])
    assert table6["differences"] == "rkd: method.alpha=0.5 (paper 0.7)"  # only the RKD arm differs
    summary = report.summary_table(runs).set_index("method")
    assert summary.loc["scratch", "paper"] == 86.07 and math.isnan(summary.loc["rkd", "paper"])
    text = report.write_report(tmp_path).read_text()
    assert "method.alpha=0.5 (paper 0.7)" in text
