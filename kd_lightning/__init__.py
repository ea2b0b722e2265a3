"""kd-lightning: how the choice of dataset changes what knowledge distillation buys.

"RKD" in this project means *response-based* knowledge distillation (Hinton et al.),
not relational KD (Park et al.). "IKD" is intermediate (feature-based, FitNets-style) KD.
"""

from pathlib import Path

from omegaconf import OmegaConf

__version__ = "0.1.0"

# ${kd_project_root:} in conf/paths/default.yaml: outputs and data default to the checkout, wherever
# the command is launched from.
OmegaConf.register_new_resolver("kd_project_root", lambda: str(Path(__file__).resolve().parents[1]), replace=True)
