"""Which kind of teacher a run has: one registry network, or an ensemble of K registry networks (``teacher=``).

- ``teacher.members: 0`` (``teacher=resnet50``, the paper's): one ``teacher_model`` on the run's own seed, the
  registry teacher of :mod:`kd_lightning.run.teachers`, unchanged.
- ``teacher.members: K >= 1`` (``teacher=ensemble``, K = 4; ``teacher=resnet18``, K = 1, born-again): K networks,
  member k trained as the teacher run of seed :func:`~kd_lightning.seeding.member_seed` ``(seed, k)`` on the
  students' own data draw (``factor_seed`` kept). Each member is an ordinary registry teacher: trained once,
  reused by every student, under the registry's lock, and only the missing ones are trained.
- The ensemble's identity is its members' identities plus K (:func:`ensemble_reference`); it is what a student's
  identity names as its teacher. Its test metrics are measured once and cached beside the members
  (:func:`ensemble_summary`).
- ``teacher.data: full`` trains the teacher (or each member) on the full training split
  (:func:`kd_lightning.run.teachers.teacher_config`).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from kd_lightning import teacher_kind
from kd_lightning.models import EnsembleTeacher
from kd_lightning.modules.base import ClassifierModule
from kd_lightning.run import data_files, rundir, teachers
from kd_lightning.run.build import build_datamodule
from kd_lightning.run.config import to_plain
from kd_lightning.run.identity import digest
from kd_lightning.run.records import write_json
from kd_lightning.seeding import isolated_rng, member_seed

ENSEMBLE_FILE = "ensemble.json"
#: 2: the soft-label entropy is the KD target's (mean of the members' softmaxes at T); older files are measured again
#: (as is a file without its members' weights digests, one whose members were retrained since, or one measured on
#: other files; a complexity cache entry from before the files digest is kept: it was measured on the config's data)
ENSEMBLE_SUMMARY_VERSION = 2
log = logging.getLogger("kd_lightning")


def ensemble_size(cfg: DictConfig) -> int:
    """K, the number of members; 0 for the paper's single teacher on the run's own seed."""
    return int(OmegaConf.select(cfg, "teacher.members", default=0) or 0)


def teacher_label(cfg: DictConfig) -> str:
    """:func:`kd_lightning.teacher_kind.label` of this run's teacher."""
    variant = teachers.teacher_variant(cfg)
    arch, student_arch = str(cfg.teacher_model.arch), str(cfg.student_model.arch)
    return teacher_kind.label(ensemble_size(cfg), arch, teachers.teacher_data(cfg), variant, student_arch)


def member_config(cfg: DictConfig, member: int) -> DictConfig:
    """The teacher run of ensemble member ``member``: ``method=teacher`` on seed ``member_seed(seed, member)``, on
    the students' own data draw (``factor_seed`` pinned to theirs), a single teacher itself."""
    mcfg = copy.deepcopy(teachers.teacher_config(cfg))
    factor_seed = OmegaConf.select(cfg, "dataset.factors.factor_seed", default=None)
    with open_dict(mcfg):
        if factor_seed is not None:
            mcfg.dataset.factors.factor_seed = int(factor_seed)
        mcfg.seed = member_seed(int(cfg.seed), member)
        # data=full and the variant's settings are applied by teacher_config already (its name is kept)
        mcfg.teacher.members, mcfg.teacher.data = 0, "same"
    return mcfg


def member_entries(
    cfg: DictConfig, train: Callable[[DictConfig], Any], train_if_missing: bool
) -> list[tuple[Path, str]] | None:
    """Each member's registry entry and key, training the missing ones first; None if any is missing (and not
    to be trained)."""
    members = range(ensemble_size(cfg))
    found = [teachers.registered(cfg, member_config(cfg, k), train, train_if_missing) for k in members]
    return None if any(f is None for f in found) else found  # type: ignore[return-value]


def ensemble_reference(found: Sequence[tuple[Path, str]]) -> str:
    """The ensemble's identity: K and its members' identities (registry key and seed folder), in member order."""
    return f"ensemble{len(found)}[" + ",".join(f"{key}/{entry.name}" for entry, key in found) + "]"


def planned_ensemble_reference(cfg: DictConfig) -> str:
    """:func:`ensemble_reference` of the members ``cfg`` names, from their configs alone (nothing read or trained)."""
    configs = [member_config(cfg, k) for k in range(ensemble_size(cfg))]
    keys = [teachers.teacher_key(mcfg) for mcfg in configs]
    return ensemble_reference([(teachers.entry_dir(m, key), key) for m, key in zip(configs, keys)])


def ensemble_key(found: Sequence[tuple[Path, str]]) -> str:
    return f"ensemble{len(found)}-{digest({'teacher': ensemble_reference(found)}, length=8)}"


# -- the ensemble's own test metrics -----------------------------------------------------------------
def test_metrics(net: nn.Module, cfg: DictConfig) -> dict[str, Any]:
    """The metrics a run's test split gives ``net`` (accuracy, macro-F1, NLL, ECE, soft-label entropy, per-class
    F1), through the same test step as every run (:class:`~kd_lightning.modules.base.ClassifierModule`)."""
    with isolated_rng():  # the placeholder network built below must not move anyone's stream
        module = ClassifierModule(
            net=OmegaConf.to_container(cfg.teacher_model, resolve=True),
            optimizer={},
            top_k=list(cfg.dataset.top_k),
            dataset=str(cfg.dataset.name),
        )
    module.net = net
    trainer = L.Trainer(
        accelerator=str(OmegaConf.select(cfg, "trainer.accelerator", default="auto")),
        devices=1,
        limit_test_batches=OmegaConf.select(cfg, "trainer.limit_test_batches", default=None),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.test(module, datamodule=build_datamodule(cfg), verbose=False)
    return dict(module.last_test_results)


def combined_weights(digests: Sequence[str | None]) -> str | None:
    """The weights digest of a teacher made of networks with ``digests``: the one network's own, an ensemble's
    digest of its members' in member order; None when any is unknown."""
    if not digests or any(d is None for d in digests):
        return None
    return digests[0] if len(digests) == 1 else hashlib.sha256("|".join(digests).encode()).hexdigest()  # type: ignore[arg-type]


def load_members(checkpoints: Sequence[str], cfg: DictConfig) -> tuple[nn.Module, dict[str, Any]]:
    """The teacher network of ``checkpoints`` (the network itself for one, an :class:`EnsembleTeacher` for more),
    each checked against this run's data, the first one's network config and dataset, and the weights digest of
    the whole (:func:`combined_weights`)."""
    loaded = [
        teachers.load_teacher(c, str(cfg.dataset.name), int(cfg.student_model.num_classes), int(cfg.dataset.channels))
        for c in checkpoints
    ]
    nets, digests = [net for net, _ in loaded], [info["weights_sha256"] for _, info in loaded]
    info = {**loaded[0][1], "weights_sha256": combined_weights(digests), "members_weights_sha256": digests}
    return (nets[0] if len(nets) == 1 else EnsembleTeacher(nets)), info


def with_loaded_weights(record: dict[str, Any], loaded: dict[str, Any]) -> dict[str, Any]:
    """A student's record of its teacher with the digests of the weights it loaded (:func:`load_members`): the
    whole teacher's, and each ensemble member's in its own entry (so a replaced member is found even where the
    others' registry entries predate the digests)."""
    out = {**record, "weights_sha256": loaded["weights_sha256"]}
    if record.get("members"):
        members = zip(record["members"], loaded["members_weights_sha256"], strict=True)
        out["members"] = [{**member, "weights_sha256": digest} for member, digest in members]
    return out


def networks_weights(teacher: dict[str, Any]) -> list[str | None]:
    """The weights digest of each network of a recorded teacher (an ensemble's members in order, or the one)."""
    return (
        [m.get("weights_sha256") for m in teacher["members"]]
        if teacher.get("members")
        else [teacher.get("weights_sha256")]
    )


def same_teacher(run_dir: str | Path, teacher: teachers.TeacherChoice | None) -> bool:
    """Whether the unfinished run of this config in ``run_dir`` (its ``last.ckpt``) was trained with the weights of the
    registry teacher it would resume with (its ``teacher_info`` hyperparameters against the registry's digests;
    unknown, or a ``teacher_ckpt=`` file: yes). A teacher replaced mid-run would otherwise leave a student trained
    half with each. An unreadable checkpoint is :func:`~kd_lightning.run.rundir.plan`'s to handle."""
    checkpoint = Path(run_dir) / rundir.LAST_CHECKPOINT
    if teacher is None or teacher.record.get("source") != "registry" or not checkpoint.is_file():
        return True
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True).get("hyper_parameters")
    except Exception:  # noqa: BLE001 - torch raises many kinds on a damaged file
        return True
    info = (saved or {}).get("teacher_info") or {}
    if info and teachers.replaced_networks(networks_weights(info), networks_weights(teacher.record)):
        log.warning("%s: its unfinished run had another teacher than the registry's now; it starts afresh", run_dir)
        return False
    return True


def registry_weights(cfg: DictConfig) -> list[str | None]:
    """:func:`~kd_lightning.run.teachers.registered_weights` of each registry network this run's teacher is."""
    if ensemble_size(cfg):
        return [
            teachers.registered_weights(teachers.entry_dir(member_config(cfg, k))) for k in range(ensemble_size(cfg))
        ]
    return [teachers.registered_weights(teachers.entry_dir(teachers.teacher_config(cfg)))]


def _member_record(entry: Path, key: str, weights: str | None) -> dict[str, Any]:
    meta = teachers.read_entry(entry) or {}
    return {
        **teachers.describe(entry / teachers.CHECKPOINT_FILE, "registry", key),
        "seed": meta.get("seed"),
        "wall_time_s": meta.get("wall_time_s"),
        "last_checkpoint": meta.get("last_checkpoint"),
        "weights_sha256": weights,
    }


def ensemble_summary(cfg: DictConfig, found: Sequence[tuple[Path, str]]) -> dict[str, Any]:
    """The ensemble's members and its test metrics (best-validation members; last-epoch members where every
    member's last checkpoint is still on disk), measured once and cached in the registry beside the members; with
    the digests of the weights it loaded and of the files it measured on, so a member retrained since, or another
    copy of the data, has them measured again."""
    reference = ensemble_reference(found)
    files = data_files.current_digest(cfg)
    cache = Path(cfg.paths.teachers_dir) / str(cfg.dataset.name) / ensemble_key(found) / f"seed{cfg.seed}"
    if (cache / ENSEMBLE_FILE).is_file():
        cached = json.loads((cache / ENSEMBLE_FILE).read_text())
        measured = [m.get("weights_sha256") for m in cached.get("members", [])]  # the weights it loaded
        if (
            (cached.get("reference"), cached.get("version")) == (reference, ENSEMBLE_SUMMARY_VERSION)
            and all(isinstance(d, str) for d in measured)  # a summary older than the digests: measured again
            and not teachers.replaced_networks(measured, [teachers.registered_weights(e) for e, _ in found])
            and (
                files is None or cached.get(data_files.RECORD_KEY) == files
            )  # these files' test split (missing: no evidence)
        ):
            return cached
    tcfg = teachers.teacher_config(cfg)
    best, loaded = load_members([str(entry / teachers.CHECKPOINT_FILE) for entry, _ in found], tcfg)
    digests = loaded["members_weights_sha256"]
    members = [_member_record(entry, key, digest) for (entry, key), digest in zip(found, digests)]
    last = [m["last_checkpoint"] for m in members]
    summary = {
        "version": ENSEMBLE_SUMMARY_VERSION,
        "reference": reference,
        "key": ensemble_key(found),
        "label": teacher_label(cfg),
        "size": len(found),
        "data": teachers.teacher_data(cfg),
        "members": members,
        "weights_sha256": combined_weights(digests),
        "members_mean_acc": statistics.fmean(m["test_acc"] for m in members),
        "test_best": test_metrics(best, tcfg),
        "test_last": (
            test_metrics(load_members(last, tcfg)[0], tcfg) if all(p and Path(p).is_file() for p in last) else None
        ),
    }
    summary[data_files.RECORD_KEY] = data_files.current_digest(cfg)  # after measuring: files it downloaded count
    write_json(cache / ENSEMBLE_FILE, summary)
    return summary


# -- the entry points train.py calls -------------------------------------------------------------------
def planned_reference(cfg: DictConfig) -> tuple[bool, str | None]:
    """``(known, reference)``: the teacher reference this run's identity will record, from its config alone (the
    registry keys are digests of configs), without reading the registry or training anything, so a completed run
    is recognised before its teacher is looked up. Not known for ``teacher_ckpt=`` naming a file that is not there
    (its reference is the file's hash)."""
    method = get_class(cfg.method._target_)
    if method.publishes_teacher or not method.requires_teacher:
        return True, None  # a teacher run, or scratch (its teacher only measures fidelity): no reference
    if cfg.get("teacher_ckpt"):
        return (True, teachers.teacher_reference(cfg)) if Path(cfg.teacher_ckpt).is_file() else (False, None)
    if ensemble_size(cfg):
        return True, planned_ensemble_reference(cfg)
    tcfg = teachers.teacher_config(cfg)
    return True, teachers.teacher_reference(cfg, teachers.teacher_key(tcfg))


def refuse_replaced_teacher(cfg: DictConfig, done: dict[str, Any]) -> None:
    """Refuse to skip the completed run ``done`` as finished when the registry teacher it distilled from now has
    other weights (:class:`~kd_lightning.run.teachers.TeacherReplacedError`); a scratch run's fidelity to the old
    teacher is only warned about. A teacher given by ``teacher_ckpt=`` is in the run's identity by its file's hash,
    and a teacher missing from the registry now (pruned, moved) is no evidence: neither is checked here."""
    if not done.get("teacher") or cfg.get("teacher_ckpt"):
        return
    recorded, current = networks_weights(done["teacher"]), registry_weights(cfg)
    if get_class(cfg.method._target_).requires_teacher:
        teachers.refuse_replaced(done, recorded, current)
    elif teachers.replaced_networks(recorded, current):
        log.warning(
            "%s: its fidelity metrics were measured against teacher %s, which the registry has replaced since "
            "(force=true on this run measures them again)",
            done.get("run_dir"),
            done["teacher"].get("key"),
        )


def resolve_teacher(cfg: DictConfig, train: Callable[[DictConfig], Any]) -> teachers.TeacherChoice | None:
    """The teacher this run distils from (or, for scratch, is compared with): the registry's single teacher, or
    the ensemble of its members; its record says the kind, the label and the data it saw."""
    kind = {"kind": "single", "label": teacher_label(cfg), "data": teachers.teacher_data(cfg)}
    if not ensemble_size(cfg) or cfg.get("teacher_ckpt"):
        choice = teachers.resolve_teacher(cfg, train)
        return dataclasses.replace(choice, record={**choice.record, **kind}) if choice is not None else None
    if cfg.method.name == "teacher":
        return None
    distils = bool(get_class(cfg.method._target_).requires_teacher)
    found = member_entries(cfg, train, train_if_missing=distils)
    if found is None:
        log.info("ensemble members missing for %s seed=%s: fidelity metrics are left empty", cfg.dataset.name, cfg.seed)
        return None
    summary = ensemble_summary(cfg, found)
    record = {
        **kind,
        "kind": "ensemble",
        "key": summary["key"],
        "checkpoint": None,
        "source": "registry",
        "test_acc": summary["test_best"]["acc"],
        "members_mean_acc": summary["members_mean_acc"],
        "members": summary["members"],
        "run_dir": None,
        "stale": any(m["stale"] for m in summary["members"]),
        # the code that trained the members: the first one trained by other code, else member 0's
        "code_version": next((m for m in summary["members"] if m["stale"]), summary["members"][0])["code_version"],
    }
    checkpoints = tuple(m["checkpoint"] for m in summary["members"])
    return teachers.TeacherChoice(checkpoints, record, summary["reference"] if distils else None)


def train_or_reuse(cfg: DictConfig, fit: Callable[[DictConfig, None], dict[str, Any]]) -> dict[str, Any]:
    """A teacher run: the single teacher (:func:`kd_lightning.run.teachers.train_or_reuse`), or every missing
    member trained into the registry and the ensemble's record written in this run's folder."""
    if not ensemble_size(cfg):
        return teachers.train_or_reuse(cfg, fit)

    def row_identity(reference: str) -> dict[str, Any]:
        return {"seed": int(cfg.seed), "ensemble": reference}  # the teacher: it distils from none

    planned = planned_ensemble_reference(cfg)
    if not cfg.force:  # another config's row in this folder is refused before any member trains
        rundir.refuse_conflict(cfg.paths.run_dir, digest({"teacher": planned}), row_identity(planned))
    train_members = copy.deepcopy(cfg)
    with open_dict(train_members):
        train_members.teacher_missing = "train"  # a teacher run is asked to train its teacher
    found = member_entries(train_members, lambda mcfg: teachers.train_or_reuse(mcfg, fit), train_if_missing=True)
    assert found is not None  # every member was trained or found
    # members trained on other files are not this data's teacher (checked again once the measuring below has
    # downloaded missing files); the members' own registry locks were held while they were found, not the row's
    files = data_files.current_digest(cfg)
    members = {
        "source": "registry",
        "members": [teachers.describe(e / teachers.CHECKPOINT_FILE, "registry", k) for e, k in found],
    }
    data_files.refuse_other_teacher(cfg, members, files)
    reference = ensemble_reference(found)
    identity = row_identity(reference)
    with rundir.claim(cfg.paths.run_dir):  # the ensemble's row, in this run's folder
        fingerprint = digest({"teacher": reference})
        done = None if cfg.force else rundir.completed(cfg.paths.run_dir, fingerprint, log)
        current = [teachers.registered_weights(entry) for entry, _ in found]
        if done is not None and not teachers.stale_row(done, current, files):
            return done  # decided before the ensemble is measured (which reads the data)
        if done is not None:  # a member was replaced since, or other files: the row records the ensemble anew
            log.warning("%s recorded other members or files than now; recording them anew", cfg.paths.run_dir)
        summary = ensemble_summary(cfg, found)
        data_files.refuse_other_teacher(cfg, members, summary.get(data_files.RECORD_KEY))
        plan = rundir.plan(cfg.paths.run_dir, fingerprint, bool(cfg.force) or done is not None, log, identity=identity)
        record = rundir.start_record(plan, rundir.record_keys(cfg), to_plain(cfg), identity)
        walls = [m["wall_time_s"] for m in summary["members"]]
        return rundir.complete(
            record,
            wall_time_s=sum(walls) if all(isinstance(w, (int, float)) for w in walls) else None,
            teacher_key=summary["key"],
            weights_sha256=summary["weights_sha256"],
            **{data_files.RECORD_KEY: summary.get(data_files.RECORD_KEY)},
            ensemble={k: v for k, v in summary.items() if k not in ("test_best", "test_last")},
            test_best=summary["test_best"],
            test_last=summary["test_last"],
        )
