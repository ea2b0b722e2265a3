import shutil

import pytest
import torch
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from kd_lightning.run import teachers
from kd_lightning.run.config import ConfigError, validate_config
from tests.datasets.folder_trees import synthetic_tree
from tests.helpers import FAST, MOMENTUM, compose_cfg, compose_like_hydra, compose_run_config

DATASETS = ["mnist", "fashion_mnist", "usps", "cifar10", "cifar100"]
METHODS = ["teacher", "scratch", "rkd", "ikd"]


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("method", METHODS)
def test_every_dataset_and_method_composes_and_validates(dataset, method, fake_data_dir):
    cfg = compose_cfg([f"dataset={dataset}", f"method={method}"], data_dir=fake_data_dir, fast=False)
    validate_config(cfg)
    assert cfg.trainer.max_epochs == (20 if method == "teacher" else 10)
    assert cfg.method.net.arch == ("resnet50" if method == "teacher" else "resnet18")
    assert cfg.method.net.num_classes == cfg.dataset.num_classes and cfg.method.net.in_channels == cfg.dataset.channels
    assert cfg.paths.run_dir.endswith(f"default/{dataset}/{method}/seed0")


def test_paper_defaults():
    cfg = compose_cfg(fast=False)
    assert cfg.recipe.optimizer.lr == 0.001 and cfg.recipe.optimizer.momentum == 0.9 and cfg.recipe.batch_size == 64
    rkd = compose_cfg(["method=rkd"], fast=False).method
    assert (rkd.alpha, rkd.temperature) == (0.7, 4.0)
    assert list(compose_cfg(["method=ikd"], fast=False).method.stages) == ["layer1", "layer2", "layer3", "layer4"]
    assert cfg.trainer.accelerator == "auto"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("method=rkd method.alpha=1.5", "method.alpha"),
        ("method=rkd method.alpha=-0.1", "method.alpha"),
        ("method=rkd method.temperature=0", "method.temperature"),
        ("method=ikd method.temperature=-2", "method.temperature"),
        ("method=ikd method.feature_weight=-1", "method.feature_weight"),
        ("method=ikd method.stages=[layer1,layer9]", "method.stages"),
        ("method=ikd method.stages=[]", "method.stages"),
        ("recipe.optimizer.lr=0", "recipe.optimizer.lr"),
        ("recipe.optimizer.lr=-0.1", "recipe.optimizer.lr"),
        ("recipe.batch_size=0", "recipe.batch_size"),
        ("trainer.max_epochs=0", "trainer.max_epochs"),
        ("recipe.method_epochs.teacher=0", "trainer.max_epochs"),
        ("dataset.val_fraction=1.0", "dataset.val_fraction"),
        ("dataset.val_fraction=0", "dataset.val_fraction"),
        ("dataset.num_workers=-1", "dataset.num_workers"),
        ("dataset.mean=[0.1,0.2]", "dataset.mean"),
        ("dataset.std=[0]", "dataset.std"),
        ("student_model.arch=vgg11", "student_model.arch"),
        ("teacher_model.stem=tiny", "teacher_model.stem"),
        ("seed=-1", "seed"),
        ("teacher_missing=maybe", "teacher_missing"),
        ("teacher_ckpt=/no/such/teacher.ckpt", "teacher_ckpt"),
        ("paths.data_dir=/no/such/folder", "paths.data_dir"),
        ("recipe=strong recipe.optimizer.momentum=0", "recipe.optimizer.nesterov"),
        # a run that would stop short of its recipe, or never write the checkpoints its tests read (s16 review)
        ("trainer.max_time=00:00:00:01", "trainer.max_time"),
        ("trainer.fast_dev_run=true", "trainer.fast_dev_run"),
        ("trainer.limit_train_batches=0", "trainer.limit_train_batches"),
        ("trainer.limit_val_batches=0.0", "trainer.limit_val_batches"),
        ("trainer.check_val_every_n_epoch=5", "trainer.check_val_every_n_epoch"),
        ("callbacks.model_checkpoint.save_top_k=0", "callbacks.model_checkpoint.save_top_k"),
        ("callbacks.model_checkpoint.mode=min", "callbacks.model_checkpoint.mode"),
        ("callbacks.model_checkpoint.monitor=val/loss", "callbacks.model_checkpoint.mode"),
        ("+callbacks.last_checkpoint.every_n_epochs=2", "callbacks.last_checkpoint.every_n_epochs"),
        ("+callbacks.model_checkpoint.every_n_epochs=2", "callbacks.model_checkpoint.every_n_epochs"),
        ("+callbacks.model_checkpoint.every_n_train_steps=5", "callbacks.model_checkpoint.every_n_train_steps"),
        ("+dataset.eval_batch_size=4", "dataset.eval_batch_size"),  # with FAST's limit_val_batches=1, a count
    ],
)
def test_bad_values_are_rejected_naming_the_key(override, key, fake_data_dir):
    overrides = override.split(" ")
    data_dir = None if override.startswith("paths.data_dir") else fake_data_dir
    cfg = compose_cfg(overrides, data_dir=data_dir, fast="epochs" not in override)
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    assert key in str(info.value)


@pytest.mark.parametrize("accelerator", ["auto", "gpu"])
def test_deterministic_true_is_refused_where_the_run_would_train_on_a_gpu(accelerator, fake_data_dir, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    cfg = compose_cfg([f"trainer.accelerator={accelerator}", "trainer.deterministic=true"], data_dir=fake_data_dir)
    with pytest.raises(ConfigError, match="trainer.deterministic=true on a GPU"):
        validate_config(cfg)
    validate_config(compose_cfg(["trainer.accelerator=cpu", "trainer.deterministic=true"], data_dir=fake_data_dir))
    validate_config(compose_cfg([f"trainer.accelerator={accelerator}"], data_dir=fake_data_dir))  # warn: accepted


@pytest.mark.parametrize("accelerator", ["auto", "cpu"])
def test_gpu_speed_switches_are_refused_where_the_run_would_train_on_a_cpu(accelerator, fake_data_dir, monkeypatch):
    """channels_last and reduced precision turn a CPU run's loss NaN at random (docs/benchmarks.md)."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    device = f"trainer.accelerator={accelerator}"
    channels_last = [device, "callbacks.speedups.channels_last=true"]
    with pytest.raises(ConfigError, match="callbacks.speedups.channels_last=true on a CPU"):
        validate_config(compose_cfg(channels_last, data_dir=fake_data_dir))
    for precision in ("bf16-mixed", "bf16-true", "16-mixed"):
        with pytest.raises(ConfigError, match=f"trainer.precision={precision} on a CPU"):
            validate_config(compose_cfg([device, f"trainer.precision={precision}"], data_dir=fake_data_dir))
    validate_config(compose_cfg([device, "trainer.precision=32-true"], data_dir=fake_data_dir))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    if accelerator == "auto":  # the same switches train on the GPU there: accepted
        validate_config(compose_cfg([*channels_last, "trainer.precision=bf16-mixed"], data_dir=fake_data_dir))


@pytest.mark.parametrize(
    ("group", "choice"),
    [("dataset", "svhn"), ("method", "relational"), ("recipe", "turbo"), ("model@student_model", "vgg")],
)
def test_unknown_group_option_lists_the_valid_ones(group, choice):
    with pytest.raises(MissingConfigException) as info:
        compose_cfg([f"{group}={choice}"])
    message = str(info.value)
    assert choice in message
    if group == "dataset":
        assert all(name in message for name in DATASETS)


def test_teacher_key_follows_teacher_relevant_config_only(fake_data_dir):
    base = teachers.entry_dir(compose_cfg(["method=rkd"], data_dir=fake_data_dir))
    # the same teacher serves every student of the dataset and seed, whatever their KD settings
    assert teachers.entry_dir(compose_cfg(["method=ikd", "method.alpha=0.2"], data_dir=fake_data_dir)) == base
    assert teachers.entry_dir(compose_cfg(["method=teacher"], data_dir=fake_data_dir)) == base
    assert teachers.entry_dir(compose_cfg(["method=rkd", "dataset.num_workers=3"], data_dir=fake_data_dir)) == base
    # anything that changes the teacher gives another key (or seed folder)
    for change in (
        ["recipe.optimizer.lr=0.01"],
        ["teacher_model.stem=cifar"],
        ["trainer.max_epochs=2"],
        ["recipe.augmentation.rotation=0"],
        ["dataset.split_seed=5"],
        ["teacher_model.arch=resnet34"],
    ):
        other = teachers.entry_dir(compose_cfg(["method=rkd", *change], data_dir=fake_data_dir))
        assert other.parent != base.parent, change
    assert teachers.entry_dir(compose_cfg(["method=rkd", "seed=1"], data_dir=fake_data_dir)) == base.parent / "seed1"
    assert base.parent.parent.name == "usps" and base.parent.name.startswith("resnet10-")  # FAST's teacher


def test_teacher_config_is_the_student_config_with_method_teacher(fake_data_dir):
    cfg = compose_cfg(
        ["method=ikd", "recipe.optimizer.lr=0.02"], data_dir=fake_data_dir, fast=False
    )  # the default teacher
    tcfg = teachers.teacher_config(cfg)
    assert tcfg.method.name == "teacher" and tcfg.method.net.arch == "resnet50"
    assert tcfg.recipe.optimizer.lr == 0.02 and tcfg.paths.run_dir.endswith("usps/teacher/seed0")
    assert OmegaConf.to_container(cfg.method)["name"] == "ikd"  # the student's config is untouched


@pytest.mark.parametrize(
    ("overrides", "key", "gpus"),
    [
        (["trainer.devices=2"], "trainer.devices=2", 0),
        (["trainer.devices=[0,1]"], "trainer.devices=[0, 1]", 0),
        (["trainer.devices='0,1'"], "trainer.devices='0,1'", 0),
        (["trainer.devices=-1"], "trainer.devices=-1 (resolves to 4 devices)", 4),
        (["trainer.devices=auto"], "trainer.devices='auto' (resolves to 4 devices)", 4),
        (["trainer=gpu", "trainer.devices=auto"], "trainer.devices='auto' (resolves to 2 devices)", 2),
        (["trainer.num_nodes=2"], "trainer.num_nodes=2", 0),
        (["trainer.strategy=ddp"], "trainer.strategy='ddp'", 0),
        (["trainer.strategy=fsdp"], "trainer.strategy='fsdp'", 0),
    ],
)
def test_multi_device_runs_are_refused_naming_the_key_and_the_launchers(
    overrides, key, gpus, fake_data_dir, monkeypatch
):
    """Several devices per run would pad evaluation with duplicate batches and grow the batch:
    the grid scales by jobs."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    cfg = compose_cfg(overrides, data_dir=fake_data_dir)
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    message = str(info.value)
    assert key in message, message
    assert "launcher=gpu_node" in message and "launcher=slurm" in message and "duplicate batches" in message


@pytest.mark.parametrize(
    ("overrides", "gpus"),
    [
        ([], 0),
        ([], 4),
        (["trainer.devices=auto"], 1),
        (["trainer=cpu", "trainer.devices=auto"], 4),
        (["trainer.devices=[3]"], 4),
        (["trainer.devices='1,'"], 4),
        (["trainer.strategy=single_device"], 1),
    ],
)
def test_one_device_runs_are_accepted(overrides, gpus, fake_data_dir, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    validate_config(compose_cfg(overrides, data_dir=fake_data_dir))


def test_lightning_floor_forwards_set_epoch_to_the_seeded_batch_sampler():
    """pyproject's lightning>=2.6.1: the distributed wrapper passes each epoch on to the seeded batch sampler."""
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    from kd_lightning.datasets.batched import SeededBatchSampler

    sampler = SeededBatchSampler(40, 8, shuffle=True, drop_last=False, seed=0)
    wrapper = DistributedSamplerWrapper(sampler, num_replicas=2, rank=0, shuffle=False)
    wrapper.set_epoch(3)
    assert sampler.epoch == 3
    assert {epoch for epoch, _, _ in wrapper} == {3}


#: override lists of the kinds the tests compose: group choices with package overrides, value overrides into groups,
#: additions, deletions, interpolations, a folder dataset whose metadata resolvers read the folder, experiments
LIKE_THE_TESTS = [
    [],
    [*FAST, "method=rkd", "dataset=cifar100", "seed=3"],
    [*FAST, "method=ikd", "recipe=strong", MOMENTUM, "dataset.factors.train_fraction=0.5", "recipe.min_steps=9"],
    [*FAST, "teacher=ensemble", "teacher.members=2", "method=rkd", "teacher.data=full", "name=x"],
    [*FAST, "~recipe.optimizer.momentum", "recipe.optimizer._target_=torch.optim.Adam", "method=teacher"],
    [*FAST, "+callbacks.preempt._target_=tests.helpers.PreemptAfterFirstEpoch", "+callbacks.preempt.at_epoch=3"],
    [*FAST, "experiment=study", "recipe=fast", "dataset=usps", "seed=0", "paths.output_dir=/elsewhere"],
    ["model@student_model=resnet50", "teacher_variant=patient", "recipe.method_epochs.teacher=7", "logger.csv=null"],
    [*FAST, "trainer.max_epochs=4", "callbacks.model_checkpoint.monitor=val/loss", "paths.run_dir=${paths.root_dir}"],
    [*FAST, "recipe.batch_size=7", "recipe={batch_size: 9}"],  # a dict for a group's name: a value, where it stands
]


@pytest.mark.parametrize(
    "overrides", LIKE_THE_TESTS, ids=lambda o: " ".join(o[len(FAST) :] if o[:1] == FAST[:1] else o)
)
def test_the_helpers_composition_is_hydras(overrides, fake_data_dir, tmp_path):
    """tests/helpers.py composes each list of config-group choices once and applies the other overrides to a copy
    (Hydra's second step): the same config as Hydra's compose, unresolved and resolved, with the same flags."""
    overrides = [*overrides, f"paths.data_dir={fake_data_dir}"]
    hydras = compose_run_config(overrides)
    for _ in range(2):  # composed (unless an earlier test chose the same groups), then from the copy
        ours = compose_like_hydra(overrides)
        assert OmegaConf.to_container(ours) == OmegaConf.to_container(hydras)
        assert OmegaConf.to_container(ours, resolve=True) == OmegaConf.to_container(hydras, resolve=True)
        assert OmegaConf.is_struct(ours) and not OmegaConf.is_readonly(ours)
        assert OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(hydras)


def test_the_helpers_composition_reads_folders_when_read_and_fails_like_hydra(tmp_path):
    root = synthetic_tree(tmp_path / "tree", num_classes=2, per_class=6)
    folder = ["dataset=folder", f"dataset.path={root}", "dataset.label=shapes"]
    first = compose_like_hydra(folder)
    assert OmegaConf.to_container(first, resolve=True) == OmegaConf.to_container(
        compose_run_config(folder), resolve=True
    )
    (root / "class_2").mkdir()  # the folder changes: its metadata is read again when the config is
    for image in (root / "class_0").iterdir():
        shutil.copy(image, root / "class_2" / image.name)
    assert compose_like_hydra(folder).dataset.num_classes == compose_run_config(folder).dataset.num_classes == 3
    for bad in (["trainer.no_such_key=1"], ["+trainer.max_epochs=3"], ["~trainer.no_such_key"], ["seed=0,1"]):
        with pytest.raises(Exception) as ours:
            compose_like_hydra(bad)
        with pytest.raises(Exception) as hydras:
            compose_run_config(bad)
        assert (type(ours.value), str(ours.value)) == (type(hydras.value), str(hydras.value)), bad
