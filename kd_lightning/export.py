"""``python -m kd_lightning.export``: export a run's network to ONNX and check it.

The command's code is :mod:`kd_lightning.tools.export`; this entry point keeps the documented command."""

from kd_lightning.tools.export import main

if __name__ == "__main__":
    raise SystemExit(main())
