"""Entry point: ``python -m kd_lightning.train dataset=usps method=ikd seed=0``.

One run = one dataset x one method x one seed, in ``paths.run_dir``. It reads as a straight line:
build (data, teacher, module, trainer), fit, test, record. The run folder's bookkeeping (skip, resume,
archive, conflict, failure record) is :mod:`kd_lightning.run.rundir`; which runs are the same experiment is
:mod:`kd_lightning.run.identity`; which teacher a student uses is :mod:`kd_lightning.run.teachers`.
"""

from __future__ import annotations

import logging
import time
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
from omegaconf import DictConfig, OmegaConf, open_dict

from kd_lightning.run import after_test, gpu_slots, rundir, teachers
from kd_lightning.run.callbacks import ThroughputMeter
from kd_lightning.run.compose import CONF_DIR
from kd_lightning.run.config import to_plain, validate_config
from kd_lightning.datasets.factors import factor_identity
from kd_lightning.run.identity import fingerprint, identity
from kd_lightning.models import count_parameters
from kd_lightning.run.records import OutputError, write_json
from kd_lightning.run.rundir import RunConflictError  # noqa: F401  (re-exported: part of the entry point's API)
from kd_lightning.run.failures import report_failed_run

log = logging.getLogger("kd_lightning")
#: method-config keys that describe the method rather than being LightningModule arguments
_METHOD_META_KEYS = ("name",)


# -- builders (public: the benchmark builds the same objects) ---------------------------------------
def build_datamodule(cfg: DictConfig, **overrides: Any) -> L.LightningDataModule:
    """The dataset's DataModule; its shuffling and augmentation streams belong to ``cfg.seed``.
    ``overrides``: DataModule arguments that replace the config's (tools: data folder, loading)."""
    return instantiate(cfg.dataset, seed=int(cfg.seed), _convert_="all", **overrides)


def build_module(cfg: DictConfig, teacher: torch.nn.Module | None = None, teacher_info: dict | None = None) -> L.LightningModule:
    """The method's LightningModule from the composed config (and the trained teacher for KD methods)."""
    method = {k: v for k, v in OmegaConf.to_container(cfg.method, resolve=True).items() if k not in _METHOD_META_KEYS}
    extra: dict[str, Any] = {}
    if teacher is not None and get_class(cfg.method._target_).requires_teacher:
        extra = {"teacher": teacher, "teacher_info": teacher_info}
    module = instantiate(
        method,
        optimizer=OmegaConf.to_container(cfg.recipe.optimizer, resolve=True),
        scheduler=OmegaConf.to_container(cfg.recipe.scheduler, resolve=True) if cfg.recipe.scheduler else None,
        top_k=list(cfg.dataset.top_k),
        dataset=str(cfg.dataset.name),
        _convert_="all",
        _recursive_=False,  # optimizer/scheduler stay plain dicts; the module instantiates them itself
        **extra,
    )
    if teacher is not None and not extra:
        module.set_reference_teacher(teacher)  # scratch: the teacher only measures fidelity at test time
    return module


def build_trainer(cfg: DictConfig, resume_step: int | None = None) -> L.Trainer:
    """The Trainer with the configured callbacks and loggers; a resumed run's TensorBoard hides the
    events its interrupted part logged from ``resume_step`` on (they are logged again)."""
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = []
    for c in (cfg.get("logger") or {}).values():
        if c is None:
            continue
        extra = {"purge_step": resume_step} if resume_step is not None and issubclass(get_class(c._target_), TensorBoardLogger) else {}
        loggers.append(instantiate(c, **extra))
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)


# -- one run -----------------------------------------------------------------------------------------
def _run_keys(cfg: DictConfig) -> dict[str, Any]:
    """What every record of the run carries, a failed one included: which run, recipe and data condition."""
    keys = {k: OmegaConf.select(cfg, key, default=None) for k, key in
            (("dataset", "dataset.name"), ("method", "method.name"), ("seed", "seed"), ("recipe", "recipe.name"))}
    try:
        factors = factor_identity(OmegaConf.select(cfg, "dataset.factors"), OmegaConf.select(cfg, "dataset.image_size"))
    except Exception:  # noqa: BLE001 - a malformed factor is reported by validate_config; the record still gets written
        factors = {}
    return {**keys, "data_factors": {"identity": factors}}


def _test_both(trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule, run_dir: Path) -> dict[str, Any]:
    """Test the last epoch's and the best-validation checkpoint's weights, each loaded by path."""
    best = next((cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.monitor), None)
    if best is None or not best.best_model_path:
        raise OutputError(run_dir / "checkpoints", FileNotFoundError(2, "no best checkpoint was written: callbacks.model_checkpoint must monitor val/acc"))
    last = run_dir / rundir.LAST_CHECKPOINT
    if not last.is_file():
        raise OutputError(last, FileNotFoundError(2, "not written: callbacks.last_checkpoint must save it every epoch"))
    out: dict[str, Any] = {
        "best_val_acc": float(best.best_model_score) if best.best_model_score is not None else None,
        "best_epoch": rundir.checkpoint_position(Path(best.best_model_path))[0],
        "best_checkpoint": best.best_model_path,
        "last_checkpoint": str(last),
    }
    for stage, ckpt in (("test_last", str(last)), ("test_best", best.best_model_path)):
        module.test_prefix = stage
        trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
        out[stage] = dict(module.last_test_results)
    return out


def _fit_and_test(cfg: DictConfig, teacher_ckpt: str | None, teacher_record: dict[str, Any] | None) -> dict[str, Any]:
    needs_teacher = get_class(cfg.method._target_).requires_teacher
    run_identity = identity(cfg, teachers.teacher_reference(cfg) if needs_teacher else None)
    plan = rundir.plan(cfg.paths.run_dir, fingerprint(cfg, run_identity.get("teacher")), bool(cfg.force), log)
    if plan.completed is not None:
        return plan.completed
    record = rundir.start_record(plan, _run_keys(cfg), to_plain(cfg), run_identity)
    OmegaConf.save(cfg, plan.run_dir / "config.yaml", resolve=True)
    start = time.perf_counter()

    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()  # fails here, before any model is built, when files are missing
    teacher = teacher_info = None
    if teacher_ckpt is not None:  # on a private random stream: the student's is untouched
        teacher, teacher_info = teachers.load_teacher(teacher_ckpt, cfg.dataset.name, int(cfg.student_model.num_classes), cfg.dataset.channels)
        teacher_info = {**teacher_info, **(teacher_record or {})}
    L.seed_everything(cfg.seed, workers=True)  # the student's stream: the same for every method of this seed
    module = build_module(cfg, teacher, teacher_info)
    trainer = build_trainer(cfg, plan.resume_step)
    log.info("fitting %s %s seed=%s in %s%s", cfg.dataset.name, cfg.method.name, cfg.seed, plan.run_dir, f" (resuming from {plan.resume})" if plan.resume else "")
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(plan.resume) if plan.resume else None)
    if trainer.interrupted:
        raise KeyboardInterrupt("training was interrupted")

    tests = _test_both(trainer, module, datamodule, plan.run_dir)
    meter = next((c for c in trainer.callbacks if isinstance(c, ThroughputMeter)), None)
    record = rundir.complete(
        record,
        wall_time_s=round(time.perf_counter() - start, 2),
        epochs=trainer.current_epoch,
        global_steps=trainer.global_step,
        train_images_per_s=meter.images_per_second if meter else None,
        params={"net": count_parameters(module.net), "teacher": count_parameters(teacher) if teacher is not None else None, "total_trainable": sum(p.numel() for p in module.trainable_parameters())},
        teacher=teacher_record,
        data_factors=datamodule.factor_info,
        **after_test.measure(cfg, module, datamodule, plan.run_dir, tests),  # the best weights, the test split in memory
        **tests,
    )
    after_test.log_hparams(trainer, cfg, record)
    return record


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run one config to completion (training its teacher first if needed) and return its record."""
    try:
        gpu_slots.raise_if_claim_failed()  # launcher=gpu_node: a job without a GPU slot must not train on GPU 0
        validate_config(cfg)
        module_cls = get_class(cfg.method._target_)
        if module_cls.publishes_teacher:
            entry = teachers.entry_dir(cfg)
            with teachers.lock(entry):
                return _teacher_run(cfg, entry)
        if module_cls.requires_teacher:
            return _fit_and_test(cfg, *_find_teacher(cfg))
        return _fit_and_test(cfg, *_reference_teacher(cfg))
    except BaseException as exc:
        try:
            rundir.record_failure(cfg.paths.run_dir, _run_keys(cfg), exc)
        except Exception:  # the config itself is broken: nowhere to write
            pass
        raise


def _teacher_run(cfg: DictConfig, entry: Path) -> dict[str, Any]:
    """Train the teacher (and register it), or record the registry's identical teacher in this folder."""
    existing = teachers.read_entry(entry)
    key = teachers.teacher_key(cfg)
    fp = fingerprint(cfg)
    if existing is not None and not cfg.force:
        plan = rundir.plan(cfg.paths.run_dir, fp, False, log)
        if plan.completed is not None:
            return plan.completed
        if plan.resume is not None:  # an unfinished copy of a teacher the registry already holds
            rundir.archive(plan.run_dir)
        log.info("teacher already in the registry (%s); recording it instead of training again", entry)
        record = {
            **existing,
            "run_dir": str(cfg.paths.run_dir),
            "fingerprint": fp,
            "config": to_plain(cfg),
            "best_checkpoint": str(entry / teachers.CHECKPOINT_FILE),
            "reused_from": str(entry),
        }
        write_json(Path(cfg.paths.run_dir) / rundir.RESULTS_FILE, record)
        return record
    record = _fit_and_test(cfg, None, None)
    record["teacher_key"] = key
    write_json(Path(record["run_dir"]) / rundir.RESULTS_FILE, record)
    if existing is None or cfg.force:
        teachers.publish(entry, Path(record["best_checkpoint"]), record, key, identity(cfg, include_seed=False))
        log.info("teacher registered at %s", entry)
    return record


def _find_teacher(cfg: DictConfig) -> tuple[str, dict[str, Any]]:
    """The student's teacher (``teacher_ckpt=``, else the registry's, trained there first if missing)."""
    if cfg.teacher_ckpt:
        return str(cfg.teacher_ckpt), _checked(teachers.describe(cfg.teacher_ckpt, "teacher_ckpt"))
    entry = teachers.entry_dir(cfg)
    if teachers.read_entry(entry) is None:
        if cfg.teacher_missing == "fail":
            raise teachers.TeacherError(
                f"no teacher for dataset={cfg.dataset.name} seed={cfg.seed} in {entry}. Train it with:\n  {teachers.train_command(cfg)}\n"
                "or pass teacher_ckpt=<path>, or teacher_missing=train to train it here first."
            )
        log.info("teacher missing from the registry: training it first, in %s", entry / teachers.RUN_FOLDER)
        tcfg = teachers.teacher_config(cfg)
        with open_dict(tcfg):
            tcfg.paths.run_dir = str(entry / teachers.RUN_FOLDER)
            tcfg.force = False
        run(tcfg)
    checkpoint = entry / teachers.CHECKPOINT_FILE
    return str(checkpoint), _checked(teachers.describe(checkpoint, "registry", teachers.teacher_key(cfg)))


def _reference_teacher(cfg: DictConfig) -> tuple[str | None, dict[str, Any] | None]:
    """Scratch: the teacher it would have had, if one exists, to measure fidelity; never trained for it."""
    if cfg.get("teacher_ckpt"):
        return str(cfg.teacher_ckpt), teachers.describe(cfg.teacher_ckpt, "teacher_ckpt")
    checkpoint = teachers.entry_dir(cfg) / teachers.CHECKPOINT_FILE
    if teachers.read_entry(checkpoint.parent) is None:
        log.info("no teacher in the registry for %s seed=%s: fidelity metrics are left empty", cfg.dataset.name, cfg.seed)
        return None, None
    return str(checkpoint), teachers.describe(checkpoint, "registry", teachers.teacher_key(cfg))


def _checked(description: dict[str, Any]) -> dict[str, Any]:
    if description["stale"]:
        code = description.get("code_version") or {}
        log.warning("teacher %s was trained by other code (commit %s); it is used as it is (force=true on the teacher run retrains it)", description["checkpoint"], code.get("commit"))
    return description


# -- command line ------------------------------------------------------------------------------------
def summary_line(record: dict[str, Any]) -> str:
    """The one line every run prints; epochs are counted from 1."""
    best, last = record.get("test_best", {}), record.get("test_last", {})
    epoch = record.get("best_epoch")
    epoch_text = f"epoch {epoch + 1} of {record.get('epochs')}" if isinstance(epoch, int) else "epoch n/a"
    return (
        f"[kd_lightning] {record['dataset']} {record['method']} seed={record['seed']}: "
        f"test acc {best.get('acc', float('nan')):.4f} (best-val ckpt, {epoch_text}), "
        f"{last.get('acc', float('nan')):.4f} (last epoch); macro-F1 {best.get('f1', float('nan')):.4f}; "
        f"{record.get('wall_time_s', 0):.0f}s -> {record['run_dir']}"
    )


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        record = run(cfg)
    except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C, or SIGTERM (Lightning raises SIGTERMException)
        print(
            f"[kd_lightning] interrupted ({type(exc).__name__}); the run resumes from the end of its last "
            f"completed epoch ({Path(cfg.paths.run_dir) / rundir.LAST_CHECKPOINT}) when the same command is run again.",
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
    print(summary_line(record), flush=True)
    return record.get("test_best", {}).get("acc")


if __name__ == "__main__":
    main()
