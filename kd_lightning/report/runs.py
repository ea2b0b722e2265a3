"""Finding and reading a sweep's ``results.json`` files into one DataFrame, and picking the runs to use.

One row per ``results.json`` (every status), so nothing a run left behind goes unreported. Accuracies
and the other per-run metrics stay as the record holds them (fractions, nats); tables convert to
percent. Fields a record does not carry (older records, or a teacher-less student's fidelity) are NaN
and show as ``n/a``.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from kd_lightning.report.paper import COMPLEXITY_RANK, paper_differences, paper_epochs
from kd_lightning.run.records import RESULTS_FILE
from kd_lightning.teacher_kind import condition_label

#: measured complexity of a run's training data (kd_lightning/measure/complexity.py): the run's own ``data_complexity``
#: (teacher runs record it), else the sweep's cache entry for the same data (:func:`fill_complexity`)
COMPLEXITY_MEASURES = ("probe_acc", "n3", "f1_inv", "intrinsic_dim", "csg")
SKIP_DIRS = frozenset({"archive"})
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

#: scalar per-split fields of results.json: accuracy, macro-F1, top-5 (CIFAR100), NLL (nats), ECE
#: (fraction), teacher-student top-1 agreement (fraction) and KL(teacher || student) (nats/sample, T=1)
SPLIT_FIELDS = ("acc", "f1", "top5", "nll", "ece", "agreement", "kl_teacher_student", "soft_label_entropy")
TEACHER_FIELDS = ("key", "checkpoint", "test_acc", "run_dir", "stale", "source")
EFFICIENCY_FIELDS = tuple(
    "params flops_per_image checkpoint_mb latency_ms_b1 latency_ms_b1_p90 latency_threads throughput_b64_img_s".split()
)

RUN_COLUMNS = [
    "dataset",
    "method",
    "seed",
    "status",
    "path",
    "recipe",
    "paper_comparable",
    "paper_differences",
    "max_epochs",
    "paper_epochs",
    "limit_train_batches",
    "epochs",
    "min_steps",
    "optimizer_steps",
    "best_epoch",
    "best_val_acc",
    "wall_time_s",
    "started_at",
    "finished_at",
    "error_type",
    "error_message",
    *(f"{split}.{field}" for split in SPLITS for field in SPLIT_FIELDS),
    "test_best.per_class_f1",
    "test_last.per_class_f1",
    "teacher_key",
    "teacher_kind",
    "teacher.members_mean_acc",
    *(f"teacher.{f}" for f in TEACHER_FIELDS),
    *(f"efficiency.{f}" for f in EFFICIENCY_FIELDS),
    "base_recipe",
    "factors",
    "image_size",
    "num_classes",
    "distils",
    *(f"complexity.{m}" for m in COMPLEXITY_MEASURES),
]
_OBJECT_COLUMNS = ("factors", "distils", "max_epochs", "paper_epochs", "limit_train_batches", "teacher.stale")


# --------------------------------------------------------------------------------------------------
# Reading


def find_results(sweep: str | Path) -> list[Path]:
    """Every results.json under the sweep, except anything kept under an ``archive/`` folder."""
    root = Path(sweep)
    found = (p for p in root.rglob(RESULTS_FILE) if not SKIP_DIRS.intersection(p.relative_to(root).parts[:-1]))
    return sorted(found)


def _keys_from_path(path: Path) -> dict[str, Any]:
    """dataset/method/seed from ``<dataset>/<method>/seed<N>/results.json``, for damaged records."""
    match = re.fullmatch(r"seed(\d+)", path.parent.name)
    if not match or len(path.parents) < 3:
        return {"dataset": None, "method": None, "seed": None}
    return {"dataset": path.parents[2].name, "method": path.parents[1].name, "seed": int(match.group(1))}


def _float(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _metric_fields(record: dict[str, Any]) -> dict[str, Any]:
    """Per split: the scalar metrics and per-class F1; the teacher the run used; its measured costs and the
    complexity of its data."""
    row: dict[str, Any] = {}
    for split in SPLITS:
        metrics = _dict(record.get(split))
        for field in SPLIT_FIELDS:
            row[f"{split}.{field}"] = _float(metrics.get(field))
        per_class = metrics.get("per_class_f1")
        row[f"{split}.per_class_f1"] = [float(v) for v in per_class] if isinstance(per_class, list) else None
    teacher = _dict(record.get("teacher"))
    for field in TEACHER_FIELDS:
        value = teacher.get(field)
        row[f"teacher.{field}"] = _float(value) if field == "test_acc" else value
    eff = _dict(record.get("efficiency"))
    latency = _dict(eff.get("latency_ms_b1"))
    for field in ("params", "flops_per_image", "checkpoint_mb", "throughput_b64_img_s"):
        row[f"efficiency.{field}"] = _float(eff.get(field))
    for field, key in (("latency_ms_b1", "median"), ("latency_ms_b1_p90", "p90"), ("latency_threads", "threads")):
        row[f"efficiency.{field}"] = _float(latency.get(key))
    measures = _dict(_dict(record.get("data_complexity")).get("measures"))
    row.update({f"complexity.{m}": _float(measures.get(m)) for m in COMPLEXITY_MEASURES})
    return row


def _training_fields(record: dict[str, Any], trainer: dict[str, Any]) -> dict[str, Any]:
    """How the run trained and ended: epochs, budget, best epoch, wall time, error."""
    error, budget = _dict(record.get("error")), _dict(record.get("budget"))
    return {
        "max_epochs": trainer.get("max_epochs"),
        "limit_train_batches": trainer.get("limit_train_batches"),
        "epochs": record.get("epochs"),
        # the training budget (kd_lightning/run/budget.py): the floor on optimizer steps and the steps planned
        "min_steps": budget.get("min_steps"),
        "optimizer_steps": budget.get("optimizer_steps"),
        "best_epoch": record.get("best_epoch"),
        "best_val_acc": _float(record.get("best_val_acc")),
        "wall_time_s": _float(record.get("wall_time_s")),
        "started_at": record.get("started_at"),
        "finished_at": record.get("finished_at"),
        "error_type": error.get("type"),
        "error_message": error.get("message"),
    }


def _run_row(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Flatten one results.json into the columns the tables need."""
    inferred = _keys_from_path(path)
    config = _dict(record.get("config"))
    method = record.get("method") or inferred["method"]
    seed = record.get("seed", inferred["seed"])
    differences = paper_differences(config, method)
    # a failed or interrupted run knows its data factors too: they are written when the run starts
    factors = _dict(_dict(record.get("data_factors")).get("identity")) or _dict(
        _dict(_dict(record.get("identity")).get("dataset")).get("factors")
    )
    if factors:
        differences.append(f"data factors {factor_label(factors)}")
    kind = _teacher_kind(config)
    recipe_name = _dict(config.get("recipe")).get("name") or record.get("recipe") or NO_RECIPE
    base_recipe, condition = condition_labels(recipe_name, kind, factors, seed)
    paths = _dict(config.get("paths"))
    return {
        "dataset": record.get("dataset") or inferred["dataset"],
        "method": method,
        "seed": int(seed) if seed is not None else None,
        "status": record.get("status", "unknown"),
        "path": str(path.parent),
        # each data-factor level is its own condition, never pooled with another (like a recipe)
        "recipe": condition,
        "_recipe_name": recipe_name,
        "base_recipe": base_recipe,
        "factors": factors,
        "image_size": _dict(config.get("dataset")).get("image_size"),
        "num_classes": _dict(config.get("dataset")).get("num_classes"),
        # a distilling student's identity names its teacher (kd_lightning/run/identity.py); a run that registered a
        # teacher (teacher_key: the teacher rows, an ensemble's included) never distils; None: not recorded
        "distils": ("teacher" in record["identity"] and not isinstance(record.get("teacher_key"), str))
        if isinstance(record.get("identity"), dict)
        else None,
        "paper_comparable": not differences,
        "paper_differences": "; ".join(differences),
        "paper_epochs": paper_epochs(method),
        **_training_fields(record, _dict(config.get("trainer"))),
        "teacher_key": record.get("teacher_key") if isinstance(record.get("teacher_key"), str) else None,
        "teacher_kind": kind,
        # an ensemble teacher's members' mean accuracy: on its own row, and on each of its students' rows
        "teacher.members_mean_acc": _float(
            _dict(record.get("ensemble")).get("members_mean_acc", _dict(record.get("teacher")).get("members_mean_acc"))
        ),
        **_metric_fields(record),
        # where to look up the complexity of this run's data when the run did not record it (fill_complexity)
        "_data_identity": _dict(_dict(record.get("identity")).get("dataset")) or None,
        "_complexity_dir": paths.get("complexity_dir")
        or (f"{paths['output_dir']}/complexity" if paths.get("output_dir") else None),
    }


def _teacher_kind(config: dict[str, Any]) -> str | None:
    """The run's teacher kind as a condition label (:func:`kd_lightning.teacher_kind.condition_label`); None for
    the paper's design and for records from before teacher kinds existed."""
    teacher = _dict(config.get("teacher"))
    arch = _dict(config.get("teacher_model")).get("arch")
    if not teacher or not arch:
        return None
    variant = _dict(teacher.get("variant")).get("name")
    return condition_label(int(teacher.get("members") or 0), str(arch), str(teacher.get("data") or "same"), variant)


#: a control row's fields that compare it with its own teacher: void in a condition of another teacher kind
_FIDELITY_FIELDS = tuple(f"{split}.{f}" for split in SPLITS for f in ("agreement", "kl_teacher_student"))


def condition_labels(recipe: str, kind: str | None, factors: dict[str, Any], seed: Any) -> tuple[str, str]:
    """(base, condition): ``fast · teacher <kind>`` and the same ``· <factor levels>``. Each recipe, teacher kind and
    data-factor level is its own condition, never pooled with another (like a recipe)."""
    base = f"{recipe} · teacher {kind}" if kind else recipe
    return base, (f"{base} · {factor_label(factors, seed)}" if factors else base)


def share_controls(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Students that do not distil (the controls) belong to every teacher condition of their recipe, data and seed:
    one run is the control of each teacher kind it is compared with. A copy in another kind's condition has no
    fidelity numbers (they were measured against its own run's teacher)."""

    def group(row: dict[str, Any]) -> tuple[Any, ...]:
        factors = json.dumps(row.get("factors") or {}, sort_keys=True, default=str)
        return row.get("_recipe_name", row.get("base_recipe")), row.get("dataset"), factors

    def is_control(row: dict[str, Any]) -> bool:
        return row.get("distils") is False and not row.get("teacher_key") and row.get("status") != "unreadable"

    kinds: dict[tuple[Any, ...], set[str | None]] = {}
    for row in rows:
        if not is_control(row):
            kinds.setdefault(group(row), set()).add(row.get("teacher_kind"))
    out = []
    for row in rows:
        if not is_control(row):
            out.append(row)
            continue
        for kind in sorted(kinds.get(group(row)) or {row.get("teacher_kind")}, key=lambda k: k or ""):
            base, condition = condition_labels(group(row)[0], kind, row.get("factors") or {}, row.get("seed"))
            copy = {**row, "teacher_kind": kind, "base_recipe": base, "recipe": condition}
            if kind != row.get("teacher_kind"):
                copy.update({field: math.nan for field in _FIDELITY_FIELDS})
            out.append(copy)
    return out


def _cached_complexity(folders: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """Measures of every ``complexity-*.json`` in ``folders``, by their data identity (canonical JSON)."""
    found: dict[str, dict[str, Any]] = {}
    for folder in folders:
        for path in sorted(folder.glob("complexity-*.json")) if folder.is_dir() else ():
            try:
                entry = json.loads(path.read_text())
                found.setdefault(json.dumps(entry["identity"], sort_keys=True), _dict(entry["measures"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a damaged cache entry is just not used
    return found


def fill_complexity(rows: list[dict[str, Any]], sweep: Path) -> None:
    """Give every row without measured complexity the cached measures of its data configuration.

    Teacher runs record the complexity of their data and write it to ``paths.complexity_dir``; students,
    and teachers trained before the measures existed, get the entry whose data identity
    (:func:`kd_lightning.run.identity.data_identity`) equals theirs, from the folder their config names or a
    ``complexity/`` folder in the sweep or beside it (``python -m kd_lightning.measure_complexity``
    fills one without training)."""
    missing = [
        r
        for r in rows
        if r.get("_data_identity") and all(math.isnan(r[f"complexity.{m}"]) for m in COMPLEXITY_MEASURES)
    ]
    if not missing:
        return
    from kd_lightning.run.identity import data_identity

    folders = dict.fromkeys(
        [
            sweep / "complexity",
            sweep.parent / "complexity",
            *(Path(r["_complexity_dir"]) for r in missing if r.get("_complexity_dir")),
        ]
    )
    cached = _cached_complexity(folders)
    for row in missing:
        measures = cached.get(json.dumps(data_identity(row["_data_identity"]), sort_keys=True))
        if measures:
            row.update({f"complexity.{m}": _float(measures.get(m)) for m in COMPLEXITY_MEASURES})


def factor_label(factors: dict[str, Any], seed: Any = None) -> str:
    """``train_fraction=0.1`` for a run's data-factor identity: every key that makes it another condition.

    ``factor_seed`` is left out when it is the run's own seed (the default: each seed draws its own
    subsample and flips), and shown otherwise, so runs of one seed on different data draws are never
    taken for the same condition; ``noise_kind`` is left out when it is the default (symmetric)."""
    shown = {
        k: v
        for k, v in factors.items()
        if not (k == "factor_seed" and (seed is None or pd.isna(seed) or int(v) == int(seed)))
        and not (k == "noise_kind" and v == "symmetric")
    }
    return ",".join(f"{k}={v}" for k, v in shown.items())


def load_sweep(sweep: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """One row per results.json (every status) under one sweep folder or several (e.g. one per recipe),
    so nothing a run left behind goes unreported.

    Unreadable files become rows with status ``unreadable`` and keys taken from their path.
    """
    folders = [Path(sweep)] if isinstance(sweep, (str, Path)) else [Path(s) for s in sweep]
    rows = []
    for path in (p for folder in folders for p in find_results(folder)):
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            rows.append(_run_row(path, record))
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            rows.append(
                {
                    **_keys_from_path(path),
                    "status": "unreadable",
                    "path": str(path.parent),
                    "recipe": NO_RECIPE,
                    "paper_comparable": False,
                    "paper_differences": "record unreadable",
                    "error_type": type(exc).__name__,
                    "error_message": str(exc),
                }
            )
    for folder in folders:
        fill_complexity(rows, folder)
    rows = share_controls(rows)
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    runs["seed"] = runs["seed"].astype("Int64")
    for col in _OBJECT_COLUMNS:
        # object dtype keeps None and int-vs-float (Lightning: 5 = five batches, 1.0 = all of them).
        runs[col] = pd.Series([row.get(col) for row in rows], dtype=object)
    return _sort(runs)


#: where a report folder keeps its runs (one row per results.json, as :func:`load_sweep` read them)
RUNS_CSV = Path("tables") / "runs.csv"
_LIST_COLUMNS = ("test_best.per_class_f1", "test_last.per_class_f1")


def _cell(text: str) -> Any:
    """A CSV cell of an object column back to what the record held: None, a bool, an int, a float or text
    (Lightning reads 5 as five batches and 1.0 as all of them, so int and float stay apart)."""
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            continue
    return text


def read_runs_csv(path: str | Path) -> pd.DataFrame:
    """The runs of a report folder's ``tables/runs.csv``, typed as :func:`load_sweep` returns them, so a
    committed report regenerates under today's rules when its run folders are elsewhere. Columns added since
    the CSV was written are empty (NaN or None), as for a record that does not carry the field."""
    object_columns = (*_OBJECT_COLUMNS, *_LIST_COLUMNS, "recipe", "base_recipe", "teacher_kind")
    raw = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={c: str for c in object_columns})
    runs = raw.reindex(columns=[*RUN_COLUMNS, *(c for c in raw.columns if c not in RUN_COLUMNS)])
    for col in object_columns:
        runs[col] = pd.Series([_cell(v) if isinstance(v, str) else None for v in runs[col]], dtype=object)
    runs["factors"] = [ast.literal_eval(v) if isinstance(v, str) else {} for v in runs["factors"].astype(object)]
    for col in _LIST_COLUMNS:
        runs[col] = [json.loads(v) if isinstance(v, str) and v.startswith("[") else None for v in raw[col]]
    runs["seed"] = pd.to_numeric(runs["seed"], errors="coerce").astype("Int64")
    return runs


def is_report_folder(folder: str | Path) -> bool:
    """A report folder (its ``tables/runs.csv``) rather than a sweep of results.json files."""
    folder = Path(folder)
    return (folder / RUNS_CSV).is_file() and not find_results(folder)


def load_runs(folders: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """Runs from sweep folders (their results.json files) and report folders (their ``tables/runs.csv``)."""
    folders = [Path(folders)] if isinstance(folders, (str, Path)) else [Path(f) for f in folders]
    if len(folders) == 1 and folders[0].suffix == ".csv":
        return read_runs_csv(folders[0])
    reports = [f for f in folders if is_report_folder(f)]
    frames = [read_runs_csv(f / RUNS_CSV) for f in reports]
    sweeps = [f for f in folders if f not in reports]
    if sweeps or not frames:
        frames.append(load_sweep(sweeps))
    return _sort(pd.concat(frames, ignore_index=True)) if len(frames) > 1 else frames[0]


# --------------------------------------------------------------------------------------------------
# Ordering and selection


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


def _sort(frame: pd.DataFrame) -> pd.DataFrame:
    """Datasets by complexity, methods in conf/method/'s order, then seed: the order every table uses."""
    if frame.empty:
        return frame.reset_index(drop=True)
    n = len(frame)
    paths = frame["path"].astype(str).tolist() if "path" in frame else [""] * n
    recipes = frame["recipe"].astype(str).tolist() if "recipe" in frame else [""] * n
    seeds = [-1 if s is None or pd.isna(s) else int(s) for s in frame["seed"].tolist()] if "seed" in frame else [-1] * n
    keys = [
        (rc, _dataset_key(d), _method_key(m), s, p)
        for rc, d, m, s, p in zip(recipes, frame["dataset"].tolist(), frame["method"].tolist(), seeds, paths)
    ]
    return frame.iloc[sorted(range(n), key=keys.__getitem__)].reset_index(drop=True)


def _with_recipe(runs: pd.DataFrame) -> pd.DataFrame:
    if "recipe" in runs:
        return runs.assign(recipe=runs["recipe"].where(runs["recipe"].map(lambda r: isinstance(r, str)), NO_RECIPE))
    return runs.assign(recipe=NO_RECIPE)


def pick_runs(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One record per recipe/dataset/method/seed: completed beats anything else, then the latest finished.

    Returns (kept, superseded) so superseded duplicates can be listed rather than silently dropped.
    A plain frame without ``status`` counts as completed.
    """
    if runs.empty:
        return runs, runs
    runs = _with_recipe(runs)
    status = runs["status"] if "status" in runs else pd.Series("completed", index=runs.index)
    finished = runs["finished_at"] if "finished_at" in runs else pd.Series("", index=runs.index)
    path = runs["path"] if "path" in runs else pd.Series("", index=runs.index)
    ranked = runs.assign(
        _completed=(status == "completed").astype(int),
        _finished=finished.fillna("").astype(str),
        _path=path.fillna("").astype(str),
    )
    ranked = ranked.sort_values(["_completed", "_finished", "_path"], ascending=False, kind="stable")
    keyed = ranked[ranked[KEYS].notna().all(axis=1)]
    duplicated = keyed.duplicated(subset=PICK_KEYS, keep="first")
    kept = pd.concat([keyed[~duplicated], ranked[ranked[KEYS].isna().any(axis=1)]])
    drop = ["_completed", "_finished", "_path"]
    return _sort(kept.drop(columns=drop)), _sort(keyed[duplicated].drop(columns=drop))


def completed_runs(runs: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """Completed runs (one per recipe/dataset/method/seed) that carry ``metric`` when one is named."""
    kept, _ = pick_runs(runs)
    if kept.empty:
        return kept
    done = kept[kept["status"] == "completed"] if "status" in kept else kept
    if metric is not None:
        done = done[pd.to_numeric(done[metric], errors="coerce").notna()] if metric in done else done.iloc[0:0]
    return done.reset_index(drop=True)


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
# Inventory and problems


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
# Teacher runs record ``teacher_key`` (registry key, e.g. ``resnet50-1a2b3c4d``); distilling students record
# ``teacher = {key, checkpoint, test_acc, run_dir, stale, source}``. A student is marked
#
# - ``teacher_match = "no"`` when its ``teacher.key`` differs from the ``teacher_key`` of the sweep's teacher
#   run of the same recipe, dataset and seed (the teacher the "vs teacher" rows compare against);
# - ``"yes"`` when they agree; ``"n/a"`` when either key is unknown or the sweep holds no such teacher run.
#
# A ``stale`` teacher was trained by another code commit than the student that used it.

PROVENANCE_COLUMNS = [
    *PICK_KEYS,
    "teacher.key",
    "sweep_teacher_key",
    "teacher_match",
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
    teachers = done[done["method"].isin(teacher_methods(done))].set_index(["recipe", "dataset", "seed"])["teacher_key"]
    students = done[distils(done)].copy()
    rows = []
    for row in students.to_dict("records"):
        key = (row["recipe"], row["dataset"], row["seed"])
        sweep_key = teachers.get(key) if key in teachers.index else None
        used = row.get("teacher.key")
        known = isinstance(used, str) and isinstance(sweep_key, str)
        match = ("yes" if used == sweep_key else "no") if known else "n/a"
        rows.append(
            {**{c: row.get(c) for c in PROVENANCE_COLUMNS}, "sweep_teacher_key": sweep_key, "teacher_match": match}
        )
    out = pd.DataFrame(rows, columns=PROVENANCE_COLUMNS)
    out["seed"] = out["seed"].astype("Int64")
    return out
