"""``python -m kd_lightning.report findings``: docs/findings.md's per-level tables are the command's, and a sweep
with several conditions at one level (teacher kinds) gets a row for each."""

from __future__ import annotations

import pytest

from kd_lightning import PROJECT_ROOT
from kd_lightning.report import markdown
from kd_lightning.report.records import load_runs
from kd_lightning.report.summaries import level_tables

REPORTS = PROJECT_ROOT / "docs" / "reports"


def findings_rows(report: str) -> list[str]:
    text = markdown.findings_markdown(level_tables(load_runs(REPORTS / report)), "train_fraction", 7291)
    return [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| train_fraction")]


def test_findings_md_tables_are_the_commands_rows():
    """Per level and checkpoint, complexity and wall times of the first sweep, as docs/findings.md quotes them."""
    rows = findings_rows("usps_train_fraction_fast")
    assert len(rows) == 4 * 4  # best, last, complexity, walls; 4 levels each
    published = set((PROJECT_ROOT / "docs" / "findings.md").read_text().splitlines())
    assert [row for row in rows if row not in published] == []


@pytest.fixture(scope="module")
def pilot_rows() -> list[str]:
    return findings_rows("usps_teachers_pilot")


def test_each_condition_at_a_shared_level_is_its_own_named_row(pilot_rows):
    runs = load_runs(REPORTS / "usps_teachers_pilot")
    at_5_percent = sorted(c for c in runs["recipe"].unique() if "train_fraction=0.05" in c)
    assert len(at_5_percent) > 1
    best = pilot_rows[: len(at_5_percent) + 1]  # the first table: each 5% condition, then full data alone
    assert [row.split(" | ")[0] for row in best] == [f"| 0.05 ({c})" for c in at_5_percent] + ["| 1"]
    walls = [row.split(" | ")[0] for row in pilot_rows[-len(best) :]]
    assert walls == [row.split(" | ")[0] for row in best]  # wall times per condition too, not pooled


def test_a_condition_without_a_student_says_n_a_not_nan(pilot_rows):
    assert not [row for row in pilot_rows if "nan" in row]
    bootstrap = next(row for row in pilot_rows if "(bootstrap)" in row)
    cells = bootstrap.strip("| ").split(" | ")
    assert cells[4:8] == ["n/a"] * 4  # RKD, IKD, and their differences from scratch: not run in that condition
