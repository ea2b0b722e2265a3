"""Data factors inside real runs: what the run trains and is scored on, its identity, its teacher, its record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kd_lightning.run import teachers
from kd_lightning.run.config import ConfigError
from kd_lightning.run.identity import identity
from kd_lightning.tools import train
from tests.helpers import compose_cfg

FACTORS = ["dataset.factors.train_fraction=0.5", "dataset.factors.classes=[0,1,2]"]


def test_paper_data_keeps_its_identity_and_factors_change_run_and_teacher(fake_data_dir):
    plain = compose_cfg(["method=rkd"], data_dir=fake_data_dir)
    assert "factors" not in identity(plain)["dataset"]  # runs from before data factors keep their identity
    same = compose_cfg(
        ["method=rkd", "dataset.factors.factor_seed=5"], data_dir=fake_data_dir
    )  # seed of no active factor
    assert identity(same) == identity(plain)
    factored = compose_cfg(["method=rkd", *FACTORS], data_dir=fake_data_dir)
    assert identity(factored)["dataset"]["factors"] == {"classes": [0, 1, 2], "train_fraction": 0.5, "factor_seed": 0}
    assert teachers.teacher_key(factored) != teachers.teacher_key(plain)
    assert factored.student_model.num_classes == factored.teacher_model.num_classes == 3


@pytest.mark.slow
def test_a_factor_run_trains_on_the_factored_split_and_records_it(fake_data_dir, tmp_path):
    cfg = compose_cfg(
        ["method=rkd", *FACTORS, "complexity.measure=true", "recipe.batch_size=4"],
        data_dir=fake_data_dir,
        out_dir=tmp_path,
    )
    record = train.run(cfg)  # trains its own teacher (per factor level) first
    info = record["data_factors"]
    assert info["num_classes"] == 3 and sum(info["class_counts"]) == info["num_train"]
    assert info["identity"] == {"classes": [0, 1, 2], "train_fraction": 0.5, "factor_seed": 0}
    assert len(record["test_best"]["per_class_f1"]) == 3  # evaluation restricted to the same classes
    teacher_record = json.loads((Path(record["teacher"]["run_dir"]) / "results.json").read_text())
    assert teacher_record["data_factors"] == info  # teacher and student saw the same data
    measures = teacher_record["data_complexity"]["measures"]
    assert 0.0 <= measures["n3"] <= 1.0 and 0.0 <= measures["probe_acc"] <= 1.0 and measures["intrinsic_dim"] > 0
    assert record["teacher"]["key"] != teachers.teacher_key(
        compose_cfg(["method=rkd"], data_dir=fake_data_dir, out_dir=tmp_path)
    )
    state = torch.load(record["best_checkpoint"], weights_only=True)["state_dict"]
    assert state["net.fc.weight"].shape[0] == 3


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("dataset.factors.train_fraction=1.5", "dataset.factors.train_fraction"),
        ("dataset.factors.label_noise=1.0", "dataset.factors.label_noise"),
        ("dataset.factors.classes=[0,0,1]", "dataset.factors.classes"),
        ("dataset.factors.classes=[3]", "dataset.factors.classes"),
        ("dataset.factors.resolution=64", "dataset.factors.resolution"),
        ("dataset.factors.grayscale=true", "dataset.factors.grayscale"),
        ("dataset.factors.imbalance=0.5", "dataset.factors.imbalance"),
    ],
)
def test_bad_factor_values_stop_before_any_data_is_read(override, key, tmp_path):
    cfg = compose_cfg([override], data_dir=tmp_path / "no-data-here", out_dir=tmp_path)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        train.run(cfg)


def _fake_run(folder: Path, method: str, dataset_identity: dict, complexity_dir: Path) -> None:
    folder.mkdir(parents=True)
    record = {
        "dataset": "usps",
        "method": method,
        "seed": 0,
        "status": "completed",
        "test_best": {"acc": 0.9},
        "identity": {"dataset": dataset_identity},
        "config": {"recipe": {"name": "paper"}, "paths": {"complexity_dir": str(complexity_dir)}},
    }
    (folder / "results.json").write_text(json.dumps(record))


def test_complexity_measured_without_training_is_cached_and_reaches_runs_that_lack_it(fake_data_dir, tmp_path, capsys):
    """`python -m kd_lightning.measure_complexity` writes the cache teacher runs use; the report gives every run
    without its own measures those of its data configuration (and none to runs of other data)."""
    from kd_lightning.report.records import load_sweep
    from kd_lightning.run.identity import data_identity
    from kd_lightning.tools import measure_complexity

    args = [f"paths.data_dir={fake_data_dir}", f"paths.output_dir={tmp_path}", "dataset.factors.train_fraction=0.5"]
    assert measure_complexity.main(args) == 0
    first = capsys.readouterr().out
    assert "computed in" in first and "n3" in first
    entries = list((tmp_path / "complexity").glob("complexity-*.json"))
    assert len(entries) == 1
    entry = json.loads(entries[0].read_text())
    cfg = compose_cfg(["method=ikd", "dataset.factors.train_fraction=0.5"], data_dir=fake_data_dir, out_dir=tmp_path)
    assert entry["identity"] == data_identity(identity(cfg)["dataset"])
    # another method, batch size and augmentation train on the same data: the same entry, read back
    assert measure_complexity.main([*args, "method=rkd", "recipe.batch_size=8", "recipe.augmentation.rotation=0"]) == 0
    assert "(cache;" in capsys.readouterr().out and len(list((tmp_path / "complexity").glob("*.json"))) == 1

    sweep = tmp_path / "sweep"
    _fake_run(sweep / "usps" / "teacher" / "seed0", "teacher", identity(cfg)["dataset"], tmp_path / "complexity")
    other = compose_cfg(["dataset.factors.train_fraction=0.25"], data_dir=fake_data_dir)
    _fake_run(sweep / "usps" / "scratch" / "seed0", "scratch", identity(other)["dataset"], tmp_path / "complexity")
    runs = load_sweep(sweep).set_index("method")
    assert runs.loc["teacher", "complexity.n3"] == pytest.approx(entry["measures"]["n3"])
    assert runs.loc["teacher", "complexity.probe_acc"] == pytest.approx(entry["measures"]["probe_acc"])
    assert runs.loc["scratch", ["complexity.n3", "complexity.probe_acc"]].isna().all()


def test_measure_complexity_checks_its_config_before_reading_data(tmp_path):
    from kd_lightning.tools import measure_complexity

    with pytest.raises(ConfigError, match=r"dataset\.factors\.label_noise"):
        measure_complexity.measure([f"paths.data_dir={tmp_path / 'no-data-here'}", "dataset.factors.label_noise=1.5"])
