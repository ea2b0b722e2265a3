"""dataset=folder: layouts, metadata measured from the files, the fingerprint and its cache, identity."""

from __future__ import annotations

import io
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kd_lightning.datasets import folder_meta
from kd_lightning.datasets.folder import FolderDataModule
from kd_lightning.datasets.folder_read import decode
from kd_lightning.datasets.folder_scan import FolderError
from kd_lightning.datasets.splits import split_by_class, split_sizes
from kd_lightning.run import teachers
from kd_lightning.run.build import build_datamodule
from kd_lightning.run.config import validate_config
from kd_lightning.run.identity import fingerprint, identity
from kd_lightning.run.measuring import label_names
from tests.datasets.folder_trees import synthetic_tree
from tests.helpers import compose_cfg


def folder_cfg(path: Path, out: Path, *overrides: str):
    return compose_cfg(["dataset=folder", f"dataset.path={path}", *overrides], out_dir=out)


def pixels(files: list[Path]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(f)) for f in files]).astype(np.float64) / 255


def test_train_test_layout_metadata_is_measured_from_the_files(tmp_path):
    root = synthetic_tree(tmp_path / "shapes", num_classes=3, per_class=4, size=16, train_test=True)
    cfg = folder_cfg(root, tmp_path / "out")
    ds = cfg.dataset
    assert list(ds.classes) == ["class_0", "class_1", "class_2"] and ds.num_classes == 3
    assert (ds.channels, ds.image_size) == (1, 16)
    train = pixels(sorted((root / "train").rglob("*.png")))  # the training split only, never test/
    assert ds.mean == [pytest.approx(train.mean(), abs=1e-6)] and ds.std == [pytest.approx(train.std(), abs=1e-6)]
    assert ds.name == f"folder-{ds.fingerprint[:8]}"
    assert cfg.student_model.num_classes == 3 and cfg.teacher_model.in_channels == 1  # model configs see them
    validate_config(cfg)
    dm = build_datamodule(cfg)
    assert isinstance(dm, FolderDataModule)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.train_set.images.dtype == torch.uint8 and tuple(dm.train_set.images.shape) == (12, 1, 16, 16)
    # test/ is the official test set, cut within each class: floor(4 x 0.7) = 2 of each class validate
    assert torch.bincount(dm.val_set.labels).tolist() == [2, 2, 2]
    assert torch.bincount(dm.test_set.labels).tolist() == [2, 2, 2]


def test_one_tree_holds_out_a_fixed_stratified_share(tmp_path):
    root = synthetic_tree(tmp_path / "tree", num_classes=3, per_class=10)
    dm = build_datamodule(folder_cfg(root, tmp_path / "out"))
    dm.setup("fit")
    assert torch.bincount(dm.train_set.labels).tolist() == [7, 7, 7]  # 30% of each class held out
    held = torch.cat([dm.val_set.labels, dm.test_set.labels])
    assert torch.bincount(held).tolist() == [3, 3, 3]
    again = build_datamodule(folder_cfg(root, tmp_path / "out"))
    again.setup("fit")
    assert torch.equal(again.train_set.images, dm.train_set.images)  # the split is fixed by split_seed
    other = build_datamodule(folder_cfg(root, tmp_path / "out", "dataset.split_seed=7"))
    other.setup("fit")
    assert not torch.equal(other.train_set.images, dm.train_set.images)


def test_rgb_images_of_mixed_sizes_are_resized_when_asked(tmp_path):
    root = synthetic_tree(tmp_path / "rgb", num_classes=2, per_class=5, size=16, channels=3)
    Image.new("RGB", (20, 12), (10, 200, 30)).save(root / "class_0" / "wide.png")
    with pytest.raises(FolderError, match="dataset.resize"):
        validate_config(folder_cfg(root, tmp_path / "out"))
    cfg = folder_cfg(root, tmp_path / "out", "dataset.resize=12")
    assert (cfg.dataset.channels, cfg.dataset.image_size, len(cfg.dataset.mean)) == (3, 12, 3)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    assert tuple(dm.train_set.images.shape[1:]) == (3, 12, 12)


def test_npz_with_train_and_test_arrays(tmp_path):
    rng = np.random.default_rng(0)
    x_train, x_test = (rng.integers(0, 256, (n, 10, 10, 3), dtype=np.uint8) for n in (20, 10))
    y_train, y_test = np.arange(20) % 4, np.arange(10) % 4
    np.savez(tmp_path / "data.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    cfg = folder_cfg(tmp_path / "data.npz", tmp_path / "out")
    assert (cfg.dataset.num_classes, cfg.dataset.channels, cfg.dataset.image_size) == (4, 3, 10)
    assert cfg.dataset.mean[0] == pytest.approx(x_train[..., 0].mean() / 255, abs=1e-6)
    validate_config(cfg)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    assert torch.equal(dm.train_set.images, torch.from_numpy(x_train).permute(0, 3, 1, 2))


def test_metadata_is_cached_beside_the_fingerprint_and_not_measured_again(tmp_path, monkeypatch):
    root = synthetic_tree(tmp_path / "tree", num_classes=2, per_class=6)
    first = dict(folder_cfg(root, tmp_path / "out").dataset)
    (cache,) = (tmp_path / "out" / "folder_cache").glob("*.json")
    assert cache.read_text().count(first["fingerprint"]) >= 1
    folder_meta._MEMO.clear()  # a new process: only the cache file is left

    def no_reading(*args, **kwargs):
        raise AssertionError("read the images although the cache is valid")

    monkeypatch.setattr(folder_meta, "read_folder", no_reading)
    assert dict(folder_cfg(root, tmp_path / "out").dataset) == first


def test_a_changed_folder_is_fingerprinted_again_with_a_warning(tmp_path, caplog):
    root = synthetic_tree(tmp_path / "tree", num_classes=2, per_class=6)
    before = folder_cfg(root, tmp_path / "out").dataset.fingerprint
    shutil.copy(root / "class_0" / "00000.png", root / "class_1" / "extra.png")
    with caplog.at_level(logging.WARNING, logger="kd_lightning"):
        after = folder_cfg(root, tmp_path / "out").dataset.fingerprint
    assert after != before
    assert f"changed since its fingerprint {before} was cached" in caplog.text
    assert "1 added (e.g. class_1/extra.png)" in caplog.text and f"new fingerprint {after}" in caplog.text
    caplog.clear()
    (root / "class_1" / "extra.png").touch()  # a new time, the same bytes
    with caplog.at_level(logging.WARNING, logger="kd_lightning"):
        assert folder_cfg(root, tmp_path / "out").dataset.fingerprint == after
    assert "the content is unchanged" in caplog.text


def test_files_that_are_not_images_are_left_out_with_one_warning(tmp_path, caplog):
    root = synthetic_tree(tmp_path / "tree", num_classes=2, per_class=6)
    (root / "class_0" / "notes.txt").write_text("labels checked by hand")
    Image.new("L", (16, 16)).save(root / "class_1" / "photo.gif")
    with caplog.at_level(logging.WARNING, logger="kd_lightning"):
        first = folder_cfg(root, tmp_path / "out").dataset.fingerprint
    assert "2 file(s) left out, not images of a known type" in caplog.text
    assert "class_0/notes.txt, class_1/photo.gif" in caplog.text
    caplog.clear()
    folder_meta._MEMO.clear()
    with caplog.at_level(logging.WARNING, logger="kd_lightning"):
        assert folder_cfg(root, tmp_path / "out").dataset.fingerprint == first  # from the cache: said once
    assert "left out" not in caplog.text


def test_bytes_swapped_with_sizes_and_times_kept_are_fingerprinted_again(tmp_path):
    """Two same-size images trade places across classes, their mtimes restored as ``cp -p`` / ``tar -x`` do: the
    inode's change time (which no user tool sets) shows it, so the config gets the new content's fingerprint."""
    root = synthetic_tree(tmp_path / "tree", num_classes=2, per_class=6)
    a, b = root / "class_0" / "00000.png", root / "class_1" / "00000.png"
    Image.new("L", (16, 16), 10).save(a)
    Image.new("L", (16, 16), 250).save(b)
    assert a.stat().st_size == b.stat().st_size
    before = folder_cfg(root, tmp_path / "out").dataset.fingerprint
    times = {f: (f.stat().st_atime_ns, f.stat().st_mtime_ns) for f in (a, b)}
    content = {f: f.read_bytes() for f in (a, b)}
    a.write_bytes(content[b])
    b.write_bytes(content[a])
    for f, ns in times.items():
        os.utime(f, ns=ns)
    folder_meta._MEMO.clear()  # a new process: only the cache file is left
    assert folder_cfg(root, tmp_path / "out").dataset.fingerprint != before


def test_a_folder_changed_after_composing_is_refused_by_the_datamodule(tmp_path):
    root = synthetic_tree(tmp_path / "tree", num_classes=2, per_class=6)
    cfg = folder_cfg(root, tmp_path / "out")
    dm, composed = build_datamodule(cfg), cfg.dataset.fingerprint
    Image.new("L", (16, 16), 7).save(root / "class_0" / "00000.png")  # same name, other pixels
    with pytest.raises(FolderError, match=r"changed after this run's config was composed.*Refusing"):
        dm.setup("fit")
    assert not list((tmp_path / "out" / "folder_cache").glob("*.json"))  # "run the command again" then works
    assert folder_cfg(root, tmp_path / "out").dataset.fingerprint != composed


def test_identity_holds_the_content_not_the_path(tmp_path):
    a = synthetic_tree(tmp_path / "a", num_classes=2, per_class=6, seed=0)
    b = synthetic_tree(tmp_path / "b", num_classes=2, per_class=6, seed=5)
    moved = shutil.copytree(a, tmp_path / "elsewhere" / "renamed")
    cfgs = {k: folder_cfg(p, tmp_path / "out", "method=rkd") for k, p in (("a", a), ("b", b), ("moved", moved))}
    keys = {k: teachers.teacher_key(c) for k, c in cfgs.items()}
    runs = {k: fingerprint(c, teachers.teacher_reference(c)) for k, c in cfgs.items()}
    dirs = {k: c.paths.run_dir for k, c in cfgs.items()}
    assert keys["a"] == keys["moved"] != keys["b"]
    assert runs["a"] == runs["moved"] != runs["b"]
    assert dirs["a"] == dirs["moved"] != dirs["b"]
    assert teachers.entry_dir(cfgs["a"]) != teachers.entry_dir(cfgs["b"])
    data = identity(cfgs["a"])["dataset"]
    assert "path" not in data and "data_dir" not in data and "cache_dir" not in data
    assert data["fingerprint"] == cfgs["a"].dataset.fingerprint and data["mean"] == list(cfgs["a"].dataset.mean)


def test_augmentation_family_picks_the_strong_recipes_augmentation(tmp_path):
    root = synthetic_tree(tmp_path / "tree", num_classes=2, per_class=6)
    for family in ("natural", "digits", "none"):
        cfg = folder_cfg(root, tmp_path / "out", "recipe=fast", f"dataset.augmentation_family={family}")
        assert cfg.recipe.augmentation == cfg.recipe.augmentations[family] == cfg.dataset.augmentation
    assert folder_cfg(root, tmp_path / "out", "recipe=strong").recipe.augmentation.hflip == 0.5  # natural: default
    paper = folder_cfg(root, tmp_path / "out")
    assert dict(paper.recipe.augmentation) == {"rotation": 15, "hflip": 0.5, "vflip": 0.5}  # the paper's protocol
    bad = folder_cfg(root, tmp_path / "out", "dataset.augmentation_family=photos")
    with pytest.raises(ValueError, match="augmentation_family='photos': must be one of"):
        validate_config(bad)


def test_sixteen_bit_grayscale_keeps_its_top_eight_bits(tmp_path):
    """PIL's own conversion clips every value above 255 to white; torchvision's convert_image_dtype shifts."""
    values = np.array([[0, 255, 256, 32768, 40000, 65535]] * 6, dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    for convert in (None, "L", "RGB"):
        decoded = decode(buffer.getvalue(), None, convert)
        assert decoded[0, :, 0].tolist() == [0, 0, 1, 128, 156, 255]
    root = synthetic_tree(tmp_path / "tree", num_classes=2, per_class=6)
    Image.fromarray(np.full((16, 16), 40000, dtype=np.uint16)).save(root / "class_1" / "deep.png")
    assert folder_cfg(root, tmp_path / "out").dataset.channels == 1  # one channel beside 8-bit grey: no convert


def test_a_validation_tree_is_the_validation_set_as_given(tmp_path):
    root = synthetic_tree(tmp_path / "tvt", num_classes=2, per_class=4, train_test=True)
    shutil.copytree(root / "test", root / "val")
    (root / "val" / "class_1" / sorted(os.listdir(root / "val" / "class_1"))[0]).unlink()  # 4 + 3 images
    before = folder_cfg(root, tmp_path / "out").dataset.fingerprint
    dm = build_datamodule(folder_cfg(root, tmp_path / "out"))
    dm.setup("fit")
    assert torch.bincount(dm.val_set.labels).tolist() == [4, 3]
    assert torch.bincount(dm.test_set.labels).tolist() == [4, 4]
    shutil.rmtree(root / "val")
    assert folder_cfg(root, tmp_path / "out2").dataset.fingerprint != before  # val/ is part of the data


def test_a_class_named_train_is_a_class(tmp_path):
    """CIFAR100 has a class "train": a train/ folder of images (no class folders in it) is one tree's class."""
    root = synthetic_tree(tmp_path / "tree", num_classes=3, per_class=6)
    (root / "class_2").rename(root / "train")
    assert list(folder_cfg(root, tmp_path / "out").dataset.classes) == ["class_0", "class_1", "train"]


def test_a_small_folder_keeps_every_class_in_validation_and_test(tmp_path):
    """6 classes of 5 images: 2 held out each; the plain cut of 12 images left whole classes out of one side."""
    root = synthetic_tree(tmp_path / "tree", num_classes=6, per_class=5)
    dm = build_datamodule(folder_cfg(root, tmp_path / "out", "recipe.batch_size=8"))
    dm.setup("fit")
    assert torch.bincount(dm.val_set.labels).tolist() == [1] * 6 == torch.bincount(dm.test_set.labels).tolist()
    plain = build_datamodule(folder_cfg(root, tmp_path / "out", "recipe.batch_size=8", "dataset.val_test_split=plain"))
    plain.setup("fit")
    held = torch.cat([dm.val_set.labels, dm.test_set.labels]).sort().values
    assert torch.equal(torch.cat([plain.val_set.labels, plain.test_set.labels]).sort().values, held)
    assert (len(plain.val_set), len(plain.test_set)) == split_sizes(12)  # the built-in datasets' cut
    cfgs = [folder_cfg(root, tmp_path / "out", *extra) for extra in ((), ("dataset.val_test_split=plain",))]
    assert identity(cfgs[0]) != identity(cfgs[1])  # other validation and test images: other runs and teachers


def test_split_by_class_is_fixed_and_keeps_each_side_nonempty():
    labels = [0] * 2 + [1] * 3 + [2] * 10 + [3]
    val, test = split_by_class(labels, 0.7, 1234)
    assert sorted(val + test) == list(range(len(labels))) and not set(val) & set(test)
    per_class = [sum(labels[i] == c for i in val) for c in range(4)]
    assert per_class == [1, 2, 7, 0]  # floor(n x 0.7) kept in [1, n - 1]; a class of one image is tested
    assert split_by_class(labels, 0.7, 1234) == (val, test) and split_by_class(labels, 0.7, 99) != (val, test)


def test_an_export_of_a_folder_run_names_its_classes():
    assert label_names("mine-1a2b3c4d", None, measured=["cat", "dog"]) == ["cat", "dog"]
    assert label_names("mine-1a2b3c4d", None) is None


def test_npz_channels_first_rgba(tmp_path):
    x = np.zeros((4, 4, 8, 8), np.uint8)  # (N, C, H, W) with C = 4
    y = np.arange(4) % 2
    np.savez(tmp_path / "rgba.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    ds = folder_cfg(tmp_path / "rgba.npz", tmp_path / "out").dataset
    assert (ds.channels, ds.image_size) == (4, 8)


def test_images_beside_the_class_folders_are_left_out_with_the_warning(tmp_path, caplog):
    root = synthetic_tree(tmp_path / "tree", num_classes=2, per_class=6)
    Image.new("L", (16, 16)).save(root / "stray.png")
    with caplog.at_level(logging.WARNING, logger="kd_lightning"):
        assert folder_cfg(root, tmp_path / "out").dataset.num_classes == 2  # measured on first access
    assert "1 file(s) left out" in caplog.text and "e.g. stray.png" in caplog.text


def test_npz_class_names_saved_as_bytes_are_decoded(tmp_path):
    x, y = np.zeros((4, 8, 8), np.uint8), np.arange(4) % 2
    np.savez(tmp_path / "b.npz", x_train=x, y_train=y, x_test=x, y_test=y, classes=np.array([b"cat", b"dog"]))
    assert list(folder_cfg(tmp_path / "b.npz", tmp_path / "out").dataset.classes) == ["cat", "dog"]
