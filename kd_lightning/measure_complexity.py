"""``python -m kd_lightning.measure_complexity``: measure a data configuration's complexity without training.

The command's code is :mod:`kd_lightning.tools.measure_complexity`; this entry point keeps the documented command."""

from kd_lightning.tools.measure_complexity import main

if __name__ == "__main__":
    raise SystemExit(main())
