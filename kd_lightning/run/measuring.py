"""Where a run's config and data meet the pure measures of :mod:`kd_lightning.measure`: one home for what a training
run's by-products (:mod:`kd_lightning.run.byproducts`) and the tools (``kd_lightning.export``,
``kd_lightning.measure_complexity``, :mod:`kd_lightning.run.finished`) share.

- :func:`normalised_split`: a set-up DataModule's test or validation images as the network takes them;
- :func:`onnx_description`: what an ONNX export says about itself (dataset, normalisation, label names, source);
- :func:`dataset_complexity`, :func:`config_complexity`: the measured complexity of a data configuration, cached
  once per data identity in ``paths.complexity_dir`` (file-locked: concurrent runs compute it once).
"""

from __future__ import annotations

import json
import os
import pickle
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from kd_lightning.measure import complexity, onnx
from kd_lightning.run.identity import data_identity, identity
from kd_lightning.run.records import write_json

#: label names by dataset (CIFAR100's are read from the data's meta file when it is available)
LABEL_NAMES: dict[str, list[str]] = {
    "mnist": [str(i) for i in range(10)],
    "usps": [str(i) for i in range(10)],
    "fashion_mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}


def normalised_split(datamodule: L.LightningDataModule, split: str) -> tuple[Tensor, Tensor]:
    """All images of a set-up DataModule's ``split`` ("test", "val") as the network takes them, and their labels."""
    loader = getattr(datamodule, f"{split}_dataloader")()
    images, labels = [], []
    for batch in loader:  # the tensor pipeline's uint8 batches are normalised as on_after_batch_transfer does
        x = batch[0]
        images.append(datamodule.batch_augment.normalize(x) if datamodule.pipeline == "tensor" else x)
        labels.append(batch[1])
    return torch.cat(images), torch.cat(labels)


def label_names(
    name: str, data_dir: Path | None, classes: Sequence[int] | None = None, measured: Sequence[str] | None = None
) -> list[str] | None:
    """Class names by output index; ``classes``: the class ids a ``dataset.factors.classes`` run kept, in order;
    ``measured``: a folder dataset's class names in label order (``dataset.classes``, sorted like ImageFolder)."""
    names: list[str] | None = None
    if measured:
        names = [str(n) for n in measured]
    elif name in LABEL_NAMES:
        names = list(LABEL_NAMES[name])
    elif name == "cifar100" and data_dir is not None and (data_dir / "cifar-100-python" / "meta").is_file():
        try:
            with open(data_dir / "cifar-100-python" / "meta", "rb") as f:
                names = [str(n) for n in pickle.load(f, encoding="latin1")["fine_label_names"]]
        except Exception:  # noqa: BLE001 - names are a nicety: an unreadable meta file means none
            names = None
    if names is not None and classes:
        names = [names[int(c)] for c in sorted(classes)] if all(0 <= int(c) < len(names) for c in classes) else None
    return names


def doc_string(method: str | None, arch: str, dataset: str) -> str:
    """An ONNX export's description: the method, network and dataset it came from, and the input it takes."""
    return f"kd-lightning {method or ''} {arch} for {dataset}; {onnx.INPUT_DESCRIPTION}".replace("  ", " ")


def onnx_description(
    dataset: Mapping[str, Any],
    net: Mapping[str, Any],
    method: str | None,
    checkpoint: str | os.PathLike,
    epoch: int | None,
    input_shape: Sequence[int],
    data_dir: Path | None,
) -> dict[str, Any]:
    """``metadata`` and ``doc_string`` for :func:`kd_lightning.measure.onnx.export_checked` of ``net`` (its
    ``hyper_parameters['net']``) trained on ``dataset`` (a plain dataset config: name, mean, std, factors), with
    label names where known (CIFAR100's from ``data_dir``). The one description of an export, whether a training
    run writes it or ``kd_lightning.export`` does."""
    name, num_classes = str(dataset["name"]), int(net["num_classes"])
    factors = dataset.get("factors") if isinstance(dataset.get("factors"), Mapping) else None
    names = label_names(name, data_dir, (factors or {}).get("classes"), dataset.get("classes"))
    metadata = onnx.onnx_metadata(
        dataset=name,
        num_classes=num_classes,
        input_shape=list(input_shape),
        mean=list(dataset["mean"]),
        std=list(dataset["std"]),
        net=net,
        method=method,
        source_checkpoint=str(checkpoint),
        epoch=epoch,
        label_names=names if names is not None and len(names) == num_classes else None,
        factors=factors,
    )
    return {"metadata": metadata, "doc_string": doc_string(method, str(net["arch"]), name)}


def dataset_complexity(
    images: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    identity: Mapping[str, Any],
    cache_dir: str | os.PathLike,
    eval_images: Tensor | np.ndarray | None = None,
    eval_labels: Tensor | np.ndarray | None = None,
    recompute: bool = False,
    files: str | None = None,
    **params: Any,
) -> dict[str, Any]:
    """:func:`kd_lightning.measure.complexity.compute_complexity`, cached in ``cache_dir/complexity-<key>.json``.

    ``identity`` is what makes two data configurations the same (e.g. ``{"dataset": "usps",
    "split_seed": 1234, "val_fraction": 0.7, "factors": factor_identity(f, image_size)}``); the key
    hashes it with the measure parameters. A file lock makes concurrent runs of one configuration
    compute it once; the file is written by rename. The returned dict has ``cache_hit`` (not stored).
    ``files``: the digest of the files the images were read from (a built-in dataset's identity is its config):
    an entry measured on other files is measured again.
    """
    from filelock import FileLock

    # the probe scored on a held-out share of the subsample is another number: its own entry (runs pass eval images)
    keyed = {**identity, "probe": "held-out"} if eval_images is None else identity
    key = complexity.complexity_cache_key(keyed, params)
    path = Path(cache_dir) / f"complexity-{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        cached = json.loads(path.read_text()) if path.is_file() and not recompute else None
        if cached is not None and not (files and cached.get("data_files_sha256") not in (None, files)):
            return {**cached, "cache_hit": True}
        start = time.perf_counter()
        result = complexity.compute_complexity(images, labels, eval_images, eval_labels, **params)
        record = {
            "key": key,
            "version": complexity.COMPLEXITY_VERSION,
            "identity": json.loads(json.dumps(identity, default=str)),
            "data_files_sha256": files,
            **result,
        }
        record["seconds"] = round(time.perf_counter() - start, 3)
        write_json(path, record, sort_keys=True)
    return {**record, "cache_hit": False}


def config_complexity(cfg: Any, datamodule: Any, recompute: bool = False) -> dict[str, Any]:
    """:func:`dataset_complexity` of the training data a composed run config describes, from its set-up
    DataModule (tensor pipeline), cached in ``paths.complexity_dir`` under the config's
    :func:`kd_lightning.run.identity.data_identity`; the validation split (clean labels) scores the probe."""
    return dataset_complexity(
        datamodule.train_set.images,
        datamodule.train_set.labels,
        data_identity(identity(cfg)["dataset"]),
        cfg.paths.complexity_dir,
        eval_images=datamodule.val_set.images,
        eval_labels=datamodule.val_set.labels,
        recompute=recompute,
        files=datamodule.files_digest(),
    )
