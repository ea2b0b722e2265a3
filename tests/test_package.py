"""Importing kd_lightning, or any of its modules, has no side effects: no config resolver registered, no launcher
callback or optional dependency imported (issue 30)."""

from __future__ import annotations

import subprocess
import sys

from kd_lightning import PROJECT_ROOT

PROBE = """
import importlib, pkgutil, sys
from omegaconf import OmegaConf
import kd_lightning
assert not any(OmegaConf.has_resolver(n) for n in ("kd_project_root", "kd_num_classes", "kd_gpu_jobs")), "resolvers"
for mod in ("kd_lightning.train", "kd_lightning.report", "kd_lightning.export", "kd_lightning.measure_complexity",
            "kd_lightning.run.records", "kd_lightning.run.compose"):
    importlib.import_module(mod)
assert "kd_lightning.run.gpu_slots" not in sys.modules, "the gpu_node launcher's callback was imported"
assert "hydra_plugins.hydra_joblib_launcher" not in sys.modules
print("ok")
"""


def test_imports_have_no_side_effects():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_composing_a_config_registers_the_resolvers():
    from omegaconf import OmegaConf

    from kd_lightning.run.compose import compose_run_config

    cfg = compose_run_config(["dataset=usps"])
    assert OmegaConf.has_resolver("kd_num_classes")
    assert cfg.student_model.num_classes == 10
