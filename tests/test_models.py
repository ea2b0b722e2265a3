import pytest
import torch

from kd_lightning.hooks import FeatureTap
from kd_lightning.models import build_resnet
from kd_lightning.modules.ikd import IKDStudent

SHAPES = {
    "mnist": (1, 28, 10),
    "fashion_mnist": (1, 28, 10),
    "usps": (1, 16, 10),
    "cifar10": (3, 32, 10),
    "cifar100": (3, 32, 100),
}
OPTIMIZER = {"_target_": "torch.optim.SGD", "lr": 0.01}


@pytest.mark.parametrize("arch", ["resnet50", "resnet18", "resnet10"])
@pytest.mark.parametrize("dataset", list(SHAPES))
@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
def test_logits_have_shape_batch_by_classes(arch, dataset, stem):
    channels, size, classes = SHAPES[dataset]
    net = build_resnet(arch, classes, channels, stem).eval()
    with torch.no_grad():
        assert net(torch.randn(2, channels, size, size)).shape == (2, classes)


def test_resnet10_is_resnet18_with_one_block_per_stage():
    """The test networks (tests/helpers.py): IKD's hook paths and adapters must see what they see on ResNet18."""
    small, full = build_resnet("resnet10", 10, 1), build_resnet("resnet18", 10, 1)
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        assert len(getattr(small, stage)) == 1 and len(getattr(full, stage)) == 2
        assert getattr(small, stage)[0].conv1.out_channels == getattr(full, stage)[0].conv1.out_channels
    assert {name for name, _ in small.named_children()} == {name for name, _ in full.named_children()}
    assert sum(p.numel() for p in small.parameters()) < 0.5 * sum(p.numel() for p in full.parameters())


def test_stems_differ_as_documented():
    imagenet, cifar = build_resnet("resnet18", 10, 3, "imagenet"), build_resnet("resnet18", 10, 3, "cifar")
    assert imagenet.conv1.kernel_size == (7, 7) and imagenet.conv1.stride == (2, 2)
    assert (
        cifar.conv1.kernel_size == (3, 3)
        and cifar.conv1.stride == (1, 1)
        and isinstance(cifar.maxpool, torch.nn.Identity)
    )
    assert build_resnet("resnet18", 10, 1).conv1.in_channels == 1


def test_feature_tap_captures_every_configured_stage_and_clears():
    net = build_resnet("resnet18", 10, 1).eval()
    tap = FeatureTap(net, ["layer1", "layer3", "layer4.1"])
    net(torch.randn(2, 1, 28, 28))
    feats = tap.pop()
    assert set(feats) == {"layer1", "layer3", "layer4.1"}
    assert feats["layer1"].shape[1] == 64 and feats["layer3"].shape[1] == 256
    with pytest.raises(RuntimeError, match="no activation"):
        tap.pop()
    tap.remove()
    net(torch.randn(2, 1, 28, 28))
    assert tap.features == {}


def test_unknown_stage_names_the_config_key():
    with pytest.raises(ValueError, match=r"method\.stages.*'layer9'"):
        FeatureTap(build_resnet("resnet18", 10, 1), ["layer9"])


@pytest.mark.parametrize("dataset", ["usps", "cifar10"])
def test_ikd_adapters_map_student_to_teacher_shape(dataset):
    channels, size, classes = SHAPES[dataset]
    teacher = build_resnet("resnet50", classes, channels)
    student = IKDStudent(
        net={"arch": "resnet18", "num_classes": classes, "in_channels": channels},
        optimizer=OPTIMIZER,
        teacher=teacher,
        input_shape=[channels, size, size],
    )
    x = torch.randn(3, channels, size, size)
    student.net(x)
    with torch.no_grad():
        teacher(x)
    s, t = student.student_tap.pop(), student.teacher_tap.pop()
    for stage in ["layer1", "layer2", "layer3", "layer4"]:
        adapter = student.adapters[stage]
        assert (adapter.in_channels, adapter.out_channels) == (s[stage].shape[1], t[stage].shape[1])
        assert adapter(s[stage]).shape == t[stage].shape
    assert [student.adapters[k].out_channels for k in student.adapters] == [256, 512, 1024, 2048]


def test_load_network_reads_net_weights_on_a_private_stream(tmp_path):
    """The one checkpoint reader: net.* only (a compiled module's _orig_mod. dropped), eval mode, and the
    caller's random stream untouched (a teacher loaded before the student is built must not move it)."""
    from kd_lightning.models import CheckpointError, load_network, network_copy

    cfg = {"arch": "resnet18", "num_classes": 10, "in_channels": 1, "stem": "imagenet"}
    source = build_resnet(**cfg)
    state = {f"net._orig_mod.{k}": v for k, v in source.state_dict().items()} | {"adapters.0.weight": torch.zeros(1)}
    path = tmp_path / "m.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"net": cfg, "dataset": "usps"}, "epoch": 3}, path)
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    net, info = load_network(path)
    assert torch.equal(torch.rand(1), expected)  # the caller's stream did not move
    assert (
        not net.training and info["skipped_keys"] == ["adapters"] and info["epoch"] == 3 and info["dataset"] == "usps"
    )
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(net(x), source.eval()(x)) and torch.equal(network_copy(source, cfg)(x), source(x))
    torch.save({"state_dict": {}, "hyper_parameters": {"net": cfg}}, path)
    with pytest.raises(CheckpointError, match=r"m\.ckpt: its net\.\* weights do not fit"):
        load_network(path)
