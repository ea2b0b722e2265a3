"""A fifth method is one module and one YAML (issue 30): written here, outside the package and conf/, it trains
through the entry point (``--config-dir`` adds its YAML to Hydra's search path), appears in the report's tables,
figures and claims from what its records say (no file of the report names it), is in the bench's method list
(kd_lightning/methods.py) when its folder is searched, and is swept by the grids (``method: glob(*)``) with no grid
edit."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kd_lightning import PROJECT_ROOT, methods
from kd_lightning.report.figures import (
    plot_accuracy,
    plot_gain_over_scratch,
    plot_gain_vs_complexity,
    plot_students_vs_teacher,
)
from kd_lightning.report.records import load_runs
from kd_lightning.report.runs import control_methods, distilling_methods, student_methods
from kd_lightning.report.tables import student_comparisons, summary_table
from kd_lightning.report.writer import write_report
from kd_lightning.tools import train
from tests.helpers import FAST

pytestmark = pytest.mark.slow

MODULE = '''
from kd_lightning.modules import RKDStudent


class ToyStudent(RKDStudent):
    """Response-based KD with a softer target: a method the project does not ship."""
'''

YAML = """\
_target_: toy_kd_method.ToyStudent
name: toy
net: ${student_model}
alpha: 0.5
temperature: 2.0
"""


@pytest.fixture
def toy_method(tmp_path: Path, monkeypatch) -> Path:
    """The module on sys.path and the YAML in a config folder of its own (``<dir>/method/toy.yaml``)."""
    code, conf = tmp_path / "code", tmp_path / "conf"
    code.mkdir()
    (conf / "method").mkdir(parents=True)
    (code / "toy_kd_method.py").write_text(MODULE)
    (conf / "method" / "toy.yaml").write_text(YAML)
    monkeypatch.syspath_prepend(str(code))
    yield conf
    sys.modules.pop("toy_kd_method", None)


def test_a_fifth_method_trains_and_is_reported_and_benchmarked(toy_method, tmp_path, fake_data_dir, monkeypatch):
    out = tmp_path / "outputs"
    args = [
        "--config-dir",  # argparse: options before the overrides
        str(toy_method),
        "-m",
        "dataset=usps",
        "method=teacher,scratch,toy",
        "seed=0,1",
        f"paths.data_dir={fake_data_dir}",
        f"paths.output_dir={out}",
        *FAST,
        "trainer.limit_train_batches=1",
    ]
    monkeypatch.setattr(sys, "argv", ["kd_lightning.train", *args])
    train.main()

    runs = load_runs(out)
    assert set(runs["method"]) == {"teacher", "scratch", "toy"} and (runs["status"] == "completed").all()
    assert distilling_methods(runs) == ["toy"] and control_methods(runs) == ["scratch"]
    assert student_methods(runs) == ["scratch", "toy"]

    report = write_report(out, tmp_path / "report")
    tables = report.parent / "tables"
    assert list(pd.read_csv(tables / "summary_best.csv")["method"]) == ["teacher", "scratch", "toy"]
    assert list(pd.read_csv(tables / "gap_closed_best.csv")["student"]) == ["toy"]
    assert "toy" in set(pd.read_csv(tables / "fidelity_best.csv")["method"])
    assert list(pd.read_csv(tables / "provenance.csv")["method"].unique()) == ["toy"]
    # claim 1 (each distilling student's gain over the control grows with complexity) tests it with the paper's
    claims = json.loads((report.parent / "claims.json").read_text())
    assert "for toy" in claims[0]["statement"] and "toy − Scratch vs complexity" in claims[0]["evidence"]
    gains, vs_teacher = student_comparisons(runs), student_comparisons(runs, versus="teacher")
    for figure in (
        plot_accuracy(summary_table(runs)),
        plot_gain_over_scratch(gains),
        plot_students_vs_teacher(vs_teacher),
        plot_gain_vs_complexity(gains),
    ):
        labels = [t.get_text() for ax in figure.axes for t in (ax.get_legend().get_texts() if ax.get_legend() else [])]
        assert any(label.startswith("toy") for label in labels), labels
    assert (report.parent / "figures" / "gain_over_scratch.png").is_file()
    assert "toy" in report.read_text()

    # the bench's method list: conf/method/ and the folder --config-dir adds
    assert methods.available_methods([toy_method / "method"])[-1] == "toy"
    assert "toy" in methods.distilling_methods([toy_method / "method"])
    assert "toy" not in methods.available_methods()


@pytest.mark.parametrize(
    "experiment, recipe, level",
    [("study", "fast", []), ("factor_sweep", "strong", ["dataset.factors.train_fraction=0.5"])],
)
def test_the_grids_sweep_every_method_and_each_job_folder_is_its_run_folder(
    toy_method, tmp_path, monkeypatch, experiment, recipe, level
):
    """The grids name no method (conf/experiment/*.yaml: ``method: glob(*)``), so the toy is swept with no edit; and
    for every recipe Hydra's job folder (.hydra/, train.log) is the run folder results.json goes to. Training is
    stubbed: what is checked is which jobs Hydra launches and where."""
    from hydra.core.hydra_config import HydraConfig

    jobs: list[tuple[str, str, str]] = []

    def fake_run(cfg) -> dict[str, Any]:
        jobs.append((str(cfg.method.name), str(cfg.paths.run_dir), HydraConfig.get().runtime.output_dir))
        keys = {"dataset": cfg.dataset.name, "method": cfg.method.name, "seed": cfg.seed}
        return {**keys, "test_best": {}, "test_last": {}, "best_epoch": None, "run_dir": cfg.paths.run_dir}

    monkeypatch.setattr(train, "run", fake_run)
    args = ["--config-dir", str(toy_method), "-m", f"experiment={experiment}", f"recipe={recipe}", "dataset=usps"]
    args += ["seed=0", *level, f"paths.output_dir={tmp_path}"]
    monkeypatch.setattr(sys, "argv", ["kd_lightning.train", *args])
    train.main()

    assert sorted(name for name, _, _ in jobs) == ["ikd", "rkd", "scratch", "teacher", "toy"]
    for name, run_dir, job_dir in jobs:
        assert Path(job_dir) == Path(run_dir) and f"/{recipe}/usps/{name}/seed0" in run_dir
        assert (Path(run_dir) / ".hydra" / "config.yaml").is_file() and (Path(run_dir) / "train.log").is_file()
    assert "'method=glob(*)'" in (PROJECT_ROOT / "Makefile").read_text()  # make train: the same rule

    # a second command into the same folders keeps the first one's job record and writes its own beside it
    first = {run_dir: (Path(run_dir) / ".hydra" / "overrides.yaml").read_text() for _, run_dir, _ in jobs}
    monkeypatch.setattr(sys, "argv", ["kd_lightning.train", *args, "force=true"])
    train.main()
    for run_dir, overrides in first.items():
        assert (Path(run_dir) / ".hydra" / "overrides.yaml").read_text() == overrides and "force" not in overrides
        again = list((Path(run_dir) / ".hydra").glob("again-*/overrides.yaml"))
        assert len(again) == 1 and "force=" in again[0].read_text()
