"""Command line: ``python -m kd_lightning.report <sweep-dir> [--out DIR] [--metric ...] [--primary SPEC]``, and

- ``python -m kd_lightning.report plan <sweep-or-report-dir> --effect 0.5``: seeds each factor claim needs;
- ``python -m kd_lightning.report verdicts <sweep-or-report-dir>``: the claims section under the current rules
  (from a committed report's ``tables/runs.csv`` when the run folders are elsewhere);
- ``python -m kd_lightning.report calibrate [--sims N]``: the calibration table of docs/factors.md;
- ``python -m kd_lightning.report findings <sweep-or-report-dir> [--factor F] [--train-images N] [--primary SPEC]``:
  one factor's levels side by side, then its claims with their teacher gate (docs/findings.md);
- ``python -m kd_lightning.report recipes <sweep-or-report-dir> [--first fast] [--second strong]``: two recipes
  side by side (docs/recipes.md).
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
SIDE_COMMANDS = ("plan", "verdicts", "calibrate", "findings", "recipes")


def _side_parser(command: str) -> argparse.ArgumentParser:
    """Each side command's arguments (calibrate reads no runs)."""
    parser = argparse.ArgumentParser(prog=f"python -m kd_lightning.report {command}")
    if command == "calibrate":
        parser.add_argument("--sims", type=int, default=20_000, help="null sweeps per setting")
        parser.add_argument("--pilots", type=int, default=200, help="pilots whose printed MDE is fed back")
        return parser
    parser.add_argument("folder", type=Path, help="a sweep folder (results.json) or a report folder (tables/runs.csv)")
    if command in ("plan", "verdicts", "findings"):
        parser.add_argument("--primary", default=None, help=PRIMARY_HELP)
        parser.add_argument("--metric", choices=sorted(METRICS), default=DEFAULT_METRIC, help="default: %(default)s")
    if command == "plan":
        parser.add_argument("--effect", type=float, required=True, help="pp per unit of the factor's position")
    if command == "findings":
        parser.add_argument("--factor", default="train_fraction", help="the factor whose levels are compared")
        parser.add_argument("--train-images", type=int, default=None, help="full training set size (images column)")
    if command == "recipes":
        parser.add_argument("--first", default="fast", help="the recipe measured against the second")
        parser.add_argument("--second", default="strong")
    return parser


def _side_command(argv: Sequence[str]) -> str:
    """The text a side command prints."""
    from kd_lightning.report import claims_text, markdown
    from kd_lightning.report.records import load_runs

    command, args = argv[0], _side_parser(argv[0]).parse_args(argv[1:])
    if command == "calibrate":
        from kd_lightning.report.calibration import calibration_table

        return claims_text.markdown_calibration(calibration_table(args.sims, args.pilots))
    runs = load_runs(args.folder)
    if command == "findings":
        from kd_lightning.report.claims import report_claims
        from kd_lightning.report.primary import parse_primary
        from kd_lightning.report.summaries import level_tables
        from kd_lightning.report.teacher_gate import teacher_gate

        text = markdown.findings_markdown(level_tables(runs, args.factor), args.factor, args.train_images)
        claims, gate = report_claims(runs, primary=parse_primary(args.primary)), teacher_gate(runs)
        gated = "\n".join(["", *markdown.gate_section(gate, DEFAULT_METRIC)])
        return text + "\n" + gated + "\n" + claims_text.factor_claims_text(claims, gate)
    if command == "recipes":
        from kd_lightning.report.summaries import recipe_tables

        return markdown.recipes_markdown(recipe_tables(runs, args.first, args.second), args.first, args.second)
    from kd_lightning.report.claims import report_claims
    from kd_lightning.report.plan import plan_frame
    from kd_lightning.report.primary import parse_primary

    primary = parse_primary(args.primary)
    if command == "plan":
        return claims_text.plan_text(plan_frame(runs, args.effect, args.metric, primary), args.effect)
    return "\n".join(claims_text.claims_markdown(report_claims(runs, args.metric, primary), args.metric))


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints the path of report.md (or the output of a side command)."""
    import sys

    import matplotlib

    matplotlib.use("Agg")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SIDE_COMMANDS:
        print(_side_command(argv))
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m kd_lightning.report",
        description=(
            "Summarise a knowledge-distillation sweep (every results.json under SWEEP, except archive/ folders) "
            "into report.md, PNG figures and CSV tables, with a verdict on each of the paper's claims. Side "
            f"commands: {', '.join(SIDE_COMMANDS)} (python -m kd_lightning.report plan -h)."
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
    parser.add_argument("--metric", choices=sorted(METRICS), default=DEFAULT_METRIC, help="default: %(default)s")
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
