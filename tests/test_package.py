"""Importing kd_lightning, or any of its modules, has no side effects: no config resolver registered, no launcher
callback or optional dependency imported (issue 30); and every name an ``__all__`` lists exists."""

from __future__ import annotations

import subprocess
import sys

from kd_lightning import PROJECT_ROOT

PROBE = """
import importlib, pkgutil, sys
from omegaconf import OmegaConf
import kd_lightning
from kd_lightning.run.resolvers import RESOLVERS
# every module of the package, the tools and their entry points included; a __main__ would run its command, and
# gpu_slots *is* launcher=gpu_node's callback (what must not be imported by the others)
modules = [m.name for m in pkgutil.walk_packages(kd_lightning.__path__, "kd_lightning.")]
for name in modules:
    if not name.endswith("__main__") and name != "kd_lightning.run.gpu_slots":
        importlib.import_module(name)
assert len(modules) > 60 and "kd_lightning.tools.train" in modules, modules
# every name an export list promises exists
stale = [f"{m}.{n}" for m in modules if m in sys.modules for n in getattr(sys.modules[m], "__all__", ()) if not
         hasattr(sys.modules[m], n)]
assert not stale, stale
assert not [n for n in RESOLVERS if OmegaConf.has_resolver(n)], "a resolver was registered on import"
assert "kd_lightning.run.gpu_slots" not in sys.modules, "the gpu_node launcher's callback was imported"
# the optional dependencies: the launchers' extras (joblib, slurm) and the dev extras
optional = ("hydra_plugins.hydra_joblib_launcher", "hydra_plugins.hydra_submitit_launcher", "submitit", "skdim",
            "hypothesis", "nbclient")
assert not [m for m in optional if m in sys.modules], [m for m in optional if m in sys.modules]
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
