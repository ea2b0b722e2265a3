"""Entry point: ``python -m kd_lightning.train dataset=usps method=ikd seed=0``.

One run = one dataset x one method x one seed, in ``paths.run_dir``. A run that already completed is
skipped, an interrupted one resumes from its last checkpoint, and every run ends with a
``results.json`` (completed or failed) beside its checkpoints and logs.
"""

from __future__ import annotations

import logging
import shutil
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from kd_lightning import teachers
from kd_lightning.callbacks import ThroughputMeter
from kd_lightning.config import fingerprint, to_plain, validate_config
from kd_lightning.models import count_parameters
from kd_lightning.records import (
    PROJECT_ROOT,
    RESULTS_FILE,
    OutputError,
    environment,
    read_results,
    write_json,
)
from kd_lightning.sweep import report_failed_run

log = logging.getLogger("kd_lightning")
#: absolute, so the entry point works however it is imported (python -m, tests, notebooks)
CONF_DIR = PROJECT_ROOT / "conf"
#: what a run writes into its folder (besides Hydra's .hydra/ and the log)
_RUN_OUTPUTS = (RESULTS_FILE, "checkpoints", "tb", "csv", "config.yaml")
#: method-config keys that describe the method rather than being LightningModule arguments
_METHOD_META_KEYS = ("name",)


class RunConflictError(RuntimeError):
    """The run folder already holds a completed run of a different config."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _archive(run_dir: Path) -> Path:
    """Move a run folder's outputs into ``archive/<time>/`` (force=true): nothing is deleted."""
    target = run_dir / "archive" / datetime.now().strftime("%Y%m%d-%H%M%S")
    target.mkdir(parents=True)
    for item in run_dir.iterdir():
        if item.name not in ("archive", ".hydra") and item.suffix != ".log":
            shutil.move(str(item), target / item.name)
    return target


def _build_module(cfg: DictConfig, teacher: torch.nn.Module | None, teacher_info: dict | None) -> L.LightningModule:
    method = {k: v for k, v in OmegaConf.to_container(cfg.method, resolve=True).items() if k not in _METHOD_META_KEYS}
    extra: dict[str, Any] = {}
    if teacher is not None:
        extra = {"teacher": teacher, "teacher_info": teacher_info}
    return instantiate(
        method,
        optimizer=OmegaConf.to_container(cfg.recipe.optimizer, resolve=True),
        scheduler=OmegaConf.to_container(cfg.recipe.scheduler, resolve=True) if cfg.recipe.scheduler else None,
        top_k=list(cfg.dataset.top_k),
        dataset=str(cfg.dataset.name),
        _convert_="all",
        _recursive_=False,  # optimizer/scheduler stay plain dicts; the module instantiates them itself
        **extra,
    )


def _build_trainer(cfg: DictConfig) -> L.Trainer:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)


def _best_epoch(checkpoint: str) -> int | None:
    if not checkpoint:
        return None
    return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"])


def _log_hparams(trainer: L.Trainer, cfg: DictConfig, record: dict[str, Any]) -> None:
    """One row per run in TensorBoard's HParams view."""
    params = {"dataset": cfg.dataset.name, "method": cfg.method.name, "seed": cfg.seed, "lr": cfg.recipe.optimizer.lr, "batch_size": cfg.recipe.batch_size, "max_epochs": cfg.trainer.max_epochs}
    for key in ("alpha", "temperature", "feature_weight"):
        params[key] = cfg.method.get(key, "n/a")
    metrics = {f"hparams/{stage}_{k}": v for stage in ("test_best", "test_last") for k, v in record[stage].items() if isinstance(v, float)}
    metrics["hparams/best_val_acc"] = record["best_val_acc"]
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(params, metrics)


def _fit_and_test(cfg: DictConfig, teacher_ckpt: str | None) -> dict[str, Any]:
    run_dir = Path(cfg.paths.run_dir)
    plain = to_plain(cfg)
    fp = fingerprint(plain)
    prior = read_results(run_dir)
    last_ckpt = run_dir / "checkpoints" / "last.ckpt"
    if prior and prior.get("status") == "completed":
        if not cfg.force:
            if prior.get("fingerprint") == fp:
                log.info("already completed, skipping (force=true reruns): %s", run_dir)
                return prior
            raise RunConflictError(
                f"{run_dir} holds a completed run of a different config (fingerprint {prior.get('fingerprint')} vs {fp}). "
                "Give this run another name (name=...), or force=true to archive the old outputs and rerun."
            )
        log.info("force=true: archived the previous outputs to %s", _archive(run_dir))
        prior = None
    resume = str(last_ckpt) if prior and prior.get("fingerprint") == fp and last_ckpt.is_file() else None
    if resume is None and any((run_dir / leftover).exists() for leftover in _RUN_OUTPUTS):
        # an unfinished run of another config, or outputs whose record was deleted: keep them aside
        log.info("earlier outputs in %s archived to %s", run_dir, _archive(run_dir))

    record: dict[str, Any] = {
        "status": "running",
        "dataset": cfg.dataset.name,
        "method": cfg.method.name,
        "seed": cfg.seed,
        "run_dir": str(run_dir),
        "fingerprint": fp,
        "started_at": _now(),
        "resumed_from": resume,
        "config": plain,
        "environment": environment(),
    }
    write_json(run_dir / RESULTS_FILE, record)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    start = time.perf_counter()

    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.dataset, _convert_="all")
    datamodule.prepare_data()  # fails here, before any model is built, when files are missing

    teacher = teacher_info = None
    if teacher_ckpt is not None:
        teacher, teacher_info = teachers.load_teacher(teacher_ckpt, cfg.dataset.name, cfg.dataset.num_classes, cfg.dataset.channels)
    module = _build_module(cfg, teacher, teacher_info)
    trainer = _build_trainer(cfg)
    log.info("fitting %s %s seed=%s in %s%s", cfg.dataset.name, cfg.method.name, cfg.seed, run_dir, f" (resuming from {resume})" if resume else "")
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    if trainer.interrupted:
        raise KeyboardInterrupt("training was interrupted")

    checkpointing = next((cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.monitor), None)
    if checkpointing is None or not checkpointing.best_model_path:
        raise OutputError(f"no best checkpoint was written in {run_dir / 'checkpoints'}: callbacks.model_checkpoint must monitor val/acc")
    if not last_ckpt.is_file():
        raise OutputError(f"{last_ckpt} was not written: callbacks.last_checkpoint must save it every epoch")
    tests = {}
    for stage, ckpt in (("test_last", str(last_ckpt)), ("test_best", checkpointing.best_model_path)):
        module.test_prefix = stage
        trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
        tests[stage] = dict(module.last_test_results)
    meter = next((c for c in trainer.callbacks if isinstance(c, ThroughputMeter)), None)
    record.update(
        status="completed",
        finished_at=_now(),
        wall_time_s=round(time.perf_counter() - start, 2),
        epochs=trainer.current_epoch,
        global_steps=trainer.global_step,
        best_val_acc=float(checkpointing.best_model_score) if checkpointing.best_model_score is not None else None,
        best_epoch=_best_epoch(checkpointing.best_model_path),
        best_checkpoint=checkpointing.best_model_path,
        last_checkpoint=str(last_ckpt),
        train_images_per_s=meter.images_per_second if meter else None,
        params={"net": count_parameters(module.net), "teacher": count_parameters(teacher) if teacher is not None else None, "total_trainable": sum(p.numel() for p in module.trainable_parameters())},
        teacher=teacher_info,
        **tests,
    )
    _log_hparams(trainer, cfg, record)
    write_json(run_dir / RESULTS_FILE, record)
    return record


def _record_failure(cfg: DictConfig, exc: BaseException) -> None:
    """Turn the run's record into ``failed`` (or ``interrupted``) with the error; a completed one stays."""
    try:
        run_dir = Path(cfg.paths.run_dir)
        record = read_results(run_dir) or {"dataset": OmegaConf.select(cfg, "dataset.name"), "method": OmegaConf.select(cfg, "method.name"), "seed": OmegaConf.select(cfg, "seed"), "run_dir": str(run_dir)}
    except Exception:  # the config itself is broken: nowhere to write
        return
    if record.get("status") == "completed":
        return
    record.update(
        status="interrupted" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "failed",
        finished_at=_now(),
        error={"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc(limit=20)},
    )
    write_json(run_dir / RESULTS_FILE, record)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run one config to completion (training its teacher first if needed) and return its record."""
    try:
        validate_config(cfg)
        module_cls = get_class(cfg.method._target_)
        if module_cls.publishes_teacher:
            entry = teachers.entry_dir(cfg)
            with teachers.lock(entry):
                return _teacher_run(cfg, entry)
        return _fit_and_test(cfg, _find_teacher(cfg) if module_cls.requires_teacher else None)
    except BaseException as exc:
        _record_failure(cfg, exc)
        raise


def _teacher_run(cfg: DictConfig, entry: Path) -> dict[str, Any]:
    existing = teachers.read_entry(entry)
    if existing is not None and not cfg.force and read_results(cfg.paths.run_dir) is None:
        log.info("teacher already in the registry (%s); recording it instead of training again", entry)
        record = {**existing, "run_dir": str(cfg.paths.run_dir), "reused_from": str(entry)}
        write_json(Path(cfg.paths.run_dir) / RESULTS_FILE, record)
        return record
    record = _fit_and_test(cfg, None)
    if existing is None or cfg.force:
        teachers.publish(entry, Path(record["best_checkpoint"]), record, teachers.teacher_spec(cfg))
        log.info("teacher registered at %s", entry)
    return record


def _find_teacher(cfg: DictConfig) -> str:
    if cfg.teacher_ckpt:
        return str(cfg.teacher_ckpt)
    entry = teachers.entry_dir(cfg)
    if teachers.read_entry(entry) is None:
        if cfg.teacher_missing == "fail":
            raise teachers.TeacherError(
                f"no teacher for dataset={cfg.dataset.name} seed={cfg.seed} in {entry}. Train it with:\n  {teachers.train_command(cfg)}\n"
                "or pass teacher_ckpt=<path>, or teacher_missing=train to train it here first."
            )
        log.info("teacher missing from the registry: training it first (%s)", entry)
        run(teachers.teacher_config(cfg))
    return str(entry / teachers.CHECKPOINT_FILE)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        record = run(cfg)
    except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C, or SIGTERM (Lightning raises SIGTERMException)
        print(
            f"[kd_lightning] interrupted ({type(exc).__name__}); the run resumes from the end of its last "
            f"completed epoch ({Path(cfg.paths.run_dir) / 'checkpoints' / 'last.ckpt'}) when the same command is run again.",
            flush=True,
        )
        raise SystemExit(130) from exc
    except Exception as exc:
        if not multirun:
            raise
        # the run folder's results.json records the failure, unless it holds a completed run (kept as it was)
        log.error("run failed in %s: %s: %s", cfg.paths.run_dir, type(exc).__name__, exc)
        report_failed_run(HydraConfig.get().sweep.dir, cfg.paths.run_dir, exc)  # the multirun then exits with status 1 (sweep.py)
        return None
    best, last = record.get("test_best", {}), record.get("test_last", {})
    print(
        f"[kd_lightning] {record['dataset']} {record['method']} seed={record['seed']}: "
        f"test acc {best.get('acc', float('nan')):.4f} (best-val ckpt, epoch {record.get('best_epoch')}), "
        f"{last.get('acc', float('nan')):.4f} (last epoch); macro-F1 {best.get('f1', float('nan')):.4f}; "
        f"{record.get('wall_time_s', 0):.0f}s -> {record['run_dir']}",
        flush=True,
    )
    return best.get("acc")


if __name__ == "__main__":
    main()
