"""The verdict records and the rules' constants: what ``claims.py`` decides and ``claims_text.py`` writes (a record
holds numbers and counts; its words are rendered). The α and the trend's fewest datasets are ``stats.py``'s."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
NOT_TESTABLE = "not testable"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE)

#: the families of the report (:func:`control_family`)
PRIMARY = "primary"
EXPLORATORY = "exploratory"
MIN_PAIRS = 2
#: fewest levels whose level-unit slope test has a residual degree of freedom
FACTOR_MIN_LEVELS = 3
#: what a factor claim tests when no primary claim names it
DEFAULT_FACTOR_TEST = "slope"

#: what a claim asserts: each student's gain over the control grows with complexity (claim 1), one student beats
#: another and by most on complex data (2), a student can beat its teacher (3), a factor claim, a primary claim
#: the sweep cannot test
GROWS, BEATS, CAN_BEAT, FACTOR, MISSING_PRIMARY = "grows", "beats", "can_beat", "factor", "missing_primary"
#: the tests a part runs: paired t per dataset, trend over datasets, factor trend with the seed or the level as unit
PER_DATASET, TREND, SEED_UNIT, LEVEL_UNIT = "per_dataset", "trend", "seed", "level"


@dataclass(frozen=True)
class Part:
    """One tested part of a claim, as numbers; ``detail`` holds what the evidence shows (per-dataset rows, rho,
    per-seed statistics, level means) and ``reason`` why a part could not be tested."""

    kind: str  # PER_DATASET, TREND, SEED_UNIT or LEVEL_UNIT
    treatment: str
    control: str
    verdict: str
    p_support: float = math.nan  # one-sided p for the claim's direction; NaN: not testable
    p_contradict: float = math.nan  # for the opposite direction, already Bonferroni-corrected over the parts
    #: what the power of its verdict rests on: the sd of the unit's statistic, its df, se = sd · se_scale, and
    #: the span of positions a slope covers (1 for a contrast)
    sd: float = math.nan
    df: int = 0
    se_scale: float = math.nan
    span: float = 1.0
    factor: str = ""
    statistic: str = ""  # a factor part's per-seed statistic: slope or contrast
    reason: str = ""  # few_datasets, few_seeds, no_spread, few_levels, on_a_line; "": tested
    detail: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Claim:
    """A claim's verdict record: what it asserts (kind, students, control, dataset, factor), its parts, p values,
    family, α and MDE, and its warnings as counts."""

    number: int
    kind: str
    verdict: str  # one of VERDICTS
    recipe: str | None = None
    parts: tuple[Part, ...] = field(default=(), repr=False)
    p_support: float = math.nan
    p_contradict: float = math.nan
    #: Holm-adjusted over the report's family (:func:`control_family`); NaN before that or when untested
    p_support_family: float = math.nan
    p_contradict_family: float = math.nan
    #: primary (named in advance, tested first at the full α) or exploratory (Holm among themselves)
    family: str = EXPLORATORY
    order: int = 0  # the order it was tested in (1 = first; 0: not decided yet)
    alpha: float = math.nan  # the α its support was tested at (Holm's step for an exploratory claim)
    direction: str = "greater"
    mde: float = math.nan  # effect with 80% power for the verdict as decided (:func:`claim_mde`)
    students: tuple[str, ...] = ()
    control: str = ""
    dataset: str | None = None
    factor: str | None = None
    statistic: str = ""  # a factor claim's test (slope / contrast)
    seed_unit: bool = False
    #: students left out of the comparison with the teacher: they distilled from another teacher than the sweep's
    left_out: int = 0
    #: descriptive, per student: (student, levels, ((measure, rho, low, high), ...)) (:func:`complexity_rhos`)
    complexity: tuple[tuple[Any, ...], ...] = ()
    #: Holm's family for support: how many exploratory claims entered it, and this claim's step (0: not tested)
    holm_size: int = 0
    holm_step: int = 0
    #: Holm's family for the opposite (a separate step-down): its size, this claim's step and the α of that step
    holm_size_contradict: int = 0
    holm_step_contradict: int = 0
    alpha_contradict: float = math.nan


def family_sizes(claims: Sequence[Claim]) -> tuple[int, int]:
    """How many exploratory claims entered Holm in each direction (a claim that cannot be tested does not)."""
    rest = [c for c in claims if c.family != PRIMARY]
    return (sum(not math.isnan(c.p_support) for c in rest), sum(not math.isnan(c.p_contradict) for c in rest))
