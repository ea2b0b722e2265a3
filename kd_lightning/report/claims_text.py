"""The claims in words: each verdict record's statement, criterion, test line and evidence, the CSV/JSON rows of
``claims.csv`` and ``claims.json``, and the report's Claims section. Every sentence about a claim is here;
``claims.py`` returns numbers."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from kd_lightning.report import stats
from kd_lightning.report.formatting import fmt, fmt_ci, fmt_n, fmt_p, fmt_seeds, markdown_table
from kd_lightning.report.paper import dataset_label, method_label
from kd_lightning.report.primary import PrimaryClaim
from kd_lightning.report.runs import PAIRS_NOISE, TWO_LEVEL_FACTORS
from kd_lightning.report.stats import ALPHA, GATE_MARGIN, MIN_TREND_DATASETS
from kd_lightning.report.verdicts import (
    BEATS,
    CAN_BEAT,
    CONTRADICTED,
    FACTOR_MIN_LEVELS,
    GROWS,
    MIN_PAIRS,
    MISSING_PRIMARY,
    PER_DATASET,
    PRIMARY,
    SEED_UNIT,
    TREND,
    Claim,
    Part,
    family_sizes,
)

#: one unit of each factor's position axis (runs.LEVEL_POSITION), the unit of a slope
POSITION_UNIT = {
    "train_fraction": "halving of the training set",
    "imbalance": "doubling of the imbalance ratio",
    "label_noise": "0.1 of label noise",
    PAIRS_NOISE: "0.1 of pair-flip label noise",
    "classes": "doubling of the class count",
    "resolution": "halving of the resolution",
    "grayscale": "colour removed",
}
FACTOR_TEXT = {
    "train_fraction": "training data shrinks",
    "label_noise": "label noise grows",
    PAIRS_NOISE: "pair-flip label noise grows",
    "classes": "the number of classes grows",
    "resolution": "resolution drops",
    "grayscale": "colour is removed",
    "imbalance": "class imbalance grows",
}
#: runs.draw_design's answers
DRAW_TEXT = {
    "fixed": "the levels are fixed transformations of the data (no random draw); seeds replicate training",
    "none": "no level draws data at random",
    "own": "each seed draws its own data at every level (factor_seed = seed)",
    "shared": "the seeds at a level share one data draw (a fixed factor_seed)",
    "mixed": "mixed: some seeds share a data draw, others draw their own",
}
CLAIMS_COLUMNS = (
    "recipe number statement criterion verdict test evidence p_support p_contradict p_support_family "
    "p_contradict_family family order alpha direction mde holm_size holm_step holm_size_contradict "
    "holm_step_contradict alpha_contradict"
).split()


def _joined(words: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1] if words else ""


# --------------------------------------------------------------------------------------------------
# Parts


def part_name(p: Part) -> str:
    name = f"{method_label(p.treatment)} − {method_label(p.control)}"
    if p.kind == TREND:
        return f"{name} vs complexity"
    return name if p.kind == PER_DATASET else f"{name} as {FACTOR_TEXT[p.factor]}"


def _dataset_line(r: dict, power: bool) -> str:
    """'- USPS: +2.10 [+0.50, +3.70] (3 pairs), Holm p 0.030 → +; MDE 1.9; seeds for paper's +2.65: 3'."""
    text = (
        f"  - {dataset_label(r['dataset'])}: {fmt(r['diff_mean'], signed=True)} pp "
        f"{fmt_ci(r['ci_low'], r['ci_high'])} ({r['n_pairs']} pairs)"
    )
    if not math.isnan(r["p"]):
        text += (
            f", p {fmt_p(r['p'])}, Holm p {fmt_p(r['p_holm'])} (interval at Holm's level "
            f"{r['holm_level']:.2%}: {fmt_ci(r['holm_low'], r['holm_high'])}) → {r['resolved'] or 'not resolved'}"
        )
    elif r["n_pairs"] >= MIN_PAIRS:
        text += ", no spread between seeds: not tested"
    else:
        text += ", not tested (needs 2 paired seeds)"
    if power:
        text += f"; MDE (80% power) {fmt(r['mde'])}" + (" pp" if not math.isnan(r["mde"]) else "")
        if not math.isnan(r["paper_diff"]):
            text += (
                f"; paper {fmt(r['paper_diff'], signed=True)} pp, seeds to detect it: {fmt_n(r['pairs_needed_paper'])}"
            )
    return text


def _per_dataset_text(p: Part) -> tuple[str, str]:
    name, d = part_name(p), p.detail
    lines = "\n".join(_dataset_line(r, d["power"]) for r in d["rows"]) or "  - no paired runs"
    test = (
        f"{name}: paired t-tests on {d['tested']} dataset(s) with ≥ {MIN_PAIRS} paired seeds, Holm-corrected "
        f"(α = {ALPHA}); resolved + on {', '.join(map(dataset_label, d['plus'])) or 'none'}, − on "
        f"{', '.join(map(dataset_label, d['minus'])) or 'none'}"
    )
    return test, f"- {name}, per dataset:\n{lines}"


def _trend_text(p: Part) -> tuple[str, str]:
    name, d = part_name(p), p.detail
    n = len(d["means"])
    used = ", ".join(f"{dataset_label(k)} {fmt(m, signed=True)}" for k, m in d["means"].items()) or "none"
    if p.reason:
        return (
            f"{name}: {n} ranked dataset(s) with ≥ {MIN_PAIRS} paired seeds; a permutation test needs ≥ "
            f"{MIN_TREND_DATASETS} (smallest p with {n}: {fmt_p(d['min_p'])})",
            f"- {name}: mean paired difference (pp) {used}; paper's rho {fmt(d['paper_rho'])}.",
        )
    rho, grows, shrinks = fmt(d["rho"], signed=True), fmt_p(d["p_greater"]), fmt_p(d["p_less"])
    boot = f", bootstrap-over-seeds 95% interval {fmt_ci(*d['bootstrap'])}" if "bootstrap" in d else ""
    test = f"{name}: Spearman rho {rho} over {n} datasets, exact permutation p {grows} (grows) / {shrinks} (shrinks)"
    evidence = (
        f"- {name}: mean paired difference (pp) {used}. Spearman rho = {rho}{boot}; "
        f"one-sided permutation p = {grows} for growth, {shrinks} for decline "
        f"(smallest attainable {fmt_p(d['min_p'])}). Paper's rho: {fmt(d['paper_rho'], signed=True)}."
    )
    return test, evidence


def _unit_text(p: Part) -> str:
    d = p.detail
    if p.kind == SEED_UNIT:
        why = (
            "two fixed conditions without a random draw: the seeds replicate training"
            if p.factor in TWO_LEVEL_FACTORS
            else "each seed draws its own data at every level (factor_seed = seed), so one seed's gains form one "
            "chain across the levels and correlate; the seeds, not the levels, are independent"
        )
        ids = f": {fmt_seeds(d['seed_ids'])}" if d.get("seed_ids") else ""
        dropped = d.get("dropped_seeds") or []
        gone = f"; left out, a pair missing at a level: seed(s) {fmt_seeds(dropped)}" if dropped else ""
        return f"unit: the seed ({d['seeds']} seed(s) with all {d['paired_levels']} level(s) paired{ids}{gone}; {why})"
    low, high = d["seed_counts"]
    return (
        f"unit: the level ({len(d['levels'])} level(s) with a paired seed, {low if low == high else f'{low}–{high}'} "
        f"seed(s) each; {DRAW_TEXT[d['design']]}: a level's seeds share its data, so they are not independent "
        "evidence for a trend)"
    )


def _untested_reason(p: Part, name: str) -> str:
    d = p.detail
    return {
        "few_seeds": f"{name}: {d.get('seeds')} seed(s) with ≥ 2 levels paired; the test needs ≥ {MIN_PAIRS}",
        "no_spread": f"{name}: every seed's {p.statistic} is the same (no spread to judge it by)",
        "few_levels": f"{name}: {len(d['levels'])} level(s); a trend over levels needs ≥ {FACTOR_MIN_LEVELS} (seeds "
        "at one level are not independent evidence for a trend)",
        "on_a_line": f"{name}: the level means lie exactly on a line (no scatter to judge the slope by)",
    }[p.reason]


def _factor_text(p: Part) -> tuple[str, str]:
    name, d = part_name(p), p.detail
    per_level = ", ".join(f"{p.factor}={lv:g}: {fmt(m, signed=True)}" for lv, m in d["levels"]) or "none"
    head = f"- {name}: mean paired gain (pp) per level, easiest first: {per_level}; {_unit_text(p)}."
    if p.reason:
        more = FACTOR_MIN_LEVELS - len(d["levels"])
        advice = f" Add {more} level(s) to test a trend." if p.reason == "few_levels" else ""
        return _untested_reason(p, name), head + advice
    ps = f"p {fmt_p(d['p_greater'])} (grows) / {fmt_p(d['p_less'])} (shrinks)"
    unit = POSITION_UNIT[p.factor]
    if p.kind == SEED_UNIT:
        what = {"slope": f"slope per {unit}", "contrast": "hardest minus easiest level"}
        other = "contrast" if p.statistic == "slope" else "slope"
        o = d["other"]
        test = (
            f"{name}: per-seed {what[p.statistic]} {fmt(d['mean'], signed=True)} pp {fmt_ci(*d['ci'])} over "
            f"{d['n']} seeds, t-test on {d['df']} df, {ps}"
        )
        return test, (
            f"{head[:-1]}. Per seed, {what[p.statistic]} (pp): {', '.join(fmt(v, signed=True) for v in d['per_seed'])}"
            f"; sd over seeds {fmt(p.sd)} pp. The other statistic (descriptive, outside the family): {what[other]} "
            f"{fmt(o['mean'], signed=True)} pp, p {fmt_p(o['p_greater'])} (grows) / {fmt_p(o['p_less'])} (shrinks)."
        )
    slope = f"{fmt(d['slope'], signed=True)} pp per {unit}"
    seed_sd = f"; seed-to-seed sd within a level {fmt(d['seed_sd'])} pp" if d["seed_sd"] is not None else ""
    test = f"{name}: slope {slope} over {len(d['levels'])} level means, t-test on {d['df']} df, {ps}"
    return test, (
        f"{head[:-1]}. Slope {slope}, level scatter around the line {fmt(d['resid_sd'])} pp{seed_sd}. More seeds "
        "shrink only the seed part of the level scatter; more levels add degrees of freedom."
    )


def part_text(p: Part) -> tuple[str, str]:
    """(test line, evidence in markdown) of one part."""
    if p.kind == PER_DATASET:
        return _per_dataset_text(p)
    return _trend_text(p) if p.kind == TREND else _factor_text(p)


def effect_unit(p: Part) -> str:
    if p.kind == SEED_UNIT and p.statistic == "contrast":
        return "pp (hardest minus easiest level)"
    return f"pp per {POSITION_UNIT[p.factor]}"


# --------------------------------------------------------------------------------------------------
# Claims


def statement(c: Claim) -> str:
    labels = [method_label(s) for s in c.students]
    if c.kind == GROWS:
        each = _joined([f"for {label}" for label in labels])
        return f"The gain from distillation over the scratch student grows with dataset complexity ({each})."
    if c.kind == BEATS:
        return f"{labels[0]} beats {method_label(c.control)}, and by most on complex data."
    if c.kind == CAN_BEAT:
        return f"{'An' if labels[0][:1].lower() in 'aeiou' else 'A'} {labels[0]} student can beat its teacher."
    if c.kind == MISSING_PRIMARY:
        primary = PrimaryClaim(c.factor or "", c.students, c.statistic, c.direction, c.dataset)
        return f"Primary claim named in advance: {primary.describe()}."
    verb = "grows" if c.direction == "greater" else "shrinks"
    who = " and ".join(labels) or "no distilling student ran"
    return (
        f"On {dataset_label(c.dataset)}, the gain from distillation over scratch {verb} as {FACTOR_TEXT[c.factor]} "
        f"({who})."
    )


def _factor_criterion(c: Claim) -> str:
    way = "growth" if c.direction == "greater" else "decline"
    if c.seed_unit:
        how = (
            "per seed, the slope of its paired gain over scratch on the levels' fixed positions"
            if c.statistic == "slope"
            else "per seed, its paired gain over scratch at the hardest level minus at the easiest"
        )
        unit = "one-sided t-test over seeds on S − 1 df (the unit is the seed)"
    else:
        how = "the per-level mean paired gain over scratch regressed on the levels' fixed positions"
        unit = f"one-sided t-test of the slope on L − 2 df (the unit is the level, ≥ {FACTOR_MIN_LEVELS} levels)"
    return (
        f"For each distilling student named: {how}; {unit}. Supported: p({way}) < the claim's α for each. "
        "Contradicted: p(the opposite) < α / (students) for any. α: the full α for the primary claim, Holm's "
        "step among the exploratory claims otherwise."
    )


def criterion(c: Claim) -> str:
    n = len(c.students)
    treatment, control = method_label(c.students[0]) if n else "", method_label(c.control)
    if c.kind == GROWS:
        every = {1: "the student", 2: "both students"}.get(n, f"all {n} students")
        return (
            f"For each of {_joined([method_label(s) for s in c.students])}: Spearman's rho between the per-dataset "
            f"mean paired gain over scratch and the paper's complexity rank, over the datasets with ≥ {MIN_PAIRS} "
            f"paired seeds (≥ {MIN_TREND_DATASETS} needed); one-sided exact permutation test over the datasets' "
            f"orderings. Supported: p(growth) < {ALPHA} for {every}. Contradicted: p(decline) < {ALPHA / n} for "
            f"{'either' if n == 2 else 'any'}."
        )
    if c.kind == BEATS:
        return (
            f"(a) {treatment} − {control} paired by seed per dataset, two-sided paired t-tests, Holm-corrected across "
            f"datasets: resolved positive on ≥ 1 dataset and negative on none; (b) {treatment} − {control} grows with "
            f"complexity rank (one-sided exact permutation test of Spearman's rho, ≥ {MIN_TREND_DATASETS} datasets). "
            f"Supported: (a) and (b) at {ALPHA}. Contradicted: (a) resolved negative somewhere and positive nowhere "
            f"at {ALPHA / 2}, or (b) declining at {ALPHA / 2}."
        )
    if c.kind == CAN_BEAT:
        return (
            f"{treatment} − teacher paired by seed per dataset, two-sided paired t-tests, Holm-corrected across "
            f"datasets (α = {ALPHA}). Supported: resolved positive on ≥ 1 dataset. Contradicted: resolved negative "
            "on every dataset tested."
        )
    return "As named in claims.primary." if c.kind == MISSING_PRIMARY else _factor_criterion(c)


def decided_by_opposite(c: Claim) -> bool:
    """Contradicted in the opposite direction's Holm step-down, whose step and α describe it (not the support's)."""
    return c.verdict == CONTRADICTED and bool(c.holm_step_contradict)


def family_note(c: Claim) -> str:
    """Which family decided the claim, at which step and α."""
    ps, pc = fmt_p(c.p_support_family), fmt_p(c.p_contradict_family)
    if c.family == PRIMARY:
        return f"family: primary, tested 1st at α {ALPHA} (p {ps} / {pc})"
    if decided_by_opposite(c):
        return (
            f"family: exploratory, Holm for the opposite over {c.holm_size_contradict} claim(s), step "
            f"{c.holm_step_contradict} (α {c.alpha_contradict:.4g}): Holm-adjusted p {ps} (supported) / {pc} "
            "(contradicted)"
        )
    if c.holm_step:
        return (
            f"family: exploratory, Holm over {c.holm_size} claim(s), step {c.holm_step} (α {c.alpha:.4g}): "
            f"Holm-adjusted p {ps} (supported) / {pc} (contradicted)"
        )
    if c.holm_step_contradict:  # cannot be supported (a part untested), but was tested for the opposite
        return (
            f"family: exploratory, not testable for support; Holm for the opposite over {c.holm_size_contradict} "
            f"claim(s), step {c.holm_step_contradict} (α {c.alpha_contradict:.4g}): Holm-adjusted p {ps} (supported) "
            f"/ {pc} (contradicted)"
        )
    return f"family: exploratory, not tested: Holm-adjusted p {ps} / {pc}"


def claim_test(c: Claim) -> str:
    """The tests behind the verdict in one line, and (once decided) its family."""
    base = "; ".join(part_text(p)[0] for p in c.parts)
    if c.kind == MISSING_PRIMARY:
        base = f"the sweep has no levels of {c.factor} to test it on"
    return f"{base}; {family_note(c)}" if c.order else base


def _mde_text(c: Claim) -> str:
    if math.isnan(c.mde):
        return ""
    first = c.parts[0]
    who = "every student named" if len(c.parts) > 1 else "its one student"
    over = (
        f" ({fmt(c.mde * first.span)} pp across the sweep's range of positions, {fmt(first.span)}; never beyond it)"
        if first.span != 1.0
        else ""
    )
    dfs = "/".join(map(str, sorted({p.df for p in c.parts})))
    return (
        f"- Detectable with 80% power for this verdict as decided ({who} at α {c.alpha:.4g}, one-sided; each sd at "
        f"its {stats.SD_CONFIDENCE:.0%} upper confidence limit on {dfs} df, since an sd from few units can be far "
        f"from the true one): ≥ {fmt(c.mde)} {effect_unit(first)}{over}. "
        "`python -m kd_lightning.report plan` gives the seeds for a stated effect."
    )


def _complexity_line(student: str, levels: int, rhos: Sequence[tuple]) -> str:
    shown = "; ".join(f"{m} {fmt(rho, signed=True)} {fmt_ci(low, high)}" for m, rho, low, high in rhos)
    return (
        f"- {method_label(student)} gain vs measured complexity over {levels} levels "
        f"(Spearman rho, 95% bootstrap interval over seeds; descriptive): {shown}."
    )


def evidence(c: Claim) -> str:
    """The evidence in markdown: each part's, the descriptive extras, the warnings, the MDE of the verdict."""
    lines = [part_text(p)[1] for p in c.parts] + [_complexity_line(*found) for found in c.complexity]
    if c.left_out:
        lines.append(
            f"- Left out of {method_label(c.students[0])} − {method_label(c.control)}: {c.left_out} student run(s) "
            "distilled from another teacher than the sweep's teacher row of their dataset and seed (listed under "
            "*teacher mismatch*)."
        )
    if c.kind == MISSING_PRIMARY:
        lines = [f"- No runs vary {c.factor}."]
    return "\n".join([*lines, mde] if (mde := _mde_text(c)) else lines)


def factor_claims_text(claims: Sequence[Claim], gate: pd.DataFrame | None = None) -> str:
    """The factor claims (numbered from 101) as docs/findings.md quotes them: verdict, the teacher gate of the
    claim's conditions (``gate``: :func:`kd_lightning.report.teacher_gate.teacher_gate`), test line and evidence."""
    gate = gate if gate is not None else pd.DataFrame()
    return "\n".join(
        f"\nClaim {c.number} ({c.recipe}): {c.verdict}\n"
        + (f"{gated}\n" if (gated := gate_line(gate, c.recipe)) else "")
        + f"{claim_test(c)}\n{evidence(c)}"
        for c in claims
        if c.number > 100
    )


def claims_frame(claims: Sequence[Claim]) -> pd.DataFrame:
    """Claims as a table: claims.csv and claims.json (for tools and notebooks that should not parse markdown)."""
    rows = [
        {
            **{k: getattr(c, k) for k in CLAIMS_COLUMNS if hasattr(c, k)},
            "statement": statement(c),
            "criterion": criterion(c),
            "test": claim_test(c),
            "evidence": evidence(c),
        }
        for c in claims
    ]
    return pd.DataFrame(rows, columns=CLAIMS_COLUMNS)


# --------------------------------------------------------------------------------------------------
# The report's Claims section


def gate_line(gate: pd.DataFrame, recipe: str | None) -> str:
    """The first sentence of a claim's section: whether the teacher of its condition(s) was worth distilling."""
    if gate.empty or not recipe:
        return ""
    # the claim's conditions: its base recipe and its data-factor levels (``<base> · train_fraction=0.05``), not
    # another teacher kind's (``<base> · teacher …``, records.condition_labels)
    levels = gate["recipe"].astype(str).str.removeprefix(f"{recipe} · ")
    rows = gate[(gate["recipe"] == recipe) | ((levels != gate["recipe"]) & ~levels.str.startswith("teacher "))]
    if rows.empty:
        return ""
    qualified = rows["qualified"].astype(bool)
    if qualified.all():
        return f"Teacher gate: qualified in every condition of this claim (teacher − scratch ≥ {GATE_MARGIN:g} pp)."

    def where(sub: pd.DataFrame) -> str:
        return "; ".join(
            f"{dataset_label(r['dataset'])} `{r['recipe']}` {fmt(r['diff'], signed=True)} pp "
            f"{fmt_ci(r['ci_low'], r['ci_high'])} over {r['n']} seed(s)"
            for r in sub.to_dict("records")
        )

    if not qualified.any():
        return (
            f"**Its teacher was not qualified** (teacher − scratch < {GATE_MARGIN:g} pp at {where(rows)}): the "
            f"students copy a teacher less than {GATE_MARGIN:g} pp above themselves."
        )
    return (
        f"**Its teacher was not qualified in every condition** (teacher − scratch < {GATE_MARGIN:g} pp at "
        f"{where(rows[~qualified])}; qualified at {where(rows[qualified])}): where it was not, the students copy a "
        f"teacher less than {GATE_MARGIN:g} pp above themselves."
    )


def claims_summary(claims: Sequence[Claim]) -> pd.DataFrame:
    rows = []
    for c in claims:
        alpha = f"{c.alpha:.4g}" if c.alpha == c.alpha else "n/a"
        family = f"{c.family} ({c.order}, {alpha})"
        if decided_by_opposite(c):
            family = (
                f"{c.family} (opposite: step {c.holm_step_contradict} of {c.holm_size_contradict}, "
                f"{c.alpha_contradict:.4g})"
            )
        row = {
            "#": c.number,
            "Claim": statement(c),
            "Family (order, α)": family,
            "Verdict": f"**{c.verdict}**" + (" (exploratory)" if c.family != "primary" else ""),
            "Test": claim_test(c),
        }
        rows.append({"Recipe": c.recipe, **row} if c.recipe else row)
    return pd.DataFrame(rows)


def family_paragraph(claims: Sequence[Claim]) -> str:
    """Which claim is primary, how the others are controlled, and what the unit of each factor claim is."""
    n_support, n_contradict = family_sizes(claims)
    primary = [c for c in claims if c.family == "primary"]
    first = (
        f"**Primary claim** (named in advance, `claims.primary`): claim {primary[0].number}, tested first at the full "
        f"α = {ALPHA}. "
        if primary
        else "**No primary claim** was named in advance (`claims.primary`): every claim is exploratory. "
    )
    return (
        first + f"**Exploratory claims**: the other {len(claims) - len(primary)}, Holm's step-down procedure at "
        f"α = {ALPHA} among themselves over the {n_support} testable for support and, separately, the {n_contradict} "
        "testable for the opposite; they generate hypotheses for the next sweep's primary. The table gives each "
        "claim's family, the order it was tested in and the α it was tested at. Factor claims count the **seed** as "
        "the unit when each seed draws its own data (factor_seed = seed: a seed's gains form one chain across the "
        "levels), and the **level** when a level's seeds share its data (one draw, or a fixed transformation); "
        "each claim's evidence says which and why."
    )


def claims_markdown(claims: Sequence[Claim], metric: str, gate: pd.DataFrame | None = None) -> list[str]:
    lines = [
        f"Verdicts use the headline metric ({metric}), one recipe (and data-factor level) at a time; where runs "
        "are not paper-configured they describe this sweep's recipe, not a replication. Verdicts: **supported** / "
        f"**contradicted** (shown with error control), **inconclusive** (the data cannot tell), **not testable** "
        f"(runs missing: < {MIN_PAIRS} paired seeds, < {MIN_TREND_DATASETS} datasets for a trend over datasets, "
        f"< {FACTOR_MIN_LEVELS} levels for a trend over a factor's level means). Criteria in "
        "`kd_lightning/report/claims.py` and docs/report.md.",
        "",
        family_paragraph(claims),
        "",
        markdown_table(claims_summary(claims)),
        "",
    ]
    for c in claims:
        where = f" — recipe `{c.recipe}`" if c.recipe else ""
        gated = gate_line(gate if gate is not None else pd.DataFrame(), c.recipe)
        lines += [
            f"### Claim {c.number}: {statement(c)}{where}",
            "",
            *([gated, ""] if gated else []),
            f"**Verdict: {c.verdict}**",
            "",
            f"Criterion: {criterion(c)}",
            "",
            f"Test: {claim_test(c)}",
            "",
            evidence(c),
            "",
        ]
    return lines


# --------------------------------------------------------------------------------------------------
# Planning the next sweep and calibrating the rules


def plan_text(frame: pd.DataFrame, effect: float) -> str:
    """:func:`kd_lightning.report.plan.plan_frame` as text: what the effect means per factor, then the table."""
    if frame.empty:
        return "No factor with the seed as its unit in this sweep: nothing to plan by seeds."
    lines = []
    for factor in frame["factor"].unique():
        contrast = frame.loc[(frame["factor"] == factor) & (frame["test"] == "contrast"), "effect"]
        lines.append(
            f"{factor}: effect {effect:g} pp per {POSITION_UNIT[factor]} (slope); the contrast between the easiest "
            f"and the hardest level of the pilot at that rate: {contrast.iloc[0]:g} pp."
        )
    lines.append(
        f"Power 80% for the verdict as decided (one-sided t over seeds, every student listed must pass); pilot sd "
        f"at its {stats.SD_CONFIDENCE:.0%} upper confidence limit. runs = seeds × levels × methods."
    )
    shown = frame.assign(**{"seeds needed": frame["seeds needed"].map(lambda v: "> 1000" if math.isinf(v) else int(v))})
    shown["runs"] = frame["runs"].map(lambda v: "—" if math.isinf(v) else int(v))
    return "\n".join(lines) + "\n\n" + markdown_table(shown)


def markdown_calibration(table: pd.DataFrame) -> str:
    """The calibration table as docs/factors.md shows it (rates in percent)."""
    shown = table.assign(
        **{
            c: (100 * table[c]).map(lambda v: f"{v:.1f}")
            for c in table.columns
            if c not in ("rho", "levels", "seeds", "test")
        }
    )
    return markdown_table(shown)
