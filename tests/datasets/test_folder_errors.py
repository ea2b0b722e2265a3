"""dataset=folder: every bad input stops the run before training, with the path and the fix in the message."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kd_lightning.datasets.folder_scan import FolderError
from kd_lightning.run.config import ConfigError, validate_config
from kd_lightning.tools import train
from tests.datasets.folder_trees import synthetic_tree
from tests.helpers import FAST, compose_cfg


def check(path: Path, tmp_path: Path, *overrides: str) -> None:
    """What ``python -m kd_lightning.train`` does first: compose, then validate (reads the folder's metadata)."""
    validate_config(compose_cfg(["dataset=folder", f"dataset.path={path}", *overrides], out_dir=tmp_path / "out"))


def refused(path: Path, tmp_path: Path, pattern: str, *overrides: str) -> str:
    with pytest.raises(FolderError, match=pattern) as info:
        check(path, tmp_path, *overrides)
    return str(info.value)


def test_a_fresh_folder_validates_for_ikd(tmp_path):
    """IKD's stages are checked on networks built on the meta device; the folder's class count, read there from a
    fresh scan, drew the split with torch on that device: "Cannot copy out of meta tensor" (a cold review,
    2026-12-04)."""
    check(synthetic_tree(tmp_path / "tree", num_classes=2, per_class=24), tmp_path, "method=ikd", "recipe.batch_size=8")


def test_an_empty_class_folder(tmp_path):
    root = synthetic_tree(tmp_path / "tree", num_classes=2, per_class=6)
    (root / "class_9").mkdir()
    message = refused(root, tmp_path, r"class folder\(s\) without images")
    assert str(root / "class_9") in message and "Add images" in message


def test_fewer_than_two_classes(tmp_path):
    root = synthetic_tree(tmp_path / "tree", num_classes=1, per_class=6)
    message = refused(root, tmp_path, r"holds 1 class folder\(s\).*at least 2")
    assert str(root) in message and "set dataset.path" not in message


def test_a_path_one_level_above_the_class_folders_names_the_right_one(tmp_path):
    root = synthetic_tree(tmp_path / "top" / "digits", num_classes=2, per_class=6)
    message = refused(tmp_path / "top", tmp_path, r"holds 1 class folder\(s\)")
    assert f"set dataset.path={root}" in message


def test_images_without_class_folders(tmp_path):
    Image.new("L", (8, 8)).save(tmp_path / "loose.png")
    refused(tmp_path, tmp_path, r"no class folders \(found 1 image files directly inside it\)")


def test_unreadable_images_are_listed_first_few(tmp_path):
    root = synthetic_tree(tmp_path / "tree", num_classes=2, per_class=6)
    for i in range(7):
        (root / "class_1" / f"broken{i}.png").write_bytes(b"not a png" * i)
    message = refused(root, tmp_path, r"7 file\(s\) cannot be read as images")
    assert all(f"class_1/broken{i}.png" in message for i in range(5)) and "broken6" not in message
    assert str(root) in message and "Delete or replace them" in message
    assert "not an image format PIL recognises" in message and "BytesIO" not in message


def test_test_classes_the_training_set_lacks(tmp_path):
    root = synthetic_tree(tmp_path / "tt", num_classes=3, per_class=4, train_test=True)
    (root / "test" / "class_x").mkdir()
    Image.new("L", (16, 16)).save(root / "test" / "class_x" / "a.png")
    message = refused(root, tmp_path, re.escape("has classes the training set lacks: ['class_x']"))
    assert str(root / "test") in message and f"Add them to {root / 'train'}" in message


def test_train_without_test_folder(tmp_path):
    root = synthetic_tree(tmp_path / "tt", num_classes=2, per_class=4, train_test=True)
    for f in (root / "test").rglob("*.png"):
        f.unlink()
    for d in sorted((root / "test").iterdir()):
        d.rmdir()
    (root / "test").rmdir()
    refused(root, tmp_path, r"has a train/ folder of class folders but no test/ folder")


def test_a_validation_tree_needs_train_and_test_beside_it(tmp_path):
    root = synthetic_tree(tmp_path / "tt", num_classes=2, per_class=4, train_test=True)
    (root / "test").rename(root / "val")
    refused(root, tmp_path, r"has a train/ folder of class folders but no test/ folder.*a validation tree, val/")
    (root / "train").rename(root / "other")
    refused(root, tmp_path, r"val is a validation tree, but .* has no train/ and test/ class trees beside it")


def test_a_broken_link_or_a_link_loop_is_named(tmp_path):
    root = synthetic_tree(tmp_path / "tree", num_classes=2, per_class=6)
    (root / "class_0" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    refused(root, tmp_path, r"class_0/gone.png cannot be read .*a broken link\?.*remove it")
    (root / "class_0" / "gone.png").unlink()
    (root / "class_1" / "up").symlink_to(root / "class_1")
    refused(root, tmp_path, r"class_1/up links back to a folder above it")


def test_a_training_split_smaller_than_one_batch(tmp_path):
    root = synthetic_tree(tmp_path / "tree", num_classes=2, per_class=6)  # 8 of 12 images train
    with pytest.raises(ConfigError, match=r"recipe.batch_size=9: .* holds 8 images, not one full batch") as info:
        check(root, tmp_path, "recipe.batch_size=9")
    assert "lower recipe.batch_size to 8 or less, or add images" in str(info.value)
    check(root, tmp_path, "recipe.batch_size=8")


def test_a_class_too_small_for_the_split(tmp_path):
    root = synthetic_tree(tmp_path / "tree", num_classes=3, per_class=6)
    for f in sorted((root / "class_2").iterdir())[3:]:
        f.unlink()  # 3 left; holding out 30% needs 5 (2 held out, 1 to train on)
    message = refused(root, tmp_path, r"too small for the split: \{'class_2': 3\}")
    assert "at least 5 images per class" in message and "raise dataset.holdout_fraction" in message
    check(root, tmp_path, "dataset.holdout_fraction=0.5", "recipe.batch_size=4")  # 3 images: 2 held out, 1 trains


def test_mixed_channel_counts_need_a_conversion(tmp_path):
    root = synthetic_tree(tmp_path / "tree", num_classes=2, per_class=6)
    Image.new("RGB", (16, 16), (200, 10, 10)).save(root / "class_0" / "colour.png")
    message = refused(root, tmp_path, r"different channel counts \(1 channel\(s\): 12 files.*3 channel\(s\): 1 file,")
    assert "class_0/colour.png" in message and "dataset.convert=L" in message and str(root) in message
    cfg = compose_cfg(["dataset=folder", f"dataset.path={root}", "dataset.convert=RGB"], out_dir=tmp_path / "out")
    assert cfg.dataset.channels == 3


def test_images_without_an_8_bit_reading_need_a_conversion(tmp_path):
    root = synthetic_tree(tmp_path / "tree", num_classes=2, per_class=6)
    Image.new("LA", (16, 16), (90, 255)).save(root / "class_1" / "alpha.png")  # grey + alpha: which channels?
    refused(root, tmp_path, r"no 8-bit grayscale or RGB reading.*alpha.png \(mode LA\).*dataset.convert=L")
    check(root, tmp_path, "dataset.convert=L")


def test_mixed_sizes_need_resize(tmp_path):
    root = synthetic_tree(tmp_path / "tree", num_classes=2, per_class=6)
    Image.new("L", (24, 24)).save(root / "class_0" / "big.png")
    refused(root, tmp_path, r"different sizes \(16x16: 12 files.*24x24: 1 file, e.g. class_0/big.png\).*resize")


def test_a_missing_path_names_the_key(tmp_path):
    with pytest.raises(FolderError, match=r"dataset=folder needs dataset.path=<folder>"):
        validate_config(compose_cfg(["dataset=folder"], out_dir=tmp_path / "out"))
    refused(tmp_path / "nowhere", tmp_path, r"no such file or folder")


def test_bad_npz_files(tmp_path):
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.arange(4) % 2)
    refused(tmp_path / "partial.npz", tmp_path, r"missing array\(s\) \['x_test', 'y_test'\]")
    x, y = np.zeros((4, 8, 8), np.float32), np.arange(4) % 2
    np.savez(tmp_path / "floats.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    refused(tmp_path / "floats.npz", tmp_path, r"x_train has dtype float32; save pixels as uint8")
    x = np.zeros((4, 8, 8), np.uint8)
    np.savez(tmp_path / "unseen.npz", x_train=x, y_train=np.arange(4) % 2, x_test=x, y_test=np.arange(4) % 3)
    refused(tmp_path / "unseen.npz", tmp_path, r"y_test has classes the training set lacks: \[2\]")


def test_the_command_line_stops_before_training_with_the_message(tmp_path, monkeypatch, capsys):
    root = synthetic_tree(tmp_path / "tree", num_classes=2, per_class=6)
    (root / "class_5").mkdir()
    argv = ["kd_lightning.train", "dataset=folder", f"dataset.path={root}", f"paths.output_dir={tmp_path / 'out'}"]
    monkeypatch.setattr(sys, "argv", argv + FAST)
    with pytest.raises(SystemExit) as info:
        train.main()
    err = capsys.readouterr().err
    assert info.value.code == 1 and "Traceback" not in err  # the message alone, no traceback above it
    assert (
        "[kd_lightning] FolderError: " in err
        and "class folder(s) without images" in err
        and str(root / "class_5") in err
    )
    # Hydra names the run folder before the run starts: "<label>-invalid" there, holding the failure, no checkpoint
    run_dir = tmp_path / "out" / "default" / "folder-invalid" / "teacher" / "seed0"
    assert json.loads((run_dir / "results.json").read_text())["status"] == "failed"
    assert not (run_dir / "checkpoints").exists()
