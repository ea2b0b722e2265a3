"""kd_lightning.export: a real module checkpoint round-trips to ONNX with only the student inside; bad inputs exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from kd_lightning.datasets.synthetic import write_dataset
from kd_lightning.measure import onnx as onnx_measure
from kd_lightning.models import build_resnet, load_network
from kd_lightning.modules import IKDStudent, ScratchStudent
from kd_lightning.run.measuring import label_names
from kd_lightning.tools.export import (
    ExportError,
    export_onnx,
    folded_parameter_count,
    initializer_count,
    main,
    read_metadata,
)

NET = {"arch": "resnet18", "num_classes": 10, "in_channels": 1, "stem": "imagenet"}
SGD = {"_target_": "torch.optim.SGD", "lr": 0.01}
USPS_CONFIG = {
    "_target_": "kd_lightning.datasets.USPSDataModule",
    "name": "usps",
    "num_classes": 10,
    "channels": 1,
    "image_size": 16,
    "mean": [0.2539],
    "std": [0.3842],
    "val_fraction": 0.7,
    "split_seed": 1234,
    "batch_size": 64,
    "top_k": [1],
}


def _randomise_batchnorm(net: torch.nn.Module, seed: int) -> None:
    """Trained-looking BatchNorm statistics, so folding them into the convolutions is really exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=g))


@pytest.fixture(scope="module")
def ikd_checkpoint(tmp_path_factory) -> Path:
    """An IKD student checkpoint written by a Lightning Trainer after one step (teacher: a ResNet18)."""
    torch.manual_seed(0)
    module = IKDStudent(
        net=NET, optimizer=SGD, teacher=build_resnet("resnet18", 10, 1), input_shape=(1, 16, 16), dataset="usps"
    )
    data = DataLoader(TensorDataset(torch.randn(8, 1, 16, 16), torch.randint(0, 10, (8,))), batch_size=4)
    trainer = L.Trainer(
        max_steps=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, data)
    with torch.no_grad():
        _randomise_batchnorm(module.net, 1)
    path = tmp_path_factory.mktemp("ikd") / "best-epoch000.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def usps_dir(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data"), "usps", 96, 40)


@pytest.fixture(scope="module")
def exported(ikd_checkpoint, usps_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("export") / "student.onnx"
    report = export_onnx(ikd_checkpoint, out, data_dir=usps_dir, int8=True, latency_repeats=2)
    return out, report


def test_checkpoint_holds_adapters_but_not_the_teacher(ikd_checkpoint):
    state = torch.load(ikd_checkpoint, weights_only=True)["state_dict"]
    prefixes = {k.split(".")[0] for k in state}
    assert prefixes == {"net", "adapters"}


def test_round_trip_matches_pytorch_on_the_test_split(exported, ikd_checkpoint):
    out, report = exported
    assert report["ok"] and out.is_file() and report["out"] == str(out)
    v = report["verification"]
    assert v["data"] == "test split" and v["images"] == 12  # 30% of the 40 fake test images
    assert v["max_abs_logit_diff"] < 1e-4 and v["top1_agreement"] == 1.0
    assert v["accuracy_onnx"] == v["accuracy_pytorch"] is not None
    assert report["left_out"] == ["adapters"] and report["method"] == "ikd"

    # independent check: onnxruntime vs the rebuilt student on fresh inputs, two batch sizes (dynamic axis)
    net, _ = load_network(ikd_checkpoint)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        x = torch.randn(batch, 1, 16, 16)
        with torch.no_grad():
            expected = net(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_only_the_student_is_in_the_graph(exported, ikd_checkpoint):
    out, report = exported
    model = onnx.load(str(out))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    net, _ = load_network(ikd_checkpoint)
    student = build_resnet(**NET)
    # BatchNorm folded into the convolutions: C fewer elements per BatchNorm, nothing else added
    assert initializer_count(out) == folded_parameter_count(student) == report["onnx_initializer_params"]
    state = torch.load(ikd_checkpoint, weights_only=True)["state_dict"]
    adapter_params = sum(v.numel() for k, v in state.items() if k.startswith("adapters."))
    assert adapter_params > 0 and initializer_count(out) < folded_parameter_count(student) + adapter_params
    names = (
        [t.name for t in model.graph.initializer]
        + [n.name for n in model.graph.node]
        + [i for n in model.graph.node for i in n.input]
    )
    assert not [n for n in names if "teacher" in n or "adapter" in n]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_metadata_describes_the_input(exported):
    out, _ = exported
    meta = read_metadata(out)
    assert meta["dataset"] == "usps" and meta["num_classes"] == "10"
    assert json.loads(meta["input_shape"]) == ["batch", 1, 16, 16]
    assert json.loads(meta["mean"]) == [0.2539] and json.loads(meta["std"]) == [0.3842]
    assert meta["input"] == "input: float32 NCHW, pixels scaled to [0,1] then (x-mean)/std"
    assert json.loads(meta["label_names"]) == [str(i) for i in range(10)]
    assert json.loads(meta["verified"])["data"] == "test split"


def test_int8_copy(exported):
    out, report = exported
    q = report["int8"]
    int8 = Path(q["out"])
    assert int8.is_file() and int8.name == "student.int8.onnx"
    assert q["int8_mb"] < 0.5 * q["fp32_mb"]
    assert 0.0 <= q["accuracy_int8"] <= 1.0 and 0.0 <= q["top1_agreement_with_fp32"] <= 1.0
    assert q["latency_ms_b1_int8"]["median"] > 0 and q["latency_ms_b1_int8"]["p90"] >= q["latency_ms_b1_int8"]["median"]
    assert "quantization" in read_metadata(int8)
    assert not list(int8.parent.glob(".*tmp*")) and not list(int8.parent.glob("*.pre.onnx"))


def test_run_folder_with_the_cli(ikd_checkpoint, usps_dir, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = run / "checkpoints" / "best-epoch000.ckpt"
    shutil.copyfile(ikd_checkpoint, ckpt)
    config = {
        "dataset": {**USPS_CONFIG, "data_dir": str(usps_dir), "mean": [0.25], "std": [0.4]},
        "method": {"name": "ikd"},
    }
    (run / "results.json").write_text(
        json.dumps({"status": "completed", "best_checkpoint": "/elsewhere/moved/best-epoch000.ckpt", "config": config})
    )
    assert main([str(run)]) == 0
    out = run / "export" / "model.onnx"
    meta = read_metadata(out)
    assert json.loads(meta["mean"]) == [0.25] and json.loads(meta["std"]) == [0.4]  # the run's own normalisation
    assert meta["method"] == "ikd" and meta["source_checkpoint"] == str(ckpt)
    assert "test split (12 images" in capsys.readouterr().out
    # existing output: refused without --force, replaced with it
    before = out.stat().st_mtime_ns
    assert main([str(run), "--random-inputs"]) == 2
    assert "already exists" in capsys.readouterr().err and out.stat().st_mtime_ns == before
    assert main([str(run), "--random-inputs", "--force"]) == 0


def test_scratch_checkpoint_without_dataset_needs_dataset_flag(tmp_path, capsys):
    """A checkpoint dict built the way Lightning builds it, from a module that does not record its dataset."""
    module = ScratchStudent(net=NET, optimizer=SGD)
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "epoch": 0, "global_step": 0}
    path = tmp_path / "scratch.ckpt"
    torch.save(ckpt, path)
    assert main([str(path), "--random-inputs"]) == 2
    err = capsys.readouterr().err
    assert "--dataset" in err and str(path) in err and "Traceback" not in err
    report = export_onnx(path, dataset="usps", use_data=False)
    assert (
        report["ok"] and report["verification"]["data"] == "random" and report["verification"]["accuracy_onnx"] is None
    )
    assert Path(report["out"]) == tmp_path / "scratch.onnx"
    assert report["dataset_config_from"] == "conf/dataset/usps.yaml" and report["left_out"] == []


@pytest.mark.parametrize("kind", ["plain_state_dict", "not_torch", "wrong_dataset"])
def test_not_a_kd_lightning_checkpoint(kind, tmp_path, capsys, ikd_checkpoint):
    path = tmp_path / "model.ckpt"
    args = [str(path), "--random-inputs"]
    if kind == "plain_state_dict":
        torch.save(build_resnet(**NET).state_dict(), path)
        expected = "not a kd-lightning run checkpoint"
    elif kind == "not_torch":
        path.write_text("hello")
        expected = "not readable as a PyTorch checkpoint"
    else:
        shutil.copyfile(ikd_checkpoint, path)
        args += ["--dataset", "cifar10"]
        expected = "'usps'"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert expected in err and str(path) in err and "Traceback" not in err
    assert not (tmp_path / "model.onnx").exists()


def test_missing_source_and_unwritable_output(tmp_path, capsys, ikd_checkpoint):
    missing = tmp_path / "nope" / "best.ckpt"
    assert main([str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "run folder" in err and "Traceback" not in err

    empty_run = tmp_path / "empty_run"
    empty_run.mkdir()
    assert main([str(empty_run)]) == 2
    assert "no checkpoint found" in capsys.readouterr().err

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = blocker / "model.onnx"  # its parent is a file: cannot be created, whoever runs the test
    assert main([str(ikd_checkpoint), "--out", str(out), "--random-inputs"]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "writable" in err

    assert main([str(ikd_checkpoint), "--out", str(tmp_path / "model.pt"), "--random-inputs"]) == 2
    assert ".onnx" in capsys.readouterr().err


def test_disagreement_is_reported_and_nothing_written(ikd_checkpoint, tmp_path, monkeypatch, capsys):
    real = onnx_measure.ort_logits
    monkeypatch.setattr(
        onnx_measure,
        "ort_logits",
        lambda session, images: real(session, images) + np.linspace(0, 1, 10, dtype=np.float32),
    )
    out = tmp_path / "bad.onnx"
    assert main([str(ikd_checkpoint), "--out", str(out), "--random-inputs"]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert not out.exists() and not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*"))


def test_explicit_data_dir_without_the_data_is_an_error(ikd_checkpoint, tmp_path, capsys):
    with pytest.raises(ExportError, match="--data-dir"):
        export_onnx(ikd_checkpoint, tmp_path / "m.onnx", data_dir=tmp_path / "empty")


def test_label_names():
    assert label_names("cifar10", None)[:2] == ["airplane", "automobile"]
    assert label_names("fashion_mnist", None, classes=[9, 0]) == [
        "T-shirt/top",
        "Ankle boot",
    ]  # remapped in id order
    assert label_names("cifar100", None) is None  # read from the data's meta file when present
