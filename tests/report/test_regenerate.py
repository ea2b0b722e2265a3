"""Every committed report under docs/reports/ regenerates from its own ``tables/runs.csv`` (and ``curves.csv``):
the run folders are elsewhere, the numbers are the runs', and the report says what today's rules make of them.

One report is regenerated whole (report.md, claims.json, figures, CSVs) through the command line; the others
through the tables alone (the figures are the same code on the same frames)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from kd_lightning.report.claims import report_claims
from kd_lightning.report.cli import main
from kd_lightning.report.curves import CURVES_CSV, read_curve_summary
from kd_lightning.report.problems import find_issues
from kd_lightning.report.records import load_runs
from kd_lightning.report.runs import RUNS_CSV, is_report_folder
from kd_lightning.report.writer import write_tables

REPORTS = Path(__file__).resolve().parents[2] / "docs" / "reports"
COMMITTED = sorted(p.name for p in REPORTS.iterdir() if (p / RUNS_CSV).is_file())


def _same_csv(committed: Path, regenerated: Path) -> None:
    """Every column and number of the committed CSV, in the regenerated one."""
    if committed.read_text() == regenerated.read_text():
        return  # also the empty tables, which pandas cannot read
    old = pd.read_csv(committed, keep_default_na=False, na_values=[""])
    new = pd.read_csv(regenerated, keep_default_na=False, na_values=[""])
    assert [c for c in new.columns if c in set(old.columns)] == list(old.columns), committed.name  # columns added since
    pd.testing.assert_frame_equal(new[list(old.columns)], old, check_dtype=False, obj=committed.name)


def test_the_committed_reports_are_found():
    assert {"usps_train_fraction_fast", "usps_fast_vs_strong", "usps_train_fraction_paper_2ep"} <= set(COMMITTED)
    assert all(is_report_folder(REPORTS / name) for name in COMMITTED)


@pytest.mark.parametrize("name", [n for n in COMMITTED if n != "usps_fast_vs_strong"])
def test_tables_regenerate_with_the_same_numbers(name: str, tmp_path: Path):
    folder = REPORTS / name
    runs = load_runs(folder)
    claims = report_claims(runs)
    write_tables(runs, read_curve_summary(folder / CURVES_CSV), find_issues(runs), claims, "test_best.acc", tmp_path)
    for committed in sorted((folder / "tables").glob("*.csv")):
        _same_csv(committed, tmp_path / committed.name)
    assert json.loads((tmp_path.parent / "claims.json").read_text()) == json.loads((folder / "claims.json").read_text())


def test_a_report_regenerates_whole_from_its_folder(tmp_path: Path):
    """``python -m kd_lightning.report docs/reports/<name> --out <name>``: the same tables, claims and figures;
    report.md differs only in the line that says when it was generated."""
    folder = REPORTS / "usps_fast_vs_strong"
    out = tmp_path / folder.name
    shutil.copytree(folder, out)
    assert main([str(out), "--out", str(out)]) == 0
    for committed in sorted((folder / "tables").glob("*.csv")):
        _same_csv(committed, out / "tables" / committed.name)
    assert json.loads((out / "claims.json").read_text()) == json.loads((folder / "claims.json").read_text())
    for figure in sorted((folder / "figures").glob("*.png")):
        assert (out / "figures" / figure.name).is_file(), figure.name

    def body(path: Path) -> list[str]:
        lines = path.read_text().splitlines()
        return [line for line in lines if not line.startswith(("- Generated:", "- Sweep"))]

    assert body(out / "report.md") == body(folder / "report.md")
    assert "regenerated from its `tables/runs.csv`" in (out / "report.md").read_text()
