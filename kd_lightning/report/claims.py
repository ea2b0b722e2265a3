"""THE STUDY'S CONCLUSIONS: the paper's three claims and the factor claims, each tested into a verdict record
(numbers, never prose: ``claims_text.py`` writes the statement, criterion, test line and evidence).

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
  paired gain over scratch on the levels' fixed positions (``runs.LEVEL_POSITION``: log2 of the data
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
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from kd_lightning.report import stats
from kd_lightning.report.paper import CLAIM_BEATS, CLAIM_BEATS_TEACHER, CLAIM_STUDENTS, paper_diffs
from kd_lightning.report.primary import PrimaryClaim, primary_from_runs
from kd_lightning.report.runs import (
    COMPLEXITY_MEASURES,
    COMPLEXITY_RANK,
    DEFAULT_METRIC,
    TWO_LEVEL_FACTORS,
    distilling_methods,
    draw_design,
    factor_points,
    for_recipe,
    level_positions,
    metric_values,
    ordered_methods,
    paired_arms,
    paired_by_level,
    paired_values,
    recipes_in,
    roles,
    seeds_draw_their_own,
    students_of,
    teacher_check,
    wide_values,
)
from kd_lightning.report.stats import ALPHA, CONFIDENCE, MIN_TREND_DATASETS
from kd_lightning.report.verdicts import (
    BEATS,
    CAN_BEAT,
    CONTRADICTED,
    DEFAULT_FACTOR_TEST,
    EXPLORATORY,
    FACTOR,
    FACTOR_MIN_LEVELS,
    GROWS,
    INCONCLUSIVE,
    LEVEL_UNIT,
    MIN_PAIRS,
    MISSING_PRIMARY,
    NOT_TESTABLE,
    PER_DATASET,
    PRIMARY,
    SEED_UNIT,
    SUPPORTED,
    TREND,
    Claim,
    Part,
)

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


def per_dataset_part(
    values: pd.DataFrame, treatment: str, control: str, mode: str, n_parts: int = 1, power: bool = True
) -> Part:
    """``treatment`` vs ``control`` per dataset, Holm across datasets.

    mode ``"all"`` ("A beats B"): supported when >= 1 dataset is resolved ``+`` and none ``−``;
    contradicted when >= 1 is resolved ``−`` (at 0.05 / n_parts) and none ``+``.
    mode ``"any"`` ("A can beat B"): supported when >= 1 dataset is resolved ``+``; contradicted when
    every tested dataset is resolved ``−`` (at 0.05 / n_parts).
    """
    family = stats.paired_family(paired_arms(values, treatment, control), paper_diffs(treatment, control), power=power)
    rows = [{"dataset": d, **row} for d, row in family.items()]
    tested = pd.DataFrame([r for r in rows if not math.isnan(r["p"])], columns=["dataset", "diff_mean", "p_holm"])
    p_holm, mean = tested["p_holm"], tested["diff_mean"]
    plus = tested[(p_holm < ALPHA) & (mean > 0)]
    minus = tested[(p_holm < ALPHA) & (mean < 0)]
    if tested.empty:
        p_support = p_contradict = math.nan
    elif mode == "all":  # some dataset resolved + and none resolved − (and the reverse)
        p_support = float(p_holm[mean > 0].min()) if (mean > 0).any() and minus.empty else 1.0
        p_contradict = float(p_holm[mean < 0].min()) if (mean < 0).any() and plus.empty else 1.0
    else:  # some dataset resolved +; contradicted only when every dataset is resolved −
        p_support = float(p_holm[mean > 0].min()) if (mean > 0).any() else 1.0
        p_contradict = float(p_holm.max()) if (mean < 0).all() else 1.0
    if not tested.empty:  # nothing tested stays untested (NaN), so it does not enter a Holm family
        p_contradict = min(1.0, p_contradict * n_parts)
    detail = {
        "rows": rows,
        "power": power,
        "tested": len(tested),
        "plus": list(plus["dataset"]),
        "minus": list(minus["dataset"]),
    }
    verdict = verdict_from(p_support, p_contradict)
    return Part(PER_DATASET, treatment, control, verdict, p_support, p_contradict, detail=detail)


def _paper_rho(treatment: str, control: str) -> float:
    diffs = paper_diffs(treatment, control)
    return stats.spearman_rho([COMPLEXITY_RANK[d] for d in diffs], list(diffs.values()))


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
    ranks = [COMPLEXITY_RANK[d] for d in diffs]
    means = [float(s.mean()) for s in diffs.values()]
    detail: dict[str, Any] = {"means": dict(zip(diffs, means)), "paper_rho": _paper_rho(treatment, control)}
    if len(diffs) < MIN_TREND_DATASETS:
        detail["min_p"] = stats.min_permutation_p(len(diffs))
        return Part(TREND, treatment, control, NOT_TESTABLE, reason="few_datasets", detail=detail)
    res = stats.trend_test(ranks, means)
    detail.update({k: res[k] for k in ("rho", "p_greater", "p_less", "min_p")})
    if bootstrap:
        detail["bootstrap"] = stats.bootstrap_rho(ranks, [s.to_numpy() for s in diffs.values()])
    p_support, p_contradict = _directional(res["p_greater"], res["p_less"], n_parts)
    verdict = verdict_from(p_support, p_contradict)
    return Part(TREND, treatment, control, verdict, p_support, p_contradict, detail=detail)


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


def _claim(number: int, kind: str, parts: Sequence[Part], recipe: str | None, **about: Any) -> Claim:
    verdict, p_support, p_contradict = combine(parts)
    return Claim(number, kind, verdict, recipe, tuple(parts), p_support, p_contradict, **about)


# --------------------------------------------------------------------------------------------------
# The paper's three claims


def claims_for_values(
    values: pd.DataFrame,
    recipe: str | None = None,
    detail: bool = True,
    left_out: int = 0,
    values_vs_teacher: pd.DataFrame | None = None,
    students: Sequence[str] | None = None,
) -> list[Claim]:
    """The three claims on a plain frame (dataset, method, seed, value in percent) of one recipe.

    ``values_vs_teacher``: the same frame without the ``left_out`` students distilled from another teacher than
    the sweep's teacher row, for the comparison with that teacher (claim 3); default ``values``. ``students``: the
    distilling students the records name (claim 1 tests the paper's and these); default the frame's.
    ``detail=False`` skips what does not change a verdict (bootstrap intervals, MDE), for simulations.
    """
    teacher, control, found = roles(values)
    growing = ordered_methods([*CLAIM_STUDENTS, *(found if students is None else students)])
    vs_teacher = wide_values(values if values_vs_teacher is None else values_vs_teacher)
    values = wide_values(values)
    better, worse = CLAIM_BEATS
    n = len(growing)
    claim1 = [trend_part(values, s, control, n_parts=n, bootstrap=detail) for s in growing]
    claim2 = [
        per_dataset_part(values, better, worse, "all", n_parts=2, power=detail),
        trend_part(values, better, worse, n_parts=2, bootstrap=detail),
    ]
    claim3 = [per_dataset_part(vs_teacher, CLAIM_BEATS_TEACHER, teacher, "any", power=detail)]
    return [
        _claim(1, GROWS, claim1, recipe, students=tuple(growing), control=control),
        _claim(2, BEATS, claim2, recipe, students=(better,), control=worse),
        _claim(3, CAN_BEAT, claim3, recipe, students=(CLAIM_BEATS_TEACHER,), control=teacher, left_out=left_out),
    ]


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
        checks = teacher_check(sub)
        bad = checks[checks["teacher_match"] == "no"]
        drop = set(zip(bad["dataset"], bad["method"], bad["seed"].astype(int)))
        keep = [(d, m, int(sd)) not in drop for d, m, sd in zip(values["dataset"], values["method"], values["seed"])]
        students = distilling_methods(sub)
        out += claims_for_values(values, label, detail, len(bad), values[keep] if drop else None, students)
    return out


# --------------------------------------------------------------------------------------------------
# Single-factor sweeps: does the gain change as the data gets harder along one factor?


def _level_means(paired: pd.DataFrame, factor: str) -> list[tuple[float, float]]:
    """(level, mean paired gain), easiest level first."""
    means = paired.groupby("level")["diff"].mean()
    order = np.argsort(level_positions(factor, means.index), kind="stable")
    return [(float(means.index[i]), float(means.iloc[i])) for i in order]


def _direction_ps(res: dict[str, float], direction: str, n_parts: int) -> tuple[float, float]:
    """(p for the claimed direction, p for the opposite Bonferroni-corrected over the parts)."""
    forward, backward = ("p_greater", "p_less") if direction == "greater" else ("p_less", "p_greater")
    return _directional(res[forward], res[backward], n_parts)


def factor_seed_part(
    points: pd.DataFrame, factor: str, student: str, test: str, direction: str = "greater", n_parts: int = 2
) -> Part:
    """The seed is the unit: per seed, the slope of its paired gain on the levels' fixed positions (``slope``) or
    its gain at the hardest level minus at the easiest (``contrast``); one-sided t-test over seeds, S − 1 df."""
    control = roles(points)[1]
    paired = paired_by_level(points, student, control)
    twice = paired[paired.duplicated(["seed", "level"], keep=False)]
    if not twice.empty:  # one chain per seed: two runs of a seed at a level would be averaged away silently
        raise ValueError(f"{factor}: seed(s) {sorted(set(twice['seed']))} hold two {student} pairs at one level")
    table = paired.pivot(index="seed", columns="level", values="diff") if not paired.empty else pd.DataFrame()
    if test == "contrast" and len(table.columns) > 2:  # a contrast reads the easiest and the hardest level only
        order = np.argsort(level_positions(factor, table.columns), kind="stable")
        table = table.iloc[:, [order[0], order[-1]]]
    chains = table.dropna()
    x = level_positions(factor, chains.columns) if len(chains.columns) else np.array([])
    detail: dict[str, Any] = {
        # the level means over the seeds the test uses, so they add up to its contrast
        "levels": _level_means(paired[paired["seed"].isin(chains.index)], factor),
        "seeds": len(chains),
        "paired_levels": len(chains.columns),
        "seed_ids": [int(s) for s in chains.index],
        # seeds with a pair at some level but not at every level the test reads: not in the test, named
        "dropped_seeds": sorted(int(s) for s in set(table.index) - set(chains.index)),
    }
    untested = Part(SEED_UNIT, student, control, NOT_TESTABLE, factor=factor, statistic=test, detail=detail)
    if len(chains.columns) < 2 or len(chains) < MIN_PAIRS:
        return replace(untested, reason="few_seeds")
    gains = chains.to_numpy()
    per_seed = {"slope": stats.per_seed_slopes, "contrast": stats.per_seed_contrast}
    res = {k: stats.t_over_units(f(x, gains)) for k, f in per_seed.items()}
    chosen, other = res[test], res["contrast" if test == "slope" else "slope"]
    if math.isnan(chosen["t"]):
        return replace(untested, reason="no_spread")
    p_support, p_contradict = _direction_ps(chosen, direction, n_parts)
    low, high = stats.t_interval(chosen["mean"], chosen["sd"] / math.sqrt(chosen["n"]), chosen["n"], CONFIDENCE)
    detail.update(
        {
            **{k: chosen[k] for k in ("mean", "n", "df", "p_greater", "p_less")},
            "ci": (low, high),
            "per_seed": list(per_seed[test](x, gains)),
            "other": {k: other[k] for k in ("mean", "p_greater", "p_less")},
        }
    )
    return replace(
        untested,
        verdict=verdict_from(p_support, p_contradict),
        p_support=p_support,
        p_contradict=p_contradict,
        sd=float(chosen["sd"]),
        df=int(chosen["df"]),
        se_scale=1 / math.sqrt(chosen["n"]),
        span=float(x.max() - x.min()) if test == "slope" else 1.0,
    )


def factor_level_part(
    points: pd.DataFrame, factor: str, student: str, direction: str = "greater", n_parts: int = 2
) -> Part:
    """The level is the unit (the seeds at a level share its draw or its fixed data): one mean gain per level,
    OLS slope on the levels' fixed positions, one-sided t-test on L − 2 df (``stats.slope_test``)."""
    control = roles(points)[1]
    paired = paired_by_level(points, student, control)
    means = paired.groupby("level")["diff"].mean()
    x = level_positions(factor, means.index) if len(means) else np.array([])
    counts = paired.groupby("level").size()
    detail: dict[str, Any] = {
        "levels": _level_means(paired, factor),
        "seed_counts": (int(counts.min()), int(counts.max())) if len(means) else (0, 0),
        "design": draw_design(paired, factor),
    }
    untested = Part(LEVEL_UNIT, student, control, NOT_TESTABLE, factor=factor, statistic="slope", detail=detail)
    if len(means) < FACTOR_MIN_LEVELS:
        return replace(untested, reason="few_levels")
    res = stats.slope_test(x, means.to_numpy())
    if math.isnan(res["t"]):
        return replace(untested, reason="on_a_line")
    p_support, p_contradict = _direction_ps(res, direction, n_parts)
    within = paired.groupby("level")["diff"].std(ddof=1).dropna()
    detail.update({k: res[k] for k in ("slope", "p_greater", "p_less", "resid_sd")})
    detail.update(df=int(res["df"]), seed_sd=float(np.sqrt((within**2).mean())) if len(within) else None)
    return replace(
        untested,
        verdict=verdict_from(p_support, p_contradict),
        p_support=p_support,
        p_contradict=p_contradict,
        sd=float(res["resid_sd"]),
        df=int(res["df"]),
        se_scale=1 / math.sqrt(stats.position_sxx(x)),
        span=float(x.max() - x.min()),
    )


def _factor_claims_of(
    number: int, key: tuple[str, str, str], sub: pd.DataFrame, primary: PrimaryClaim | None
) -> list[Claim]:
    """One (dataset, recipe, factor)'s claims. The one ``primary`` names: its students, test and direction; the
    students it leaves out get the same test as an exploratory claim (a pre-registered exploratory claim,
    e.g. IKD's contrast beside RKD's primary). Students distilled from another teacher than their seed's teacher
    row are left out of both, and counted."""
    dataset, _, factor = key
    mismatched = sub["teacher_match"].eq("no")
    left_out = sub.loc[mismatched, "method"]
    sub = sub[~mismatched]
    everyone = students_of(sub)

    def claim(n: int, about: PrimaryClaim | None, students: list[str], confirmatory: bool = True) -> Claim:
        dropped = int(left_out.isin(students).sum())
        return _factor_claim(n, key, sub, about, students, dropped, confirmatory)

    if primary is None or not primary.matches(dataset, factor) or not primary.students:
        return [claim(number, primary, everyone)]
    named = [s for s in everyone if s in primary.students]
    others = [s for s in everyone if s not in primary.students]
    first = claim(number, primary, named)
    return [first, claim(number + 1, replace(primary, students=()), others, False)] if others else [first]


def _factor_claim(
    number: int,
    key: tuple[str, str, str],
    sub: pd.DataFrame,
    primary: PrimaryClaim | None,
    students: list[str],
    left_out: int = 0,
    confirmatory: bool = True,
) -> Claim:
    """One (dataset, recipe, factor) claim on ``students``: the test and direction ``primary`` names when it names
    this one (its family too, unless ``confirmatory`` is False)."""
    dataset, recipe, factor = key
    named = primary is not None and primary.matches(dataset, factor)
    is_primary = named and confirmatory
    test = primary.test if named else DEFAULT_FACTOR_TEST
    direction = primary.direction if named else "greater"
    seed_unit = factor in TWO_LEVEL_FACTORS or seeds_draw_their_own(sub, factor)
    test = "contrast" if factor in TWO_LEVEL_FACTORS else test
    if seed_unit:
        parts = [factor_seed_part(sub, factor, s, test, direction, len(students)) for s in students]
    else:
        parts = [factor_level_part(sub, factor, s, direction, len(students)) for s in students]
    complexity = tuple(found for s in students if (found := complexity_rhos(sub, s)))
    return _claim(
        100 + number,
        FACTOR,
        parts,
        recipe,
        family=PRIMARY if is_primary else EXPLORATORY,
        direction=direction,
        students=tuple(students),
        control=roles(sub)[1],
        dataset=dataset,
        factor=factor,
        statistic=test,
        seed_unit=seed_unit,
        complexity=complexity,
        left_out=left_out,
    )


def factor_claims(runs: pd.DataFrame, metric: str = DEFAULT_METRIC, primary: PrimaryClaim | None = None) -> list[Claim]:
    """One claim per (dataset, recipe, factor) the sweep varies; the one ``primary`` names is the primary claim,
    with its students, test and direction. Verdicts before :func:`control_family`."""
    points = factor_points(runs, metric)
    claims: list[Claim] = []
    for key, sub in points.groupby(["dataset", "base_recipe", "factor"], sort=False):
        claims += _factor_claims_of(len(claims) + 1, key, sub, primary)
    named = [c for c in claims if c.family == PRIMARY]
    if len(named) > 1:  # one primary at the full α: several would each spend it
        raise ValueError(
            f"claims.primary ({primary.describe() if primary else ''}) matches {len(named)} conditions: "
            f"{[c.recipe for c in named]}; report one condition's runs (pass its folders), or name the dataset"
        )
    if primary is not None and not named:
        claims.insert(0, _missing_primary(primary))
    return claims


def _missing_primary(primary: PrimaryClaim) -> Claim:
    return Claim(
        100,
        MISSING_PRIMARY,
        NOT_TESTABLE,
        family=PRIMARY,
        direction=primary.direction,
        students=primary.students,
        dataset=primary.dataset,
        factor=primary.factor,
        statistic=primary.test,
    )


def complexity_rhos(points: pd.DataFrame, student: str) -> tuple[Any, ...] | None:
    """Rank correlation of the per-level mean gain with each measured complexity (bootstrap over seeds):
    (student, levels, ((measure, rho, low, high), ...)); None when no measure covers 3 levels."""
    paired = paired_by_level(points, student, roles(points)[1])
    measures = points.groupby("level")[list(COMPLEXITY_MEASURES)].mean(numeric_only=True)
    found = []
    for m in COMPLEXITY_MEASURES:
        by_level = [
            (measures.loc[lv, m], d.to_numpy())
            for lv, d in paired.groupby("level")["diff"]
            if lv in measures.index and pd.notna(measures.loc[lv, m])
        ]
        if len(by_level) < 3:
            continue
        x = [v for v, _ in by_level]
        rho = stats.spearman_rho(x, [d.mean() for _, d in by_level])
        found.append((m, rho, *stats.bootstrap_rho(x, [d for _, d in by_level])))
    return (student, paired["level"].nunique(), tuple(found)) if found else None


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


def _decide(c: Claim, family: str, order: int, alpha: float, ps: float, pc: float, **holm: float) -> Claim:
    # ps and pc are Holm-adjusted for an exploratory claim: Holm's step-down rejects where the adjusted p is below
    # the family's α (its step's α applies to the raw p); comparing them with the step's α would correct twice
    verdict = verdict_from(ps, pc, _testable(c), ALPHA)
    c = replace(
        c,
        verdict=verdict,
        p_support_family=ps,
        p_contradict_family=pc,
        family=family,
        order=order,
        alpha=alpha,
        **holm,
    )
    return replace(c, mde=claim_mde(c))


def control_family(claims: Sequence[Claim]) -> list[Claim]:
    """Final verdicts: the primary claim (at most one) at the full α, tested first; every other claim is
    exploratory, Holm's step-down among themselves in each direction (module docstring)."""
    primary = [i for i, c in enumerate(claims) if c.family == PRIMARY]
    rest = [i for i in range(len(claims)) if i not in primary]
    out: list[Claim | None] = [None] * len(claims)
    for i in primary:
        c = claims[i]
        out[i] = _decide(c, PRIMARY, 1, ALPHA, c.p_support, c.p_contradict)
    adjusted_support, support = _holm_steps([claims[i].p_support for i in rest])
    adjusted_contradict, contradict = _holm_steps([claims[i].p_contradict for i in rest])
    for j, i in enumerate(rest):
        ps, pc = float(adjusted_support[j]), float(adjusted_contradict[j])
        (rank, size, alpha), (rank_c, size_c, alpha_c) = support[j], contradict[j]
        holm = {"holm_size": size, "holm_step": rank + 1} if size else {}
        if size_c:
            holm |= {"holm_size_contradict": size_c, "holm_step_contradict": rank_c + 1, "alpha_contradict": alpha_c}
        out[i] = _decide(claims[i], EXPLORATORY, len(primary) + 1 + rank, alpha, ps, pc, **holm)
    return [c for c in out if c is not None]


def _holm_steps(pvalues: Sequence[float]) -> tuple[np.ndarray, list[tuple[int, int, float]]]:
    """Holm's adjusted p-values and, per hypothesis, (its 0-based step, the family's size, the step's α); an
    untested hypothesis (NaN p) comes after every tested one, with size 0 and α NaN."""
    adjusted, level = stats.holm(pvalues)
    tested = ~np.isnan(level)
    steps = np.argsort(np.where(tested, 1 - level, np.inf), kind="stable")  # Holm's order: smallest α first
    rank = {int(j): k for k, j in enumerate(steps)}
    size = int(tested.sum())
    return adjusted, [
        (rank[j], size if tested[j] else 0, 1 - float(level[j]) if tested[j] else math.nan) for j in range(len(level))
    ]


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
