"""The study report: numbers checked against independently worked-out values, files written, nothing dropped."""

from __future__ import annotations

import json
import math
import runpy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kd_lightning import PROJECT_ROOT, report
from kd_lightning.report.paper import PAPER_ACCURACY

ROOT = PROJECT_ROOT
NOTEBOOK = ROOT / "notebooks" / "study.ipynb"

# Two-sided 95% Student t critical values from printed tables (not from the module under test).
T95 = {1: 12.7062, 2: 4.3027}

# Test accuracy at the best-validation checkpoint, per dataset/method, seeds 0, 1, 2. None = failed run,
# "missing" = no run folder at all.
ACC = {
    "usps": {
        "teacher": [0.95, 0.96, 0.94],
        "scratch": [0.90, 0.92, 0.91],
        "rkd": [0.93, 0.92, 0.95],
        "ikd": [0.97, 0.95, 0.96],
    },
    "cifar10": {
        "teacher": [0.80, 0.82, 0.81],
        "scratch": [0.60, 0.63, 0.62],
        "rkd": [0.66, 0.64, None],
        "ikd": [0.78, "missing", 0.83],
    },
}
# usps runs follow the paper recipe; cifar10 runs were trained on a few batches only.
LIMIT = {"usps": None, "cifar10": 5}


PAPER_EPOCHS = {"teacher": 20, "scratch": 10, "rkd": 10, "ikd": 10}


def paper_config(method: str, **overrides) -> dict:
    """A resolved config as results.json holds it, trained the paper's way; ``overrides`` by dotted path."""
    config = {
        "recipe": {
            "name": "paper",
            "batch_size": 64,
            "epochs": 10,
            "method_epochs": {"teacher": 20},
            "optimizer": {"_target_": "torch.optim.SGD", "lr": 0.001, "momentum": 0.9, "weight_decay": 0.0},
            "scheduler": None,
            "augmentation": {"rotation": 15, "hflip": 0.5, "vflip": 0.5},
        },
        "dataset": {"name": "usps", "val_fraction": 0.7, "split_seed": 1234},
        "method": {
            "name": method,
            **({"alpha": 0.7, "temperature": 4.0} if method in ("rkd", "ikd") else {}),
            **({"feature_weight": 1.0, "stages": ["layer1", "layer2", "layer3", "layer4"]} if method == "ikd" else {}),
        },
        "student_model": {"arch": "resnet18", "stem": "imagenet", "num_classes": 10, "in_channels": 1},
        "teacher_model": {"arch": "resnet50", "stem": "imagenet", "num_classes": 10, "in_channels": 1},
        "trainer": {
            "max_epochs": PAPER_EPOCHS[method],
            "max_steps": -1,
            "max_time": None,
            "limit_train_batches": None,
            "limit_val_batches": None,
            "limit_test_batches": None,
        },
    }
    for path, value in overrides.items():
        node = config
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return config


def _last(acc: float, seed: int) -> float:
    return acc - 0.005 * (seed + 1)


def _write_run(root: Path, dataset: str, method: str, seed: int, acc: float | None, limit: int | None) -> Path:
    run = root / dataset / method / f"seed{seed}"
    (run / "csv").mkdir(parents=True)
    record = {
        "status": "completed" if acc is not None else "failed",
        "dataset": dataset,
        "method": method,
        "seed": seed,
        "run_dir": str(run),
        "fingerprint": "abc",
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T01:00:00+00:00",
        "resumed_from": None,
        "config": paper_config(method, **{"trainer.limit_train_batches": limit}),
        "environment": {},
        "wall_time_s": 10.0,
        "epochs": 3,
        "global_steps": 30,
        "best_val_acc": acc,
        "best_epoch": 1,
        "train_images_per_s": 100.0,
        "params": {"net": 1, "teacher": None, "total_trainable": 1},
        "teacher": None,
    }
    if method == "teacher":
        record["teacher_key"] = f"resnet50-{dataset}{seed}"
    elif method in ("rkd", "ikd"):
        record["teacher"] = {
            "key": f"resnet50-{dataset}{seed}",
            "checkpoint": "t.ckpt",
            "test_acc": 0.9,
            "run_dir": "teachers/x",
            "stale": False,
            "source": "registry",
        }
    if acc is None:
        record["error"] = {"type": "RuntimeError", "message": "CUDA out of memory (synthetic)", "traceback": "..."}
    else:
        per_class = [min(1.0, acc + 0.01 * (k - 5)) for k in range(10)]
        fidelity = {"nll": 0.3, "ece": 0.02}
        if method in ("rkd", "ikd"):
            fidelity.update({"agreement": 0.95, "kl_teacher_student": 0.1})
        record["test_best"] = {"acc": acc, "f1": acc - 0.01, "per_class_f1": per_class, **fidelity}
        record["test_last"] = {"acc": _last(acc, seed), "f1": acc - 0.02, "per_class_f1": per_class}
    (run / "results.json").write_text(json.dumps(record))
    # Sparse CSVLogger rows: a validation row and a training row per epoch, then a test row.
    rows = []
    for epoch in range(3):
        val_acc = (acc or 0.5) - 0.1 * (2 - epoch)
        rows.append(
            {"epoch": epoch, "step": 10 * epoch + 9, "val/acc": val_acc, "val/loss": 1.0 - val_acc, "val/f1": val_acc}
        )
        rows.append({"epoch": epoch, "step": 10 * epoch + 9, "train/loss_epoch": 1.5 - epoch * 0.3, "train/acc": 0.5})
    rows.append({"epoch": 3, "step": 30, "test_best/acc": acc})
    pd.DataFrame(rows).to_csv(run / "csv" / "metrics.csv", index=False)
    return run


def make_sweep(root: Path) -> Path:
    """The synthetic sweep above, plus an archived run that must be ignored."""
    for dataset, methods in ACC.items():
        for method, values in methods.items():
            for seed, acc in enumerate(values):
                if acc != "missing":
                    _write_run(root, dataset, method, seed, acc, LIMIT[dataset])
    _write_run(root / "archive", "mnist", "teacher", 7, 0.99, None)
    return root


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    return make_sweep(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="module")
def written(sweep, tmp_path_factory) -> Path:
    return report.write_report(sweep, tmp_path_factory.mktemp("report"))


def _arm(dataset: str, method: str) -> dict[int, float]:
    return {s: a * 100 for s, a in enumerate(ACC[dataset][method]) if isinstance(a, float)}


def _expected_diff(dataset: str, treatment: str, control: str) -> dict[str, float]:
    a, b = _arm(dataset, treatment), _arm(dataset, control)
    d = np.array([a[s] - b[s] for s in sorted(set(a) & set(b))])
    n = len(d)
    mean = d.sum() / n
    std = math.sqrt(((d - mean) ** 2).sum() / (n - 1)) if n > 1 else math.nan
    half = T95[n - 1] * std / math.sqrt(n) if n > 1 else math.nan
    return {"n": n, "mean": mean, "std": std, "low": mean - half, "high": mean + half}


def test_load_sweep_skips_archive_and_keeps_failed(sweep):
    runs = report.load_sweep(sweep)
    assert "mnist" not in set(runs["dataset"])
    assert len(runs) == 23  # 24 cells, one missing; the failed one is kept
    failed = runs[runs["status"] == "failed"]
    assert failed[["dataset", "method", "seed"]].values.tolist() == [["cifar10", "rkd", 2]]
    assert runs.loc[runs["dataset"] == "usps", "paper_comparable"].all()
    assert not runs.loc[runs["dataset"] == "cifar10", "paper_comparable"].any()
    assert set(runs.loc[runs["dataset"] == "cifar10", "paper_differences"]) == {
        "trainer.limit_train_batches=5 (paper: all batches)"
    }


@pytest.mark.parametrize("dataset", ["usps", "cifar10"])
@pytest.mark.parametrize("method", ["teacher", "scratch", "rkd", "ikd"])
def test_summary_mean_and_std(sweep, dataset, method):
    values = np.array(list(_arm(dataset, method).values()))
    row = report.summary_table(report.load_sweep(sweep)).set_index(["dataset", "method"]).loc[(dataset, method)]
    assert row["n"] == len(values)
    assert row["mean"] == pytest.approx(values.sum() / len(values))
    expected_std = math.sqrt(((values - values.mean()) ** 2).sum() / (len(values) - 1))
    assert row["std"] == pytest.approx(expected_std)


@pytest.mark.parametrize("comparison", report.TABLES, ids=lambda c: c.key)
@pytest.mark.parametrize("dataset", ["usps", "cifar10"])
def test_comparison_tables_paired_difference_and_ci(sweep, comparison, dataset):
    table = report.comparison_table(report.load_sweep(sweep), comparison).set_index("dataset")
    row, exp = table.loc[dataset], _expected_diff(dataset, comparison.treatment, comparison.control)
    assert row["n_pairs"] == exp["n"]
    assert row["diff_mean"] == pytest.approx(exp["mean"])
    paired = sorted(set(_arm(dataset, comparison.treatment)) & set(_arm(dataset, comparison.control)))
    for arm, method in (("treatment", comparison.treatment), ("control", comparison.control)):
        on_pairs = [_arm(dataset, method)[s] for s in paired]  # each arm's sd over the paired seeds only
        assert row[f"{arm}_std"] == pytest.approx(np.std(on_pairs, ddof=1), nan_ok=True)
    assert row["ci_low"] == pytest.approx(exp["low"], abs=1e-3, nan_ok=True)
    assert row["ci_high"] == pytest.approx(exp["high"], abs=1e-3, nan_ok=True)
    for method in (comparison.first, comparison.second):
        assert row[f"{method}_mean"] == pytest.approx(np.mean(list(_arm(dataset, method).values())))
        assert row[f"{method}_n"] == len(_arm(dataset, method))
        # Paper's values only beside runs trained with the paper's recipe.
        if dataset == "usps":
            assert row[f"paper_{method}"] == PAPER_ACCURACY["usps"][method]
        else:
            assert math.isnan(row[f"paper_{method}"])


def test_specific_cis_worked_by_hand(sweep):
    """usps rkd − scratch: diffs 3, 0, 4 -> mean 7/3, CI half-width 4.3027 * std / sqrt(3)."""
    row = report.paired_comparison(report.load_sweep(sweep), "rkd", "scratch").set_index("dataset").loc["usps"]
    std = math.sqrt(((3 - 7 / 3) ** 2 + (0 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    assert row["diff_mean"] == pytest.approx(7 / 3)
    assert row["ci_low"] == pytest.approx(7 / 3 - 4.3027 * std / math.sqrt(3), abs=1e-3)
    # cifar10 rkd − scratch pairs seeds 0 and 1 only (seed 2 failed): df = 1.
    row = report.paired_comparison(report.load_sweep(sweep), "rkd", "scratch").set_index("dataset").loc["cifar10"]
    d = np.array([6.0, 1.0])
    assert row["n_pairs"] == 2 and row["seeds"] == "0,1"
    assert row["ci_high"] == pytest.approx(d.mean() + 12.7062 * d.std(ddof=1) / math.sqrt(2), abs=1e-3)


def test_last_epoch_metric(sweep):
    table = report.summary_table(report.load_sweep(sweep), "test_last.acc").set_index(["dataset", "method"])
    expected = np.mean([_last(a, s) * 100 for s, a in enumerate(ACC["usps"]["teacher"])])
    assert table.loc[("usps", "teacher"), "mean"] == pytest.approx(expected)


def test_t_critical_from_scipy():
    assert report.t_critical(2) == pytest.approx(4.3027, abs=1e-4)
    assert report.t_critical(30) == pytest.approx(2.0423, abs=1e-4)
    assert report.t_critical(0) != report.t_critical(0)  # NaN: no interval from one value


def test_issues_list_failed_and_missing(sweep):
    issues = report.find_issues(report.load_sweep(sweep))
    as_rows = issues[["dataset", "method", "seed", "status"]].values.tolist()
    assert ["cifar10", "rkd", 2, "failed"] in as_rows
    assert ["cifar10", "ikd", 1, "missing"] in as_rows
    assert len(issues) == 2


def test_report_files(written):
    out = written.parent
    text = written.read_text()
    expected = [
        "accuracy",
        "gain_over_scratch",
        "students_vs_teacher",
        "gain_vs_complexity",
        "curves_usps",
        "curves_cifar10",
        "per_class_f1_usps",
        "per_class_f1_cifar10",
    ]
    for name in expected:
        png = out / "figures" / f"{name}.png"
        assert png.is_file() and png.stat().st_size > 1000, name
        assert f"figures/{name}.png" in text
    for key in ("table5", "table6", "table7"):
        for short in ("best", "last"):
            assert (out / "tables" / f"{key}_{short}.csv").stat().st_size > 0
    # Failed and missing runs are reported, with the failure's error.
    assert "RuntimeError: CUDA out of memory (synthetic)" in text
    assert "**missing** (1)" in text and "**failed** (1)" in text
    # Claims: every claim has a verdict.
    assert "## Claims" in text
    claims = text.split("## Claims", 1)[1]
    assert claims.count("**Verdict:") == 3
    assert "not testable" in claims  # two datasets cannot show a complexity trend
    # Both checkpoints' tables, captions saying which.
    assert "best-validation checkpoint" in text and "at the last epoch" in text
    assert "93.33 ± 1.53 (3)" in text  # usps rkd: mean/std of 93, 92, 95


def test_claim_verdicts_three_datasets():
    """Three ranked datasets cannot show a trend (smallest permutation p = 1/3! > 0.05): claims 1 and 2 are not
    testable however clean the gains; claim 3 rests on per-dataset tests and is supported."""
    rows = []
    gains = {"rkd": [3.0, 2.0, 1.0], "ikd": [1.0, 5.0, 9.0]}
    for i, dataset in enumerate(["mnist", "usps", "cifar10"]):
        for seed in range(3):
            base = 0.80 + 0.01 * seed
            jitter = 0.001 * ((seed * 7 + i * 3) % 5 - 2)  # a little spread between seeds
            for method, acc in (
                ("teacher", base + 0.05),
                ("scratch", base),
                ("rkd", base + gains["rkd"][i] / 100 + jitter),
                ("ikd", base + gains["ikd"][i] / 100 - jitter),
            ):
                rows.append({"dataset": dataset, "method": method, "seed": seed, "test_best.acc": acc})
    verdicts = {c.number: c.verdict for c in report.evaluate_claims(pd.DataFrame(rows))}
    assert verdicts[1] == report.NOT_TESTABLE
    assert verdicts[2] == report.NOT_TESTABLE  # IKD − RKD resolved positive on two datasets, but no trend test
    assert verdicts[3] == report.SUPPORTED  # IKD beats the teacher (+5) on cifar10 (+9)


def test_partial_sweep_one_dataset_one_seed(tmp_path):
    for method in ("teacher", "scratch", "rkd", "ikd"):
        _write_run(tmp_path, "usps", method, 0, 0.9, None)
    path = report.write_report(tmp_path)
    assert path == tmp_path / "report" / "report.md"
    text = path.read_text()
    assert "n/a" in text and "All runs of the grid completed." in text
    assert (tmp_path / "report" / "figures" / "accuracy.png").stat().st_size > 0


def test_empty_sweep(tmp_path):
    text = report.write_report(tmp_path, tmp_path / "out").read_text()
    assert "No results.json found" in text


def test_cli(sweep, tmp_path, capsys, monkeypatch):
    """``python -m kd_lightning.report``: its ``__main__`` run in this process (runpy, as ``-m`` does; a fresh
    interpreter would add only the ~8 CPU-s of importing torch and Lightning, and every module's fresh import is
    tests/test_package.py's)."""
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--help"])
    assert exit_info.value.code == 0 and "--metric" in capsys.readouterr().out
    out = tmp_path / "cli"
    argv = ["python -m kd_lightning.report", str(sweep), "--out", str(out), "--metric", "test_last.acc"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("kd_lightning.report", run_name="__main__", alter_sys=True)
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip().endswith(str(out / "report.md"))
    assert "Headline metric: **test_last.acc**" in (out / "report.md").read_text()


def _python3_kernel_ok() -> str | None:
    """Why the notebook cannot run here, or None when the python3 kernel is this interpreter's ipykernel."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError as exc:
        return f"jupyter_client missing: {exc}"
    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        return "no 'python3' kernel registered"
    exe = spec.argv[0]
    if exe in ("python", "python3", "{python}"):
        return None  # ipykernel's built-in spec runs sys.executable
    if Path(exe).resolve() != Path(sys.executable).resolve():
        return f"the python3 kernel runs {exe}, not {sys.executable}"
    return None


def test_notebook_runs_headless(sweep, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    reason = _python3_kernel_ok()
    if reason:
        pytest.skip(reason)
    monkeypatch.setenv("KD_SWEEP_DIR", str(sweep))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "notebook stored with outputs"
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert any("text/html" in o.get("data", {}) for o in outputs)  # DataFrames


def test_unreadable_and_duplicate_records_are_listed(tmp_path):
    sweep = tmp_path / "sweep"
    for method in ("teacher", "scratch"):
        _write_run(sweep, "usps", method, 0, 0.9, None)
    _write_run(sweep / "rerun", "usps", "teacher", 0, None, None)  # an older failed try of the same run
    damaged = sweep / "usps" / "rkd" / "seed0"
    damaged.mkdir(parents=True)
    (damaged / "results.json").write_text("{not json")
    runs = report.load_sweep(sweep)
    issues = report.find_issues(runs).set_index(["method", "status"])
    assert ("rkd", "unreadable") in issues.index
    assert ("teacher", "duplicate (failed, ignored)") in issues.index
    # The completed record is the one used.
    assert report.summary_table(runs).set_index("method").loc["teacher", "n"] == 1


def test_shortened_epochs_are_not_set_beside_the_paper(tmp_path):
    """recipe.method_epochs.teacher=3 keeps the recipe name "paper" but is not the paper's 20-epoch protocol."""
    for epochs, expected in ((3, False), (20, True)):
        run = tmp_path / f"e{epochs}" / "usps" / "teacher" / "seed0"
        run.mkdir(parents=True)
        config = paper_config("teacher", **{"recipe.method_epochs.teacher": epochs, "trainer.max_epochs": epochs})
        (run / "results.json").write_text(
            json.dumps(
                {
                    "status": "completed",
                    "dataset": "usps",
                    "method": "teacher",
                    "seed": 0,
                    "config": config,
                    "test_best": {"acc": 0.9},
                    "test_last": {"acc": 0.9},
                }
            )
        )
        runs = report.load_sweep(tmp_path / f"e{epochs}")
        assert bool(runs["paper_comparable"].iloc[0]) is expected
        assert runs["paper_differences"].iloc[0] == ("" if expected else "trainer.max_epochs=3 (paper 20)")


def test_figures_given_the_runs_frame_say_which_table_to_pass(sweep):
    """The figures draw tables (numbers in, figure out); the runs frame, their argument before, gets a message
    naming the table to build, not a KeyError from inside matplotlib code."""
    runs = report.load_sweep(sweep)
    with pytest.raises(TypeError, match=r"plot_accuracy draws a table .*pass report\.summary_table\(runs\)"):
        report.plot_accuracy(runs)
    for figure in (report.plot_gain_over_scratch, report.plot_students_vs_teacher, report.plot_gain_vs_complexity):
        with pytest.raises(TypeError, match=rf"{figure.__name__} draws paired comparisons.*student_comparisons"):
            figure(runs)
    assert report.plot_accuracy(report.summary_table(report.for_recipe(runs, runs["recipe"].iloc[0]))) is not None


def test_pick_runs_keeps_the_best_record_of_each_run_in_table_order():
    """pick_runs against its rule written out by hand, on random frames with repeats, failures, missing keys and
    two recipes: per recipe/dataset/method/seed the completed record first, then the latest finished, then the
    last path; rows without a key are kept; both frames in the tables' order."""
    from kd_lightning.report.runs import KEYS, PICK_KEYS, in_table_order, pick_runs

    rng = np.random.default_rng(7)
    for _ in range(30):
        n = int(rng.integers(1, 25))
        runs = pd.DataFrame(
            {
                "recipe": rng.choice(["fast", "strong"], n),
                "dataset": rng.choice(["usps", "mnist", None], n, p=[0.45, 0.45, 0.1]),
                "method": rng.choice(["teacher", "scratch", "rkd"], n),
                "seed": pd.array(rng.integers(0, 3, n), dtype="Int64"),
                "status": rng.choice(["completed", "failed"], n),
                "finished_at": rng.choice(["2026-12-01", "2026-12-02", None], n),
                "path": [f"run{i:02d}" for i in rng.permutation(n)],
                "test_best.acc": rng.uniform(size=n),
            }
        )
        kept, superseded = pick_runs(runs)
        rank = runs.assign(
            c=(runs["status"] == "completed").astype(int), f=runs["finished_at"].fillna(""), p=runs["path"]
        ).sort_values(["c", "f", "p"], ascending=False, kind="stable")
        keyed = rank[rank[KEYS].notna().all(axis=1)]
        first = ~keyed.duplicated(PICK_KEYS)
        expected = in_table_order(pd.concat([keyed[first], rank[rank[KEYS].isna().any(axis=1)]])[runs.columns])
        pd.testing.assert_frame_equal(kept, expected)
        pd.testing.assert_frame_equal(superseded, in_table_order(keyed[~first][runs.columns]))
        assert len(kept) + len(superseded) == n
