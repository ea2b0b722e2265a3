"""kd-lightning: how the choice of dataset changes what knowledge distillation buys.

"RKD" in this project means *response-based* knowledge distillation (Hinton et al.),
not relational KD (Park et al.). "IKD" is intermediate (feature-based, FitNets-style) KD.
"""

from pathlib import Path

from omegaconf import OmegaConf

from kd_lightning.run.gpu_slots import pool_size

__version__ = "0.1.0"
#: the checkout (conf/, outputs/, data/): every entry point finds its files from here, wherever it is launched
PROJECT_ROOT = Path(__file__).resolve().parents[1]

# ${kd_project_root:} in conf/paths/default.yaml: outputs and data default to the checkout, wherever
# the command is launched from.
OmegaConf.register_new_resolver("kd_project_root", lambda: str(PROJECT_ROOT), replace=True)
# ${kd_num_classes:${dataset.num_classes},${dataset.factors.classes}} in conf/model/*.yaml: a network
# outputs one logit per class the run trains on (dataset.factors.classes restricts them).
OmegaConf.register_new_resolver(
    "kd_num_classes", lambda n, classes=None: int(n) if classes is None else len(classes), replace=True
)
# ${kd_when_subsampled:${recipe.step_floor},${dataset.factors}} in conf/recipe/strong.yaml: the value when the
# data factors shrink the training split (train_fraction < 1 or imbalance > 1), else null (the full split).
OmegaConf.register_new_resolver(
    "kd_when_subsampled",
    lambda value, factors=None: (
        value
        if float((factors or {}).get("train_fraction", 1.0)) != 1.0
        or float((factors or {}).get("imbalance", 1.0)) != 1.0
        else None
    ),
    replace=True,
)


def _folder_metadata(field: str, _parent_):
    """The measured metadata of a folder dataset (kd_lightning/datasets/folder_meta.py): imported on first use,
    so composing a config of a built-in dataset never loads it."""
    from kd_lightning.datasets.folder_meta import metadata_field

    return metadata_field(field, _parent_)


# ${kd_folder:num_classes} in conf/dataset/folder.yaml: classes, channels, size, mean/std and the content
# fingerprint of the folder at dataset.path, measured on first use and cached.
OmegaConf.register_new_resolver("kd_folder", _folder_metadata, replace=True)


# ${kd_gpu_jobs:${hydra.callbacks.gpu_slots.gpus},${hydra.callbacks.gpu_slots.slots_per_gpu}} in
# conf/launcher/gpu_node.yaml: the launcher runs one job per GPU slot (kd_lightning/run/gpu_slots.py).
OmegaConf.register_new_resolver("kd_gpu_jobs", pool_size, replace=True)
