"""Command line: ``python -m kd_lightning.report <sweep-dir> [--out DIR] [--metric ...] [--primary SPEC]``, and

- ``python -m kd_lightning.report plan <sweep-or-report-dir> --effect 0.5``: seeds each factor claim needs;
- ``python -m kd_lightning.report verdicts <sweep-or-report-dir>``: the claims section under the current rules
  (from a committed report's ``tables/runs.csv`` when the run folders are elsewhere);
- ``python -m kd_lightning.report calibrate [--sims N]``: the calibration table of docs/factors.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from kd_lightning.report.runs import DEFAULT_METRIC, METRICS

PRIMARY_HELP = (
    "the primary claim named in advance, e.g. factor=train_fraction,student=rkd,test=contrast,direction=greater "
    "(default: claims.primary of the runs' recorded config; none: every claim is exploratory)"
)


def _metric(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metric", choices=sorted(METRICS), default=DEFAULT_METRIC, help="default: %(default)s")


def _side_command(argv: Sequence[str]) -> int:
    """plan / verdicts / calibrate."""
    from kd_lightning.report.primary import parse_primary

    parser = argparse.ArgumentParser(prog=f"python -m kd_lightning.report {argv[0]}")
    if argv[0] == "calibrate":
        parser.add_argument("--sims", type=int, default=20_000, help="null sweeps per setting")
        parser.add_argument("--pilots", type=int, default=200, help="pilots whose printed MDE is fed back")
        args = parser.parse_args(argv[1:])
        from kd_lightning.report.calibration import calibration_table, markdown_calibration

        print(markdown_calibration(calibration_table(args.sims, args.pilots)))
        return 0
    parser.add_argument("folder", type=Path, help="a sweep folder (results.json) or a report folder (tables/runs.csv)")
    parser.add_argument("--primary", default=None, help=PRIMARY_HELP)
    _metric(parser)
    if argv[0] == "plan":
        parser.add_argument("--effect", type=float, required=True, help="pp per unit of the factor's position")
    args = parser.parse_args(argv[1:])
    from kd_lightning.report.plan import plan_text
    from kd_lightning.report.runs import load_runs

    runs = load_runs(args.folder)
    primary = parse_primary(args.primary)
    if argv[0] == "plan":
        print(plan_text(runs, args.effect, args.metric, primary))
        return 0
    from kd_lightning.report.claims import report_claims
    from kd_lightning.report.markdown import claims_markdown

    print("\n".join(claims_markdown(report_claims(runs, args.metric, primary), args.metric)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints the path of report.md (or the output of a side command)."""
    import sys

    import matplotlib

    matplotlib.use("Agg")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("plan", "verdicts", "calibrate"):
        return _side_command(argv)
    parser = argparse.ArgumentParser(
        prog="python -m kd_lightning.report",
        description=(
            "Summarise a knowledge-distillation sweep (every results.json under SWEEP, except archive/ folders) "
            "into report.md, PNG figures and CSV tables, with a verdict on each of the paper's claims. Side "
            "commands: plan, verdicts, calibrate (python -m kd_lightning.report plan -h)."
        ),
    )
    parser.add_argument(
        "sweep",
        type=Path,
        nargs="+",
        help="sweep folder, e.g. outputs/study; several are read as one (e.g. one per recipe)",
    )
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: the first SWEEP/report)")
    parser.add_argument("--primary", default=None, help=PRIMARY_HELP)
    _metric(parser)
    args = parser.parse_args(argv)
    from kd_lightning.report.claims import primary_override
    from kd_lightning.report.primary import parse_primary
    from kd_lightning.report.writer import write_report

    try:
        with primary_override(parse_primary(args.primary)):
            path = write_report(args.sweep, args.out, args.metric)
    except FileNotFoundError as exc:
        parser.error(str(exc))
    print(path)
    return 0
