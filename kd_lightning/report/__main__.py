"""``python -m kd_lightning.report <sweep> [--out DIR] [--metric ...]``."""

import sys

from kd_lightning.report.cli import main

sys.exit(main())
