"""kd-lightning: how the choice of dataset changes what knowledge distillation buys.

"RKD" in this project means *response-based* knowledge distillation (Hinton et al.),
not relational KD (Park et al.). "IKD" is intermediate (feature-based, FitNets-style) KD.
"""

__version__ = "0.1.0"
