"""docs/recipes.md's fast-against-strong table from a report folder's CSVs (numbers in, markdown out).

    python -m kd_lightning.report outputs/strong_usps outputs/factor_train_fraction/f1.0 --out <report>
    python docs/recipe_tables.py <report> [--fast fast] [--strong strong]

Per method: each recipe's mean ± sd over seeds at the best-validation checkpoint and at the last epoch
(summary_*.csv), fast − strong with a Welch 95% interval (the recipes train different batches, so the seed pairs
nothing between them), and the median wall time per run with fast / strong, the fastest seed's in brackets
(runs.csv: a run that shared the CPU is slow in the median, not in the minimum). Then each recipe's paired
teacher − scratch (table5_*.csv).
"""

from __future__ import annotations

import argparse
import math

import pandas as pd
from findings_tables import METHODS, diff_cell
from scipy import stats


def welch_cell(a: pd.Series, b: pd.Series) -> str:
    """a − b with a Welch–Satterthwaite 95% t-interval from two rows of (mean, std, n)."""
    va, vb = a["std"] ** 2 / a["n"], b["std"] ** 2 / b["n"]
    df = (va + vb) ** 2 / (va**2 / (a["n"] - 1) + vb**2 / (b["n"] - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    diff = a["mean"] - b["mean"]
    return f"{diff:+.2f} [{diff - half:+.2f}, {diff + half:+.2f}]"


def main(report: str, fast: str, strong: str) -> None:
    summary = {
        m: pd.read_csv(f"{report}/tables/summary_{m}.csv").set_index(["recipe", "method"]) for m in ("best", "last")
    }
    runs = pd.read_csv(f"{report}/tables/runs.csv")
    walls = runs[runs.status == "completed"].groupby(["recipe", "method"]).wall_time_s
    wall, fastest = walls.median(), walls.min()

    print(
        f"| method | {strong}: best-val (last) | {fast}: best-val (last) | {fast} − {strong}, best-val | "
        f"{fast} − {strong}, last | wall {strong} | wall {fast} | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for method in METHODS:
        best, last = summary["best"], summary["last"]
        arms = [
            f"{best.loc[(r, method), 'mean']:.2f} ± {best.loc[(r, method), 'std']:.2f} "
            f"({last.loc[(r, method), 'mean']:.2f} ± {last.loc[(r, method), 'std']:.2f})"
            for r in (strong, fast)
        ]
        diffs = [welch_cell(t.loc[(fast, method)], t.loc[(strong, method)]) for t in (best, last)]
        times = [f"{wall[(r, method)]:.0f} s ({fastest[(r, method)]:.0f} s)" for r in (strong, fast)]
        ratios = [t[(fast, method)] / t[(strong, method)] for t in (wall, fastest)]
        ratio = f"{ratios[0]:.2f} ({ratios[1]:.2f})"
        print(f"| {method} | {' | '.join(arms)} | {' | '.join(diffs)} | {' | '.join(times)} | {ratio} |")

    print("\n| recipe | teacher − scratch, best-val | last |\n|---|---|---|")
    gaps = {m: pd.read_csv(f"{report}/tables/table5_{m}.csv") for m in ("best", "last")}
    for r in (strong, fast):
        print(f"| {r} | " + " | ".join(diff_cell(gaps[m][gaps[m].recipe == r]) for m in ("best", "last")) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report")
    parser.add_argument("--fast", default="fast")
    parser.add_argument("--strong", default="strong")
    args = parser.parse_args()
    main(args.report, args.fast, args.strong)
