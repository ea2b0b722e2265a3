"""``python -m kd_lightning.report findings``: docs/findings.md's per-level tables are the command's, and a sweep
with several conditions at one level (teacher kinds) gets a named row for each in every table."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from kd_lightning import PROJECT_ROOT
from kd_lightning.report import markdown
from kd_lightning.report.records import load_runs
from kd_lightning.report.summaries import level_tables

REPORTS = PROJECT_ROOT / "docs" / "reports"


def findings_tables(runs: pd.DataFrame) -> dict[str, list[list[str]]]:
    """The command's tables by their first header cell after the factor (best and last: the first method), each
    a list of rows of cells."""
    text = markdown.findings_markdown(level_tables(runs), "train_fraction", 7291)
    tables: dict[str, list[list[str]]] = {}
    current: list[list[str]] = []
    for line in text.splitlines():
        cells = line.strip("| ").split(" | ")
        if line.startswith("| train_fraction"):
            name = cells[1] if cells[1] != "images" else cells[2]
            current = tables.setdefault(f"{name} {len(tables)}", [])
        elif line.startswith("| "):
            current.append(cells)
    return tables


def test_findings_md_tables_are_the_commands_rows():
    """Per level and checkpoint, complexity, KL to the teacher and wall times of the first sweep, as
    docs/findings.md quotes them."""
    tables = findings_tables(load_runs(REPORTS / "usps_train_fraction_fast"))
    assert [len(rows) for rows in tables.values()] == [4, 4, 4, 4, 4]  # best, last, complexity, KL, walls
    published = set((PROJECT_ROOT / "docs" / "findings.md").read_text().splitlines())
    rows = ["| " + " | ".join(cells) + " |" for table in tables.values() for cells in table]
    assert [row for row in rows if row not in published] == []
    best = next(iter(tables.values()))
    assert [cells[0] for cells in best] == ["0.05", "0.1", "0.2", "1"]  # one condition a level: rows not named


def test_findings_md_quotes_the_confirmatory_sweeps_rows_and_its_primary_claim():
    """Issue 31's pre-registered sweep: its per-level tables and claim 101's verdict line in docs/findings.md are
    the command's, from the committed report (so ``python -m kd_lightning.report`` reproduces them)."""
    runs = load_runs(REPORTS / "usps_confirmatory")
    tables = findings_tables(runs)
    published = set((PROJECT_ROOT / "docs" / "findings.md").read_text().splitlines())
    rows = ["| " + " | ".join(cells) + " |" for table in tables.values() for cells in table]
    assert rows and [row for row in rows if row not in published] == []
    best = next(iter(tables.values()))
    assert [cells[0] for cells in best] == ["0.05", "1"]  # one condition a level: the fixed full-data teacher
    assert set(runs.loc[runs["method"] != "teacher", "seed"]) == set(range(3, 35))
    claims = json.loads((REPORTS / "usps_confirmatory" / "claims.json").read_text())
    primary = next(c for c in claims if c["number"] == 101)
    assert primary["family"] == "primary"
    text = (PROJECT_ROOT / "docs" / "findings.md").read_text()
    assert primary["test"] in text and f"**Claim 101 (primary): {primary['verdict']}.**" in text
    ikd = next(c for c in claims if c["number"] == 102)  # the exploratory IKD contrast, quoted as the report words it
    assert ikd["verdict"] != "not testable" and ikd["test"] in text
    # claims 2 and 3 per level: each paired interval the report gives is quoted (typeset with U+2212 minus signs)
    flat = " ".join(text.split())
    quoted = [
        match.groups()
        for c in claims
        if c["number"] in (2, 3)
        for match in re.finditer(r"USPS: ([+-]\d+\.\d\d) pp \[([+-]\d+\.\d\d), ([+-]\d+\.\d\d)\]", c["evidence"])
    ]
    assert len(quoted) == 4
    for mean, low, high in quoted:
        mean, low, high = (x.replace("-", "−") for x in (mean, low, high))
        assert f"{mean} pp [{low}, {high}]" in flat or f"{mean} [{low}, {high}]" in flat, (mean, low, high)


@pytest.fixture(scope="module")
def pilot():
    runs = load_runs(REPORTS / "usps_teachers_pilot")
    return runs, findings_tables(runs)


def test_each_condition_at_a_shared_level_is_its_own_named_row_in_every_table(pilot):
    runs, tables = pilot
    conditions = set(runs["recipe"])
    assert sum("train_fraction=0.05" in c for c in conditions) > 1
    best, last, complexity, kl, walls = tables.values()
    names = [cells[0] for cells in best]
    assert len(names) == len(set(names)) == len(conditions)
    assert {name.split(" ", 1)[1][1:-1] for name in names} == conditions  # "0.05 (<condition>)"
    assert [cells[0] for cells in last] == names and [cells[0] for cells in walls] == names
    assert [cells[0] for cells in kl] == names
    # the full-data ensemble trained once, at full data: at 5% its time is not counted again
    full_data_5 = next(cells for cells in walls if "(full-data) · train_fraction=0.05" in cells[0])
    assert full_data_5[2] == "reused (3)" and next(c for c in walls if c[0].startswith("1 ("))[2].endswith("s (3)")
    # complexity only where the first student ran at every level: still named by the condition, not the level alone
    assert complexity and all(cells[0] in names for cells in complexity)


def test_the_total_wall_time_counts_each_timed_cell_once(pilot):
    """ "In all" below the wall table: as many runs as the table's timed cells count (reused teachers left out)."""
    runs, tables = pilot
    walls = list(tables.values())[4]
    timed = [re.fullmatch(r"\d+ s \((\d+)\)", cell) for row in walls for cell in row[2:-1]]
    counted = sum(int(match.group(1)) for match in timed if match)
    text = markdown.findings_markdown(level_tables(runs), "train_fraction", 7291)
    assert f"h of training over {counted} runs" in text.split("In all: ")[1].splitlines()[0]


def test_a_condition_without_a_student_says_n_a_not_nan(pilot):
    _, tables = pilot
    best = next(iter(tables.values()))
    assert not [cells for table in tables.values() for cells in table if any("nan" in c for c in cells)]
    bootstrap = next(cells for cells in best if "(bootstrap)" in cells[0])
    assert bootstrap[4:8] == ["n/a"] * 4  # RKD, IKD, and their differences from scratch: not run in that condition


def test_a_sweep_without_the_factor_gets_a_row_per_condition_and_no_complexity_rows():
    """A recipe comparison (docs/reports/usps_fast_vs_strong): every run at the default level, two conditions."""
    best, last, complexity, kl, walls = findings_tables(load_runs(REPORTS / "usps_fast_vs_strong")).values()
    assert [cells[0] for cells in best] == [cells[0] for cells in walls] == ["1 (fast)", "1 (strong)"]
    assert [cells[0] for cells in kl] == ["1 (fast)", "1 (strong)"]
    assert complexity == []


def test_the_command_prints_the_tables_then_the_gate_then_each_claim_with_its_gate(capsys):
    """``python -m kd_lightning.report findings``: what docs/findings.md quotes for issue 31, in one output."""
    from kd_lightning.report.cli import main

    assert main(["findings", str(REPORTS / "usps_teachers_pilot"), "--train-images", "7291"]) == 0
    text = capsys.readouterr().out
    tables, gate, claims = text.index("| train_fraction |"), text.index("## Teacher gate"), text.index("Claim 101")
    assert tables < gate < claims and "Members' mean (%)" in text and "KL(teacher ‖ ·) best" in text
    full_data = text[claims:].split("\nClaim ")[0]  # the full-data ensemble's claim: its gate line comes first
    assert "**Its teacher was not qualified in every condition**" in full_data.splitlines()[1]


def test_a_run_recorded_twice_is_timed_once(pilot):
    """Overlapping folders (a sweep and one of its levels) give each run twice; walls count it once, as the
    accuracy tables do."""
    runs, tables = pilot
    twice = findings_tables(pd.concat([runs, runs], ignore_index=True))
    assert list(twice.values())[4] == list(tables.values())[4]


def test_a_wall_cell_counts_the_runs_its_median_is_over(pilot):
    runs, _ = pilot
    full = (runs["method"] == "scratch") & (runs["recipe"] == "fast · teacher ensemble of 4 resnet18 (full-data)")
    untimed = runs.assign(wall_time_s=runs["wall_time_s"].where(~(full & (runs["seed"] == 0))))
    walls = list(findings_tables(untimed).values())[4]
    row = next(cells for cells in walls if cells[0].startswith("1 ("))
    assert row[3].endswith("s (2)")  # scratch: 2 timed runs of 3


def test_a_method_without_a_completed_run_at_a_level_says_n_a(pilot):
    runs, _ = pilot
    scratch_5 = (runs["method"] == "rkd") & runs["recipe"].str.contains(r"\(full-data\) · train_fraction=0.05")
    best = next(iter(findings_tables(runs.assign(status=runs["status"].where(~scratch_5, "running"))).values()))
    row = next(cells for cells in best if "(full-data) · train_fraction=0.05" in cells[0])
    assert row[4] == "n/a" and row[6] == "n/a"  # RKD and RKD − scratch, not "nan (n 0)"


def test_a_zero_that_rounds_from_below_prints_without_a_minus():
    from kd_lightning.report.formatting import fmt

    assert fmt(-1e-12, 2, True) == "+0.00" and fmt(-1e-12) == "0.00" and fmt(-0.004, 2, True) == "+0.00"
    assert fmt(-0.005, 2, True) == "-0.01" and fmt(0.1 - 0.3, 2, True) == "-0.20"
