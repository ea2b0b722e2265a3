"""Command line: ``python -m kd_lightning.report <sweep-dir> [--out DIR] [--metric ...]``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from kd_lightning.report.runs import DEFAULT_METRIC, METRICS
from kd_lightning.report.writer import write_report


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints the path of report.md."""
    import matplotlib

    matplotlib.use("Agg")
    parser = argparse.ArgumentParser(
        prog="python -m kd_lightning.report",
        description=(
            "Summarise a knowledge-distillation sweep (every results.json under SWEEP, except archive/ folders) "
            "into report.md, PNG figures and CSV tables, with a verdict on each of the paper's claims."
        ),
    )
    parser.add_argument(
        "sweep",
        type=Path,
        nargs="+",
        help="sweep folder, e.g. outputs/study; several are read as one (e.g. one per recipe)",
    )
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: the first SWEEP/report)")
    parser.add_argument(
        "--metric",
        choices=sorted(METRICS),
        default=DEFAULT_METRIC,
        help="headline metric for figures and claims (both are tabulated); default: %(default)s",
    )
    args = parser.parse_args(argv)
    try:
        path = write_report(args.sweep, args.out, args.metric)
    except FileNotFoundError as exc:
        parser.error(str(exc))
    print(path)
    return 0
