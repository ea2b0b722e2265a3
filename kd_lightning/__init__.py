"""kd-lightning: how the choice of dataset changes what knowledge distillation buys.

"RKD" in this project means *response-based* knowledge distillation (Hinton et al.),
not relational KD (Park et al.). "IKD" is intermediate (feature-based, FitNets-style) KD.

Importing the package has no side effects: config resolvers are registered where configs are composed
(:mod:`kd_lightning.run.resolvers`), and launcher callbacks are imported only by the launchers that name them.
"""

from pathlib import Path

__version__ = "0.1.0"
#: the checkout (conf/, outputs/, data/): every entry point finds its files from here, wherever it is launched
PROJECT_ROOT = Path(__file__).resolve().parents[1]
