"""report.md: human-readable tables (strings, percent, ``n/a``) and the document, organised by concern:
claims first, then the evidence behind them, then runs and their problems."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from kd_lightning.report.formatting import fmt, fmt_ci, fmt_n, fmt_p, markdown_table, mean_std
from kd_lightning.report.paper import TABLES, Comparison, dataset_label, method_label
from kd_lightning.report.runs import (
    FIDELITY_FIELDS,
    METRICS,
    SPLITS,
    checkpoint,
    completed_runs,
    differences_label,
    distilling_methods,
    is_report_folder,
    ordered_datasets,
    ordered_methods,
    recipes_in,
    teacher_check,
)
from kd_lightning.report.stats import ALPHA, GAP_MIN_PP, GATE_MARGIN


def _recipe_cell(row: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    return {"Recipe": row["recipe"], **out} if "recipe" in row else out


def _formatted(table: pd.DataFrame, cells: Callable[[dict[str, Any]], dict[str, Any]]) -> pd.DataFrame:
    """One row of strings per row of ``table``, its recipe first when the table has one."""
    return pd.DataFrame([_recipe_cell(r, cells(r)) for r in table.to_dict("records")])


def _ci(r: dict[str, Any]) -> str:
    return fmt_ci(r["ci_low"], r["ci_high"]) if r["n_pairs"] > 1 else "[n/a]"


def format_comparison(table: pd.DataFrame, comparison: Comparison) -> pd.DataFrame:
    """Human-readable version of a comparison table (strings, percent, 'n/a' where undefined)."""
    a, b = comparison.first, comparison.second
    delta = f"Δ {method_label(comparison.treatment)} − {method_label(comparison.control)}"
    return _formatted(
        table,
        lambda r: {
            "Dataset": dataset_label(r["dataset"]),
            f"{method_label(a)} (n)": f"{mean_std(r[f'{a}_mean'], r[f'{a}_std'])} ({r[f'{a}_n']})",
            f"{method_label(b)} (n)": f"{mean_std(r[f'{b}_mean'], r[f'{b}_std'])} ({r[f'{b}_n']})",
            f"{delta} [95% CI] (pairs)": f"{fmt(r['diff_mean'], signed=True)} {_ci(r)} ({r['n_pairs']})",
            "Holm p": fmt_p(r["p_holm"]),
            "Resolved": r["resolved"] or "no",
            "MDE (80%)": fmt(r["mde"]),
            f"Paper {method_label(a)}": fmt(r[f"paper_{a}"]),
            f"Paper {method_label(b)}": fmt(r[f"paper_{b}"]),
            "Paper Δ": fmt(r["paper_diff"], signed=True),
            "Seeds for paper Δ": fmt_n(r["pairs_needed_paper"]),
            "Differences from the paper's protocol": r["differences"],
        },
    )


def table_caption(comparison: Comparison, metric: str) -> str:
    """One line above a comparison table: which comparison, which metric and checkpoint."""
    return (
        f"**{comparison.title}** — {METRICS.get(metric, metric)} (`{metric}`, %). Δ = "
        f"{method_label(comparison.treatment)} − {method_label(comparison.control)} "
        "in percentage points, paired by seed."
    )


def comparisons_note() -> str:
    """How every comparison table is made (said once per section)."""
    return (
        f"Arms: mean ± sample std (ddof=1) over seeds, n seeds in brackets. Δ: treatment − control in percentage "
        f"points, paired by seed (only seeds present in both arms), 95% t-interval (df = pairs − 1). Holm p: "
        f"two-sided paired t-test, Holm-adjusted across the datasets of the table; Resolved: +/− when Holm p < "
        f"{ALPHA}. MDE: the smallest |Δ| a paired t-test with these pairs and this sd detects with 80% power "
        f"(α = {ALPHA}, two-sided). Seeds for paper Δ: seeds needed to detect the paper's difference with 80% power "
        f"at the observed sd. Paper columns are filled only where every run of the row is paper-configured (its "
        f"config values, not the recipe's name, equal the paper's protocol); otherwise the last column lists what "
        f"differs."
    )


def _summary_wide(summary: pd.DataFrame) -> pd.DataFrame:
    """``tables.summary_table`` with datasets as rows, methods as columns, 'mean ± std (n)' cells (a recipe column
    when there are several)."""
    if summary.empty:
        return summary
    summary = summary.assign(
        cell=[f"{mean_std(m, s)} ({n})" for m, s, n in zip(summary["mean"], summary["std"], summary["n"])]
    )
    index = ["recipe", "dataset"] if "recipe" in summary else ["dataset"]
    wide = summary.pivot_table(index=index, columns="method", values="cell", aggfunc="first").reset_index()
    methods = ordered_methods(c for c in wide.columns if c not in index)
    wide = wide.assign(_k=wide["dataset"].map(ordered_datasets(wide["dataset"]).index))
    wide = wide.sort_values([*index[:-1], "_k"]).drop(columns="_k")
    wide["dataset"] = wide["dataset"].map(dataset_label)
    wide = wide[[*index, *methods]].fillna("n/a")
    return wide.rename(columns={"dataset": "Dataset", "recipe": "Recipe", **{m: method_label(m) for m in methods}})


def format_fidelity(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in table.to_dict("records"):
        out = {"Dataset": dataset_label(r["dataset"]), "Method": method_label(r["method"])}
        for _, name, _, unit in FIDELITY_FIELDS:
            digits = 3 if unit.startswith("nats") else 2
            out[f"{name.upper() if name in ('nll', 'ece', 'kl') else name.capitalize()} ({unit})"] = (
                f"{mean_std(r[f'{name}_mean'], r[f'{name}_std'], digits)} ({r[f'{name}_n']})"
            )
        rows.append(_recipe_cell(r, out))
    return pd.DataFrame(rows)


def format_gap_closed(table: pd.DataFrame) -> pd.DataFrame:
    return _formatted(
        table,
        lambda r: {
            "Dataset": dataset_label(r["dataset"]),
            "Student": method_label(r["student"]),
            "Seeds": r["n_seeds"],
            "Gain over scratch (pp) [95% CI]": (
                f"{fmt(r['gain_mean'], signed=True)} {fmt_ci(r['gain_low'], r['gain_high'])}"
            ),
            "Teacher − scratch (pp)": fmt(r["teacher_gap_mean"], signed=True),
            "Gap closed (%)": fmt(100 * r["gap_closed"], 0) if pd.notna(r["gap_closed"]) else "n/a",
            "Teacher qualified": "yes" if r["teacher_gap_mean"] >= GATE_MARGIN else "no",
            "Paper gap closed (%)": fmt(100 * r["paper_gap_closed"], 0) if pd.notna(r["paper_gap_closed"]) else "n/a",
        },
    )


def format_teacher_gate(gate: pd.DataFrame) -> pd.DataFrame:
    return _formatted(
        gate,
        lambda r: {
            "Dataset": dataset_label(r["dataset"]),
            "Seeds": r["n"],
            "Teacher (%)": fmt(r["teacher"]),
            "Members' mean (%)": fmt(r["members_mean"]),
            f"{method_label(r['control'])} (%)": fmt(r["control_mean"]),
            "Teacher − control (pp) [95% CI]": (f"{fmt(r['diff'], signed=True)} {fmt_ci(r['ci_low'], r['ci_high'])}"),
            "Qualified": "yes" if r["qualified"] else "**no**",
        },
    )


def format_evidence(table: pd.DataFrame) -> pd.DataFrame:
    return _formatted(
        table,
        lambda r: {
            "Comparison": f"{method_label(r['treatment'])} − {method_label(r['control'])}",
            "Dataset": dataset_label(r["dataset"]),
            "Pairs": r["n_pairs"],
            "Δ (pp)": fmt(r["diff_mean"], signed=True),
            "sd of Δ (pp)": fmt(r["diff_std"]),
            "sd per arm (pp)": f"{fmt(r['treatment_std'])} / {fmt(r['control_std'])}",
            "ρ": fmt(r["corr"]),
            "MDE, 80% power (pp)": fmt(r["mde"]),
            "Paper Δ (pp)": fmt(r["paper_diff"], signed=True),
            "Seeds to detect paper Δ": fmt_n(r["pairs_needed_paper"]),
        },
    )


def format_provenance(checks: pd.DataFrame, multi: bool) -> pd.DataFrame:
    rows = []
    for r in checks.to_dict("records"):
        out = {
            "Dataset": dataset_label(r["dataset"]),
            "Method": method_label(r["method"]),
            "Seed": r["seed"],
            "Teacher used": r["teacher.key"] or "n/a",
            "Sweep's teacher run": r["sweep_teacher_key"] or "n/a",
            "Same teacher": r["teacher_match"],
            "Stale": {True: "yes", False: "no"}.get(r["teacher.stale"], "n/a"),
            "Source": r["teacher.source"] or "n/a",
            "Teacher test acc (%)": fmt(100 * r["teacher.test_acc"]) if pd.notna(r["teacher.test_acc"]) else "n/a",
        }
        rows.append({"Recipe": r["recipe"], **out} if multi else out)
    return pd.DataFrame(rows)


def format_student_buys(table: pd.DataFrame) -> pd.DataFrame:
    return _formatted(
        table,
        lambda r: {
            "Dataset": dataset_label(r["dataset"]),
            "Student": method_label(r["student"]),
            "Accuracy (%)": fmt(r["acc_mean"]),
            "Teacher (%)": fmt(r["teacher_acc_mean"]),
            "Accuracy kept (%)": fmt(r["accuracy_kept"], 1),
            "Gap to teacher (pp) [95% CI]": (
                f"{fmt(r['gap_to_teacher'], signed=True)} {fmt_ci(r['gap_low'], r['gap_high'])}"
            ),
            "Speed-up (latency)": f"{fmt(r['speed_up'], 2)}×" if pd.notna(r["speed_up"]) else "n/a",
            "Size reduction (params)": f"{fmt(r['size_reduction'], 2)}×" if pd.notna(r["size_reduction"]) else "n/a",
            "FLOPs reduction": f"{fmt(r['flops_reduction'], 2)}×" if pd.notna(r["flops_reduction"]) else "n/a",
        },
    )


def format_factors(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in table.to_dict("records"):
        rows.append(
            {
                "Dataset": dataset_label(r["dataset"]),
                "Recipe": r["recipe"],
                "Factor": r["factor"],
                "Level": f"{r['level']:g}",
                "Student": method_label(r["student"]),
                "Teacher": fmt(r["teacher"]),
                "Scratch": fmt(r["scratch"]),
                "Student acc": fmt(r["student_acc"]),
                "n": fmt_n(r["n_pairs"]),
                "Gain (pp, 95% CI)": f"{fmt(r['gain'], signed=True)} {fmt_ci(r['gain_ci_low'], r['gain_ci_high'])}",
                "Gap closed": f"{fmt(100 * r['gap_closed'], 0)}%" if pd.notna(r["gap_closed"]) else "n/a",
                "Agreement": f"{fmt(100 * r['agreement'], 1)}%" if pd.notna(r["agreement"]) else "n/a",
                "Probe acc": fmt(r.get("complexity.probe_acc"), 3),
                "N3": fmt(r.get("complexity.n3"), 3),
                "1/(1+F1)": fmt(r.get("complexity.f1_inv"), 3),
                "ID": fmt(r.get("complexity.intrinsic_dim"), 1),
                "CSG": fmt(r.get("complexity.csg"), 2),
                "Teacher H(T=4)": fmt(r.get("teacher_soft_label_entropy"), 3),
            }
        )
    return pd.DataFrame(rows)


def issues_markdown(issues: pd.DataFrame) -> str:
    if issues.empty:
        return "All runs of the grid completed."
    parts = []
    cols = [c for c in ("recipe", "dataset", "method", "seed", "detail", "path") if c in issues]
    for status, group in issues.groupby("status", sort=False):
        shown = group.assign(dataset=group["dataset"].map(dataset_label))[cols]
        parts.append(f"**{status}** ({len(group)})\n\n{markdown_table(shown)}")
    return "\n\n".join(parts)


def budget_note(runs: pd.DataFrame) -> list[str]:
    """The training-budget rule, stated once when any run trained under a floor on optimizer steps."""
    floors = sorted({int(v) for v in runs.get("min_steps", pd.Series(dtype=object)).dropna()})
    if not floors:
        return []
    return [
        f"- Training budget: runs with a floor on optimizer steps (`recipe.min_steps` = {', '.join(map(str, floors))}) "
        "train max(E, ⌈min_steps / steps per epoch⌉) epochs, E the configured epochs and steps per epoch those of "
        "the run's own (factored) training set, so a smaller training set is not trained less "
        "(`results.json` → `budget`; columns `min_steps`, `optimizer_steps` of the runs table)."
    ]


def source_label(folder: Path) -> str:
    """A report's input as the header names it: relative to the working folder when inside it, and a report
    folder (regenerated from its ``tables/runs.csv``) said to be one, with where its runs were."""
    try:
        shown = Path(folder).resolve().relative_to(Path.cwd())
    except ValueError:
        shown = Path(folder)
    if not is_report_folder(folder):
        return f"`{shown}`"
    return f"`{shown}` (regenerated from its `tables/runs.csv`)"


def _headline_first(metric: str) -> list[str]:
    return [metric, *(m for m in METRICS if m != metric)]


def _header(sweeps: Sequence[Path], runs: pd.DataFrame, metric: str, issues: pd.DataFrame) -> list[str]:
    done = completed_runs(runs)
    multi = len(recipes_in(runs)) > 1
    comparable = int(done["paper_comparable"].sum()) if not done.empty else 0
    differs = not done.empty and not done["paper_comparable"].all()
    return [
        "# Knowledge distillation study report",
        "",
        f"- Sweep{'s' if len(sweeps) > 1 else ''}: {', '.join(source_label(s) for s in sweeps)}",
        f"- Generated: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
        f"- Runs found: {len(runs)} results.json ({len(done)} completed); problems listed in "
        f"[Missing, failed and running runs](#missing-failed-and-running-runs): {len(issues)}",
        f"- Headline metric: **{metric}** — {METRICS.get(metric, metric)}. Accuracies in percent, differences in "
        "percentage points (pp).",
        f"- Recipes (`config.recipe.name`): {', '.join(f'`{r}`' for r in recipes_in(runs)) or 'n/a'}"
        + (" — tables and claims are per recipe (never pooled)." if multi else ""),
        f"- Paper-configured completed runs: {comparable} of {len(done)}"
        + (f"; differences: {differences_label(done)}" if differs else ""),
        *budget_note(runs),
        "",
    ]


def gate_section(gate: pd.DataFrame, metric: str) -> list[str]:
    return [
        "## Teacher gate",
        "",
        f"Is each condition's teacher worth distilling? Teacher − scratch ({metric}), paired by seed, with its 95% "
        f"t-interval; **qualified** when the mean is at least {GATE_MARGIN:g} pp (a point estimate: the interval "
        "says how sure). An ensemble's members' mean is shown beside it. Conditions carry the teacher kind "
        "(`teacher ...` in the recipe column; none = the paper's single teacher on the students' data) and are "
        "never pooled.",
        "",
        markdown_table(format_teacher_gate(gate))
        if not gate.empty
        else "_No condition has both a teacher row and a scratch run: add `method=teacher` to the grid (a registered "
        "teacher is reused, not retrained)._",
        "",
    ]


def _runs_section(counts: pd.DataFrame, tables: dict[str, pd.DataFrame], metric: str) -> list[str]:
    lines = [
        "## Runs",
        "",
        "Completed runs per dataset and method (out of the seeds seen anywhere in the sweep).",
        "",
        markdown_table(counts.assign(dataset=counts["dataset"].map(dataset_label)))
        if not counts.empty
        else "_No results.json found._",
        "",
        "## Accuracy per method",
        "",
    ]
    for m in _headline_first(metric):
        lines += [f"{METRICS[m].capitalize()} ({m}, %), mean ± sample std over seeds (n).", ""]
        lines += [markdown_table(_summary_wide(tables.get(f"summary_{checkpoint(m)}", pd.DataFrame()))), ""]
    return lines


def _comparisons_section(comparisons: dict[str, pd.DataFrame], metric: str) -> list[str]:
    lines = []
    for m in _headline_first(metric):
        lines += [f"## Comparisons — {m} ({METRICS[m]})", "", comparisons_note(), ""]
        for comparison in TABLES:
            table = comparisons[f"{comparison.key}_{checkpoint(m)}"]
            lines += [table_caption(comparison, m), "", markdown_table(format_comparison(table, comparison)), ""]
    return lines


def _evidence_section(evidence: pd.DataFrame, metric: str) -> list[str]:
    return [
        "## How much evidence",
        "",
        f"For every comparison of the claims ({metric}): the minimum detectable effect (MDE) of a two-sided "
        f"paired t-test at α = {ALPHA} with 80% power, from the observed sd of the paired differences and the "
        "number of pairs, and the number of seeds that would detect the paper's difference with 80% power at "
        "that sd. A true difference smaller than the MDE is likely to come out *inconclusive*; Holm's "
        "correction across datasets makes the per-dataset test stricter still. n/a: < 2 pairs or no spread. "
        "Beside it each arm's sd over the same seeds (treatment / control) and their correlation ρ: "
        "sd(Δ)² = s_t² + s_c² − 2ρ·s_t·s_c, so pairing by seed helps only as far as ρ > 0.",
        "",
        markdown_table(format_evidence(evidence)),
        "",
    ]


def _gap_closed_section(tables: dict[str, pd.DataFrame], metric: str) -> list[str]:
    lines = [
        "## Gap closed",
        "",
        "Over the seeds with teacher, scratch and the student: gain = mean paired "
        "(student − scratch) with its 95% t-interval; teacher − scratch = mean paired gap; gap closed = gain / "
        f"(teacher − scratch), a ratio of paired means (100% = as good as the teacher, 0% = no better than "
        f"scratch, > 100% = better than the teacher). n/a when teacher − scratch < {GAP_MIN_PP:g} pp (no room to "
        "close). The paper's gap closed is shown only for paper-configured rows.",
        "",
    ]
    for m in _headline_first(metric):
        table = tables.get(f"gap_closed_{checkpoint(m)}", pd.DataFrame())
        lines += [f"**{METRICS[m].capitalize()}** (`{m}`)", "", markdown_table(format_gap_closed(table)), ""]
    return lines


def _fidelity_section(tables: dict[str, pd.DataFrame]) -> list[str]:
    lines = [
        "## Fidelity and calibration",
        "",
        "Per dataset and method, mean ± sample std over seeds (n runs carrying the field): test accuracy; NLL = mean "
        "cross-entropy on the test set (nats); ECE = expected calibration error (%); agreement = top-1 "
        "teacher–student agreement (%); KL = KL(teacher ‖ student) at T = 1 (nats/sample). Agreement and KL "
        "are for students with a teacher; n/a where the records do not carry a field.",
        "",
    ]
    for split, note in SPLITS.items():
        table = tables.get(f"fidelity_{split.removeprefix('test_')}", pd.DataFrame())
        lines += [f"**At the {note}** (`{split}`)", "", markdown_table(format_fidelity(table)), ""]
    return lines


def _provenance_section(runs: pd.DataFrame) -> list[str]:
    checks = teacher_check(runs)
    mismatched = checks[checks["teacher_match"] == "no"]
    stale = checks[checks["teacher.stale"] == True]  # noqa: E712 (object column)
    students = "/".join(map(method_label, distilling_methods(runs))) or "distilled"
    listed = ", ".join(f"{dataset_label(r.dataset)} {r.method} seed {r.seed}" for r in mismatched.itertuples())
    return [
        "## Teacher provenance",
        "",
        f"Each {students} run's teacher (`results.json` → `teacher`) against the sweep's teacher run of the same "
        "dataset and seed (its `teacher_key`). *Same teacher* = no marks a student distilled from another "
        "teacher than the one its table row compares with; *stale* = the teacher was trained by another code "
        "commit.",
        "",
        f"- Students with another teacher than the sweep's: {len(mismatched)}" + (f" ({listed})" if listed else ""),
        f"- Students with a stale teacher: {len(stale)}"
        + (f" ({', '.join(sorted(set(str(k) for k in stale['teacher.key'])))})" if len(stale) else ""),
        "",
        markdown_table(format_provenance(checks, len(recipes_in(runs)) > 1))
        if not checks.empty
        else "_No distilled students._",
        "",
    ]


def _table_section(title: str, note: str, table: pd.DataFrame) -> list[str]:
    """A section with one table, left out when the table is empty."""
    return [] if table.empty else [f"## {title}", "", note, "", markdown_table(table), ""]


def _student_buys_section(buys: pd.DataFrame, metric: str) -> list[str]:
    note = (
        f"{METRICS[metric].capitalize()}. Accuracy kept = student / teacher mean accuracy; gap to teacher = "
        "paired student − teacher (pp, 95% CI); speed-up = teacher / student median CPU latency at batch 1; "
        "size reduction = teacher / student parameters; FLOPs reduction = teacher / student FLOPs per image. "
        "Costs are medians over the seeds' measurements (robust to a timing slowed by other processes) "
        "(`results.json` → `efficiency`); latencies are comparable only within one machine."
    )
    return _table_section("What the student buys", note, format_student_buys(buys))


def _factors_section(factors: pd.DataFrame, metric: str) -> list[str]:
    note = (
        f"Single-factor sweeps ({metric}): per level, mean accuracies over seeds, the student's paired gain over "
        "scratch with its 95% t-interval, gap closed = (student − scratch) / (teacher − scratch) of the means "
        f"(n/a under {GAP_MIN_PP:g} pp), top-1 agreement with the teacher, and the training data's measured "
        "complexity (teacher runs' `data_complexity`, else the cached measures of the same data: "
        "linear-probe accuracy on PCA pixels, N3 = 1-NN error, 1/(1+Fisher's F1), MLE intrinsic dimension, CSG) "
        "and the teacher's mean soft-label entropy at T = 4 (nats). Verdicts are the claims numbered from 101."
    )
    return _table_section("Data factors", note, format_factors(factors))


def _closing_sections(figures: list[tuple[str, Path]], out: Path, issues: pd.DataFrame) -> list[str]:
    lines = ["## Figures", ""]
    for caption, path in figures:
        lines += [f"### {caption}", "", f"![{caption}]({path.relative_to(out).as_posix()})", ""]
    return lines + [
        "## Missing, failed and running runs",
        "",
        "Expected grid: every dataset × method × seed that appears anywhere in the sweep (per recipe). Teacher "
        "mismatches and stale teachers are listed here too.",
        "",
        issues_markdown(issues),
        "",
        "## Files",
        "",
        "Tables as CSV under `tables/` (runs, issues, claims, curves, evidence, gap_closed, "
        "fidelity_<best|last>, provenance, summary_<best|last>, <comparison>_<best|last>, efficiency); figures as "
        "PNG under `figures/`.",
        "",
    ]


def build_markdown(
    sweeps: Sequence[Path],
    runs: pd.DataFrame,
    metric: str,
    comparisons: dict[str, pd.DataFrame],
    claims_section: list[str],
    issues: pd.DataFrame,
    figures: list[tuple[str, Path]],
    out: Path,
    tables: dict[str, pd.DataFrame] | None = None,
) -> str:
    """Assemble report.md: claims (``claims_text.claims_markdown``), the numbers behind them, runs and their
    problems, figures."""
    tables = tables or {}
    gate = tables.get("teacher_gate", pd.DataFrame())
    sections = [
        _header(sweeps, runs, metric, issues),
        ["## Claims", "", *claims_section],
        gate_section(gate, metric),
        _runs_section(tables.get("run_counts", pd.DataFrame()), tables, metric),
        _comparisons_section(comparisons, metric),
        _evidence_section(tables.get("evidence", pd.DataFrame()), metric),
        _gap_closed_section(tables, metric),
        _fidelity_section(tables),
        _provenance_section(runs),
        _student_buys_section(tables.get("student_buys", pd.DataFrame()), metric),
        _factors_section(tables.get("factors", pd.DataFrame()), metric),
        _closing_sections(figures, out, issues),
    ]
    return "\n".join(line for section in sections for line in section)


# --------------------------------------------------------------------------------------------------
# docs/findings.md and docs/recipes.md (summaries.py's frames)


def _diff_cell(rows: pd.DataFrame) -> str:
    if rows.empty or not rows.iloc[0].n_pairs:
        return "n/a"
    r = rows.iloc[0]
    if r.n_pairs < 2 or pd.isna(r.ci_low):
        return f"{fmt(r.diff_mean, 2, True)} ({int(r.n_pairs)} pair)"
    return f"{fmt(r.diff_mean, 2, True)} {fmt_ci(r.ci_low, r.ci_high)}"


def _arm_cell(arm: pd.Series) -> str:
    if not arm["n"] or math.isnan(arm["mean"]):  # records at this level, none completed with the metric
        return "n/a"
    if math.isnan(arm["ci_low"]):
        return f"{arm['mean']:.2f} (n {int(arm['n'])})"
    return f"{arm['mean']:.2f} [{arm['ci_low']:.2f}, {arm['ci_high']:.2f}]"


def _per_key(table: pd.DataFrame, key: str, value: str, keys: Sequence[str], form: str) -> str:
    rows = table.set_index(key)
    return " / ".join(
        form.format(rows.loc[k, value]) if k in rows.index and pd.notna(rows.loc[k, value]) else "n/a" for k in keys
    )


def _conditions(frame: pd.DataFrame) -> list[tuple[float, str | None]]:
    """The rows of a findings table, (level, condition) in level order: a factor sweep has one condition per level;
    a sweep of teacher kinds has several at a level, each its own row."""
    if "recipe" not in frame:  # one condition: per_recipe leaves the column out
        return [(lv, None) for lv in sorted(frame["level"].unique())]
    return sorted(set(zip(frame["level"], frame["recipe"])))


def _at(frame: pd.DataFrame, level: float, condition: str | None) -> pd.DataFrame:
    rows = frame[frame["level"] == level]
    return rows if condition is None or "recipe" not in rows else rows[rows["recipe"] == condition]


def _several_per_level(rows: Sequence[tuple[float, str | None]]) -> bool:
    """Whether some level has several conditions: then every row of every findings table names its condition."""
    levels = [lv for lv, _ in rows]
    return len(set(levels)) < len(levels)


def _row_name(level: float, condition: str | None, named: bool) -> str:
    return f"{level:g} ({condition})" if named and condition else f"{level:g}"


def _level_rows(tables: dict[str, Any], key: str, train_images: int | None, named: bool) -> list[str]:
    teacher, control, students = tables["roles"]
    t = tables[key]
    rows = _conditions(t["arms"])
    lines = []
    for lv, condition in rows:
        arms = _at(t["arms"], lv, condition).set_index("method")
        cells = [_arm_cell(arms.loc[m]) if m in arms.index else "n/a" for m in tables["methods"]]
        diffs = [_diff_cell(_at(d, lv, condition)) for d in t["diffs"]]
        closed = _per_key(_at(t["gap_closed"], lv, condition), "student", "gap_closed", students, "{:.0%}")
        agree = _per_key(_at(t["fidelity"], lv, condition), "method", "agreement_mean", [*students, control], "{:.1f}")
        images = [str(round(lv * train_images))] if train_images else []
        lines.append(
            f"| {_row_name(lv, condition, named)} | " + " | ".join([*images, *cells, *diffs, closed, agree]) + " |"
        )
    return lines


def _role_name(method: str, students: Sequence[str]) -> str:
    """Students by their label (RKD), the teacher and the control by their name (teacher, scratch)."""
    return method_label(method) if method in students else method


def findings_markdown(tables: dict[str, Any], factor: str, train_images: int | None = None) -> str:
    """docs/findings.md's per-level tables (:func:`kd_lightning.report.summaries.level_tables`)."""
    teacher, control, students = tables["roles"]
    names = [_role_name(m, students) for m in tables["methods"]]
    each = " / ".join(map(method_label, students))
    header = [factor, *(["images"] if train_images else []), *names]
    header += [f"{method_label(s)} − {control}" for s in students] + [f"{teacher} − {control}"]
    header += [f"gap closed {each}", f"agreement {each} / {control}"]
    named = _several_per_level(_conditions(tables["best"]["arms"]))
    lines = []
    for key in ("best", "last"):
        lines += ["", f"### {key}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += _level_rows(tables, key, train_images, named)
    lines += [
        "",
        f"| {factor} | probe acc | N3 | 1/(1+F1) | ID | CSG | teacher H(T=4) |",
        "|---|---|---|---|---|---|---|",
    ]
    complexity = tables["complexity"]
    for lv, condition in _conditions(complexity):
        r = _at(complexity, lv, condition).iloc[0]
        cells = [
            fmt(r[key], digits)
            for key, digits in (
                ("complexity.probe_acc", 3),
                ("complexity.n3", 3),
                ("complexity.f1_inv", 3),
                ("complexity.intrinsic_dim", 1),
                ("complexity.csg", 2),
                ("teacher_soft_label_entropy", 3),
            )
        ]
        lines.append(f"| {_row_name(lv, condition, named)} | " + " | ".join(cells) + " |")
    return "\n".join(lines + _kl_rows(tables, factor, named) + _wall_rows(tables, factor, names, named))


def _kl_rows(tables: dict[str, Any], factor: str, named: bool) -> list[str]:
    """KL(teacher ‖ student) per level, mean over seeds (nats per test image, T = 1), at both checkpoints: how
    closely each student, the control included, matches the teacher."""
    _, control, students = tables["roles"]
    each = " / ".join([*map(method_label, students), control])
    lines = ["", f"| {factor} | KL(teacher ‖ ·) best: {each} | KL(teacher ‖ ·) last: {each} |", "|---|---|---|"]
    for lv, condition in _conditions(tables["best"]["fidelity"]):
        cells = [
            _per_key(_at(tables[key]["fidelity"], lv, condition), "method", "kl_mean", [*students, control], "{:.3f}")
            for key in ("best", "last")
        ]
        lines.append(f"| {_row_name(lv, condition, named)} | " + " | ".join(cells) + " |")
    return lines


def _wall_rows(tables: dict[str, Any], factor: str, names: Sequence[str], named: bool) -> list[str]:
    walls, methods = tables["walls"], tables["methods"]
    lines = ["", f"| {factor} | optimizer steps | " + " | ".join(names) + " | all methods (sum of medians) |"]
    lines.append("|" + "---|" * (len(methods) + 3))
    for lv, condition in _conditions(walls):
        sub = _at(walls, lv, condition)
        median = {m: sub[sub["method"] == m]["wall_time_s"].median() for m in methods}
        timed = {m: int(sub[sub["method"] == m]["wall_time_s"].notna().sum()) for m in methods}
        reused = {m: int(sub[sub["method"] == m]["reused"].sum()) for m in methods}
        cells = [
            f"{median[m]:.0f} s ({timed[m]})"
            if pd.notna(median[m])
            else f"reused ({reused[m]})"
            if reused[m]
            else "n/a"
            for m in methods
        ]
        steps = ",".join(str(int(x)) for x in sorted(sub["optimizer_steps"].dropna().unique()))
        total = sum(v for v in median.values() if pd.notna(v)) / 60
        lines.append(f"| {_row_name(lv, condition, named)} | {steps} | " + " | ".join(cells) + f" | {total:.1f} min |")
    timed = walls["wall_time_s"].dropna()
    lines += [
        "",
        f"In all: {timed.sum() / 3600:.2f} h of training over {len(timed)} runs (each run's `wall_time_s`; a teacher "
        "reused at another level counted once, an ensemble's row being its members' sum).",
    ]
    return lines


def recipes_markdown(tables: dict[str, Any], first: str, second: str) -> str:
    """docs/recipes.md's table of two recipes (:func:`kd_lightning.report.summaries.recipe_tables`)."""
    lines = [
        f"| method | {second}: best-val (last) | {first}: best-val (last) | {first} − {second}, best-val | "
        f"{first} − {second}, last | wall {second} | wall {first} | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in tables["methods"].to_dict("records"):
        arms = [f"{mean_std(*r[f'{x}_best'])} ({mean_std(*r[f'{x}_last'])})" for x in (second, first)]
        diffs = [f"{d:+.2f} [{low:+.2f}, {high:+.2f}]" for d, low, high in (r["diff_best"], r["diff_last"])]
        times = [f"{r[f'{x}_wall'][0]:.0f} s ({r[f'{x}_wall'][1]:.0f} s)" for x in (second, first)]
        ratio = [r[f"{first}_wall"][i] / r[f"{second}_wall"][i] for i in (0, 1)]
        lines.append(
            f"| {r['method']} | {' | '.join(arms)} | {' | '.join(diffs)} | {' | '.join(times)} | "
            f"{ratio[0]:.2f} ({ratio[1]:.2f}) |"
        )
    teacher, control = tables["roles"]
    lines += ["", f"| recipe | {teacher} − {control}, best-val | last |", "|---|---|---|"]
    gaps = tables["gaps"]
    for x in (second, first):
        lines.append(
            f"| {x} | " + " | ".join(_diff_cell(gaps[k][gaps[k]["recipe"] == x]) for k in ("best", "last")) + " |"
        )
    return "\n".join(lines)
