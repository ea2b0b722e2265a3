"""Measure the complexity of a data configuration without training anything.

    python -m kd_lightning.measure_complexity dataset=usps dataset.factors.train_fraction=0.1

Takes the same overrides as ``kd_lightning.train`` (the method, recipe and seed do not matter: the data
identity does, :func:`kd_lightning.run.identity.data_identity`), checks them before any data is read, and
writes the measures to the cache every teacher run uses (``paths.complexity_dir``); a second call reads
them back. ``force=true`` recomputes. The report gives each run the cached measures of its data when the
run did not record them itself, e.g. teachers trained before the measures existed, or levels whose
teachers were trained elsewhere.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from kd_lightning.measure.complexity import MEASURES
from kd_lightning.run.build import build_datamodule
from kd_lightning.run.compose import compose_run_config
from kd_lightning.run.config import validate_config
from kd_lightning.run.measuring import config_complexity


def measure(overrides: Sequence[str]) -> dict:
    """The (cached) complexity record of the training data ``overrides`` describe."""
    # images held as tensors: the pipeline changes how a run loads data, not the data itself
    cfg = compose_run_config([*overrides, "dataset.pipeline=tensor"])
    validate_config(cfg)
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return config_complexity(cfg, datamodule, recompute=bool(cfg.force))


def main(argv: Sequence[str] | None = None) -> int:
    overrides = list(sys.argv[1:] if argv is None else argv)
    result = measure(overrides)
    source = "cache" if result["cache_hit"] else f"computed in {result['seconds']:.1f} s"
    print(
        f"complexity of {json.dumps(result['identity'], sort_keys=True)} ({source}; "
        f"{result['n_train']} training images, {result['n_eval']} validation images scoring the probe):"
    )
    for name in MEASURES:
        print(f"  {name:14s} {result['measures'][name]:.4f}")
    print(f"cache entry: complexity-{result['key']}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
