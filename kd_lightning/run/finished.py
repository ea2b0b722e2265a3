"""A finished run on disk, as the tools read it: which checkpoint, which run config, which data.

Given a run folder or a ``.ckpt`` written by ``kd_lightning.train`` (or a teacher-registry entry):

- :func:`resolve_source`: the checkpoint, its run folder and its resolved run config (``config.yaml``,
  ``results.json["config"]`` or ``teacher.json["config"]``); :func:`run_status`: the run's recorded status;
- :func:`method_of`: the method that trained it, from the config or from the saved hyperparameters;
- :func:`dataset_config`: the dataset values it was trained with, checked against the network;
- :func:`eval_config`, :func:`load_eval_data`: the normalised test and validation images through the
  project's DataModule, as the training run saw them;
- :func:`default_output`: where an export of it goes.

Bad input (not a kd-lightning checkpoint, unknown dataset, a data folder without the data) raises
:class:`ExportError`: ``kd_lightning.export`` exits 2 on it.
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict

from kd_lightning.datasets import DatasetError
from kd_lightning.datasets.locations import data_dir_candidates
from kd_lightning.measure.onnx import EVAL_BATCH
from kd_lightning.run.build import build_datamodule
from kd_lightning.run.compose import CONF_DIR, compose_run_config
from kd_lightning.run.measuring import normalised_split

DATASET_CONF_DIR = CONF_DIR / "dataset"
METHOD_CONF_DIR = CONF_DIR / "method"
#: DataModule arguments for evaluation: tensor pipeline, no download, no augmentation, no workers
EVAL_LOADING = {
    "download": False,
    "pipeline": "tensor",
    "num_workers": 0,
    "augmentation": None,
    "batch_size": EVAL_BATCH,
    "eval_batch_size": EVAL_BATCH,
    "pin_memory": False,
}


class ExportError(RuntimeError):
    """Bad input: the source is not a kd-lightning checkpoint, or the output cannot be written (exit code 2).

    Raised by the readers here and by :mod:`kd_lightning.export`, whose API it is."""


# -- finding and reading the checkpoint ----------------------------------------------------------
def _read_yaml_or_json(path: Path) -> dict[str, Any] | None:
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)  # saved resolved by kd_lightning.train
    except Exception:
        return None


def _run_config(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The run's resolved config from ``config.yaml``, ``results.json["config"]`` or ``teacher.json["config"]``."""
    config = _read_yaml_or_json(folder / "config.yaml") if (folder / "config.yaml").is_file() else None
    if isinstance(config, dict) and "dataset" in config:
        return config, str(folder / "config.yaml")
    for record_file in ("results.json", "teacher.json"):
        record = _read_yaml_or_json(folder / record_file) if (folder / record_file).is_file() else None
        if isinstance(record, dict) and isinstance(record.get("config"), dict):
            return record["config"], str(folder / record_file)
    return None, None


def resolve_source(source: str | os.PathLike) -> tuple[Path, Path | None, dict[str, Any] | None, str | None]:
    """``(checkpoint, run folder or None, run config or None, where the config came from)`` for a run folder or a .ckpt.

    A run folder's checkpoint is ``results.json["best_checkpoint"]``, else ``checkpoints/best-*.ckpt``
    (the newest), else a teacher-registry entry's ``teacher.ckpt``. A checkpoint inside a run folder
    (``<run>/checkpoints/x.ckpt``) or a registry entry finds its run config the same way.
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise ExportError(
            f"{path}: no such file or folder. Pass a run folder (holding results.json and checkpoints/) or a .ckpt "
            "written by kd_lightning.train (e.g. outputs/default/usps/rkd/seed0/checkpoints/best-epoch009.ckpt)."
        )
    if path.is_file():
        for folder in (path.parent, path.parent.parent):
            config, origin = _run_config(folder)
            if config is not None:
                run_dir = folder
                return path, run_dir, config, origin
        return path, None, None, None
    config, origin = _run_config(path)
    record = _read_yaml_or_json(path / "results.json") if (path / "results.json").is_file() else None
    best = (record or {}).get("best_checkpoint")
    candidates: list[Path] = []
    if best:
        best_path = Path(best)
        candidates.append(best_path if best_path.is_absolute() else path / best_path)
        candidates.append(path / "checkpoints" / best_path.name)  # the run folder was moved
    candidates += sorted((path / "checkpoints").glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    candidates.append(path / "teacher.ckpt")
    for candidate in candidates:
        if candidate.is_file():
            return candidate, path, config, origin
    raise ExportError(
        f"{path}: no checkpoint found (looked for results.json's best_checkpoint, "
        "checkpoints/best-*.ckpt and teacher.ckpt). "
        "Pass a finished kd_lightning.train run folder, or the .ckpt file itself."
    )


def run_status(run_dir: Path | None) -> str | None:
    """The ``status`` the run folder's ``results.json`` records (``None`` without one)."""
    if run_dir and (run_dir / "results.json").is_file():
        return (_read_yaml_or_json(run_dir / "results.json") or {}).get("status")
    return None


def method_of(info: Mapping[str, Any], run_config: Mapping[str, Any] | None) -> str | None:
    """The run config's ``method.name``; for a checkpoint without one, the method of ``conf/method/`` whose
    LightningModule takes exactly the checkpoint's saved hyperparameters (``None`` when several do:
    teacher and scratch checkpoints look alike)."""
    name = ((run_config or {}).get("method") or {}).get("name")
    if name:
        return str(name)
    saved = set(info["hyper_parameters"])
    fits = []
    for file in sorted(METHOD_CONF_DIR.glob("*.yaml")):
        method = OmegaConf.load(file)
        cls = get_class(method._target_)
        arguments = set()
        for klass in cls.__mro__:
            if (
                "__init__" in vars(klass)
                and issubclass(klass, L.LightningModule)
                and klass.__module__.startswith("kd_lightning")
            ):
                signature = inspect.signature(klass.__init__).parameters.values()
                arguments |= {p.name for p in signature if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if (
            arguments - {"self", "teacher"} == saved
        ):  # the teacher itself is never saved (save_hyperparameters ignores it)
            fits.append(str(method.name))
    return fits[0] if len(fits) == 1 else None


# -- dataset metadata and data -------------------------------------------------------------------
def dataset_config(
    info: Mapping[str, Any], run_config: Mapping[str, Any] | None, dataset: str | None = None
) -> tuple[dict[str, Any], str]:
    """The dataset config (name, num_classes, channels, image_size, mean, std, ...) and where it came from.

    From the run's config when there is one, else ``conf/dataset/<name>.yaml`` as ``kd_lightning.train``
    composes it, with the name the checkpoint records (or ``dataset``). Checked against the network's
    classes and input channels.
    """
    trained_on = info.get("dataset")
    run_ds = dict((run_config or {}).get("dataset") or {})
    name = dataset or trained_on or run_ds.get("name")
    for other, what in ((trained_on, "the checkpoint's hyper_parameters"), (run_ds.get("name"), "the run config")):
        if name and other and other != name:
            raise ExportError(
                f"{info['checkpoint']}: dataset {name!r} requested but {what} say(s) {other!r}; "
                "drop --dataset or fix it."
            )
    known = sorted(p.stem for p in DATASET_CONF_DIR.glob("*.yaml"))
    if not name:
        raise ExportError(
            f"{info['checkpoint']}: the checkpoint does not record its dataset; pass --dataset NAME (one of {known})."
        )
    if {"mean", "std", "channels", "image_size"} <= run_ds.keys():
        cfg, origin = run_ds, "run config"
    else:
        file = DATASET_CONF_DIR / f"{name}.yaml"
        if not file.is_file():
            raise ExportError(
                f"{info['checkpoint']}: unknown dataset {name!r}: no {file}. Choose one of {known} with --dataset."
            )
        composed = OmegaConf.to_container(_composed(name).dataset, resolve=True)
        # a checkpoint without its run config does not say which data factors it was trained with
        cfg, origin = {k: v for k, v in composed.items() if k != "factors"}, str(file.relative_to(CONF_DIR.parent))
    net = info["net"]
    problems = []
    if int(cfg["num_classes"]) != int(net["num_classes"]):
        problems.append(f"{net['num_classes']} classes, dataset has {cfg['num_classes']}")
    if int(cfg["channels"]) != int(net.get("in_channels", 3)):
        problems.append(f"{net.get('in_channels', 3)} input channels, dataset has {cfg['channels']}")
    if problems:
        raise ExportError(f"{info['checkpoint']}: the network does not fit dataset {name!r}: " + "; ".join(problems))
    return cfg, origin


def _composed(dataset: str, path: str | None = None) -> DictConfig:
    """The run config of ``dataset=<name>``; a folder dataset (named after its content) is the group ``folder``
    at its ``path`` (conf/dataset/folder.yaml)."""
    return compose_run_config(["dataset=folder", f"dataset.path={path}"] if path else [f"dataset={dataset}"])


def eval_config(ds_cfg: Mapping[str, Any], seed: int = 0) -> DictConfig:
    """``kd_lightning.train``'s config for the dataset of ``ds_cfg``, with the run's own dataset values on
    top (normalisation, split, data factors): what :func:`kd_lightning.run.build.build_datamodule` takes."""
    cfg = _composed(str(ds_cfg["name"]), ds_cfg.get("path"))
    with open_dict(cfg):
        cfg.dataset = OmegaConf.merge(cfg.dataset, OmegaConf.create(dict(ds_cfg)))
        cfg.seed = int(seed)
    return cfg


def load_eval_data(
    ds_cfg: Mapping[str, Any],
    data_dir: str | os.PathLike | None,
    run_config: Mapping[str, Any] | None,
    max_images: int | None = None,
) -> dict[str, Any] | None:
    """Normalised test and validation images from the project's DataModule, or ``None`` when no data is found.

    An explicit ``data_dir`` that does not hold the data is an error; the automatic candidates
    (run config's data_dir, $KD_DATA_DIR, <project>/data, <project>/../shared/datasets) are tried in turn.
    """
    cfg = eval_config(ds_cfg, int((run_config or {}).get("seed") or 0))
    run_ds = (run_config or {}).get("dataset") or {}
    tried = []
    for candidate in data_dir_candidates(data_dir, run_ds.get("data_dir")):
        try:
            # for evaluation: the test split as it is, read in this process
            dm = build_datamodule(cfg, **EVAL_LOADING, data_dir=str(candidate))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dm.prepare_data()
                dm.setup("test")
        except (DatasetError, OSError) as exc:
            if data_dir:
                raise ExportError(f"--data-dir {candidate}: {exc}") from None
            tried.append(str(candidate))
            continue
        out: dict[str, Any] = {"data_dir": str(candidate)}
        for split in ("test", "val"):
            images, labels = normalised_split(dm, split)
            out[split] = (images[:max_images], labels[:max_images])
        return out
    return None if not tried else {"data_dir": None, "tried": tried}


# -- output ------------------------------------------------------------------------------------
def default_output(checkpoint: Path, run_dir: Path | None, source: Path) -> Path:
    """``<run>/export/model.onnx`` for a run folder, ``<checkpoint>.onnx`` beside a .ckpt given directly."""
    if source.is_dir() and run_dir is not None:
        return run_dir / "export" / "model.onnx"
    return checkpoint.with_suffix(".onnx")
