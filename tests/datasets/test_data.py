import bz2
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from kd_lightning.datasets import DatasetError, split_official_test, split_sizes
from kd_lightning.run.build import build_datamodule
from tests.fakedata import CLASSES, SIZES
from tests.helpers import compose_cfg

DATASETS = ["mnist", "fashion_mnist", "usps", "cifar10", "cifar100"]


@pytest.mark.parametrize(("n", "val", "test"), [(2007, 1404, 603), (10000, 7000, 3000), (40, 28, 12)])
def test_split_sizes_follow_table_4(n, val, test):
    assert split_sizes(n, 0.7) == (val, test)


def test_split_is_disjoint_complete_and_fixed_by_split_seed():
    val, test = split_official_test(2007, 0.7, split_seed=1234)
    assert len(val) == 1404 and len(test) == 603
    assert set(val).isdisjoint(test) and set(val) | set(test) == set(range(2007))
    torch.manual_seed(999)  # the run seed must not matter
    assert split_official_test(2007, 0.7, split_seed=1234) == (val, test)
    assert split_official_test(2007, 0.7, split_seed=1) != (val, test)


@pytest.mark.parametrize("name", DATASETS)
def test_datamodule_reads_torchvision_format_and_splits_70_30(name, fake_data_dir):
    cfg = compose_cfg([f"dataset={name}"], data_dir=fake_data_dir)
    dm = instantiate(cfg.dataset, _convert_="all")
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == 96
    assert (len(dm.val_set), len(dm.test_set)) == (28, 12)
    images, labels = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)  # uint8 -> augmented, normalised
    size, channels = SIZES[name], cfg.dataset.channels
    assert images.dtype == torch.float32
    assert images.shape == (cfg.dataset.batch_size, channels, size, size)
    assert labels.dtype == torch.int64 and 0 <= labels.min() and labels.max() < CLASSES[name]
    assert dm.num_classes == CLASSES[name]


def test_each_file_is_read_once_however_often_lightning_prepares_the_data(fake_data_dir, monkeypatch):
    """The training tool prepares the data, then Lightning prepares it again at every fit and test: the splits
    prepare_data read are what setup splits, and once set up nothing is read again."""
    cfg = compose_cfg(["dataset=usps"], data_dir=fake_data_dir)
    reference = instantiate(cfg.dataset, _convert_="all")
    reference.setup("fit")  # read by setup alone
    dm = instantiate(cfg.dataset, _convert_="all")
    reads = []
    original = type(dm).dataset_cls

    def counted(*args, train, **kwargs):
        reads.append(train)
        return original(*args, train=train, **kwargs)

    monkeypatch.setattr(type(dm), "dataset_cls", staticmethod(counted))
    dm.prepare_data()
    dm.prepare_data()
    dm.setup("fit")
    dm.prepare_data()
    dm.setup("test")
    assert sorted(reads) == [False, True]
    for split in ("train_set", "val_set", "test_set"):
        ours, theirs = getattr(dm, split), getattr(reference, split)
        assert torch.equal(ours.images, theirs.images) and torch.equal(ours.labels, theirs.labels), split


def test_split_is_the_same_for_every_run_seed(fake_data_dir):
    def test_images(seed):
        L.seed_everything(seed)
        dm = instantiate(compose_cfg(["dataset=usps"], data_dir=fake_data_dir).dataset, _convert_="all")
        dm.setup("fit")
        return dm.val_indices, dm.test_indices

    assert test_images(0) == test_images(7)


def test_loaders_pin_memory_only_for_a_trainer_on_a_gpu(fake_data_dir):
    """Pinned memory needs a CUDA context: a CPU run on a GPU host (or a DataModule without a Trainer) must not
    create one; a GPU run pins, so the device copies do not wait. An explicit dataset.pin_memory wins."""
    from types import SimpleNamespace

    dm = instantiate(compose_cfg(["dataset=usps"], data_dir=fake_data_dir).dataset, _convert_="all")
    dm.setup("fit")
    assert dm.train_dataloader().pin_memory is False  # no Trainer
    for device, pinned in (("cpu", False), ("cuda", True)):
        epochs = SimpleNamespace(epoch_progress=SimpleNamespace(current=SimpleNamespace(processed=0)))
        dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)), fit_loop=epochs)
        assert dm.train_dataloader().pin_memory is pinned and dm.val_dataloader().pin_memory is pinned
    dm.pin_memory = False
    assert dm.test_dataloader().pin_memory is False


def test_eval_batches_are_normalised_with_the_dataset_statistics(fake_data_dir):
    cfg = compose_cfg(
        ["dataset=usps", "dataset.mean=[0.5]", "dataset.std=[0.25]", "dataset.pipeline=pil"], data_dir=fake_data_dir
    )
    dm = instantiate(cfg.dataset, _convert_="all")
    dm.setup("fit")
    split = dm.val_set.dataset  # the validation Subset the PIL pipeline's batches index
    raw = torch.as_tensor(split.dataset.data[split.indices[0]]).float() / 255
    image, _ = split[0]
    torch.testing.assert_close(image[0], (raw - 0.5) / 0.25)


def test_last_incomplete_training_batch_is_dropped(fake_data_dir):
    # 96 % 90 == 6; with batch 95 a single-sample batch would break BatchNorm on a 1x1 layer4
    dm = instantiate(
        compose_cfg(["dataset=usps", "recipe.batch_size=95"], data_dir=fake_data_dir).dataset, _convert_="all"
    )
    dm.setup("fit")
    assert [len(b[1]) for b in dm.train_dataloader()] == [95]


def test_missing_files_fail_before_training_naming_the_path(tmp_path):
    dm = instantiate(compose_cfg(["dataset=usps"], data_dir=tmp_path).dataset, _convert_="all")
    with pytest.raises(DatasetError, match=str(tmp_path / "USPS" / "usps.bz2")):
        dm.prepare_data()


def test_kd_data_dir_environment_variable_sets_the_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path))
    assert compose_cfg().dataset.data_dir == str(tmp_path)
    assert compose_cfg(data_dir=Path("/elsewhere")).dataset.data_dir == "/elsewhere"


def _corrupt(name: str, root: Path) -> str:
    """Damage one file of ``name`` in place; return the file name the error must mention."""
    if name == "usps":
        target = root / "USPS" / "usps.bz2"
        target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 2])
    elif name == "usps_short_rows":
        target = root / "USPS" / "usps.bz2"
        target.write_bytes(bz2.compress(b"1 1:0.5 2:0.5\n"))
    elif name in ("mnist", "fashion_mnist"):
        target = root / ("MNIST" if name == "mnist" else "FashionMNIST") / "raw" / "train-images-idx3-ubyte"
        data = bytearray(target.read_bytes())
        data[0:4] = b"\x00\x00\x99\x99"  # wrong IDX magic
        target.write_bytes(bytes(data))
    else:
        folder = "cifar-10-batches-py/data_batch_1" if name == "cifar10" else "cifar-100-python/train"
        target = root / folder
        target.write_bytes(target.read_bytes()[:100])
    return str(root)


@pytest.mark.parametrize("name", ["usps", "usps_short_rows", "mnist", "fashion_mnist", "cifar10", "cifar100"])
def test_corrupt_or_truncated_files_give_a_dataset_error(name, tmp_path):
    from tests.fakedata import write_all

    root = write_all(tmp_path, n_train=20, n_test=10)
    must_mention = _corrupt(name, root)
    dataset = "usps" if name.startswith("usps") else name
    dm = instantiate(compose_cfg([f"dataset={dataset}"], data_dir=root).dataset, _convert_="all")
    with pytest.raises(DatasetError, match=must_mention.replace(".", r"\.")) as info:
        dm.prepare_data()
        dm.setup("fit")
    assert dataset in str(info.value)


def test_images_of_another_shape_than_the_config_says_are_rejected(fake_data_dir):
    dm = instantiate(
        compose_cfg(["dataset=usps", "dataset.image_size=28"], data_dir=fake_data_dir).dataset, _convert_="all"
    )
    with pytest.raises(DatasetError, match=r"dataset\.channels / dataset\.image_size"):
        dm.setup("fit")


@pytest.mark.parametrize("name", ["usps", "cifar10"])
def test_tensor_and_pil_pipelines_give_the_same_evaluation_batches(name, fake_data_dir):
    """The fast path (uint8 tensors, batched normalisation on the device) equals torchvision's per-image path."""
    batches = {}
    for pipeline in ("tensor", "pil"):
        dm = instantiate(
            compose_cfg([f"dataset={name}", f"dataset.pipeline={pipeline}"], data_dir=fake_data_dir).dataset,
            _convert_="all",
        )
        dm.setup("fit")
        images, labels = next(iter(dm.val_dataloader()))
        batches[pipeline] = dm.on_after_batch_transfer((images, labels), 0)
    torch.testing.assert_close(batches["tensor"][0], batches["pil"][0], atol=1e-5, rtol=0)
    assert torch.equal(batches["tensor"][1], batches["pil"][1])
    assert batches["tensor"][0].dtype == torch.float32


def test_pil_training_batches_do_not_depend_on_the_workers(fake_data_dir):
    """The PIL pipeline's order and augmentation come from the seed's streams, not from the workers': the same
    batches with 0 and 2 workers (a cold review, 2026-12-04: they were drawn from each worker's stream, so the
    numbers depended on ``dataset.num_workers``, which no identity records), other ones at the next epoch."""

    def epoch_batches(workers: int, epoch: int = 0, seed: int = 0) -> list[torch.Tensor]:
        overrides = ["dataset=usps", "dataset.pipeline=pil", f"dataset.num_workers={workers}", f"seed={seed}"]
        dm = build_datamodule(compose_cfg(overrides, data_dir=fake_data_dir))
        dm.setup("fit")
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)  # what Lightning calls before each epoch
        return [images for images, _ in loader]

    alone = epoch_batches(0)
    assert len(alone) > 1 and all(torch.equal(a, b) for a, b in zip(alone, epoch_batches(2), strict=True))
    assert not torch.equal(alone[0], epoch_batches(0, epoch=1)[0])
    assert not torch.equal(alone[0], epoch_batches(0, seed=1)[0])


def test_a_resumed_pil_fit_draws_the_epoch_it_resumes_at(fake_data_dir, tmp_path):
    """With workers, Lightning creates the first iterator (and the workers prefetch from it) before it sets the
    sampler's epoch: a fit resumed after epoch 1 drew epoch 0's batches again (a cold review, 2026-12-04)."""

    class Recorder(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.weight, self.seen = torch.nn.Parameter(torch.zeros(1)), []

        def training_step(self, batch, batch_idx):
            self.seen.append((self.current_epoch, batch[0].clone()))
            return self.weight * batch[0].mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    def fit(epochs: int, resume: str | None = None, save: str | None = None) -> list[torch.Tensor]:
        overrides = ["dataset=usps", "dataset.pipeline=pil", "dataset.num_workers=2"]
        module, trainer = Recorder(), L.Trainer(
            max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, limit_val_batches=0, accelerator="cpu",
        )  # fmt: skip
        trainer.fit(module, datamodule=build_datamodule(compose_cfg(overrides, fake_data_dir)), ckpt_path=resume)
        if save:
            trainer.save_checkpoint(save)
        return [images for epoch, images in module.seen if epoch == epochs - 1]

    uninterrupted = fit(2)
    fit(1, save=str(tmp_path / "epoch1.ckpt"))
    resumed = fit(2, resume=str(tmp_path / "epoch1.ckpt"))
    assert len(resumed) > 1 and all(torch.equal(a, b) for a, b in zip(uninterrupted, resumed, strict=True))


def test_tensor_pipeline_augments_only_while_training(fake_data_dir):
    """Training batches carry their augmentation parameters and are augmented on the device;
    validation batches carry none and are only normalised."""
    dm = instantiate(compose_cfg(["dataset=usps"], data_dir=fake_data_dir).dataset, _convert_="all")
    dm.setup("fit")
    images, labels, params = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and params["angle"].abs().max() <= 15 and params["angle"].std() > 0
    augmented, same_labels = dm.on_after_batch_transfer((images, labels, params), 0)
    assert torch.equal(same_labels, labels)
    plain, _ = dm.on_after_batch_transfer((images, labels), 0)
    assert not torch.equal(plain, augmented) and torch.equal(plain, dm.batch_augment.normalize(images))
    val_batch = next(iter(dm.val_dataloader()))
    assert len(val_batch) == 2  # no augmentation parameters outside training


@pytest.mark.parametrize("train", [True, False])
def test_tensor_loader_gathers_whole_batches_in_seeded_order(fake_data_dir, train):
    """One gather per batch: each batch is the images at its sampler indices; training walks a
    permutation set by (seed, epoch) and drops the last incomplete batch, evaluation walks in order."""
    dm = instantiate(
        compose_cfg(["dataset=usps", "recipe.batch_size=8"], data_dir=fake_data_dir).dataset, _convert_="all"
    )
    dm.setup("fit")
    dataset = dm.train_set if train else dm.val_set
    loader = dm.train_dataloader() if train else dm.val_dataloader()
    keys = list(loader.sampler)
    batches = list(loader)
    assert len(batches) == len(keys) == (len(dataset) // 8 if train else -(-len(dataset) // 8))
    seen = []
    for (_, _, indices), (x, y, *_) in zip(keys, batches, strict=True):
        assert (
            x.dtype == torch.uint8
            and torch.equal(x, dataset.images[indices])
            and torch.equal(y, dataset.labels[indices])
        )
        seen += indices
    assert len(set(seen)) == len(seen)
    if train:
        assert seen != sorted(seen) and len(seen) == len(dataset) // 8 * 8
        loader.sampler.set_epoch(1)
        assert [k[2] for k in loader.sampler] != [k[2] for k in keys]  # reshuffled per epoch
    else:
        assert seen == list(range(len(dataset)))
