"""``python -m kd_lightning.bench``: training throughput against a bare PyTorch loop.

The command's code is :mod:`kd_lightning.tools.bench`; this entry point keeps the documented command."""

from kd_lightning.tools.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
