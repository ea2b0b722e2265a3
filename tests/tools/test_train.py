"""End to end through the Hydra entry point on fake data: one epoch, a few batches per run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kd_lightning.modules import NonFiniteLossError, ScratchStudent
from kd_lightning.run import rundir, teachers
from kd_lightning.run.config import ConfigError
from kd_lightning.tools import train
from kd_lightning.tools.train import RunBusyError, RunConflictError
from tests.helpers import FAST, MEASURE_EFFICIENCY, compose_cfg, remove_unless_failed

pytestmark = pytest.mark.slow


def run_cli(monkeypatch, *args: str) -> None:
    """``python -m kd_lightning.train <args>``, in this process (so test patches apply)."""
    monkeypatch.setattr(sys, "argv", ["kd_lightning.train", *args])
    train.main()


def results(path: Path) -> dict:
    return json.loads((path / "results.json").read_text())


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory, request) -> Path:
    path = tmp_path_factory.mktemp("outputs")
    yield path
    remove_unless_failed(request, path)


@pytest.mark.parametrize("method", ["teacher", "scratch", "rkd", "ikd"])
def test_each_method_trains_checkpoints_logs_and_summarises(method, out_dir, fake_data_dir, monkeypatch, capsys):
    export = ["efficiency.export_onnx=true"] if method == "scratch" else []
    run_cli(
        monkeypatch,
        "dataset=usps",
        f"method={method}",
        f"paths.data_dir={fake_data_dir}",
        f"paths.output_dir={out_dir}",
        *FAST,
        *MEASURE_EFFICIENCY,
        *export,
    )
    run_dir = out_dir / "default" / "usps" / method / "seed0"
    record = results(run_dir)
    assert record["status"] == "completed" and record["method"] == method and record["seed"] == 0
    for key in (
        "config",
        "environment",
        "wall_time_s",
        "best_val_acc",
        "best_epoch",
        "train_images_per_s",
        "params",
        "fingerprint",
    ):
        assert record[key] is not None, key
    for stage in ("test_best", "test_last"):
        assert 0.0 <= record[stage]["acc"] <= 1.0 and len(record[stage]["per_class_f1"]) == 10
    assert record["environment"]["versions"]["torch"] and record["environment"]["git"]["commit"]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (
        Path(record["best_checkpoint"]).is_file() and Path(record["best_checkpoint"]).parent == run_dir / "checkpoints"
    )
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert (run_dir / "csv" / "metrics.csv").read_text().count("val/acc") == 1
    assert (run_dir / "config.yaml").is_file()
    out = capsys.readouterr().out
    assert f"usps {method} seed=0: test acc" in out and "(best-val ckpt, epoch 1 of 1)" in out  # epochs counted from 1
    cost = record["efficiency"]  # the best checkpoint's network: the student alone, never teacher or adapters
    assert (
        cost["params"] == record["params"]["net"]
        and cost["flops_per_image"] > 0
        and cost["latency_ms_b1"]["median"] > 0
    )
    assert cost["checkpoint_mb"] > 0 and cost["throughput_b64_img_s"] > 0
    if export:
        assert (run_dir / "export" / "model.onnx").is_file() and cost["onnx_mb"] > 0
        assert cost["onnx_check"]["top1_agreement"] == 1.0 and cost["onnx_check"]["max_abs_logit_diff"] < 1e-3
    if method == "teacher":
        entry = teachers.entry_dir(compose_cfg(["method=teacher"], data_dir=fake_data_dir, out_dir=out_dir))
        assert (entry / "teacher.ckpt").is_file() and json.loads((entry / "teacher.json").read_text())[
            "teacher_key"
        ] == entry.parent.name
        assert record["teacher_key"] == entry.parent.name
    else:  # every student, scratch included, is compared with the registry's teacher (trained above)
        teacher = record["teacher"]
        assert teacher["checkpoint"].startswith(str(out_dir / "teachers" / "usps")) and teacher["source"] == "registry"
        assert teacher["key"] == Path(teacher["checkpoint"]).parts[-3] and 0.0 <= teacher["test_acc"] <= 1.0
        assert teacher["stale"] is False and teacher["run_dir"] == str(
            out_dir / "default" / "usps" / "teacher" / "seed0"
        )
        for stage in ("test_best", "test_last"):
            assert 0.0 <= record[stage]["agreement"] <= 1.0 and record[stage]["kl_teacher_student"] >= 0.0
    for stage in ("test_best", "test_last"):
        assert record[stage]["nll"] > 0.0 and 0.0 <= record[stage]["ece"] <= 1.0
    if method == "ikd":
        metrics = (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0]
        assert all(f"train/{term}_epoch" in metrics for term in ("ce", "kd", "feat", "loss"))


def test_rerun_of_a_completed_run_trains_nothing(out_dir, fake_data_dir, monkeypatch, capsys):
    args = ("dataset=usps", "method=rkd", f"paths.data_dir={fake_data_dir}", f"paths.output_dir={out_dir}", *FAST)
    run_cli(monkeypatch, *args)  # completed by the test above, or now
    run_dir = out_dir / "default" / "usps" / "rkd" / "seed0"
    before, events = results(run_dir), sorted((run_dir / "tb").iterdir())
    run_cli(monkeypatch, *args)
    assert results(run_dir) == before and sorted((run_dir / "tb").iterdir()) == events


def test_a_different_config_never_overwrites_a_completed_run(out_dir, fake_data_dir):
    cfg = compose_cfg(["method=scratch"], data_dir=fake_data_dir, out_dir=out_dir)
    first = train.run(cfg)
    changed = compose_cfg(["method=scratch", "recipe.optimizer.lr=0.5"], data_dir=fake_data_dir, out_dir=out_dir)
    differs = r"What differs: recipe\.optimizer\.lr: 0\.\d+ → 0\.5\. .*name=.*force=true"
    with pytest.raises(RunConflictError, match=differs):
        train.run(changed)
    assert results(Path(first["run_dir"])) == first
    forced = train.run(
        compose_cfg(
            ["method=scratch", "recipe.optimizer.lr=0.5", "force=true"], data_dir=fake_data_dir, out_dir=out_dir
        )
    )
    assert forced["status"] == "completed" and forced["fingerprint"] != first["fingerprint"]
    archived = list((Path(first["run_dir"]) / "archive").glob("*/results.json"))
    assert [json.loads(p.read_text())["fingerprint"] for p in archived] == [first["fingerprint"]]


def test_a_folder_another_process_is_running_in_is_refused_untouched(tmp_path, fake_data_dir):
    """Two jobs aimed at one folder at once (a parallel launcher over a setting the folder name leaves out): the
    second is refused before it reads, archives or writes anything there (s16 review: it archived the first's live
    files and both wrote into one folder)."""
    cfg = compose_cfg(["method=scratch"], data_dir=fake_data_dir, out_dir=tmp_path)
    run_dir = Path(cfg.paths.run_dir)
    run_dir.mkdir(parents=True)
    running = {"status": "running", "fingerprint": "another-config"}
    (run_dir / "results.json").write_text(json.dumps(running))
    holder = subprocess.Popen(  # another process working in the folder: it holds the folder's lock
        [
            sys.executable,
            "-c",
            "import sys, filelock; l = filelock.FileLock(sys.argv[1]); l.acquire(); "
            "print('held', flush=True); sys.stdin.read()",
            str(run_dir / ".run.lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunBusyError, match="another process is running in .*name="):
            train.run(cfg)
        assert results(run_dir) == running and sorted(p.name for p in run_dir.iterdir()) == [
            ".run.lock",
            "results.json",
        ]
    finally:
        holder.communicate("")
    with rundir.claim(run_dir), rundir.claim(run_dir):  # re-entrant within a process
        pass
    assert train.run(cfg)["status"] == "completed"  # free again: the run starts (its folder's leftovers archived)
    assert [json.loads(p.read_text()) for p in run_dir.glob("archive/*/results.json")] == [running]


@pytest.mark.parametrize("kind", [[], ["teacher=ensemble", "teacher.members=2"]], ids=["single", "ensemble"])
def test_a_completed_student_is_recognised_before_its_teacher_is_looked_up(tmp_path, fake_data_dir, kind):
    """The teacher reference a student's identity records follows from its config alone, so a rerun of a completed
    student returns its record even where the registry is gone (s16 review: it failed with teacher_missing=fail, or
    trained a whole teacher, then returned the old record)."""
    from kd_lightning.run import teacher_kinds

    cfg = compose_cfg(["method=rkd", *kind], data_dir=fake_data_dir, out_dir=tmp_path)
    record = train.run(cfg)
    assert teacher_kinds.planned_reference(cfg) == (True, record["identity"]["teacher"])
    (tmp_path / "teachers").rename(tmp_path / "teachers-moved")
    again = compose_cfg(["method=rkd", *kind, "teacher_missing=fail"], data_dir=fake_data_dir, out_dir=tmp_path)
    assert train.run(again) == record and not (tmp_path / "teachers").exists()  # nothing looked up, nothing trained


def test_a_refused_command_leaves_an_interrupted_run_resumable(tmp_path, fake_data_dir):
    """A command refused before it starts (here a bad value) aimed at a folder holding another config's interrupted
    run leaves that record as it is (s16 review: it was marked failed with the typo's error)."""
    cfg = compose_cfg(["method=scratch", "recipe.optimizer.lr=-1"], data_dir=fake_data_dir, out_dir=tmp_path)
    run_dir = Path(cfg.paths.run_dir)
    run_dir.mkdir(parents=True)
    interrupted = {"status": "interrupted", "fingerprint": "another-config", "run_dir": str(run_dir)}
    (run_dir / "results.json").write_text(json.dumps(interrupted))
    with pytest.raises(ConfigError, match="recipe.optimizer.lr"):
        train.run(cfg)
    assert results(run_dir) == interrupted


def test_missing_teacher_with_teacher_missing_fail_names_the_command(tmp_path, fake_data_dir):
    cfg = compose_cfg(
        ["dataset=usps", "method=ikd", "seed=3", "teacher_missing=fail"], data_dir=fake_data_dir, out_dir=tmp_path
    )
    with pytest.raises(
        teachers.TeacherError, match=r"python -m kd_lightning\.train dataset=usps method=teacher seed=3"
    ):
        train.run(cfg)
    record = results(Path(cfg.paths.run_dir))
    assert record["status"] == "failed" and record["error"]["type"] == "TeacherError"
    assert not list(tmp_path.rglob("*.ckpt"))


def test_teacher_of_another_dataset_is_rejected(out_dir, fake_data_dir, tmp_path):
    usps_teacher = (
        teachers.entry_dir(compose_cfg(["method=teacher"], data_dir=fake_data_dir, out_dir=out_dir)) / "teacher.ckpt"
    )
    if not usps_teacher.is_file():
        train.run(compose_cfg(["method=teacher"], data_dir=fake_data_dir, out_dir=out_dir))
    for dataset, reason in (("mnist", "trained on dataset 'usps'"), ("cifar10", "input channels")):
        cfg = compose_cfg(
            [f"dataset={dataset}", "method=rkd", f"teacher_ckpt={usps_teacher}"],
            data_dir=fake_data_dir,
            out_dir=tmp_path,
        )
        with pytest.raises(teachers.TeacherError, match=reason) as info:
            train.run(cfg)
        assert str(usps_teacher) in str(info.value)


def test_non_finite_loss_stops_the_run_and_keeps_earlier_checkpoints(tmp_path, fake_data_dir, monkeypatch):
    original = ScratchStudent.loss_terms

    def explode_in_second_epoch(self, images, labels):
        logits, terms = original(self, images, labels)
        if self.current_epoch == 1:
            terms["ce"] = terms["ce"] * float("nan")
        return logits, terms

    monkeypatch.setattr(ScratchStudent, "loss_terms", explode_in_second_epoch)
    cfg = compose_cfg(["method=scratch", "trainer.max_epochs=2"], data_dir=fake_data_dir, out_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"\['ce'\] at global step 3"):
        train.run(cfg)
    run_dir = Path(cfg.paths.run_dir)
    record = results(run_dir)
    assert record["status"] == "failed" and record["error"]["type"] == "NonFiniteLossError"
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0 and all(
        torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point()
    )


def test_last_epoch_test_reads_the_last_epoch_not_the_last_best(tmp_path, fake_data_dir):
    """Lightning's save_last only refreshes last.ckpt when a new best is saved; ours is rewritten every epoch."""
    # monitoring the epoch number with mode=min makes epoch 0 the best and never improves on it
    overrides = [
        "method=scratch",
        "trainer.max_epochs=3",
        "callbacks.model_checkpoint.monitor=epoch",
        "callbacks.model_checkpoint.mode=min",
    ]
    record = train.run(compose_cfg(overrides, data_dir=fake_data_dir, out_dir=tmp_path))
    assert record["best_epoch"] == 0
    last = torch.load(record["last_checkpoint"], weights_only=True)
    assert last["epoch"] == 2 and last["global_step"] == record["global_steps"]
    best = torch.load(record["best_checkpoint"], weights_only=True)
    assert best["epoch"] == 0 and not torch.equal(
        best["state_dict"]["net.fc.weight"], last["state_dict"]["net.fc.weight"]
    )


def test_same_seed_same_numbers_on_cpu(tmp_path, fake_data_dir):
    records = [
        train.run(compose_cfg(["method=scratch", f"name=repeat{i}"], data_dir=fake_data_dir, out_dir=tmp_path))
        for i in range(2)
    ]
    assert (
        records[0]["test_best"] == records[1]["test_best"] and records[0]["best_val_acc"] == records[1]["best_val_acc"]
    )
    states = [torch.load(r["last_checkpoint"], weights_only=True)["state_dict"] for r in records]
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    other = train.run(compose_cfg(["method=scratch", "name=other", "seed=1"], data_dir=fake_data_dir, out_dir=tmp_path))
    other_state = torch.load(other["last_checkpoint"], weights_only=True)["state_dict"]
    assert not torch.equal(other_state["net.fc.weight"], states[0]["net.fc.weight"])


def test_cifar100_reports_top5_and_other_datasets_do_not(tmp_path, fake_data_dir):
    cifar = train.run(compose_cfg(["dataset=cifar100", "method=scratch"], data_dir=fake_data_dir, out_dir=tmp_path))
    assert 0.0 <= cifar["test_best"]["acc"] <= cifar["test_best"]["top5"] <= 1.0
    assert len(cifar["test_best"]["per_class_f1"]) == 100
    mnist = train.run(compose_cfg(["dataset=mnist", "method=scratch"], data_dir=fake_data_dir, out_dir=tmp_path))
    assert "top5" not in mnist["test_best"]


def test_a_conflicting_student_is_refused_before_its_teacher_trains(tmp_path, fake_data_dir):
    """The changed learning rate is also its teacher's: that teacher was trained (a full ResNet50 run with the
    real recipe) before the conflict used to be found."""
    first = train.run(compose_cfg(["method=rkd"], data_dir=fake_data_dir, out_dir=tmp_path))
    registry = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("teacher.json"))
    changed = compose_cfg(["method=rkd", "recipe.optimizer.lr=0.5"], data_dir=fake_data_dir, out_dir=tmp_path)
    with pytest.raises(RunConflictError, match=r"What differs: .*recipe\.optimizer\.lr"):
        train.run(changed)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("teacher.json")) == registry
    assert results(Path(first["run_dir"])) == first


def test_a_conflicting_ensemble_row_is_refused_before_its_members_train(tmp_path, fake_data_dir):
    ensemble = ["method=teacher", "teacher=ensemble", "teacher.members=2"]
    train.run(compose_cfg(ensemble, data_dir=fake_data_dir, out_dir=tmp_path))
    registry = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("teacher.json"))
    changed = compose_cfg([*ensemble, "recipe.optimizer.lr=0.5"], data_dir=fake_data_dir, out_dir=tmp_path)
    with pytest.raises(RunConflictError, match=r"What differs: ensemble: "):
        train.run(changed)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("teacher.json")) == registry


def test_a_batch_larger_than_the_training_split_prints_the_message_alone(tmp_path, fake_data_dir, monkeypatch, capsys):
    """A 5% subsample of the fake data holds fewer images than the batch: the run would train zero steps."""
    args = ("dataset=usps", "method=scratch", f"paths.data_dir={fake_data_dir}", f"paths.output_dir={tmp_path}", *FAST)
    with pytest.raises(SystemExit) as info:
        run_cli(monkeypatch, *args, "dataset.factors.train_fraction=0.2", "recipe.batch_size=512")
    err = capsys.readouterr().err
    assert info.value.code == 1 and "Traceback" not in err
    assert "[kd_lightning] NoFullBatchError: " in err and "lower recipe.batch_size" in err
