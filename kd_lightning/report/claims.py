"""THE STUDY'S CONCLUSIONS: the paper's three claims, the criterion each is judged by, and the verdict.

Every claim gets exactly one verdict:

- ``supported``     - the sweep shows it with the error control stated below (false-positive rate <= 5%
                      when there is no effect; ``tests/test_claims.py`` measures it on simulated sweeps);
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
- **Factor trend** (one claim per factor a single-factor sweep varies, numbered from 101): for each of
  RKD and IKD, Spearman's rho between the factor's difficulty (the level signed so that larger is
  harder: less data, more label noise, more classes, lower resolution, no colour, more imbalance) and the
  paired gain over scratch at every (level, seed), one-sided permutation test over the points (the
  levels are exchangeable when the gain does not depend on them); >= 3 levels and >= 6 points, else not
  testable. ``tests/test_factor_report.py`` measures its null false-positive rate.
- **Conjunctions** (claims 1 and 2 and the factor claims have two parts): ``supported`` when every part is supported at 0.05
  (an intersection-union test: no correction needed); ``contradicted`` when some part is contradicted
  at 0.05 / (number of parts) (Bonferroni over the parts); else ``not testable`` when some part is;
  else ``inconclusive``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from kd_lightning.paper import COMPLEXITY_RANK, paper_accuracy
from kd_lightning.report import stats
from kd_lightning.report.factors import DIFFICULTY_SIGN, FACTOR_TEXT, STUDENTS, complexity_evidence, factor_points, paired_by_level
from kd_lightning.report.formatting import dataset_label, fmt, fmt_ci, fmt_n, fmt_p, method_label
from kd_lightning.report.runs import DEFAULT_METRIC, for_recipe, metric_values, recipes_in
from kd_lightning.report.tables import paired_from_values, paired_values, wide_values

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
NOT_TESTABLE = "not testable"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE)

ALPHA = stats.ALPHA
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


# --------------------------------------------------------------------------------------------------
# Parts


def _dataset_lines(paired: pd.DataFrame, power: bool) -> str:
    """'- USPS: +2.10 [+0.50, +3.70] (3 pairs), Holm p 0.030 → +; MDE 1.9; seeds for paper's +2.65: 3'."""
    lines = []
    for r in paired.to_dict("records"):
        text = f"  - {dataset_label(r['dataset'])}: {fmt(r['diff_mean'], signed=True)} pp {fmt_ci(r['ci_low'], r['ci_high'])} ({r['n_pairs']} pairs)"
        if not math.isnan(r["p"]):
            text += (f", p {fmt_p(r['p'])}, Holm p {fmt_p(r['p_holm'])} (interval at Holm's level "
                     f"{r['holm_level']:.2%}: {fmt_ci(r['holm_low'], r['holm_high'])}) → {r['resolved'] or 'not resolved'}")
        elif r["n_pairs"] >= MIN_PAIRS:
            text += ", no spread between seeds: not tested"
        else:
            text += ", not tested (needs 2 paired seeds)"
        if power:
            text += f"; MDE (80% power) {fmt(r['mde'])}" + (" pp" if not math.isnan(r["mde"]) else "")
            if not math.isnan(r["paper_diff"]):
                text += f"; paper {fmt(r['paper_diff'], signed=True)} pp, seeds to detect it: {fmt_n(r['pairs_needed_paper'])}"
        lines.append(text)
    return "\n".join(lines) if lines else "  - no paired runs"


def per_dataset_part(values: pd.DataFrame, treatment: str, control: str, mode: str, n_parts: int = 1,
                     power: bool = True) -> Part:
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
    minus = tested[(p_holm < ALPHA / n_parts) & (mean < 0)]
    if tested.empty:
        verdict = NOT_TESTABLE
    elif mode == "all":
        verdict = (SUPPORTED if len(plus) and not len(minus_support) else
                   CONTRADICTED if len(minus) and not len(plus) else INCONCLUSIVE)
    else:
        verdict = SUPPORTED if len(plus) else CONTRADICTED if len(minus) == len(tested) else INCONCLUSIVE

    def names(frame: pd.DataFrame) -> str:
        return ", ".join(map(dataset_label, frame["dataset"])) or "none"

    test = (f"{name}: paired t-tests on {len(tested)} dataset(s) with ≥ {MIN_PAIRS} paired seeds, Holm-corrected "
            f"(α = {ALPHA}); resolved + on {names(plus)}, − on {names(minus_support)}")
    return Part(name, verdict, test, f"- {name}, per dataset:\n{_dataset_lines(paired, power)}")


def _paper_rho(treatment: str, control: str) -> float:
    ds = [d for d in COMPLEXITY_RANK if paper_accuracy(d, treatment) is not None and paper_accuracy(d, control) is not None]
    return stats.spearman_rho([COMPLEXITY_RANK[d] for d in ds],
                              [paper_accuracy(d, treatment) - paper_accuracy(d, control) for d in ds])


def trend_verdict(res: dict[str, float], n_parts: int) -> str:
    """Growth at ALPHA supports; decline at ALPHA / n_parts contradicts (one part of a conjunction)."""
    if res["p_greater"] < ALPHA:
        return SUPPORTED
    if res["p_less"] < ALPHA / n_parts:
        return CONTRADICTED
    return INCONCLUSIVE


def trend_part(values: pd.DataFrame, treatment: str, control: str, n_parts: int = 1, bootstrap: bool = True) -> Part:
    """Does ``treatment - control`` grow with the paper's complexity rank? (see the module docstring)"""
    diffs = {d: s for d, s in paired_values(values, treatment, control).items()
             if d in COMPLEXITY_RANK and len(s) >= MIN_PAIRS}
    name = f"{method_label(treatment)} − {method_label(control)} vs complexity"
    ranks = [COMPLEXITY_RANK[d] for d in diffs]
    means = [float(s.mean()) for s in diffs.values()]
    n = len(diffs)
    used = ", ".join(f"{dataset_label(d)} {fmt(m, signed=True)}" for d, m in zip(diffs, means)) or "none"
    if n < MIN_TREND_DATASETS:
        return Part(name, NOT_TESTABLE,
                    f"{name}: {n} ranked dataset(s) with ≥ {MIN_PAIRS} paired seeds; a permutation test needs ≥ "
                    f"{MIN_TREND_DATASETS} (smallest p with {n}: {fmt_p(stats.min_permutation_p(n))})",
                    f"- {name}: mean paired difference (pp) {used}; paper's rho {fmt(_paper_rho(treatment, control))}.")
    res = stats.trend_test(ranks, means)
    low, high = stats.bootstrap_rho(ranks, [s.to_numpy() for s in diffs.values()]) if bootstrap else (math.nan, math.nan)
    verdict = trend_verdict(res, n_parts)
    test = (f"{name}: Spearman rho {fmt(res['rho'], signed=True)} over {n} datasets, exact permutation p "
            f"{fmt_p(res['p_greater'])} (grows) / {fmt_p(res['p_less'])} (shrinks)")
    boot = f", bootstrap-over-seeds 95% interval {fmt_ci(low, high)}" if bootstrap else ""
    evidence = (f"- {name}: mean paired difference (pp) {used}. Spearman rho = {fmt(res['rho'], signed=True)}{boot}; "
                f"one-sided permutation p = {fmt_p(res['p_greater'])} for growth, {fmt_p(res['p_less'])} for decline "
                f"(smallest attainable {fmt_p(res['min_p'])}). Paper's rho: {fmt(_paper_rho(treatment, control), signed=True)}.")
    return Part(name, verdict, test, evidence)


def combine(parts: Sequence[Part]) -> str:
    """A conjunction of parts (see the module docstring); each part's contradiction was judged at 0.05/len(parts)."""
    verdicts = [p.verdict for p in parts]
    if verdicts and all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    if CONTRADICTED in verdicts:
        return CONTRADICTED
    if NOT_TESTABLE in verdicts or not verdicts:
        return NOT_TESTABLE
    return INCONCLUSIVE


# --------------------------------------------------------------------------------------------------
# The claims


CLAIM_1 = "The gain from distillation over the scratch student grows with dataset complexity (for RKD and for IKD)."
CRITERION_1 = (
    f"For each of RKD and IKD: Spearman's rho between the per-dataset mean paired gain over scratch and the paper's "
    f"complexity rank, over the datasets with ≥ {MIN_PAIRS} paired seeds (≥ {MIN_TREND_DATASETS} needed); one-sided "
    f"exact permutation test over the datasets' orderings. Supported: p(growth) < {ALPHA} for both students. "
    f"Contradicted: p(decline) < {ALPHA / 2} for either.")
CLAIM_2 = "IKD beats RKD, and by most on complex data."
CRITERION_2 = (
    f"(a) IKD − RKD paired by seed per dataset, two-sided paired t-tests, Holm-corrected across datasets: resolved "
    f"positive on ≥ 1 dataset and negative on none; (b) IKD − RKD grows with complexity rank (one-sided exact "
    f"permutation test of Spearman's rho, ≥ {MIN_TREND_DATASETS} datasets). Supported: (a) and (b) at {ALPHA}. "
    f"Contradicted: (a) resolved negative somewhere and positive nowhere at {ALPHA / 2}, or (b) declining at {ALPHA / 2}.")
CLAIM_3 = "An IKD student can beat its teacher."
CRITERION_3 = (
    f"IKD − teacher paired by seed per dataset, two-sided paired t-tests, Holm-corrected across datasets (α = {ALPHA}). "
    f"Supported: resolved positive on ≥ 1 dataset. Contradicted: resolved negative on every dataset tested.")


def _claim(number: int, statement: str, criterion: str, parts: Sequence[Part], recipe: str | None,
           note: str = "") -> Claim:
    verdict = combine(parts)
    test = "; ".join(p.test for p in parts)
    evidence = "\n".join(p.evidence for p in parts) + (f"\n{note}" if note else "")
    return Claim(number, statement, criterion, verdict, test, evidence, recipe, tuple(parts))


def claims_for_values(values: pd.DataFrame, recipe: str | None = None, detail: bool = True,
                      note: str = "") -> list[Claim]:
    """The three claims on a plain frame (dataset, method, seed, value in percent) of one recipe.

    ``detail=False`` skips what does not change a verdict (bootstrap intervals, MDE), for simulations.
    """
    values = wide_values(values)
    claim1 = [trend_part(values, s, "scratch", n_parts=2, bootstrap=detail) for s in ("rkd", "ikd")]
    claim2 = [per_dataset_part(values, "ikd", "rkd", "all", n_parts=2, power=detail),
              trend_part(values, "ikd", "rkd", n_parts=2, bootstrap=detail)]
    claim3 = [per_dataset_part(values, "ikd", "teacher", "any", power=detail)]
    return [_claim(1, CLAIM_1, CRITERION_1, claim1, recipe),
            _claim(2, CLAIM_2, CRITERION_2, claim2, recipe),
            _claim(3, CLAIM_3, CRITERION_3, claim3, recipe, note)]


def _teacher_note(runs: pd.DataFrame) -> str:
    if "teacher.key" not in runs:
        return ""
    from kd_lightning.report.provenance import teacher_check

    checks = teacher_check(runs)
    bad = checks[(checks["method"] == "ikd") & (checks["teacher_match"] == "no")]
    if bad.empty:
        return ""
    return (f"- Caveat: {len(bad)} IKD run(s) distilled from another teacher than the sweep's teacher run of their "
            f"dataset and seed (see the provenance table); their difference to the teacher row is not to their own teacher.")


def evaluate_claims(runs: pd.DataFrame, metric: str = DEFAULT_METRIC, detail: bool = True) -> list[Claim]:
    """The paper's three claims with a verdict each, per recipe when the sweep holds several.

    ``runs``: the frame of ``load_sweep`` or any frame with columns dataset, method, seed and ``metric``
    (fractions; optional ``recipe`` and ``status``).
    """
    recipes = recipes_in(runs) or [None]
    out = []
    for recipe in recipes:
        sub = for_recipe(runs, recipe) if recipe is not None else runs
        label = recipe if len(recipes) > 1 else None
        out += claims_for_values(metric_values(sub, metric), label, detail, _teacher_note(sub))
    return out


def claims_frame(claims: Sequence[Claim]) -> pd.DataFrame:
    """Claims as a table (for CSV and the notebook)."""
    cols = ["recipe", "number", "statement", "criterion", "verdict", "test", "evidence"]
    return pd.DataFrame([{k: v for k, v in asdict(c).items() if k != "parts"} for c in claims], columns=cols)


# --------------------------------------------------------------------------------------------------
# Single-factor sweeps (issue 12): does the gain grow as the data gets harder along one factor?

FACTOR_MIN_LEVELS = 3
FACTOR_MIN_POINTS = 6


def _difficulty(factor: str, levels: pd.Series) -> np.ndarray:
    return DIFFICULTY_SIGN[factor] * levels.to_numpy(dtype=float)


def factor_trend_part(points: pd.DataFrame, factor: str, student: str, n_parts: int = 2) -> Part:
    """Does the student's paired gain over scratch grow as the data gets harder along ``factor``?"""
    paired = paired_by_level(points, student, "scratch")
    name = f"{method_label(student)} − {method_label('scratch')} as {FACTOR_TEXT[factor]}"
    levels = paired.groupby("level")["diff"]
    per_level = ", ".join(f"{factor}={lv:g}: {fmt(d.mean(), signed=True)} (n={len(d)})" for lv, d in levels) or "none"
    n_levels, n = paired["level"].nunique(), len(paired)
    if n_levels < FACTOR_MIN_LEVELS or n < FACTOR_MIN_POINTS:
        return Part(name, NOT_TESTABLE, f"{name}: {n_levels} level(s), {n} paired points; needs ≥ {FACTOR_MIN_LEVELS} levels and ≥ {FACTOR_MIN_POINTS} points",
                    f"- {name}: mean paired gain (pp) per level {per_level}.")
    # (level, seed) points: more than 8, so random orderings; 5,000 resolve p to +-0.003 at p = 0.05
    res = stats.trend_test(_difficulty(factor, paired["level"]), paired["diff"].to_numpy(), n_resamples=5_000)
    verdict = trend_verdict(res, n_parts)
    test = (f"{name}: Spearman rho {fmt(res['rho'], signed=True)} over {n} (level, seed) points, permutation p "
            f"{fmt_p(res['p_greater'])} (grows) / {fmt_p(res['p_less'])} (shrinks)")
    return Part(name, verdict, test, f"- {name}: mean paired gain (pp) per level {per_level}; rho = {fmt(res['rho'], signed=True)}.")


def factor_claims(runs: pd.DataFrame, metric: str = DEFAULT_METRIC) -> list[Claim]:
    """One claim per (dataset, recipe, factor) the sweep varies."""
    points = factor_points(runs, metric)
    claims = []
    for number, ((dataset, recipe, factor), sub) in enumerate(points.groupby(["dataset", "base_recipe", "factor"], sort=False), start=1):
        parts = [factor_trend_part(sub, factor, s) for s in STUDENTS]
        statement = f"On {dataset_label(dataset)}, the gain from distillation over scratch grows as {FACTOR_TEXT[factor]} (RKD and IKD)."
        criterion = (f"For each of RKD and IKD: Spearman's rho between difficulty along {factor} and the paired gain over scratch "
                     f"at every (level, seed), one-sided permutation test; ≥ {FACTOR_MIN_LEVELS} levels and ≥ {FACTOR_MIN_POINTS} points. "
                     f"Supported: p(growth) < {ALPHA} for both. Contradicted: p(decline) < {ALPHA / 2} for either.")
        evidence = "\n".join([p.evidence for p in parts] + [line for s in STUDENTS for line in complexity_evidence(sub, s)])
        claims.append(Claim(100 + number, statement, criterion, combine(parts), "; ".join(p.test for p in parts), evidence,
                            recipe, tuple(parts)))
    return claims
