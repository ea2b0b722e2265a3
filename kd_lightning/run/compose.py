"""Where the configs live and how a tool gets the config a run would get, without a Hydra run.

Torch-free on purpose: the report composes the paper's protocol from ``conf/`` too.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from kd_lightning import PROJECT_ROOT
from kd_lightning.run.resolvers import register_resolvers

#: absolute, so every entry point works however it is imported (python -m, tests, notebooks)
CONF_DIR = PROJECT_ROOT / "conf"


def compose_run_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``python -m kd_lightning.train <overrides>`` would get, composed without a Hydra run
    (no run folder, no logging set-up): for tools that read a run's settings (bench, export, report)."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides))
