"""docs/findings.md's per-level tables from a report folder's CSVs (numbers in, markdown out).

    python docs/findings_tables.py docs/reports/usps_train_fraction_fast

Arm cells are the report's mean with a 95% t-interval from its sd and n (summary_*.csv); differences are the
report's paired rows (table5-7_*.csv); gap closed, agreement, complexity, wall times and the factor claim come
from gap_closed_*, fidelity_*, factors, runs and claims.csv.
"""

from __future__ import annotations

import math
import sys

import pandas as pd

from kd_lightning.report.stats import t_interval

METHODS = ("teacher", "scratch", "rkd", "ikd")
USPS_TRAIN = 7291


def level(recipe: str) -> float:
    return float(recipe.split("train_fraction=")[1].split(" ")[0]) if "train_fraction=" in recipe else 1.0


def arm_cell(mean: float, sd: float, n: int) -> str:
    low, high = t_interval(mean, sd / math.sqrt(n), n, 0.95)
    if math.isnan(low):
        return f"{mean:.2f} (n {n})"
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def diff_cell(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "n/a"
    r = rows.iloc[0]
    if r.n_pairs < 2 or pd.isna(r.ci_low):
        return f"{r.diff_mean:+.2f} ({int(r.n_pairs)} pair)"
    return f"{r.diff_mean:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]"


def per_level(table: pd.DataFrame, key: str, value: str, keys: tuple[str, ...], fmt: str) -> str:
    rows = table.set_index(key)
    return " / ".join(
        fmt.format(rows.loc[k, value]) if k in rows.index and pd.notna(rows.loc[k, value]) else "n/a" for k in keys
    )


def main(report: str) -> None:
    def read(name: str) -> pd.DataFrame:
        frame = pd.read_csv(f"{report}/tables/{name}.csv")
        return frame if "level" in frame else frame.assign(level=frame.recipe.map(level))

    for metric in ("best", "last"):
        summary, gap, fidelity = read(f"summary_{metric}"), read(f"gap_closed_{metric}"), read(f"fidelity_{metric}")
        teacher_gap, rkd, ikd = (read(f"table{k}_{metric}") for k in (5, 6, 7))
        print(f"\n### {metric}\n")
        print(
            "| train_fraction | images | teacher | scratch | RKD | IKD | RKD − scratch | IKD − scratch | "
            "teacher − scratch | gap closed RKD / IKD | agreement RKD / IKD / scratch |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for lv in sorted(summary.level.unique()):
            arms = summary[summary.level == lv].set_index("method")
            cells = [
                arm_cell(arms.loc[m, "mean"], arms.loc[m, "std"], int(arms.loc[m, "n"])) if m in arms.index else "n/a"
                for m in METHODS
            ]
            diffs = [diff_cell(t[t.level == lv]) for t in (rkd, ikd, teacher_gap)]
            closed = per_level(gap[gap.level == lv], "student", "gap_closed", ("rkd", "ikd"), "{:.0%}")
            agree = per_level(
                fidelity[fidelity.level == lv], "method", "agreement_mean", ("rkd", "ikd", "scratch"), "{:.1f}"
            )
            print(f"| {lv:g} | {round(lv * USPS_TRAIN)} | " + " | ".join([*cells, *diffs, closed, agree]) + " |")

    factors = read("factors")
    print("\n| train_fraction | probe acc | N3 | 1/(1+F1) | ID | CSG | teacher H(T=4) |\n|---|---|---|---|---|---|---|")
    for r in factors[factors.student == "rkd"].sort_values("level").to_dict("records"):
        print(
            f"| {r['level']:g} | {r['complexity.probe_acc']:.3f} | {r['complexity.n3']:.3f} | "
            f"{r['complexity.f1_inv']:.3f} | {r['complexity.intrinsic_dim']:.1f} | {r['complexity.csg']:.2f} | "
            f"{r['teacher_soft_label_entropy']:.3f} |"
        )

    runs = read("runs")
    runs = runs[runs.status == "completed"]
    print("\n| train_fraction | optimizer steps | teacher | scratch | RKD | IKD | all four (sum of medians) |")
    print("|---|---|---|---|---|---|---|")
    for lv in sorted(runs.level.unique()):
        sub = runs[runs.level == lv]
        median = {m: sub[sub.method == m].wall_time_s.median() for m in METHODS}
        cells = [f"{median[m]:.0f} s ({(sub.method == m).sum()})" if pd.notna(median[m]) else "n/a" for m in METHODS]
        steps = ",".join(str(int(x)) for x in sorted(sub.optimizer_steps.dropna().unique()))
        total = sum(v for v in median.values() if pd.notna(v)) / 60
        print(f"| {lv:g} | {steps} | " + " | ".join(cells) + f" | {total:.1f} min |")

    claims = pd.read_csv(f"{report}/tables/claims.csv")
    for r in claims[claims.number >= 101].to_dict("records"):
        print(f"\nClaim {r['number']} ({r['recipe']}): {r['verdict']}\n{r['test']}\n{r['evidence']}")


if __name__ == "__main__":
    main(sys.argv[1])
