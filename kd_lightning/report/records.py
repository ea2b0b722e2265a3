"""Reading a sweep's ``results.json`` files (or a report folder's ``tables/runs.csv``) into the runs frame.

One row per ``results.json`` (every status), so nothing a run left behind goes unreported. Accuracies
and the other per-run metrics stay as the record holds them (fractions, nats); tables convert to
percent. Fields a record does not carry (older records, or a teacher-less student's fidelity) are NaN
and show as ``n/a``. Each row says how its config differs from the paper's protocol (``paper.py``).
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from kd_lightning.report.paper import paper_differences, paper_epochs
from kd_lightning.report.runs import (
    CLAIMS_JSON,
    COMPLEXITY_MEASURES,
    NO_RECIPE,
    RUNS_CSV,
    SPLITS,
    find_results,
    in_table_order,
    is_report_folder,
)
from kd_lightning.teacher_kind import condition_label

#: scalar per-split fields of results.json: accuracy, macro-F1, top-5 (CIFAR100), NLL (nats), ECE
#: (fraction), teacher-student top-1 agreement (fraction) and KL(teacher || student) (nats/sample, T=1)
SPLIT_FIELDS = ("acc", "f1", "top5", "nll", "ece", "agreement", "kl_teacher_student", "soft_label_entropy")
TEACHER_FIELDS = ("key", "checkpoint", "test_acc", "run_dir", "stale", "source", "weights_sha256")
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
    "weights_sha256",
    "data_files_sha256",
    "teacher_kind",
    "teacher.members_mean_acc",
    *(f"teacher.{f}" for f in TEACHER_FIELDS),
    *(f"efficiency.{f}" for f in EFFICIENCY_FIELDS),
    "base_recipe",
    "factors",
    "image_size",
    "num_classes",
    "distils",
    "claims_primary",
    *(f"complexity.{m}" for m in COMPLEXITY_MEASURES),
]
_OBJECT_COLUMNS = ("factors", "distils", "max_epochs", "paper_epochs", "limit_train_batches", "teacher.stale")


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
        # the primary claim the run's config names (JSON; "null": none), kept in runs.csv so a report regenerated
        # from it tests the same primary when the run folders are gone (primary.primary_from_runs)
        "claims_primary": json.dumps(_dict(config.get("claims")).get("primary"), sort_keys=True, default=str),
        "paper_comparable": not differences,
        "paper_differences": "; ".join(differences),
        "paper_epochs": paper_epochs(method),
        **_training_fields(record, _dict(config.get("trainer"))),
        "teacher_key": record.get("teacher_key") if isinstance(record.get("teacher_key"), str) else None,
        # which copy of a built-in dataset's files the run read (run/data_files.py); None for a folder dataset
        "data_files_sha256": record.get("data_files_sha256")
        if isinstance(record.get("data_files_sha256"), str)
        else None,
        # the weights a teacher row registered (models.weights_digest); its students record theirs as teacher.*
        "weights_sha256": record.get("weights_sha256") if isinstance(record.get("teacher_key"), str) else None,
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
    student_arch = _dict(config.get("student_model")).get("arch")
    members, data = int(teacher.get("members") or 0), str(teacher.get("data") or "same")
    return condition_label(members, str(arch), data, variant, student_arch and str(student_arch))


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
    return consolidated(in_table_order(runs))


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
    if "claims_primary" not in raw.columns:
        runs["claims_primary"] = _primary_of_report(Path(path).parent.parent)
    return consolidated(runs)


def _primary_of_report(folder: Path) -> str | None:
    """For a runs.csv from before its ``claims_primary`` column: ``"null"`` when the report's claims.json holds no
    primary claim (regenerated, it names none either), None (not known) when it holds one or cannot be read."""
    try:
        claims = json.loads((folder / CLAIMS_JSON).read_text())
    except (OSError, ValueError):
        return None
    named = any(isinstance(c, dict) and c.get("family") == "primary" for c in claims)
    return None if named or not isinstance(claims, list) else "null"


def consolidated(runs: pd.DataFrame) -> pd.DataFrame:
    """The frame with its columns stored one block per dtype (a deep copy), as pandas does not after columns are
    set one by one: the report takes rows of the runs hundreds of times, and pandas takes each block apart (a
    teacher pilot's 65 one-column blocks: 13 ms to pick its completed runs; 16 blocks: 6 ms)."""
    return runs.copy(deep=True)


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
    return consolidated(in_table_order(pd.concat(frames, ignore_index=True))) if len(frames) > 1 else frames[0]
