"""kd_lightning.measure.efficiency: FLOPs against an independent count, sizes, and sane (never thresholded) timings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kd_lightning.measure import efficiency
from kd_lightning.measure.efficiency import (
    PRECISIONS,
    checkpoint_size_mb,
    count_flops,
    count_parameters,
    cpu_latency,
    cpu_throughput,
    flops_per_image,
    lightning_precision,
    measure_efficiency,
    percentile,
)
from kd_lightning.models import build_resnet


def hooked_flops(net: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Independent count: 2 * Cin/groups * kH * kW * Cout * Hout * Wout per Conv2d, 2 * in * out per Linear row."""
    total = 0

    def conv(module: nn.Conv2d, inputs, output) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        n, cout, hout, wout = output.shape
        total += 2 * n * (module.in_channels // module.groups) * kh * kw * cout * hout * wout

    def linear(module: nn.Linear, inputs, output) -> None:
        nonlocal total
        rows = output.numel() // module.out_features
        total += 2 * rows * module.in_features * module.out_features

    handles = [m.register_forward_hook(conv) for m in net.modules() if isinstance(m, nn.Conv2d)]
    handles += [m.register_forward_hook(linear) for m in net.modules() if isinstance(m, nn.Linear)]
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
    return total


@pytest.mark.parametrize(
    ("arch", "in_channels", "stem", "input_shape"),
    [
        ("resnet18", 1, "imagenet", (1, 16, 16)),
        ("resnet50", 1, "imagenet", (1, 16, 16)),
        ("resnet18", 3, "cifar", (3, 32, 32)),
        ("resnet50", 3, "imagenet", (3, 32, 32)),
    ],
)
def test_flops_match_an_independent_conv_and_linear_count(arch, in_channels, stem, input_shape):
    net = build_resnet(arch, 10, in_channels, stem)
    # FlopCounterMode counts exactly the conv and matmul multiply-adds (x2); no BN, ReLU, pooling or bias
    assert flops_per_image(net, input_shape) == hooked_flops(net, input_shape)


def test_flops_per_image_is_per_image_and_leaves_the_mode_alone():
    net = build_resnet("resnet18", 10, 1).train()
    one = flops_per_image(net, (1, 16, 16))
    assert net.training
    x = torch.zeros(4, 1, 16, 16)
    with torch.no_grad():
        assert count_flops(net.eval(), x) == 4 * one


def test_count_flops_of_a_training_step_covers_the_backward():
    net = build_resnet("resnet18", 10, 1)
    x, y = torch.randn(2, 1, 16, 16), torch.tensor([0, 1])

    def step() -> None:
        nn.functional.cross_entropy(net(x), y).backward()

    forward = 2 * flops_per_image(net, (1, 16, 16))
    assert 2 * forward < count_flops(step) <= 3 * forward  # backward = grad wrt inputs + wrt weights


def test_parameter_counts_and_sizes(tmp_path):
    net = build_resnet("resnet18", 10, 1)
    assert count_parameters(net) == sum(p.numel() for p in net.parameters()) == 11_175_370
    path = tmp_path / "blob.bin"
    path.write_bytes(b"x" * 2_500_000)
    assert checkpoint_size_mb(path) == pytest.approx(2.5)


def test_percentile_matches_numpy():
    values = [5.0, 1.0, 3.0, 2.0, 8.0, 13.0, 21.0]
    for q in (0, 50, 90, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert percentile([4.0], 90) == 4.0


def tiny() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)
    )


def test_cpu_latency_and_throughput_are_sane_numbers():
    net = tiny().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    threads = torch.get_num_threads()
    lat = cpu_latency(net, (1, 8, 8), warmup=1, repeats=5)
    assert set(lat) == {"median", "p90", "threads", "repeats"}
    assert lat["median"] > 0 and lat["p90"] >= lat["median"]
    assert lat["threads"] == threads and lat["repeats"] == 5
    lat1 = cpu_latency(net, (1, 8, 8), warmup=0, repeats=3, threads=1)
    assert lat1["threads"] == 1 and torch.get_num_threads() == threads  # restored
    assert cpu_throughput(net, (1, 8, 8), batch_size=16, warmup=1, repeats=2) > 0
    assert net.training  # mode restored; BatchNorm statistics untouched (eval mode inside)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="input_shape"):
        cpu_latency(net, (8, 8))


def test_measure_efficiency_schema():
    net = tiny()
    result = measure_efficiency(net, (1, 8, 8), quick=True, gpu=False)
    assert list(result) == [
        "params",
        "flops_per_image",
        "checkpoint_mb",
        "latency_ms_b1",
        "throughput_b64_img_s",
        "device",
        "gpu",
    ]
    assert result["params"] == count_parameters(net) and isinstance(result["params"], int)
    assert result["flops_per_image"] == hooked_flops(net, (1, 8, 8))
    assert result["checkpoint_mb"] is None
    assert set(result["latency_ms_b1"]) == {"median", "p90", "threads", "repeats"}
    assert result["latency_ms_b1"]["repeats"] == efficiency.LATENCY_REPEATS[True][1]
    assert result["throughput_b64_img_s"] > 0 and result["device"] == "cpu" and result["gpu"] is None


def test_measure_efficiency_reports_the_checkpoint_file(tmp_path):
    net = tiny()
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    result = measure_efficiency(net, (1, 8, 8), checkpoint=path, quick=True, gpu=False)
    assert result["checkpoint_mb"] == pytest.approx(path.stat().st_size / 1e6, abs=1e-3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU guard")
def test_gpu_timing_needs_cuda():
    with pytest.raises(RuntimeError, match="CUDA"):
        efficiency.gpu_latency(tiny(), (1, 8, 8))
    assert measure_efficiency(tiny(), (1, 8, 8), quick=True)["gpu"] is None


def test_trainer_precision_is_read_as_lightning_reads_it():
    """trainer.precision is null in conf/trainer/default.yaml: that is Lightning's 32-true, not 'None'."""
    assert lightning_precision(None) == "32-true"
    assert lightning_precision(32) == "32" and PRECISIONS["32"] == PRECISIONS["32-true"]
    assert PRECISIONS[lightning_precision("bf16")] == PRECISIONS["bf16-mixed"]
    with pytest.raises(ValueError, match=r"trainer\.precision='None'"):
        lightning_precision("None")


def test_measure_efficiency_checks_the_precision_before_timing_on_any_machine():
    """A bad precision used to surface only on a GPU machine, after training, as a recorded error."""
    with pytest.raises(ValueError, match="trainer.precision"):
        measure_efficiency(tiny(), (1, 8, 8), quick=True, gpu=False, precision="64-true")
    assert measure_efficiency(tiny(), (1, 8, 8), quick=True, gpu=False, precision=None)["device"] == "cpu"
