"""The grid: teachers before students whatever the job order, reruns that train nothing, failures that
stay local, and interrupted runs that resume exactly."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from kd_lightning import PROJECT_ROOT
from kd_lightning.run.compose import compose_run_config
from kd_lightning.tools import train
from tests.fakedata import write_all
from tests.helpers import CONF_DIR, FAST, MOMENTUM

pytestmark = pytest.mark.slow
ROOT = PROJECT_ROOT


def run_cli(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["kd_lightning.train", *args])
    train.main()


def all_results(sweep: Path) -> dict[str, dict]:
    return {
        str(p.parent.relative_to(sweep)): json.loads(p.read_text())
        for p in sorted(sweep.rglob("results.json"))
        if "archive" not in p.parts
    }


def test_study_grid_runs_once_and_reruns_nothing(tmp_path, fake_data_dir, monkeypatch):
    one_step = "trainer.limit_train_batches=1"  # 8 runs: 2 datasets x teacher and one student x 2 seeds
    args = (
        "-m",
        "experiment=study",
        "dataset=usps,mnist",
        "method=teacher,rkd",
        "seed=0,1",
        f"paths.data_dir={fake_data_dir}",
        f"paths.output_dir={tmp_path}",
        *FAST,
        one_step,
    )
    run_cli(monkeypatch, *args)  # no run fails: the multirun returns normally (exit status 0)
    sweep = tmp_path / "study"
    records = all_results(sweep)
    expected = {f"{d}/{m}/seed{s}" for d in ("usps", "mnist") for m in ("teacher", "rkd") for s in (0, 1)}
    assert set(records) == expected
    assert all(r["status"] == "completed" for r in records.values())
    for key in (
        "test_best",
        "test_last",
        "best_val_acc",
        "best_epoch",
        "wall_time_s",
        "train_images_per_s",
        "params",
        "environment",
        "config",
        "epochs",
    ):
        assert all(key in r for r in records.values()), key
    # one teacher per dataset and seed, and every student used its own dataset's and seed's teacher
    entries = sorted((tmp_path / "teachers").glob("*/*/seed*/teacher.ckpt"))
    assert len(entries) == 4
    for r in records.values():
        if r["method"] in ("rkd", "ikd"):
            ckpt = Path(r["teacher"]["checkpoint"])
            assert ckpt in entries and ckpt.parts[-4] == r["dataset"] and ckpt.parts[-2] == f"seed{r['seed']}"

    # rerun with one record gone: that run is trained again, every other run is skipped (its record untouched)
    os.remove(sweep / "mnist" / "rkd" / "seed1" / "results.json")
    run_cli(monkeypatch, *args)
    again = all_results(sweep)
    assert set(again) == expected
    changed = [k for k in again if again[k] != records[k]]
    assert changed == ["mnist/rkd/seed1"] and again["mnist/rkd/seed1"]["status"] == "completed"


def test_a_failing_job_is_recorded_and_the_others_complete(tmp_path, monkeypatch):
    data = write_all(tmp_path / "data", n_train=48, n_test=20)
    (data / "MNIST" / "raw" / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00")  # truncated
    with pytest.raises(SystemExit) as exit_info:  # the other run completes, then the multirun reports the failure
        run_cli(
            monkeypatch,
            "-m",
            "dataset=mnist,usps",
            "method=scratch",
            f"paths.data_dir={data}",
            f"paths.output_dir={tmp_path / 'out'}",
            *FAST,
        )
    assert exit_info.value.code == 1
    assert not (tmp_path / "out" / "default" / ".failed-runs").exists()  # the markers are cleaned up
    records = all_results(tmp_path / "out" / "default")
    assert records["usps/scratch/seed0"]["status"] == "completed"
    failed = records["mnist/scratch/seed0"]
    assert failed["status"] == "failed" and failed["error"]["type"] == "DatasetError"
    assert "train-labels-idx1-ubyte" in failed["error"]["message"]


@pytest.mark.parametrize("launcher", ["joblib", "slurm", "submitit_local"])
def test_launcher_configs_compose_and_resolve(launcher):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"launcher={launcher}", "experiment=study"], return_hydra_config=True)
    target = cfg.hydra.launcher._target_
    module, _, cls = target.rpartition(".")
    assert getattr(__import__(module, fromlist=[cls]), cls)  # the plugin is installed and importable
    assert cfg.hydra.sweeper.params.dataset.count(",") == 4
    if launcher.startswith("submitit"):
        assert cfg.hydra.launcher.submitit_folder.startswith(str(cfg.paths.output_dir))
    if launcher == "slurm":
        assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.hydra.launcher.tasks_per_node == 1
    if launcher == "joblib":
        assert cfg.hydra.launcher.n_jobs >= 1


def cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("KD_DATA_DIR", None)
    return subprocess.Popen(
        [sys.executable, "-m", "kd_lightning.train", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def test_sigterm_mid_training_then_rerun_matches_an_uninterrupted_run(tmp_path, fake_data_dir, monkeypatch):
    common = (
        "dataset=usps",
        "method=scratch",
        f"paths.data_dir={fake_data_dir}",
        f"paths.output_dir={tmp_path}",
        *FAST,
        MOMENTUM,
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=5",
        "dataset.num_workers=1",
    )
    run_cli(monkeypatch, "name=reference", *common)  # in this process: only the interrupted run needs its own

    run_dir = tmp_path / "interrupted" / "usps" / "scratch" / "seed0"
    proc = cli("name=interrupted", *common)
    deadline = time.time() + 300
    while not (run_dir / "checkpoints" / "last.ckpt").exists():
        assert proc.poll() is None and time.time() < deadline, "training ended before it could be interrupted"
        time.sleep(0.05)
    time.sleep(0.3)  # into the second epoch
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode != 0, out
    assert "interrupted" in out and "resumes" in out
    assert json.loads((run_dir / "results.json").read_text())["status"] == "interrupted"

    run_cli(monkeypatch, "name=interrupted", *common)  # the same command again: resumes (raises if the run fails)
    a = json.loads((tmp_path / "reference" / "usps" / "scratch" / "seed0" / "results.json").read_text())
    b = json.loads((run_dir / "results.json").read_text())
    assert b["resumed_from"] and b["status"] == "completed"
    # the record counts the time trained before the interruption too (up to the checkpoint it resumed from)
    assert a["wall_time_earlier_s"] == 0 and 0 < b["wall_time_earlier_s"] < b["wall_time_s"]
    for key in ("test_best", "test_last", "best_val_acc", "best_epoch", "global_steps"):
        assert a[key] == b[key], key
    sa = torch.load(a["last_checkpoint"], weights_only=True)["state_dict"]
    sb = torch.load(b["last_checkpoint"], weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)

    # the curves survive the resume: every epoch once, equal to the uninterrupted run's
    curve_a, curve_b = val_curve(Path(a["run_dir"])), val_curve(run_dir)
    assert [e for e, _ in curve_b] == [0, 1, 2] and curve_a == curve_b
    steps = train_loss_steps(run_dir)
    assert len(steps) == len(set(steps)) == 3 * 5 and steps == train_loss_steps(Path(a["run_dir"]))
    tb = EventAccumulator(str(run_dir / "tb"))
    tb.Reload()
    tb_steps = [event.step for event in tb.Scalars("val/acc")]
    assert len(tb_steps) == len(set(tb_steps)) == 3, tb_steps


def test_two_multiruns_sharing_a_sweep_folder_keep_their_own_failures(tmp_path, monkeypatch):
    """Two multiruns with the same name= at once (s16 review: the second's start deleted the first's failure marker,
    and the first exited 0). Each reads and clears only its own markers."""
    from omegaconf import OmegaConf

    from kd_lightning.run.failures import MULTIRUN_ID, ExitNonzeroOnFailedRuns, report_failed_run

    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    first = ExitNonzeroOnFailedRuns()
    monkeypatch.delenv(MULTIRUN_ID, raising=False)
    first.on_multirun_start(config)
    first_id = os.environ[MULTIRUN_ID]
    report_failed_run(tmp_path, tmp_path / "usps" / "scratch" / "seed0", RuntimeError("boom"))  # a job of the first
    second = (  # the other multirun, in its own process: none of its jobs failed, so it ends normally
        "import sys; from omegaconf import OmegaConf; "
        "from kd_lightning.run.failures import ExitNonzeroOnFailedRuns as E; "
        "c = OmegaConf.create({'hydra': {'sweep': {'dir': sys.argv[1]}}}); e = E(); e.on_multirun_start(c); "
        "e.on_multirun_end(c)"
    )
    assert subprocess.run([sys.executable, "-c", second, str(tmp_path)], cwd=PROJECT_ROOT).returncode == 0
    assert os.environ[MULTIRUN_ID] == first_id
    stale = tmp_path / ".failed-runs" / f"{os.getpid()}-1"  # a killed multirun's leftovers (a recycled process id)
    stale.mkdir(parents=True)
    (stale / "old.json").write_text("{}")
    with pytest.raises(SystemExit) as exit_info:  # the first still sees its failed job
        first.on_multirun_end(config)
    assert exit_info.value.code == 1 and sorted(p.name for p in (tmp_path / ".failed-runs").iterdir()) == [stale.name]
    third = ExitNonzeroOnFailedRuns()  # a clean multirun after it: the leftovers are not its failures
    third.on_multirun_start(config)
    third.on_multirun_end(config)


def val_curve(run_dir: Path) -> list[tuple[int, str]]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as handle:
        return [(int(row["epoch"]), row["val/acc"]) for row in csv.DictReader(handle) if row.get("val/acc")]


def train_loss_steps(run_dir: Path) -> list[int]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle) if row.get("train/loss_step")]


def test_submitit_local_grid_runs_collects_and_resumes_a_cut_job(tmp_path, fake_data_dir, monkeypatch):
    """launcher=submitit_local: a pickled job, its job folder, result collection, and the job's run, cut after its
    first epoch, resuming from last.ckpt (what a requeued SLURM job does). One grid point: every job of a grid takes
    this same path, in a process of its own."""
    common = (
        "dataset=usps",
        "method=scratch",
        f"paths.data_dir={fake_data_dir}",
        f"paths.output_dir={tmp_path}",
        *FAST,
        "trainer.max_epochs=2",
        "seed=1",
    )
    cut = compose_run_config([*common, "+callbacks.preempt._target_=tests.helpers.PreemptAfterFirstEpoch"])
    with pytest.raises(RuntimeError, match="preempted"):
        train.run(cut)
    cut_dir = tmp_path / "default" / "usps" / "scratch" / "seed1"
    assert (
        json.loads((cut_dir / "results.json").read_text())["status"] == "failed"
        and (cut_dir / "checkpoints" / "last.ckpt").is_file()
    )

    run_cli(monkeypatch, "-m", "launcher=submitit_local", *common)  # the launcher here, the job in its own process
    records = all_results(tmp_path / "default")
    assert {k: r["status"] for k, r in records.items()} == {"usps/scratch/seed1": "completed"}
    resumed = records["usps/scratch/seed1"]
    assert resumed["resumed_from"].endswith("last.ckpt")
    assert resumed["global_steps"] == 2 * 3 and resumed["epochs"] == 2  # the steps of an uninterrupted run
    jobs = list((tmp_path / "default" / ".submitit").glob("*/*_result.pkl"))
    assert len(jobs) == 1, "the grid point ran as a submitit job with its own folder and collected result"
