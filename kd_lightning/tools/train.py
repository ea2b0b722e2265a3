"""The training tool: ``python -m kd_lightning.train dataset=usps method=ikd seed=0`` (or ``-m`` for a grid).

One run = one dataset x one method x one seed, in ``paths.run_dir``. It reads as a straight line:
validate -> skip if done -> resolve the teacher -> check its data files and teacher -> plan the folder (resume or
start) -> build -> fit -> test -> record. Run bookkeeping
lives in :mod:`kd_lightning.run`: the folder (skip, resume, archive, conflict, failure record) in
``rundir``, which runs are the same experiment in ``identity``, which teacher a student uses in
``teachers`` (one network, or an ensemble: ``teacher_kinds``), what is measured once the accuracy is final in
``byproducts``. The command runs :func:`main` through its entry point, kd_lightning/train.py.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from kd_lightning.datasets.datamodules import DatasetError
from kd_lightning.datasets.factors import FactorError
from kd_lightning.models import CheckpointError, count_parameters
from kd_lightning.run import byproducts, data_files, rundir, teacher_kinds, teachers
from kd_lightning.run.budget import NoFullBatchError, TrainingBudget
from kd_lightning.run.build import build_datamodule, build_module, build_trainer
from kd_lightning.run.callbacks import ThroughputMeter, TrainingClock
from kd_lightning.run.compose import CONF_DIR
from kd_lightning.run.config import ConfigError, to_plain, validate_config
from kd_lightning.run.failures import report_failed_run
from kd_lightning.run.identity import fingerprint, identity
from kd_lightning.run.records import OutputError
from kd_lightning.run.resolvers import register_resolvers
from kd_lightning.run.rundir import RunBusyError, RunConflictError  # also part of the entry point's API

log = logging.getLogger("kd_lightning")
#: what the user asked for cannot run as it is (config, data, teacher, checkpoint, a folder holding another run):
#: a single run prints the message alone, which names the key or file and the fix, not a traceback above it
INPUT_ERRORS = (
    ConfigError,
    DatasetError,
    FactorError,
    CheckpointError,
    teachers.TeacherError,
    RunConflictError,
    RunBusyError,
    NoFullBatchError,
)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run one config to completion (training its teacher first if needed) and return its record. The run folder
    is held for the whole run (``rundir.claim``; a teacher run takes its registry entry's lock first, so a second
    process needing that teacher waits for it): another process aimed at a held folder is refused (RunBusyError)
    and writes nothing there."""
    try:
        gpu_slots = sys.modules.get("kd_lightning.run.gpu_slots")  # imported by launcher=gpu_node's callback only
        if gpu_slots is not None:
            gpu_slots.raise_if_claim_failed()  # a job without a GPU slot must not train on GPU 0
        validate_config(cfg)
        if get_class(cfg.method._target_).publishes_teacher:
            return teacher_kinds.train_or_reuse(cfg, fit_and_test)
        with rundir.claim(cfg.paths.run_dir):
            known, reference = teacher_kinds.planned_reference(cfg)
            # a completed run is recognised before its teacher is looked up (or trained, were it missing)
            if known and not cfg.force:
                planned = identity(cfg, reference)
                planned_fingerprint = fingerprint(cfg, planned.get("teacher"))  # as fit_and_test will compute it
                done = rundir.completed(cfg.paths.run_dir, planned_fingerprint, log)
                if done is not None:  # unless its teacher was retrained, or its files changed, since
                    teacher_kinds.refuse_replaced_teacher(cfg, done)
                    data_files.refuse_changed(cfg, done)
                    return done
                # another config's completed run is refused before a teacher is looked up or trained for this one
                rundir.refuse_conflict(cfg.paths.run_dir, planned_fingerprint, planned)
            return fit_and_test(cfg, teacher_kinds.resolve_teacher(cfg, train=run))
    except RunBusyError:
        raise  # the folder belongs to another process: nothing is written there
    except BaseException as exc:
        try:
            rundir.record_failure(cfg.paths.run_dir, rundir.record_keys(cfg), exc)
        except Exception:  # the config itself is broken: nowhere to write
            pass
        raise


def fit_and_test(cfg: DictConfig, teacher: teachers.TeacherChoice | None) -> dict[str, Any]:
    """Train and test one run in its folder (or return its completed record), then record it."""
    datamodule = build_datamodule(cfg)
    run_identity = identity(cfg, teacher.reference if teacher is not None else None)
    run_fingerprint = fingerprint(cfg, run_identity.get("teacher"))
    done = None if cfg.force else rundir.completed(cfg.paths.run_dir, run_fingerprint, log)
    if done is not None:  # before any data is loaded (a teacher row re-registers its teacher from it)
        data_files.refuse_changed(cfg, done, datamodule.files_digest())
        return done
    # the files (downloaded first when missing) and the teacher checked before the folder is planned: a refused
    # force=true archives nothing; an unfinished run of other files or another teacher starts afresh, not resumed
    files = data_files.ready_files(datamodule)
    teacher = data_files.checked_teacher(cfg, teacher, files)
    unfinished = rundir.unfinished(cfg.paths.run_dir, run_fingerprint)
    resume = unfinished is None or (
        data_files.same_files(unfinished, files) and teacher_kinds.same_teacher(cfg.paths.run_dir, teacher)
    )
    plan = rundir.plan(cfg.paths.run_dir, run_fingerprint, bool(cfg.force), log, resume=resume, identity=run_identity)
    # the files in the running record too, so that a resume can tell
    keys = {**rundir.record_keys(cfg), data_files.RECORD_KEY: files}
    record = rundir.start_record(plan, keys, to_plain(cfg), run_identity)
    OmegaConf.save(cfg, plan.run_dir / "config.yaml", resolve=True)
    start = time.perf_counter()

    datamodule.prepare_data()  # reads the files (downloaded above if they were missing)
    teacher_net = teacher_info = None
    if teacher is not None:  # on a private random stream: the student's is untouched
        teacher_net, loaded = teacher_kinds.load_members(teacher.checkpoints, cfg)
        teacher_info = {**teacher_kinds.with_loaded_weights(teacher.record, loaded), **loaded}
    L.seed_everything(cfg.seed, workers=True)  # the student's stream: the same for every method of this seed
    module = build_module(cfg, teacher_net, teacher_info)
    trainer = build_trainer(cfg, plan.resume_step)
    resuming = f" (resuming from {plan.resume})" if plan.resume else ""
    log.info("fitting %s %s seed=%s in %s%s", cfg.dataset.name, cfg.method.name, cfg.seed, plan.run_dir, resuming)
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(plan.resume) if plan.resume else None)
    if trainer.interrupted:
        raise KeyboardInterrupt("training was interrupted")
    clock = next((c for c in trainer.callbacks if isinstance(c, TrainingClock)), None)
    earlier = clock.earlier_s if clock is not None else 0.0  # earlier processes' training (read before testing loads)

    tests = evaluate_checkpoints(trainer, module, datamodule, plan.run_dir)
    meter = next((c for c in trainer.callbacks if isinstance(c, ThroughputMeter)), None)
    budget = next(c for c in trainer.callbacks if isinstance(c, TrainingBudget))  # build_trainer always adds it
    record = rundir.complete(
        record,
        wall_time_s=round(time.perf_counter() - start + earlier, 2),
        wall_time_earlier_s=round(earlier, 2),
        epochs=trainer.current_epoch,
        global_steps=trainer.global_step,
        budget=budget.record(trainer),
        train_images_per_s=meter.images_per_second if meter else None,
        params={
            "net": count_parameters(module.net),
            "teacher": count_parameters(teacher_net) if teacher_net is not None else None,
            "total_trainable": sum(p.numel() for p in module.trainable_parameters()),
        },
        teacher=teacher_kinds.with_loaded_weights(teacher.record, loaded) if teacher is not None else None,
        data_factors=datamodule.factor_info,
        **{data_files.RECORD_KEY: files},
        **byproducts.measure(
            cfg, module, datamodule, plan.run_dir, tests
        ),  # the best weights, the test split in memory
        **tests,
    )
    byproducts.log_hparams(trainer, cfg, record)
    return record


def evaluate_checkpoints(
    trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule, run_dir: Path
) -> dict[str, Any]:
    """Test the last epoch's and the best-validation checkpoint's weights, each loaded by path."""
    best = next((cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.monitor), None)
    if best is None or not best.best_model_path:  # validate_config refuses the settings known to cause this
        raise RuntimeError(
            f"no best-validation checkpoint was written in {run_dir / 'checkpoints'}: the run never validated or "
            "callbacks.model_checkpoint saved nothing (check trainer.limit_val_batches, "
            "trainer.check_val_every_n_epoch and callbacks.model_checkpoint.monitor/save_top_k)"
        )
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


def summary_line(record: dict[str, Any]) -> str:
    """The one line every run prints; epochs are counted from 1."""
    best, last = record.get("test_best") or {}, record.get("test_last") or {}  # null: e.g. members' last.ckpt pruned
    epoch = record.get("best_epoch")
    epoch_text = f"epoch {epoch + 1} of {record.get('epochs')}" if isinstance(epoch, int) else "epoch n/a"
    return (
        f"[kd_lightning] {record['dataset']} {record['method']} seed={record['seed']}: "
        f"test acc {best.get('acc', float('nan')):.4f} (best-val ckpt, {epoch_text}), "
        f"{last.get('acc', float('nan')):.4f} (last epoch); macro-F1 {best.get('f1', float('nan')):.4f}; "
        f"{record.get('wall_time_s', 0):.0f}s -> {record['run_dir']}"
    )


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        record = run(cfg)
    except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C, or SIGTERM (Lightning raises SIGTERMException)
        last = Path(cfg.paths.run_dir) / rundir.LAST_CHECKPOINT
        print(
            f"[kd_lightning] interrupted ({type(exc).__name__}); the run resumes from the end of its last "
            f"completed epoch ({last}) when the same command is run again.",
            flush=True,
        )
        raise SystemExit(130) from exc
    except Exception as exc:
        if not multirun and isinstance(exc, INPUT_ERRORS):  # results.json records it (run)
            print(f"[kd_lightning] {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(1) from exc
        if not multirun:
            raise
        # the run folder's results.json records the failure, unless it holds a completed run (kept as it was)
        log.error("run failed in %s: %s: %s", cfg.paths.run_dir, type(exc).__name__, exc)
        report_failed_run(
            HydraConfig.get().sweep.dir, cfg.paths.run_dir, exc
        )  # the multirun then exits 1 (failures.py)
        return None
    print(summary_line(record), flush=True)
    return record.get("test_best", {}).get("acc")


def main() -> float | None:
    """``python -m kd_lightning.train <overrides>``: Hydra composes the config (conf/'s ``${kd_...:}`` resolvers
    registered first, here rather than on import) and runs it, or each of a multirun's."""
    register_resolvers()
    return _hydra_main()


if __name__ == "__main__":
    main()
