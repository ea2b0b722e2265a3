"""Number formatting and markdown tables shared by the claims text, the markdown document and the figures (rendering;
the labels of datasets and methods are the paper's: ``paper.py``)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

__all__ = [
    "fmt",
    "fmt_p",
    "fmt_ci",
    "fmt_n",
    "fmt_seeds",
    "mean_std",
    "metric_note",
    "markdown_table",
]


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def fmt(value: Any, digits: int = 2, signed: bool = False) -> str:
    """``n/a`` for a missing value, else a fixed-point number (with its sign when ``signed``)."""
    if _missing(value):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "−∞"
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return text.replace("-", "+" if signed else "", 1) if float(text) == 0 else text  # no "-0.00" from rounding


def fmt_p(value: Any) -> str:
    if _missing(value):
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def fmt_ci(low: Any, high: Any, digits: int = 2) -> str:
    if _missing(low) or _missing(high):
        return "[n/a]"
    return f"[{fmt(low, digits, True)}, {fmt(high, digits, True)}]"


def fmt_n(value: Any) -> str:
    """A count that may be undefined (NaN) or unreachable (inf)."""
    if _missing(value):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return f"> {100_000}"
    return str(int(value))


def fmt_seeds(seeds: Any) -> str:
    """Seed numbers with runs of consecutive ones joined: ``3–5, 7`` (none: ``none``)."""
    ordered = sorted({int(s) for s in seeds})
    runs: list[list[int]] = []
    for seed in ordered:
        if runs and seed == runs[-1][-1] + 1:
            runs[-1].append(seed)
        else:
            runs.append([seed])
    return ", ".join(f"{r[0]}–{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs) or "none"


def mean_std(mean: Any, std: Any, digits: int = 2) -> str:
    return "n/a" if _missing(mean) else f"{mean:.{digits}f} ± {fmt(std, digits)}"


def metric_note(metric: str) -> str:
    """Which checkpoint a number comes from, short enough for a title line."""
    return {"test_best": "best-validation checkpoint", "test_last": "last-epoch checkpoint"}.get(
        metric.split(".")[0], metric
    )


def markdown_table(frame: pd.DataFrame) -> str:
    """GitHub-flavoured markdown table (pandas' to_markdown needs tabulate, which is not a dependency)."""
    if frame.empty:
        return "_(none)_"

    def cell(value: Any) -> str:
        text = "" if value is None or (not isinstance(value, (list, tuple)) and pd.isna(value)) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)
