"""python -m kd_lightning.bench: the smoke run end to end, and the pieces its numbers rest on."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import get_class
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode
from torchvision import datasets

from kd_lightning import PROJECT_ROOT
from kd_lightning.datasets.batched import load_as_uint8_tensors
from kd_lightning.datasets.synthetic import unverified_cifar, write_dataset
from kd_lightning.measure import throughput
from kd_lightning.measure.efficiency import count_flops
from kd_lightning.models import build_resnet
from kd_lightning.run.callbacks import Speedups
from kd_lightning.tools import bench
from tests.helpers import NO_MOMENTUM, TINY_NETWORKS

PATH_FIELDS = {"images_per_s", "best_images_per_s", "windows_images_per_s", "spread", "step_ms"}
#: the smoke runs' Lightning path writes checkpoints at each epoch end: ResNet10s and no momentum buffers make them
#: several times smaller (the production networks and momentum are not what a smoke run checks)
CHEAP_CHECKPOINTS = [arg for o in [*TINY_NETWORKS, NO_MOMENTUM] for arg in ("--override", o)]


@pytest.fixture
def one_thread():
    """Small CPU steps run far faster on one thread when the machine is busy (no OpenMP spin-waiting)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.cifar_md5
@pytest.mark.parametrize("name, reader", [("cifar10", datasets.CIFAR10), ("cifar100", datasets.CIFAR100)])
def test_synthetic_cifar_reads_only_while_the_md5_checks_are_off(tmp_path, name, reader):
    """torchvision checks the data files and, separately, the label-name file against the real MD5s."""
    write_dataset(tmp_path, name, 20, 5)
    with pytest.raises(RuntimeError, match="corrupted"):
        reader(tmp_path, train=True)
    with unverified_cifar(True):
        assert len(reader(tmp_path, train=True)) == 20 and len(reader(tmp_path, train=False)) == 5
    with pytest.raises(RuntimeError, match="corrupted"):  # restored on exit
        reader(tmp_path, train=True)


@pytest.mark.cifar_md5
def test_smoke_run_on_synthetic_cifar_with_torchvisions_checks_in_place(tmp_path, one_thread):
    """The bench switches the checks off for its own synthetic copies only (it once failed on a GPU machine)."""
    out = tmp_path / "bench.json"
    bench.run(["--smoke", "--dataset", "cifar10", "--methods", "scratch", "--out", str(out), *CHEAP_CHECKPOINTS])
    report = json.loads(out.read_text())
    assert report["dataset"]["shape"] == [3, 32, 32] and report["dataset"]["data"]["source"] == "synthetic"
    assert report["results"]["scratch"]["lightning"]["images_per_s"] > 0


def test_smoke_run_writes_every_field(tmp_path, capsys):
    out = tmp_path / "bench.json"
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    bench.run(
        [
            "--smoke",
            "--dataset",
            "usps",
            "--out",
            str(out),
            "--note",
            "pytest smoke",
            "--model-path",
            *CHEAP_CHECKPOINTS,
        ]
    )
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())

    assert report["note"] == "pytest smoke"
    assert report["device"]["type"] == "cpu" or torch.cuda.is_available()
    assert report["device"]["name"]
    for pkg in ("python", "torch", "torchvision", "lightning"):
        assert report["versions"][pkg]
    assert (
        report["dataset"]["name"] == "usps"
        and report["dataset"]["shape"] == [1, 16, 16]
        and report["dataset"]["num_classes"] == 10
    )
    assert report["dataset"]["data"]["source"] == "synthetic"  # smoke never reads the real files
    settings = report["settings"]
    for key in (
        "batch_size",
        "warmup_steps",
        "window_steps",
        "blocks",
        "num_workers",
        "torch_threads",
        "augmentation",
        "optimizer",
        "trainer",
        "speedups",
    ):
        assert key in settings, key
    assert settings["speedups"] == {
        "channels_last": False,
        "compile": False,
        "compile_mode": None,
        "compile_backend": "inductor",
    }
    assert settings["smoke"] is True and settings["batch_size"] == bench.SMOKE["batch_size"]
    assert settings["overrides"] == [*TINY_NETWORKS, NO_MOMENTUM] and settings["optimizer"]["momentum"] == 0

    assert list(report["results"]) == list(bench.METHODS)
    for method, r in report["results"].items():
        for path in throughput.PATHS:
            assert PATH_FIELDS <= set(r[path]), (method, path)
            assert r[path]["images_per_s"] > 0, (method, path)
            assert len(r[path]["windows_images_per_s"]) == 2 * settings["blocks"]  # A B B A: two of each per block
        assert r["lightning"]["steps_run"] == settings["steps_per_path"]  # the real path ran warm-up and windows
        ci = r["ratio_lightning_vs_bare"]
        assert len(r["block_ratios_lightning_vs_bare"]) == ci["blocks"] == settings["blocks"]
        assert ci["low"] <= ci["ratio"] <= ci["high"]
        assert r["ratio_lightning_vs_model"] == pytest.approx(
            r["lightning"]["images_per_s"] / r["model"]["images_per_s"]
        )
        assert r["lightning"]["best_images_per_s"] == pytest.approx(
            max(r["lightning"]["windows_images_per_s"]), rel=1e-3
        )
    ratios = report["ikd_rkd_step_time_ratio"]
    assert set(ratios) == {*throughput.PATHS, "flops"}
    assert ratios["flops"] == pytest.approx(
        report["results"]["ikd"]["flops_per_image"] / report["results"]["rkd"]["flops_per_image"]
    )
    assert ratios["lightning"] == pytest.approx(
        report["results"]["rkd"]["lightning"]["images_per_s"] / report["results"]["ikd"]["lightning"]["images_per_s"]
    )

    targets = report["targets"]
    assert set(targets) == set(throughput.TARGETS)
    assert set(targets["lightning_vs_bare"]["per_method"]) == set(bench.METHODS)
    for v in targets["lightning_vs_bare"]["per_method"].values():
        assert v["verdict"] == throughput.verdict(v, 0.95)
    assert "| method |" in printed and "IKD/RKD step-time ratio" in printed
    assert "PASS" not in printed and "FAIL" not in printed  # verdicts, never a bare FAIL inside the noise
    # the process-wide flags the Trainer set are put back
    assert torch.are_deterministic_algorithms_enabled() == deterministic_before


@pytest.mark.parametrize("name", bench.DATASETS)
def test_synthetic_data_has_the_config_shapes(tmp_path, name):
    cfg = OmegaConf.load(PROJECT_ROOT / "conf" / "dataset" / f"{name}.yaml")
    write_dataset(tmp_path, name, n_train=20, n_test=8)
    cls = {
        "mnist": datasets.MNIST,
        "fashion_mnist": datasets.FashionMNIST,
        "cifar10": datasets.CIFAR10,
        "cifar100": datasets.CIFAR100,
    }
    root = tmp_path / "USPS" if name == "usps" else tmp_path
    ds = (datasets.USPS if name == "usps" else cls[name])(str(root), train=True)
    images, labels = load_as_uint8_tensors(ds)
    assert tuple(images.shape) == (20, cfg.channels, cfg.image_size, cfg.image_size)
    assert int(labels.min()) >= 0 and int(labels.max()) < cfg.num_classes
    assert images.float().std() > 10  # structured noise, never a constant image
    assert len((datasets.USPS if name == "usps" else cls[name])(str(root), train=False)) == 8


def test_window_statistics():
    windows = [(10, 1.0), (10, 2.0), (10, 0.8)]  # 10, 5 and 12.5 images/s
    s = throughput.summarize(windows)
    assert s["images_per_s"] == 10.0 and s["windows_images_per_s"] == [10.0, 5.0, 12.5]
    assert s["best_images_per_s"] == pytest.approx(12.5)
    assert s["spread"] == pytest.approx(0.75)
    assert throughput.summarize([])["images_per_s"] is None


def test_abba_blocks_pair_adjacent_windows_and_the_interval_gives_the_verdict():
    lightning = [(90, 1.0), (90, 1.0), (50, 1.0), (50, 1.0)]  # a slow stretch hits block 2 ...
    bare = [(100, 1.0), (100, 1.0), (50, 1.0), (50, 1.0)]  # ... on both paths alike
    assert throughput.block_ratios(lightning, bare) == pytest.approx([0.9, 1.0])
    tight = throughput.ratio_interval([0.90, 0.91, 0.89, 0.90])
    assert tight["low"] < 0.90 < tight["high"] < 0.95 and throughput.verdict(tight, 0.95) == "missed"
    assert throughput.verdict(throughput.ratio_interval([0.99, 1.0, 0.98, 1.01]), 0.95) == "met"
    noisy = throughput.ratio_interval([0.8, 1.1, 0.9, 1.05])
    assert throughput.verdict(noisy, 0.95) == "not resolved at this noise"
    assert throughput.verdict(throughput.ratio_interval([0.99]), 0.95) == "not resolved at this noise"  # one block


def test_interleave_runs_bare_windows_abba_between_lightning_windows():
    """Windows of the two paths in the order L B B L, L B B L after both warm-ups; Lightning's timer resumes at
    once after each bare window, so the next batch's loading counts on the Lightning side."""
    order: list[str] = []
    meter = throughput.ThroughputMeter()
    meter.cut = lambda device: order.append("L") or (1, 1.0)
    batches = iter([(torch.zeros(2), torch.zeros(2))] * 100)
    interleave = throughput.Interleave(meter, lambda x, y: None, batches, warmup=2, steps=3, blocks=2)
    bare_cut = interleave.bare_meter.cut
    interleave.bare_meter.cut = lambda device: order.append("B") or bare_cut(device)
    module = type("M", (), {"device": torch.device("cpu")})()
    for index in range(interleave.total_steps):
        interleave.on_train_batch_end(None, module, None, None, index)
    assert order == ["L", "B", "L", "B", "B", "L", "L", "B", "B", "L"]  # warm-ups, then A B B A twice
    assert len(interleave.bare_meter.windows) == 4  # the bare warm-up window is dropped


def test_verdicts():
    def r(bare, lightning, blocks):
        return {
            "bare": {"images_per_s": bare},
            "lightning": {"images_per_s": lightning},
            "ratio_lightning_vs_bare": throughput.ratio_interval(blocks),
            "flops_per_image": 1e6 * bare,
        }

    results = {
        "teacher": r(100, 99, [0.99, 1.0, 0.98]),
        "rkd": r(100, 90, [0.90, 0.91, 0.89]),
        "ikd": r(80, 80, [0.7, 1.2, 1.0]),
    }
    v = throughput.verdicts(results)
    assert {m: x["verdict"] for m, x in v["lightning_vs_bare"]["per_method"].items()} == {
        "teacher": "met",
        "rkd": "missed",
        "ikd": "not resolved at this noise",
    }
    assert v["ikd_vs_rkd_step_time"]["ratio"] == pytest.approx(90 / 80)
    assert v["ikd_vs_rkd_step_time"]["verdict"] == "met"
    assert throughput.ikd_rkd_ratios(results)["flops"] == pytest.approx(80 / 100)


@pytest.mark.parametrize("method", ["scratch", "rkd", "ikd"])
def test_bare_step_is_the_same_math_as_the_module(method, one_thread):
    """Path 1 drives the module run.build.build_module builds: its loss (checked against the paper's
    formula written out here) and its optimizer, which never holds the teacher."""
    torch.manual_seed(0)
    cfg = bench.compose_config("usps", method, ["recipe.batch_size=4"])
    step = throughput.BareStep(cfg, torch.device("cpu"))
    module = step.module
    assert isinstance(module, get_class(cfg.method._target_))

    bare_params = {id(p) for group in step.optimizer.param_groups for p in group["params"]}
    assert bare_params == {id(p) for p in module.trainable_parameters()}
    assert (
        step.optimizer.defaults["lr"] == cfg.recipe.optimizer.lr
        and step.optimizer.defaults["momentum"] == cfg.recipe.optimizer.momentum
    )

    x, y = torch.randn(4, 1, 16, 16), torch.randint(0, 10, (4,))
    with torch.no_grad():
        loss = step.loss(x, y)
        ce = F.cross_entropy(step.net(x), y)
        if step.teacher is None:
            expected = ce
        else:
            assert all(id(p) not in bare_params for p in step.teacher.parameters())
            t = float(cfg.method.temperature)
            soft = (
                F.kl_div(F.log_softmax(step.net(x) / t, 1), F.softmax(step.teacher(x) / t, 1), reduction="batchmean")
                * t
                * t
            )
            expected = (1 - float(cfg.method.alpha)) * ce + float(cfg.method.alpha) * soft
    if method == "ikd":
        assert loss > expected  # plus the feature-matching term
    else:
        torch.testing.assert_close(loss, expected)

    frozen = [p.detach().clone() for p in step.teacher.parameters()] if step.teacher is not None else []
    assert torch.isfinite(step(x, y))
    if step.teacher is not None:
        assert all(torch.equal(a, b) for a, b in zip(frozen, step.teacher.parameters()))
    step.close()


def test_speed_switches_reach_both_paths(tmp_path, one_thread):
    """--channels-last switches the bare loop's networks too, so the 2/1 ratio compares like with like."""
    cfg = bench.compose_config("usps", "ikd", ["callbacks.speedups.channels_last=true"])
    step = throughput.BareStep(cfg, torch.device("cpu"))
    for net in (step.net, step.teacher, step.adapters):
        assert all(
            p.is_contiguous(memory_format=torch.channels_last)
            for p in net.parameters()
            if p.ndim == 4 and p.shape[1] > 1
        )
    step.close()
    with pytest.raises(ValueError, match="trainer.precision=16-mixed"):
        throughput.BareStep(
            bench.compose_config("usps", "scratch", ["trainer.precision=16-mixed"]), torch.device("cpu")
        )

    # the Lightning path's Trainer gets the switches; neither is trained on this CPU: a training step with either
    # turns the loss NaN at random there (torch 2.14; docs/benchmarks.md, "Speed switches"), so training refuses them
    _, trainer = throughput.build_lightning(cfg, 1, tmp_path / "run")
    assert next(c for c in trainer.callbacks if isinstance(c, Speedups)).channels_last is True
    bf16 = bench.compose_config("usps", "scratch", ["trainer.precision=bf16-mixed"])
    _, trainer = throughput.build_lightning(bf16, 1, tmp_path / "run-bf16")
    assert trainer.precision == "bf16-mixed"
    step = throughput.BareStep(bf16, torch.device("cpu"))
    with torch.no_grad(), step.autocast:  # a forward only: the bare loop computes in bf16
        assert step.net(torch.randn(2, 1, 16, 16)).dtype == torch.bfloat16
    step.close()


def test_step_flops_add_up(one_thread):
    """RKD = scratch + one teacher forward; IKD adds only its 1x1 adapters (forward and backward)."""
    images, labels = torch.randn(4, 1, 16, 16), torch.arange(4)
    flops = {}
    for method in ("scratch", "rkd", "ikd"):
        step = throughput.BareStep(bench.compose_config("usps", method), torch.device("cpu"))
        flops[method] = count_flops(step, images, labels)
        step.close()
    cfg = bench.compose_config("usps", "rkd")
    teacher = build_resnet(**OmegaConf.to_container(cfg.teacher_model, resolve=True)).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        teacher(images)
    assert flops["rkd"] == flops["scratch"] + counter.get_total_flops()
    adapters = (
        3 * 2 * 4 * (64 * 256 * 4 * 4 + 128 * 512 * 2 * 2 + 256 * 1024 + 512 * 2048)
    )  # fwd + 2 bwd GEMMs; USPS maps 4,2,1,1 px
    assert flops["ikd"] == flops["rkd"] + adapters
