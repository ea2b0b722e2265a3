"""THE STUDY'S CONCLUSIONS: the paper's three claims, the criterion each is judged by, and the verdict.

Every claim gets exactly one verdict:

- ``supported``     - the sweep shows it with the error control stated below (false-positive rate <= 5%
                      when there is no effect; ``tests/report/test_claims.py`` measures it on simulated sweeps);
- ``contradicted``  - the sweep shows the opposite, with the same error control;
- ``inconclusive``  - the test could run but the data cannot tell (intervals include 0, no trend shown);
- ``not testable``  - runs are missing: fewer than 2 paired seeds on every dataset, or fewer datasets
                      than the test needs (a permutation test over n datasets cannot go below 1/n!,
                      so a trend needs >= 4 datasets with >= 2 paired seeds each).

The verdicts use the headline metric on one recipe at a time; they describe the sweep's recipe, which
is a replication of the paper only where the tables mark the runs paper-configured.

Building blocks (``stats.py`` has the formulas):

- **Per-dataset comparison** ``A - B``: differences paired by seed, two-sided paired t-test per
  dataset, Holm's correction across the datasets with >= 2 pairs. A dataset is *resolved* ``+`` (or
  ``−``) when its Holm-adjusted p < 0.05 and the mean difference is positive (negative); equivalently
  its t-interval at Holm's level for it excludes 0 (and so did every dataset with a smaller p).
- **Trend** of ``A - B`` with complexity: Spearman's rho between the per-dataset mean paired difference
  and the paper's complexity rank (MNIST 1 < FashionMNIST 2 < USPS 3 < CIFAR10 4 < CIFAR100 5), over the
  datasets with >= 2 paired seeds; one-sided exact permutation test over the datasets' orderings.
  Grows: p(rho >= observed) < 0.05; shrinks: p(rho <= observed) < 0.05. A bootstrap-over-seeds 95%
  interval for rho is shown beside it (descriptive).
- **Factor claims** (one per factor a single-factor sweep varies, numbered from 101), for each distilling student:
  when each seed draws its own data (``factor_seed = seed``) the unit is the **seed**: per seed the slope of its
  paired gain over scratch on the levels' fixed positions (``factor_sweeps.LEVEL_POSITION``: log2 of the data
  reduction for ``train_fraction``), or its gain at the hardest level minus at the easiest (the contrast;
  ``grayscale`` always), one-sided t-test over seeds on S − 1 df (:func:`factor_seed_part`). When the seeds at a
  level share its data (one draw or a fixed transformation) the unit is the **level**: level means on positions,
  slope t-test on L − 2 df, ≥ 3 levels (:func:`factor_level_part`). The evidence names the unit and why, and
  the effect the verdict as decided detects with 80% power (:func:`claim_mde`). ``tests/report/test_seed_unit.py``
  and ``kd_lightning/report/calibration.py`` measure the error rates on sweeps with each seed's own AR(1) chain.
- **Conjunctions** (claims 1 and 2 and the factor claims have two parts): a claim's p-value for
  "supported" is the largest of its parts' (an intersection-union test: no correction needed); its
  p-value for "contradicted" is the smallest part's times the number of parts (Bonferroni).
- **Families** (:func:`control_family`): the primary claim named in advance (``claims.primary``,
  :mod:`kd_lightning.report.primary`) is tested first at the full alpha = 0.05; every other claim is
  exploratory: Holm's step-down among themselves at alpha = 0.05, once in the supported direction and once in
  the contradicted direction, so the chance of any false supported (or contradicted) among them is at most 5%.
  Each claim records its family, the order it was tested in and the alpha it was tested at. A claim's verdict
  is ``supported`` when its p for support is below its alpha, ``contradicted`` likewise for the opposite; else
  ``not testable`` when some part could not be tested, else ``inconclusive``.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd

from kd_lightning.report import stats
from kd_lightning.report.factor_sweeps import (
    FACTOR_TEXT,
    POSITION_UNIT,
    TWO_LEVEL_FACTORS,
    complexity_evidence,
    draw_design,
    factor_points,
    level_positions,
    paired_by_level,
    seeds_draw_their_own,
    students_of,
)
from kd_lightning.report.formatting import dataset_label, fmt, fmt_ci, fmt_n, fmt_p, method_label
from kd_lightning.report.paper import COMPLEXITY_RANK, IKD, PAPER_STUDENTS, RKD, SCRATCH, TEACHER, paper_accuracy
from kd_lightning.report.primary import PrimaryClaim, primary_from_runs
from kd_lightning.report.provenance import teacher_check
from kd_lightning.report.runs import DEFAULT_METRIC, for_recipe, metric_values, recipes_in, roles
from kd_lightning.report.tables import paired_from_values, paired_values, wide_values

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
NOT_TESTABLE = "not testable"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE)

ALPHA = stats.ALPHA
CONFIDENCE = stats.CONFIDENCE
#: the families of the report (:func:`control_family`)
PRIMARY = "primary"
EXPLORATORY = "exploratory"
MIN_PAIRS = 2
#: fewest datasets whose exact permutation test can reach p < ALPHA (1/4! = 0.042)
MIN_TREND_DATASETS = next(n for n in range(2, 10) if stats.min_permutation_p(n) < ALPHA)


@dataclass(frozen=True)
class Part:
    """One tested part of a claim."""

    name: str
    verdict: str
    test: str  # one line: the test and its result
    evidence: str  # markdown lines
    p_support: float = math.nan  # one-sided p for the claim's direction; NaN: not testable
    p_contradict: float = math.nan  # for the opposite direction, already Bonferroni-corrected over the parts
    #: what the power of its verdict rests on: the unit ("seed" / "level"), the sd of the unit's statistic, its
    #: df, se = sd · se_scale, the effect's unit, and the span of positions a slope covers (1 for a contrast)
    unit: str = ""
    sd: float = math.nan
    df: int = 0
    se_scale: float = math.nan
    effect_unit: str = ""
    span: float = 1.0


@dataclass(frozen=True)
class Claim:
    """A claim of the paper, the criterion used to judge it, and what this sweep says."""

    number: int
    statement: str
    criterion: str
    verdict: str  # one of VERDICTS
    test: str  # one line: the test behind the verdict and its result
    evidence: str  # markdown
    recipe: str | None = None
    parts: tuple[Part, ...] = field(default=(), repr=False)
    p_support: float = math.nan
    p_contradict: float = math.nan
    #: Holm-adjusted over the report's family (:func:`control_family`); NaN before that or when untested
    p_support_family: float = math.nan
    p_contradict_family: float = math.nan
    #: primary (named in advance, tested first at the full α) or exploratory (Holm among themselves)
    family: str = EXPLORATORY
    order: int = 0  # the order it was tested in (1 = first)
    alpha: float = math.nan  # the α its support was tested at (Holm's step for an exploratory claim)
    direction: str = "greater"
    mde: float = math.nan  # effect with 80% power for the verdict as decided (:func:`claim_mde`)


# --------------------------------------------------------------------------------------------------
# Parts


def verdict_from(p_support: float, p_contradict: float, testable: bool = True, alpha: float = ALPHA) -> str:
    """Supported when p(support) < alpha, contradicted when p(contradict) < alpha, else not testable /
    inconclusive. ``p_contradict`` carries any Bonferroni factor already."""
    if p_support < alpha:
        return SUPPORTED
    if p_contradict < alpha:
        return CONTRADICTED
    return INCONCLUSIVE if testable and not math.isnan(p_support) else NOT_TESTABLE


def _dataset_lines(paired: pd.DataFrame, power: bool) -> str:
    """'- USPS: +2.10 [+0.50, +3.70] (3 pairs), Holm p 0.030 → +; MDE 1.9; seeds for paper's +2.65: 3'."""
    lines = []
    for r in paired.to_dict("records"):
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
                    f"; paper {fmt(r['paper_diff'], signed=True)} pp, "
                    f"seeds to detect it: {fmt_n(r['pairs_needed_paper'])}"
                )
        lines.append(text)
    return "\n".join(lines) if lines else "  - no paired runs"


def per_dataset_part(
    values: pd.DataFrame, treatment: str, control: str, mode: str, n_parts: int = 1, power: bool = True
) -> Part:
    """``treatment`` vs ``control`` per dataset, Holm across datasets.

    mode ``"all"`` ("A beats B"): supported when >= 1 dataset is resolved ``+`` and none ``−``;
    contradicted when >= 1 is resolved ``−`` (at 0.05 / n_parts) and none ``+``.
    mode ``"any"`` ("A can beat B"): supported when >= 1 dataset is resolved ``+``; contradicted when
    every tested dataset is resolved ``−`` (at 0.05 / n_parts).
    """
    paired = paired_from_values(values, treatment, control, power=power)
    name = f"{method_label(treatment)} − {method_label(control)}"
    tested = paired[paired["p"].notna()]
    p_holm, mean = tested["p_holm"], tested["diff_mean"]
    plus = tested[(p_holm < ALPHA) & (mean > 0)]
    minus_support = tested[(p_holm < ALPHA) & (mean < 0)]
    if tested.empty:
        p_support = p_contradict = math.nan
    elif mode == "all":  # some dataset resolved + and none resolved − (and the reverse)
        p_support = float(p_holm[mean > 0].min()) if (mean > 0).any() and minus_support.empty else 1.0
        p_contradict = float(p_holm[mean < 0].min()) if (mean < 0).any() and plus.empty else 1.0
    else:  # some dataset resolved +; contradicted only when every dataset is resolved −
        p_support = float(p_holm[mean > 0].min()) if (mean > 0).any() else 1.0
        p_contradict = float(p_holm.max()) if (mean < 0).all() else 1.0
    p_contradict = min(1.0, p_contradict * n_parts)
    verdict = verdict_from(p_support, p_contradict)

    def names(frame: pd.DataFrame) -> str:
        return ", ".join(map(dataset_label, frame["dataset"])) or "none"

    test = (
        f"{name}: paired t-tests on {len(tested)} dataset(s) with ≥ {MIN_PAIRS} paired seeds, Holm-corrected "
        f"(α = {ALPHA}); resolved + on {names(plus)}, − on {names(minus_support)}"
    )
    return Part(
        name, verdict, test, f"- {name}, per dataset:\n{_dataset_lines(paired, power)}", p_support, p_contradict
    )


def _paper_rho(treatment: str, control: str) -> float:
    ds = [
        d
        for d in COMPLEXITY_RANK
        if paper_accuracy(d, treatment) is not None and paper_accuracy(d, control) is not None
    ]
    return stats.spearman_rho(
        [COMPLEXITY_RANK[d] for d in ds], [paper_accuracy(d, treatment) - paper_accuracy(d, control) for d in ds]
    )


def _directional(p_greater: float, p_less: float, n_parts: int) -> tuple[float, float]:
    """(p for growth, p for decline Bonferroni-corrected over the parts); a test that ran but could not
    rank anything (no spread) counts as no evidence either way."""
    p_support = 1.0 if math.isnan(p_greater) else float(p_greater)
    p_contradict = 1.0 if math.isnan(p_less) else min(1.0, float(p_less) * n_parts)
    return p_support, p_contradict


def trend_part(values: pd.DataFrame, treatment: str, control: str, n_parts: int = 1, bootstrap: bool = True) -> Part:
    """Does ``treatment - control`` grow with the paper's complexity rank? (see the module docstring)"""
    diffs = {
        d: s
        for d, s in paired_values(values, treatment, control).items()
        if d in COMPLEXITY_RANK and len(s) >= MIN_PAIRS
    }
    name = f"{method_label(treatment)} − {method_label(control)} vs complexity"
    ranks = [COMPLEXITY_RANK[d] for d in diffs]
    means = [float(s.mean()) for s in diffs.values()]
    n = len(diffs)
    used = ", ".join(f"{dataset_label(d)} {fmt(m, signed=True)}" for d, m in zip(diffs, means)) or "none"
    if n < MIN_TREND_DATASETS:
        return Part(
            name,
            NOT_TESTABLE,
            f"{name}: {n} ranked dataset(s) with ≥ {MIN_PAIRS} paired seeds; a permutation test needs ≥ "
            f"{MIN_TREND_DATASETS} (smallest p with {n}: {fmt_p(stats.min_permutation_p(n))})",
            f"- {name}: mean paired difference (pp) {used}; paper's rho {fmt(_paper_rho(treatment, control))}.",
        )
    res = stats.trend_test(ranks, means)
    low, high = (
        stats.bootstrap_rho(ranks, [s.to_numpy() for s in diffs.values()]) if bootstrap else (math.nan, math.nan)
    )
    p_support, p_contradict = _directional(res["p_greater"], res["p_less"], n_parts)
    verdict = verdict_from(p_support, p_contradict)
    test = (
        f"{name}: Spearman rho {fmt(res['rho'], signed=True)} over {n} datasets, exact permutation p "
        f"{fmt_p(res['p_greater'])} (grows) / {fmt_p(res['p_less'])} (shrinks)"
    )
    boot = f", bootstrap-over-seeds 95% interval {fmt_ci(low, high)}" if bootstrap else ""
    evidence = (
        f"- {name}: mean paired difference (pp) {used}. Spearman rho = {fmt(res['rho'], signed=True)}{boot}; "
        f"one-sided permutation p = {fmt_p(res['p_greater'])} for growth, {fmt_p(res['p_less'])} for decline "
        f"(smallest attainable {fmt_p(res['min_p'])}). Paper's rho: {fmt(_paper_rho(treatment, control), signed=True)}."
    )
    return Part(name, verdict, test, evidence, p_support, p_contradict)


def combine(parts: Sequence[Part]) -> tuple[str, float, float]:
    """A conjunction of parts (see the module docstring): (verdict, p for support, p for contradiction)."""
    if not parts:
        return NOT_TESTABLE, math.nan, math.nan
    supports = [p.p_support for p in parts]
    p_support = math.nan if any(math.isnan(p) for p in supports) else max(supports)
    contradicts = [p.p_contradict for p in parts if not math.isnan(p.p_contradict)]
    p_contradict = min(contradicts) if contradicts else math.nan
    testable = all(p.verdict != NOT_TESTABLE for p in parts)
    return verdict_from(p_support, p_contradict, testable), p_support, p_contradict


# --------------------------------------------------------------------------------------------------
# The claims


CLAIM_1 = "The gain from distillation over the scratch student grows with dataset complexity (for RKD and for IKD)."
CRITERION_1 = (
    f"For each of RKD and IKD: Spearman's rho between the per-dataset mean paired gain over scratch and the paper's "
    f"complexity rank, over the datasets with ≥ {MIN_PAIRS} paired seeds "
    f"(≥ {MIN_TREND_DATASETS} needed); one-sided "
    f"exact permutation test over the datasets' orderings. Supported: p(growth) < {ALPHA} for both students. "
    f"Contradicted: p(decline) < {ALPHA / 2} for either."
)
CLAIM_2 = "IKD beats RKD, and by most on complex data."
CRITERION_2 = (
    f"(a) IKD − RKD paired by seed per dataset, two-sided paired t-tests, Holm-corrected across datasets: resolved "
    f"positive on ≥ 1 dataset and negative on none; (b) IKD − RKD grows with complexity rank (one-sided exact "
    f"permutation test of Spearman's rho, ≥ {MIN_TREND_DATASETS} datasets). Supported: (a) and (b) at {ALPHA}. "
    f"Contradicted: (a) resolved negative somewhere and positive nowhere at {ALPHA / 2}, "
    f"or (b) declining at {ALPHA / 2}."
)
CLAIM_3 = "An IKD student can beat its teacher."
CRITERION_3 = (
    f"IKD − teacher paired by seed per dataset, two-sided paired t-tests, "
    f"Holm-corrected across datasets (α = {ALPHA}). "
    f"Supported: resolved positive on ≥ 1 dataset. Contradicted: resolved negative on every dataset tested."
)


def _claim(
    number: int,
    statement: str,
    criterion: str,
    parts: Sequence[Part],
    recipe: str | None,
    note: str = "",
    extra_evidence: Sequence[str] = (),
) -> Claim:
    verdict, p_support, p_contradict = combine(parts)
    test = "; ".join(p.test for p in parts)
    evidence = "\n".join([p.evidence for p in parts] + list(extra_evidence) + ([note] if note else []))
    return Claim(number, statement, criterion, verdict, test, evidence, recipe, tuple(parts), p_support, p_contradict)


def claims_for_values(
    values: pd.DataFrame,
    recipe: str | None = None,
    detail: bool = True,
    note: str = "",
    values_vs_teacher: pd.DataFrame | None = None,
) -> list[Claim]:
    """The three claims on a plain frame (dataset, method, seed, value in percent) of one recipe.

    ``values_vs_teacher``: the same frame without students distilled from another teacher than the
    sweep's teacher row, for the comparison with that teacher (claim 3); default ``values``.
    ``detail=False`` skips what does not change a verdict (bootstrap intervals, MDE), for simulations.
    """
    vs_teacher = wide_values(values if values_vs_teacher is None else values_vs_teacher)
    values = wide_values(values)
    claim1 = [trend_part(values, s, SCRATCH, n_parts=2, bootstrap=detail) for s in PAPER_STUDENTS]
    claim2 = [
        per_dataset_part(values, IKD, RKD, "all", n_parts=2, power=detail),
        trend_part(values, IKD, RKD, n_parts=2, bootstrap=detail),
    ]
    claim3 = [per_dataset_part(vs_teacher, IKD, TEACHER, "any", power=detail)]
    return [
        _claim(1, CLAIM_1, CRITERION_1, claim1, recipe),
        _claim(2, CLAIM_2, CRITERION_2, claim2, recipe),
        _claim(3, CLAIM_3, CRITERION_3, claim3, recipe, note),
    ]


def _mismatched_teacher(runs: pd.DataFrame) -> pd.DataFrame:
    """Completed students whose teacher is not the sweep's teacher row of their recipe, dataset and seed."""
    checks = teacher_check(runs)
    return checks[checks["teacher_match"] == "no"]


def evaluate_claims(runs: pd.DataFrame, metric: str = DEFAULT_METRIC, detail: bool = True) -> list[Claim]:
    """The paper's three claims with a verdict each, per recipe when the sweep holds several (each
    factor level is a recipe of its own). Verdicts are before :func:`control_family`.

    ``runs``: the frame of ``load_sweep`` or any frame with columns dataset, method, seed and ``metric``
    (fractions; optional ``recipe`` and ``status``). Students distilled from another teacher than the
    sweep's teacher row stay in every table but are left out of the comparison with that teacher.
    """
    recipes = recipes_in(runs) or [None]
    out = []
    for recipe in recipes:
        sub = for_recipe(runs, recipe) if recipe is not None else runs
        label = recipe if len(recipes) > 1 else None
        values = metric_values(sub, metric)
        bad = _mismatched_teacher(sub)
        note = ""
        if not bad.empty:
            drop = set(zip(bad["dataset"], bad["method"], bad["seed"].astype(int)))
            keep = [
                (d, m, int(sd)) not in drop for d, m, sd in zip(values["dataset"], values["method"], values["seed"])
            ]
            note = (
                f"- Left out of IKD − Teacher: {len(bad)} student run(s) distilled from another teacher than the "
                "sweep's teacher row of their dataset and seed (listed under *teacher mismatch*)."
            )
            out += claims_for_values(values, label, detail, note, values[keep])
        else:
            out += claims_for_values(values, label, detail)
    return out


def claims_frame(claims: Sequence[Claim]) -> pd.DataFrame:
    """Claims as a table (for CSV and the notebook)."""
    cols = [
        "recipe",
        "number",
        "statement",
        "criterion",
        "verdict",
        "test",
        "evidence",
        "p_support",
        "p_contradict",
        "p_support_family",
        "p_contradict_family",
        "family",
        "order",
        "alpha",
        "direction",
        "mde",
    ]
    return pd.DataFrame([{k: v for k, v in asdict(c).items() if k != "parts"} for c in claims], columns=cols)


# --------------------------------------------------------------------------------------------------
# Single-factor sweeps: does the gain change as the data gets harder along one factor?

#: fewest levels whose level-unit slope test has a residual degree of freedom
FACTOR_MIN_LEVELS = 3


def _seed_counts(paired: pd.DataFrame) -> str:
    counts = paired.groupby("level").size()
    return f"{counts.min()}" if counts.min() == counts.max() else f"{counts.min()}–{counts.max()}"


#: what a factor claim tests when no primary claim names it
DEFAULT_FACTOR_TEST = "slope"


def _per_level_text(paired: pd.DataFrame, factor: str) -> str:
    means = paired.groupby("level")["diff"].mean()
    order = np.argsort(level_positions(factor, means.index), kind="stable")
    return ", ".join(f"{factor}={means.index[i]:g}: {fmt(means.iloc[i], signed=True)}" for i in order) or "none"


def _direction_ps(res: dict[str, float], direction: str, n_parts: int) -> tuple[float, float]:
    """(p for the claimed direction, p for the opposite Bonferroni-corrected over the parts)."""
    forward, backward = ("p_greater", "p_less") if direction == "greater" else ("p_less", "p_greater")
    return _directional(res[forward], res[backward], n_parts)


def _seed_unit_text(points: pd.DataFrame, factor: str, n_seeds: int, n_levels: int) -> str:
    if factor in TWO_LEVEL_FACTORS:
        why = "two fixed conditions without a random draw: the seeds replicate training"
    else:
        why = (
            "each seed draws its own data at every level (factor_seed = seed), so one seed's gains form one "
            "chain across the levels and correlate; the seeds, not the levels, are independent"
        )
    return f"unit: the seed ({n_seeds} seed(s) with all {n_levels} level(s) paired; {why})"


def _untestable(name: str, reason: str, per_level: str, unit: str, kind: str, advice: str = "") -> Part:
    """A factor part whose test cannot run: the reason, and what the levels show."""
    evidence = f"- {name}: mean paired gain (pp) per level, easiest first: {per_level}; {unit}.{advice}"
    return Part(name, NOT_TESTABLE, reason, evidence, unit=kind)


def factor_seed_part(
    points: pd.DataFrame, factor: str, student: str, test: str, direction: str = "greater", n_parts: int = 2
) -> Part:
    """The seed is the unit: per seed, the slope of its paired gain on the levels' fixed positions (``slope``) or
    its gain at the hardest level minus at the easiest (``contrast``); one-sided t-test over seeds, S − 1 df."""
    control = roles(points)[1]
    paired = paired_by_level(points, student, control)
    name = f"{method_label(student)} − {method_label(control)} as {FACTOR_TEXT[factor]}"
    chains = paired.pivot_table(index="seed", columns="level", values="diff", aggfunc="mean").dropna()
    x = level_positions(factor, chains.columns) if len(chains.columns) else np.array([])
    unit = _seed_unit_text(points, factor, len(chains), len(chains.columns))
    per_level = _per_level_text(paired, factor)
    if len(chains.columns) < 2 or len(chains) < MIN_PAIRS:
        return _untestable(
            name,
            f"{name}: {len(chains)} seed(s) with ≥ 2 levels paired; the test needs ≥ {MIN_PAIRS}",
            per_level,
            unit,
            "seed",
        )
    gains = chains.to_numpy()
    stat = {"slope": stats.per_seed_slopes, "contrast": stats.per_seed_contrast}
    res = {k: stats.t_over_units(f(x, gains)) for k, f in stat.items()}
    chosen, other = res[test], res["contrast" if test == "slope" else "slope"]
    if math.isnan(chosen["t"]):
        return _untestable(
            name, f"{name}: every seed's {test} is the same (no spread to judge it by)", per_level, unit, "seed"
        )
    p_support, p_contradict = _direction_ps(chosen, direction, n_parts)
    what = {"slope": f"slope per {POSITION_UNIT[factor]}", "contrast": "hardest minus easiest level"}
    low, high = stats.t_interval(chosen["mean"], chosen["sd"] / math.sqrt(chosen["n"]), chosen["n"], CONFIDENCE)
    values = ", ".join(fmt(v, signed=True) for v in stat[test](x, gains))
    test_line = (
        f"{name}: per-seed {what[test]} {fmt(chosen['mean'], signed=True)} pp {fmt_ci(low, high)} over "
        f"{chosen['n']} seeds, t-test on {chosen['df']} df, p {fmt_p(chosen['p_greater'])} (grows) / "
        f"{fmt_p(chosen['p_less'])} (shrinks)"
    )
    evidence = (
        f"- {name}: mean paired gain (pp) per level, easiest first: {per_level}; {unit}. Per seed, {what[test]} "
        f"(pp): {values}; sd over seeds {fmt(chosen['sd'])} pp. The other statistic (descriptive, outside the "
        f"family): {what['contrast' if test == 'slope' else 'slope']} {fmt(other['mean'], signed=True)} pp, "
        f"p {fmt_p(other['p_greater'])} (grows) / {fmt_p(other['p_less'])} (shrinks)."
    )
    span = float(x.max() - x.min()) if test == "slope" else 1.0
    return Part(
        name,
        verdict_from(p_support, p_contradict),
        test_line,
        evidence,
        p_support,
        p_contradict,
        unit="seed",
        sd=float(chosen["sd"]),
        df=int(chosen["df"]),
        se_scale=1 / math.sqrt(chosen["n"]),
        effect_unit="pp per " + POSITION_UNIT[factor] if test == "slope" else "pp (hardest minus easiest level)",
        span=span,
    )


def factor_level_part(
    points: pd.DataFrame, factor: str, student: str, direction: str = "greater", n_parts: int = 2
) -> Part:
    """The level is the unit (the seeds at a level share its draw or its fixed data): one mean gain per level,
    OLS slope on the levels' fixed positions, one-sided t-test on L − 2 df (``stats.slope_test``)."""
    control = roles(points)[1]
    paired = paired_by_level(points, student, control)
    name = f"{method_label(student)} − {method_label(control)} as {FACTOR_TEXT[factor]}"
    means = paired.groupby("level")["diff"].mean()
    x = level_positions(factor, means.index) if len(means) else np.array([])
    per_level = _per_level_text(paired, factor)
    n_levels = len(means)
    unit = (
        f"unit: the level ({n_levels} level(s) with a paired seed, {_seed_counts(paired) if n_levels else 0} "
        f"seed(s) each; {draw_design(paired, factor)}: a level's seeds share its data, so they are not "
        "independent evidence for a trend)"
    )
    if n_levels < FACTOR_MIN_LEVELS:
        return _untestable(
            name,
            f"{name}: {n_levels} level(s); a trend over levels needs ≥ {FACTOR_MIN_LEVELS} (seeds at one level "
            "are not independent evidence for a trend)",
            per_level,
            unit,
            "level",
            f" Add {FACTOR_MIN_LEVELS - n_levels} level(s) to test a trend.",
        )
    res = stats.slope_test(x, means.to_numpy())
    if math.isnan(res["t"]):
        return _untestable(
            name,
            f"{name}: the level means lie exactly on a line (no scatter to judge the slope by)",
            per_level,
            unit,
            "level",
        )
    p_support, p_contradict = _direction_ps(res, direction, n_parts)
    within = paired.groupby("level")["diff"].std(ddof=1).dropna()
    seed_sd = f"; seed-to-seed sd within a level {fmt(float(np.sqrt((within**2).mean())))} pp" if len(within) else ""
    test = (
        f"{name}: slope {fmt(res['slope'], signed=True)} pp per {POSITION_UNIT[factor]} over {n_levels} level means, "
        f"t-test on {int(res['df'])} df, p {fmt_p(res['p_greater'])} (grows) / {fmt_p(res['p_less'])} (shrinks)"
    )
    evidence = (
        f"- {name}: mean paired gain (pp) per level, easiest first: {per_level}; {unit}. Slope "
        f"{fmt(res['slope'], signed=True)} pp per {POSITION_UNIT[factor]}, level scatter around the line "
        f"{fmt(res['resid_sd'])} pp{seed_sd}. More seeds shrink only the seed part of the level scatter; more "
        "levels add degrees of freedom."
    )
    return Part(
        name,
        verdict_from(p_support, p_contradict),
        test,
        evidence,
        p_support,
        p_contradict,
        unit="level",
        sd=float(res["resid_sd"]),
        df=int(res["df"]),
        se_scale=1 / math.sqrt(stats.position_sxx(x)),
        effect_unit=f"pp per {POSITION_UNIT[factor]}",
        span=float(x.max() - x.min()),
    )


def _factor_statement(dataset: str, factor: str, students: Sequence[str], direction: str) -> str:
    verb = "grows" if direction == "greater" else "shrinks"
    who = " and ".join(map(method_label, students)) or "no distilling student ran"
    return (
        f"On {dataset_label(dataset)}, the gain from distillation over scratch {verb} as {FACTOR_TEXT[factor]} ({who})."
    )


def _factor_criterion(seed_unit: bool, test: str, direction: str) -> str:
    way = "growth" if direction == "greater" else "decline"
    if seed_unit:
        how = (
            "per seed, the slope of its paired gain over scratch on the levels' fixed positions"
            if test == "slope"
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


def factor_claims(runs: pd.DataFrame, metric: str = DEFAULT_METRIC, primary: PrimaryClaim | None = None) -> list[Claim]:
    """One claim per (dataset, recipe, factor) the sweep varies; the one ``primary`` names is the primary claim,
    with its students, test and direction. Verdicts before :func:`control_family`."""
    points = factor_points(runs, metric)
    claims = []
    groups = points.groupby(["dataset", "base_recipe", "factor"], sort=False)
    for number, ((dataset, recipe, factor), sub) in enumerate(groups, start=1):
        is_primary = primary is not None and primary.matches(dataset, factor)
        test = primary.test if is_primary else DEFAULT_FACTOR_TEST
        direction = primary.direction if is_primary else "greater"
        seed_unit = factor in TWO_LEVEL_FACTORS or seeds_draw_their_own(sub, factor)
        test = "contrast" if factor in TWO_LEVEL_FACTORS else test
        students = [s for s in students_of(sub) if not (is_primary and primary.students) or s in primary.students]
        if seed_unit:
            parts = [factor_seed_part(sub, factor, s, test, direction, len(students)) for s in students]
        else:
            parts = [factor_level_part(sub, factor, s, direction, len(students)) for s in students]
        complexity = [line for s in students for line in complexity_evidence(sub, s)]
        claim = _claim(
            100 + number,
            _factor_statement(dataset, factor, students, direction),
            _factor_criterion(seed_unit, test, direction),
            parts,
            recipe,
            extra_evidence=complexity,
        )
        claims.append(replace(claim, family=PRIMARY if is_primary else EXPLORATORY, direction=direction))
    if primary is not None and not any(c.family == PRIMARY for c in claims):
        claims.insert(0, _missing_primary(primary))
    return claims


def _missing_primary(primary: PrimaryClaim) -> Claim:
    return Claim(
        100,
        f"Primary claim named in advance: {primary.describe()}.",
        "As named in claims.primary.",
        NOT_TESTABLE,
        f"the sweep has no levels of {primary.factor} to test it on",
        f"- No runs vary {primary.factor}.",
        family=PRIMARY,
        direction=primary.direction,
    )


# --------------------------------------------------------------------------------------------------
# The report's families: the primary claim first at the full α, the exploratory claims Holm among themselves


def _testable(c: Claim) -> bool:
    return all(p.verdict != NOT_TESTABLE for p in c.parts) if c.parts else not math.isnan(c.p_support)


def verdict_power_parts(parts: Sequence[Part], alpha: float) -> tuple[list[float], list[int]]:
    """The parts' standard errors with each sd at its upper confidence limit (stats.SD_CONFIDENCE), and their df."""
    ses = [stats.sd_upper_limit(p.sd, p.df) * p.se_scale for p in parts]
    return ses, [p.df for p in parts]


def claim_mde(c: Claim) -> float:
    """The effect at which this claim's verdict, as decided (every part at the claim's α), has 80% power."""
    parts = [p for p in c.parts if p.df > 0]
    if not parts or len(parts) != len(c.parts) or math.isnan(c.alpha):
        return math.nan
    return stats.verdict_mde(*verdict_power_parts(parts, c.alpha), alpha=c.alpha)


def _mde_text(c: Claim, mde: float) -> str:
    if math.isnan(mde):
        return ""
    parts = c.parts
    who = "every student named" if len(parts) > 1 else "its one student"
    over = (
        f" ({fmt(mde * parts[0].span)} pp across the sweep's range of positions, {fmt(parts[0].span)}; never beyond it)"
        if parts[0].span != 1.0
        else ""
    )
    dfs = sorted({p.df for p in parts})
    return (
        f"- Detectable with 80% power for this verdict as decided ({who} at α {c.alpha:.4g}, one-sided; each sd at "
        f"its {stats.SD_CONFIDENCE:.0%} upper confidence limit on {'/'.join(map(str, dfs))} df, since an sd from "
        f"few units can be far from the true one): ≥ {fmt(mde)} {parts[0].effect_unit}{over}. "
        "`python -m kd_lightning.report plan` gives the seeds for a stated effect."
    )


def _decide(c: Claim, family: str, order: int, alpha: float, ps: float, pc: float, note: str) -> Claim:
    # ps and pc are Holm-adjusted for an exploratory claim: Holm's step-down rejects where the adjusted p is below
    # the family's α (its step's α applies to the raw p); comparing them with the step's α would correct twice
    verdict = verdict_from(ps, pc, _testable(c), ALPHA)
    c = replace(
        c,
        verdict=verdict,
        test=f"{c.test}; {note}",
        p_support_family=ps,
        p_contradict_family=pc,
        family=family,
        order=order,
        alpha=alpha,
    )
    mde = claim_mde(c)
    text = _mde_text(c, mde)
    return replace(c, mde=mde, evidence=f"{c.evidence}\n{text}" if text else c.evidence)


def control_family(claims: Sequence[Claim]) -> list[Claim]:
    """Final verdicts: the primary claim (at most one) at the full α, tested first; every other claim is
    exploratory, Holm's step-down among themselves in each direction (module docstring)."""
    primary = [i for i, c in enumerate(claims) if c.family == PRIMARY]
    rest = [i for i in range(len(claims)) if i not in primary]
    out: list[Claim | None] = [None] * len(claims)
    for i in primary:
        c = claims[i]
        note = f"family: primary, tested 1st at α {ALPHA} (p {fmt_p(c.p_support)} / {fmt_p(c.p_contradict)})"
        out[i] = _decide(c, PRIMARY, 1, ALPHA, c.p_support, c.p_contradict, note)
    adjusted_support, level = stats.holm([claims[i].p_support for i in rest])
    adjusted_contradict, _ = stats.holm([claims[i].p_contradict for i in rest])
    steps = np.argsort(np.where(np.isnan(level), np.inf, 1 - level), kind="stable")  # Holm's order: smallest α first
    rank = {int(j): k for k, j in enumerate(steps)}
    for j, i in enumerate(rest):
        alpha = 1 - float(level[j]) if not math.isnan(level[j]) else math.nan
        order = len(primary) + 1 + rank[j]
        ps, pc = float(adjusted_support[j]), float(adjusted_contradict[j])
        note = (
            f"family: exploratory, Holm over {int(np.sum(~np.isnan(level)))} claim(s), step {rank[j] + 1} "
            f"(α {alpha:.4g}): Holm-adjusted p {fmt_p(ps)} (supported) / {fmt_p(pc)} (contradicted)"
            if not math.isnan(alpha)
            else f"family: exploratory, not tested: Holm-adjusted p {fmt_p(ps)} / {fmt_p(pc)}"
        )
        out[i] = _decide(claims[i], EXPLORATORY, order, alpha, ps, pc, note)
    return [c for c in out if c is not None]


def family_sizes(claims: Sequence[Claim]) -> tuple[int, int]:
    """How many exploratory claims entered Holm in each direction (a claim that cannot be tested does not)."""
    rest = [c for c in claims if c.family != PRIMARY]
    return (sum(not math.isnan(c.p_support) for c in rest), sum(not math.isnan(c.p_contradict) for c in rest))


#: a primary claim the command line names (``--primary``), in force for the reports written inside it
_PRIMARY_OVERRIDE: contextvars.ContextVar[PrimaryClaim | None] = contextvars.ContextVar("primary", default=None)


@contextlib.contextmanager
def primary_override(primary: PrimaryClaim | None) -> Iterator[None]:
    """Within the block, :func:`report_claims` takes ``primary`` as the claim named in advance (None: no override)."""
    token = _PRIMARY_OVERRIDE.set(primary)
    try:
        yield
    finally:
        _PRIMARY_OVERRIDE.reset(token)


def report_claims(runs: pd.DataFrame, metric: str = DEFAULT_METRIC, primary: PrimaryClaim | None = None) -> list[Claim]:
    """Every claim the report makes (claims 1-3 per recipe and level, then the factor claims) with final verdicts.

    ``primary``: the claim named in advance; default the command line's (:func:`primary_override`), else the one
    the runs' recorded configs name (``claims.primary``), else none: every claim is exploratory."""
    primary = primary or _PRIMARY_OVERRIDE.get() or primary_from_runs(runs)
    return control_family(evaluate_claims(runs, metric) + factor_claims(runs, metric, primary))
