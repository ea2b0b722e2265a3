"""``python -m kd_lightning.train``: one run, or a multirun grid.

The command's code is :mod:`kd_lightning.tools.train`; this entry point keeps the documented command."""

from kd_lightning.tools.train import main

if __name__ == "__main__":
    main()
