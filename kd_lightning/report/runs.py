"""The runs frame (one row per ``results.json``, as :mod:`kd_lightning.report.records` reads it) and its views:
one record per condition, the order every table uses, each method's role from what its records say, one metric's
values and the pairs of two methods, which teacher each student used, and each run as a level of the data factor
a sweep varies. Imports no other report module: every analysis stands on it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from kd_lightning.run.records import find_results

#: measured complexity of a run's training data (kd_lightning/measure/complexity.py): the run's own ``data_complexity``
#: (teacher runs record it), else the sweep's cache entry for the same data (``records.fill_complexity``)
COMPLEXITY_MEASURES = ("probe_acc", "n3", "f1_inv", "intrinsic_dim", "csg")
KEYS = ["dataset", "method", "seed"]
#: runs of different recipes are different experiments: one record per recipe/dataset/method/seed
PICK_KEYS = ["recipe", *KEYS]
NO_RECIPE = "n/a"

METRICS: dict[str, str] = {
    "test_best.acc": "test accuracy at the best-validation checkpoint",
    "test_last.acc": "test accuracy at the last epoch",
}
DEFAULT_METRIC = "test_best.acc"
SPLITS: dict[str, str] = {"test_best": "best-validation checkpoint", "test_last": "last epoch"}
#: per-split fields of the fidelity/calibration table: (column in runs, short name, scale, unit)
FIDELITY_FIELDS: tuple[tuple[str, str, float, str], ...] = (
    ("acc", "acc", 100.0, "%"),
    ("nll", "nll", 1.0, "nats"),
    ("ece", "ece", 100.0, "%"),
    ("agreement", "agreement", 100.0, "%"),
    ("kl_teacher_student", "kl", 1.0, "nats/sample"),
)
#: the paper's complexity ranking, simplest first (``paper.yaml``'s datasets): the dataset order of every table
COMPLEXITY_RANK: dict[str, int] = {
    name: rank for rank, name in enumerate(OmegaConf.load(Path(__file__).with_name("paper.yaml"))["datasets"], 1)
}
#: where a report folder keeps its runs (one row per results.json, as ``records.load_sweep`` read them)
RUNS_CSV = Path("tables") / "runs.csv"
#: a report folder's verdict records (beside report.md)
CLAIMS_JSON = Path("claims.json")


def is_report_folder(folder: str | Path) -> bool:
    """A report folder (its ``tables/runs.csv``) rather than a sweep of results.json files."""
    folder = Path(folder)
    return (folder / RUNS_CSV).is_file() and not find_results(folder)


# --------------------------------------------------------------------------------------------------
# Roles, order and selection


def distils(runs: pd.DataFrame) -> pd.Series:
    """Which runs are students that distil from a teacher, from what each record says of itself (its
    identity names a teacher). Records from before run identities existed (and plain frames) do not say:
    for them the methods whose class distils (conf/method/, :mod:`kd_lightning.methods`) stand in."""
    said = runs["distils"] if "distils" in runs else pd.Series(None, index=runs.index, dtype=object)
    if all(isinstance(d, bool) for d in said):
        return said.astype(bool)
    from kd_lightning.methods import distilling_methods as conf_distilling

    legacy = runs["method"].isin(conf_distilling()) if "method" in runs else pd.Series(False, index=runs.index)
    return pd.Series([d if isinstance(d, bool) else bool(lg) for d, lg in zip(said, legacy)], index=runs.index)


def distilling_methods(runs: pd.DataFrame) -> list[str]:
    """The distilling students of a frame, in conf/method/'s order then alphabetically."""
    return ordered_methods(runs.loc[distils(runs), "method"].unique()) if len(runs) else []


def teacher_methods(runs: pd.DataFrame) -> list[str]:
    """The methods whose runs trained a teacher: their records name the teacher they published (``teacher_key``).
    A plain frame does not say: the methods of conf/method/ that publish a teacher stand in."""
    if "teacher_key" not in runs:
        from kd_lightning.methods import teacher_methods as conf_teachers

        return [m for m in conf_teachers() if "method" in runs and (runs["method"] == m).any()] or list(conf_teachers())
    return ordered_methods(runs.loc[runs["teacher_key"].map(lambda k: isinstance(k, str)), "method"].unique())


def control_methods(runs: pd.DataFrame) -> list[str]:
    """Students trained on labels alone (the controls): neither a teacher nor distilling; every KD gain is against
    them."""
    if runs.empty or "method" not in runs:
        return []
    teachers = set(teacher_methods(runs))
    rest = runs.loc[~distils(runs), "method"]
    return [m for m in ordered_methods(rest.unique()) if m not in teachers]


def student_methods(runs: pd.DataFrame) -> list[str]:
    """The controls, then the distilling students."""
    return [*control_methods(runs), *distilling_methods(runs)]


def roles(runs: pd.DataFrame) -> tuple[str, str, list[str]]:
    """(teacher, control, distilling students) of a frame, from its records: the names a comparison pairs."""
    from kd_lightning import methods

    teachers = teacher_methods(runs) or list(methods.teacher_methods())
    controls = control_methods(runs) or list(methods.control_methods())
    return teachers[0], controls[0], distilling_methods(runs)


def _dataset_key(name: Any) -> tuple[int, str]:
    """Paper's complexity order first, anything unknown after, alphabetically."""
    return (COMPLEXITY_RANK.get(name, len(COMPLEXITY_RANK) + 1), str(name))


@functools.cache
def conf_methods() -> tuple[str, ...]:
    """conf/method/'s order (:func:`kd_lightning.methods.available_methods`): the teacher, the controls, the
    distilling students; read once."""
    from kd_lightning.methods import available_methods

    return available_methods()


def _method_key(name: Any) -> tuple[int, str]:
    """conf/method/'s order, then any other method alphabetically."""
    known = conf_methods()
    return (known.index(name) if name in known else len(known), str(name))


def ordered_datasets(names: Iterable[Any]) -> list[str]:
    """Datasets simplest first (the paper's complexity ranking)."""
    return sorted({n for n in names if isinstance(n, str)}, key=_dataset_key)


def ordered_methods(names: Iterable[Any]) -> list[str]:
    """conf/method/'s order, then anything else."""
    return sorted({n for n in names if isinstance(n, str)}, key=_method_key)


def datasets_in(runs: pd.DataFrame) -> list[str]:
    return ordered_datasets(runs["dataset"].dropna().unique()) if "dataset" in runs else []


def methods_in(runs: pd.DataFrame) -> list[str]:
    return ordered_methods(runs["method"].dropna().unique()) if "method" in runs else []


def recipes_in(runs: pd.DataFrame) -> list[str]:
    """Recipe names of the sweep (``config.recipe.name``), sorted; one entry for a plain frame."""
    if "recipe" not in runs or runs.empty:
        return [NO_RECIPE] if "recipe" not in runs else []
    return sorted({str(r) if isinstance(r, str) else NO_RECIPE for r in runs["recipe"]})


def _sort_positions(frame: pd.DataFrame) -> list[int]:
    """Row positions in the order every table uses: recipe, datasets by complexity, methods in conf/method/'s
    order, seed, path; ties keep the frame's order."""
    n = len(frame)
    paths = frame["path"].astype(str).tolist() if "path" in frame else [""] * n
    recipes = frame["recipe"].astype(str).tolist() if "recipe" in frame else [""] * n
    seeds = [-1 if s is None or pd.isna(s) else int(s) for s in frame["seed"].tolist()] if "seed" in frame else [-1] * n
    keys = [
        (rc, _dataset_key(d), _method_key(m), s, p)
        for rc, d, m, s, p in zip(recipes, frame["dataset"].tolist(), frame["method"].tolist(), seeds, paths)
    ]
    return sorted(range(n), key=keys.__getitem__)


def in_table_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Datasets by complexity, methods in conf/method/'s order, then seed: the order every table uses."""
    if frame.empty:
        return frame.reset_index(drop=True)
    return frame.iloc[_sort_positions(frame)].reset_index(drop=True)


def _with_recipe(runs: pd.DataFrame) -> pd.DataFrame:
    if "recipe" in runs:
        return runs.assign(recipe=runs["recipe"].where(runs["recipe"].map(lambda r: isinstance(r, str)), NO_RECIPE))
    return runs.assign(recipe=NO_RECIPE)


def pick_runs(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One record per recipe/dataset/method/seed: completed beats anything else, then the latest finished.

    Returns (kept, superseded) so superseded duplicates can be listed rather than silently dropped.
    A plain frame without ``status`` counts as completed. The choice is made on the key columns alone and the
    whole records are taken once (a sweep's frame has ~65 columns; the report picks hundreds of times).
    """
    if runs.empty:
        return runs, runs
    runs = _with_recipe(runs)
    n = len(runs)
    status = runs["status"] if "status" in runs else pd.Series("completed", index=runs.index)
    finished = runs["finished_at"] if "finished_at" in runs else pd.Series("", index=runs.index)
    path = runs["path"] if "path" in runs else pd.Series("", index=runs.index)
    rank = pd.DataFrame(
        {
            "_completed": (status == "completed").astype(int).to_numpy(),
            "_finished": finished.fillna("").astype(str).to_numpy(),
            "_path": path.fillna("").astype(str).to_numpy(),
            "_position": np.arange(n),
        }
    ).sort_values(["_completed", "_finished", "_path"], ascending=False, kind="stable")
    order = rank["_position"].to_numpy()
    sort_columns = [c for c in dict.fromkeys([*PICK_KEYS, "path"]) if c in runs]
    ranked = runs[sort_columns].iloc[order]
    keyed = ranked[KEYS].notna().all(axis=1).to_numpy()
    duplicated = ranked[keyed].duplicated(subset=PICK_KEYS, keep="first").to_numpy()
    kept = np.concatenate([order[keyed][~duplicated], order[~keyed]])
    superseded = order[keyed][duplicated]

    def take(positions: np.ndarray) -> pd.DataFrame:
        if not len(positions):
            return runs.iloc[0:0].reset_index(drop=True)
        positions = positions[_sort_positions(runs[sort_columns].iloc[positions])]
        whole = len(positions) == n and (positions == np.arange(n)).all()
        return (runs if whole else runs.iloc[positions]).reset_index(drop=True)

    return take(kept), take(superseded)


def completed_runs(runs: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """Completed runs (one per recipe/dataset/method/seed) that carry ``metric`` when one is named."""
    kept, _ = pick_runs(runs)
    if kept.empty:
        return kept
    keep = (kept["status"] == "completed").to_numpy(bool) if "status" in kept else np.ones(len(kept), bool)
    if metric is not None:
        keep = keep & (pd.to_numeric(kept[metric], errors="coerce").notna().to_numpy() if metric in kept else False)
    return kept if keep.all() else kept[keep].reset_index(drop=True)


def metric_values(runs: pd.DataFrame, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """Completed runs as a plain frame: recipe, dataset, method, seed, value (``metric`` in percent).

    Accepts the frame of :func:`load_sweep` or any frame with columns dataset, method, seed and the
    metric (as a fraction), which is what the claim functions need.
    """
    done = completed_runs(runs, metric)
    cols = ["recipe", "dataset", "method", "seed", "value"]
    if done.empty:
        return pd.DataFrame(columns=cols)
    out = done[["recipe", "dataset", "method", "seed"]].copy()
    out["seed"] = out["seed"].astype(int)
    out["value"] = pd.to_numeric(done[metric], errors="coerce").astype(float).to_numpy() * 100.0
    return out[cols].reset_index(drop=True)


def for_recipe(runs: pd.DataFrame, recipe: str) -> pd.DataFrame:
    """The runs of one recipe (a frame without a recipe column is one recipe)."""
    runs = _with_recipe(runs)
    return runs[runs["recipe"] == recipe]


def per_recipe(runs: pd.DataFrame, build, *args: Any, **kwargs: Any) -> pd.DataFrame:
    """``build(runs_of_one_recipe, ...)`` per recipe, side by side with a leading ``recipe`` column when the
    sweep holds more than one recipe (runs of different recipes are never pooled)."""
    recipes = recipes_in(runs)
    if len(recipes) <= 1:
        return build(runs, *args, **kwargs)
    frames = [build(for_recipe(runs, r), *args, **kwargs) for r in recipes]
    frames = [
        f.drop(columns="recipe", errors="ignore").assign(recipe=r) for f, r in zip(frames, recipes) if not f.empty
    ]
    if not frames:
        return build(runs.iloc[0:0], *args, **kwargs)
    out = pd.concat(frames, ignore_index=True)
    return out[["recipe", *[c for c in out.columns if c != "recipe"]]]


# --------------------------------------------------------------------------------------------------
# One metric: its checkpoint, the runs' differences from the paper's protocol, two methods paired by seed


def split_of(metric: str) -> str:
    """``test_last`` for ``test_last.acc``: the checkpoint every other column of a row must come from."""
    return metric.split(".", 1)[0]


def checkpoint(metric: str) -> str:
    """``last`` for ``test_last.acc``: the checkpoint's short name in file names and table keys."""
    return split_of(metric).removeprefix("test_")


def differences_label(arms: pd.DataFrame) -> str:
    """How the runs of a table row differ from the paper's protocol ("paper-configured" when they do not).

    A difference only some methods' runs have is prefixed with them (``teacher: trainer.max_epochs=3
    (paper 20)``), so per-method values such as epochs say whose they are."""
    if arms.empty or "paper_differences" not in arms:
        return "n/a"
    methods = arms["method"].astype(str) if "method" in arms else pd.Series("", index=arms.index)
    owners: dict[str, list[str]] = {}
    for method, text in zip(methods, arms["paper_differences"].fillna("")):
        for part in str(text).split("; "):
            if part and method not in owners.setdefault(part, []):
                owners[part].append(method)
    every = list(dict.fromkeys(methods))
    labels = [
        part if len(every) < 2 or set(who) == set(every) else f"{'/'.join(who)}: {part}" for part, who in owners.items()
    ]
    return "; ".join(labels) if labels else "paper-configured"


def wide_values(values: pd.DataFrame) -> pd.DataFrame:
    """A plain frame (dataset, method, seed, value) as (dataset, seed) x method; already wide frames pass through."""
    if "method" not in values:
        return values
    if values.empty:
        return pd.DataFrame(index=pd.MultiIndex.from_arrays([[], []], names=["dataset", "seed"]))
    return (
        values.drop_duplicates(["dataset", "seed", "method"])
        .set_index(["dataset", "seed", "method"])["value"]
        .unstack("method")
    )


def paired_arms(values: pd.DataFrame, treatment: str, control: str) -> dict[str, pd.DataFrame]:
    """Per dataset (simplest first): the two arms' values by seed, float columns ``treatment`` and ``control``, on
    the seeds present in both arms.

    ``values``: a plain frame (dataset, method, seed, value) or its :func:`wide_values` form.
    """
    wide = wide_values(values)
    datasets = ordered_datasets(wide.index.get_level_values(0).unique()) if len(wide) else []
    if treatment not in wide or control not in wide:
        return {d: pd.DataFrame(columns=["treatment", "control"], dtype=float) for d in datasets}
    arms = np.column_stack([wide[arm].to_numpy(dtype=float, na_value=np.nan) for arm in (treatment, control)])
    both = ~np.isnan(arms).any(axis=1)
    names = wide.index.get_level_values(0).to_numpy()
    seeds = wide.index.get_level_values(1).to_numpy()
    out = {}
    for d in datasets:  # numpy, not a frame per dataset: claims simulations pair thousands of sweeps
        rows = np.flatnonzero(both & (names == d))
        rows = rows[np.argsort(seeds[rows].astype(int), kind="stable")]
        out[d] = pd.DataFrame(arms[rows], index=pd.Index(seeds[rows].astype(int)), columns=["treatment", "control"])
    return out


def paired_values(values: pd.DataFrame, treatment: str, control: str) -> dict[str, pd.Series]:
    """Per dataset (simplest first): ``treatment - control`` by seed (index = seeds present in both arms)."""
    return {d: arms["treatment"] - arms["control"] for d, arms in paired_arms(values, treatment, control).items()}


# --------------------------------------------------------------------------------------------------
# Inventory


def run_counts(runs: pd.DataFrame) -> pd.DataFrame:
    """Completed runs per dataset x method out of the seeds seen anywhere in the sweep (per recipe)."""

    def build(sub: pd.DataFrame) -> pd.DataFrame:
        seeds = sub["seed"].dropna().unique()
        done = completed_runs(sub)
        table = pd.DataFrame(index=pd.Index(datasets_in(sub), name="dataset"))
        for method in methods_in(sub):
            counts = (
                done[done["method"] == method].groupby("dataset").size() if not done.empty else pd.Series(dtype=int)
            )
            table[method] = [f"{int(counts.get(d, 0))}/{len(seeds)}" for d in table.index]
        return table.reset_index()

    return per_recipe(runs, build)


# --------------------------------------------------------------------------------------------------
# Teacher provenance: which teacher each distilled student learnt from, and whether it is the sweep's teacher.
#
# Teacher runs record ``teacher_key`` (registry key, e.g. ``resnet50-1a2b3c4d``) and ``weights_sha256`` (the digest of
# the weights they registered); distilling students record ``teacher = {key, checkpoint, test_acc, run_dir, stale,
# source, weights_sha256}``. A student is marked
#
# - ``teacher_match = "no"`` when its ``teacher.key`` differs from the ``teacher_key`` of the sweep's teacher
#   run of the same recipe, dataset and seed (the teacher the "vs teacher" rows compare against), or the keys agree
#   but the weights do not (the teacher was retrained with ``force=true`` between the two runs);
# - ``"yes"`` when they agree; ``"n/a"`` when either key is unknown or the sweep holds no such teacher run (weights
#   are compared only where both runs recorded them).
#
# A ``stale`` teacher was trained by another code commit than the student that used it.

PROVENANCE_COLUMNS = [
    *PICK_KEYS,
    "teacher.key",
    "sweep_teacher_key",
    "teacher_match",
    "teacher.weights_sha256",
    "sweep_teacher_weights_sha256",
    "teacher.stale",
    "teacher.source",
    "teacher.test_acc",
    "teacher.checkpoint",
    "teacher.run_dir",
    "path",
]


def teacher_check(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per completed distilling run: the teacher it used against the sweep's teacher run."""
    if runs.empty or "teacher.key" not in runs:
        return pd.DataFrame(columns=PROVENANCE_COLUMNS)
    done = completed_runs(runs)
    if done.empty:
        return pd.DataFrame(columns=PROVENANCE_COLUMNS)
    teacher_rows = done[done["method"].isin(teacher_methods(done))].set_index(["recipe", "dataset", "seed"])
    teachers = teacher_rows["teacher_key"]
    weights = teacher_rows["weights_sha256"] if "weights_sha256" in teacher_rows else pd.Series(None, teachers.index)
    students = done[distils(done)].copy()
    rows = []
    for row in students.to_dict("records"):
        key = (row["recipe"], row["dataset"], row["seed"])
        sweep_key, sweep_weights = (teachers.get(key), weights.get(key)) if key in teachers.index else (None, None)
        used, used_weights = row.get("teacher.key"), row.get("teacher.weights_sha256")
        known = isinstance(used, str) and isinstance(sweep_key, str)
        same_weights = (
            not (isinstance(used_weights, str) and isinstance(sweep_weights, str)) or used_weights == sweep_weights
        )
        match = ("yes" if used == sweep_key and same_weights else "no") if known else "n/a"
        rows.append(
            {
                **{c: row.get(c) for c in PROVENANCE_COLUMNS},
                "sweep_teacher_key": sweep_key,
                "sweep_teacher_weights_sha256": sweep_weights if isinstance(sweep_weights, str) else None,
                "teacher_match": match,
            }
        )
    out = pd.DataFrame(rows, columns=PROVENANCE_COLUMNS)
    out["seed"] = out["seed"].astype("Int64")
    return out


# --------------------------------------------------------------------------------------------------
# Data-factor levels (issue 12): a factor sweep (``experiment=factor_*``) trains every method at several levels of
# one data factor (``kd_lightning/datasets/factors.py``), everything else at the recipe's values. Runs without data
# factors are the factor's default level, so a plain sweep of the same recipe joins in; ``label_noise`` with
# ``noise_kind=pairs`` is its own factor. A student is paired with the control run of the same level, seed and
# data draw (``factor_seed``), never across conditions.

PAIRS_NOISE = "label_noise (pairs)"
#: +1: a larger level is harder data; -1: a smaller level is harder
DIFFICULTY_SIGN = {
    "train_fraction": -1,
    "label_noise": +1,
    PAIRS_NOISE: +1,
    "classes": +1,
    "resolution": -1,
    "grayscale": +1,
    "imbalance": +1,
}
#: a level's position on its factor's axis, larger = harder (the x of a slope; docs/factors.md): halvings of the
#: training set (log2 of the reduction 1/f), doublings of the imbalance ratio (log2 ρ), tenths of the label-noise
#: rate (10 η), doublings of the class count (log2 k), halvings of the resolution (−log2 r: the shift by the
#: native size cancels in a slope), and colour removed (0 / 1)
LEVEL_POSITION = {
    "train_fraction": lambda f: -np.log2(f),
    "imbalance": np.log2,
    "label_noise": lambda eta: 10 * eta,
    PAIRS_NOISE: lambda eta: 10 * eta,
    "classes": np.log2,
    "resolution": lambda r: -np.log2(r),
    "grayscale": lambda g: 1.0 * g,
}
#: factors whose levels are two fixed conditions: a paired contrast, not a trend
TWO_LEVEL_FACTORS = frozenset({"grayscale"})
#: factors that draw at random (from ``factor_seed``): their data draw is part of a level's condition
RANDOM_FACTORS = frozenset({"train_fraction", "label_noise", PAIRS_NOISE, "imbalance"})
#: the level of a run without this factor (None: read from the run, see :func:`_level`)
DEFAULT_LEVEL = {
    "train_fraction": 1.0,
    "label_noise": 0.0,
    PAIRS_NOISE: 0.0,
    "classes": None,
    "resolution": None,
    "grayscale": 0.0,
    "imbalance": 1.0,
}
POINT_COLUMNS = [
    "dataset",
    "base_recipe",
    "factor",
    "level",
    "method",
    "distils",
    "seed",
    "factor_seed",
    "value",
    "agreement",
    "soft_label_entropy",
    "teacher_match",
    *COMPLEXITY_MEASURES,
]


def factor_of(factors: dict[str, Any]) -> list[str]:
    """The factors a run's data-factor identity turns on (``label_noise`` with pairs noise is its own)."""
    active = [k for k in factors if k in DIFFICULTY_SIGN]
    if factors.get("noise_kind") == "pairs":
        active = [PAIRS_NOISE if k == "label_noise" else k for k in active]
    return active


def _level(factor: str, factors: dict[str, Any], row: pd.Series) -> float | None:
    key = "label_noise" if factor == PAIRS_NOISE else factor
    value = factors.get(key)
    if value is None:
        if factor == "resolution":
            return float(row["image_size"]) if pd.notna(row.get("image_size")) else None
        if factor == "classes":  # every class: the dataset's own count
            return float(row["num_classes"]) if pd.notna(row.get("num_classes")) else None
        return DEFAULT_LEVEL[factor]
    if factor == "classes":
        return float(len(value))
    return float(value)


def factor_points(runs: pd.DataFrame, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """One row per completed run and factor it can be a level of: dataset, base_recipe, factor, level,
    method, seed, factor_seed, value (pp), agreement and soft-label entropy (same checkpoint as
    ``metric``), teacher_match (students: is their teacher the sweep's teacher row?), complexity
    measures. A run with factors {} is a level of every factor (its default); a run with one factor
    (besides its seed) is a level of that factor only."""
    if "factors" not in runs or runs.empty:
        return pd.DataFrame(columns=POINT_COLUMNS)
    done = completed_runs(runs, metric)
    done = done.assign(distils=done["method"].isin(distilling_methods(done)))
    split = split_of(metric)
    checks = teacher_check(runs)
    mismatch = {
        (r["recipe"], r["dataset"], r["method"], int(r["seed"])): r["teacher_match"] for r in checks.to_dict("records")
    }
    rows = []
    for _, row in done.iterrows():
        factors = row["factors"] if isinstance(row["factors"], dict) else {}
        active = factor_of(factors)
        for factor in [active[0]] if len(active) == 1 else [] if active else list(DIFFICULTY_SIGN):
            level = _level(factor, factors, row)
            if level is None:
                continue
            rows.append(
                {
                    "dataset": row["dataset"],
                    "base_recipe": row.get("base_recipe"),
                    "factor": factor,
                    "level": level,
                    "method": row["method"],
                    "distils": row["distils"],
                    "seed": int(row["seed"]),
                    "factor_seed": factors.get("factor_seed", -1),
                    "value": 100.0 * float(row[metric]),
                    "agreement": row.get(f"{split}.agreement"),
                    "soft_label_entropy": row.get(f"{split}.soft_label_entropy"),
                    "teacher_match": mismatch.get((row["recipe"], row["dataset"], row["method"], int(row["seed"])), ""),
                    **{m: row.get(f"complexity.{m}") for m in COMPLEXITY_MEASURES},
                }
            )
    points = pd.DataFrame(rows, columns=POINT_COLUMNS)
    for col in ("level", "value", "agreement", "soft_label_entropy", *COMPLEXITY_MEASURES):
        points[col] = pd.to_numeric(points[col], errors="coerce")
    if points.empty:
        return points
    # keep only factors that actually vary (a plain sweep alone is no factor study)
    varied = points.groupby(["dataset", "base_recipe", "factor"])["level"].transform("nunique") >= 2
    return points[varied].reset_index(drop=True)


def paired_by_level(sub: pd.DataFrame, treatment: str, control: str) -> pd.DataFrame:
    """Per (level, seed, factor_seed): treatment − control in pp, where both ran on that condition.

    A run keyed by these is unique once :func:`pick_runs` has kept one record
    per condition (duplicates are listed in the report's problems), so nothing is averaged away here."""
    keys = ["level", "seed", "factor_seed"]
    arms = sub[sub["method"].isin([treatment, control])].drop_duplicates([*keys, "method"])
    wide = arms.pivot(index=keys, columns="method", values="value") if not arms.empty else pd.DataFrame()
    if treatment not in wide or control not in wide:
        return pd.DataFrame(columns=[*keys, "diff"])
    diff = (wide[treatment] - wide[control]).dropna()
    return diff.rename("diff").reset_index()


def students_of(points: pd.DataFrame) -> list[str]:
    """The distilling students a factor's points hold (each is compared with the control)."""
    return distilling_methods(points) if len(points) else []


def level_positions(factor: str, levels: Any) -> np.ndarray:
    """Each level's fixed position on the factor's axis (:data:`LEVEL_POSITION`), larger = harder.

    Fixed by the factor's definition, never by the levels a sweep happens to hold: a slope is per unit of
    this axis, and adding or dropping a level moves no other level."""
    return LEVEL_POSITION[factor](np.asarray(levels, dtype=float))


def seeds_draw_their_own(points: pd.DataFrame, factor: str) -> bool:
    """True when the seed is the unit: the factor draws at random and every drawn run's data draw is its own
    seed's (``factor_seed = seed``), so each seed is one chain of draws across the levels."""
    return draw_design(points, factor) == "own"


def draw_design(points: pd.DataFrame, factor: str) -> str:
    """What the seeds at one level replicate: ``fixed`` transformations (no draw), ``none`` drawn at random,
    each seed its ``own`` draw, one ``shared`` draw per level, or ``mixed``."""
    if factor not in RANDOM_FACTORS:
        return "fixed"
    drawn = points[points["factor_seed"].astype(int) >= 0]
    if drawn.empty:
        return "none"
    if (drawn["factor_seed"].astype(int) == drawn["seed"].astype(int)).all():
        return "own"
    shared = drawn.groupby("level").apply(
        lambda g: g["factor_seed"].nunique() == 1 and g["seed"].nunique() > 1, include_groups=False
    )
    return "shared" if shared.all() else "mixed"
