"""``python -m kd_lightning.prune``: free disk under sweeps and the teacher registry (completed runs only).

The command's code is :mod:`kd_lightning.tools.prune`; this entry point keeps the documented command."""

from kd_lightning.tools.prune import main

if __name__ == "__main__":
    raise SystemExit(main())
