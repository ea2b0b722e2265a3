"""Free disk under sweeps and the teacher registry without losing what the project reads:
``python -m kd_lightning.prune <folder>... [--exports] [--last-checkpoints] [--apply]``.

Only **completed** runs are touched (``results.json`` says ``completed``; nothing under an ``archive/`` folder):
a running, failed or interrupted run keeps every file, since it resumes from ``checkpoints/last.ckpt``.

- Always, losslessly: byte-identical checkpoint files of completed runs and registry teachers become hard links
  of one file (a teacher published by copy, as before hard links: ``teacher.ckpt`` and its run's best
  checkpoint; ~90 MB per ResNet18 member).
- ``--exports``: each completed run's ``export/model.onnx``. ``python -m kd_lightning.export <run>`` rebuilds it
  from the best checkpoint; ``results.json`` keeps its size and check.
- ``--last-checkpoints``: each completed student's ``checkpoints/last.ckpt``. Only a resume reads it; the
  last-epoch test numbers stay in ``results.json``, and best checkpoints are kept. A registry teacher's run keeps
  its ``last.ckpt``: an ensemble's last-epoch test loads its members' (``run/teacher_kinds.py``).

Without ``--apply`` the command only lists what it would do and the bytes that would be freed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kd_lightning.run.byproducts import EXPORT_FILE
from kd_lightning.run.records import find_results, read_results
from kd_lightning.run.rundir import LAST_CHECKPOINT
from kd_lightning.run.teachers import CHECKPOINT_FILE, METADATA_FILE

CHUNK = 1 << 20


@dataclass
class Plan:
    """What pruning a set of folders deletes and links, and the bytes that frees."""

    delete: list[Path] = field(default_factory=list)
    link: list[tuple[Path, Path]] = field(default_factory=list)  # (duplicate, the file it becomes a link of)

    @property
    def freed(self) -> int:
        """Bytes returned to the file system: a file's size where this is its last name."""
        return sum(p.stat().st_size for p in self.delete if p.stat().st_nlink == 1) + sum(
            dup.stat().st_size for dup, _ in self.link if dup.stat().st_nlink == 1
        )


def completed_runs(folders: Iterable[Path]) -> list[Path]:
    """Run folders whose record says completed (archives excluded)."""
    return [p.parent for folder in folders for p in find_results(folder) if _completed(p.parent)]


def registry_checkpoints(folders: Iterable[Path]) -> list[Path]:
    """Every registry teacher's ``teacher.ckpt`` (a folder with its ``teacher.json``) under ``folders``."""
    found = (p for folder in folders for p in Path(folder).rglob(CHECKPOINT_FILE))
    return sorted(p for p in found if (p.parent / METADATA_FILE).is_file() and "archive" not in p.parts)


def plan(folders: Sequence[Path], exports: bool = False, last_checkpoints: bool = False) -> Plan:
    """The files to delete (the flags') and the identical checkpoints to link, for completed runs only."""
    runs = completed_runs(folders)
    out = Plan()
    for run in runs:
        registry_teacher = (run.parent / METADATA_FILE).is_file()  # <entry>/run beside its teacher.json
        for wanted, path in (
            (exports, run / EXPORT_FILE),
            (last_checkpoints and not registry_teacher, run / LAST_CHECKPOINT),
        ):
            if wanted and path.is_file():
                out.delete.append(path)
    gone = set(out.delete)
    kept = [p for run in runs for p in sorted((run / "checkpoints").glob("*.ckpt")) if p not in gone]
    out.link = identical_pairs([*kept, *registry_checkpoints(folders)])
    return out


def identical_pairs(files: Iterable[Path]) -> list[tuple[Path, Path]]:
    """(duplicate, original) for files with the same bytes that are not one file yet; hashed only where sizes
    agree. The original is the first by path."""
    by_size: dict[int, list[Path]] = defaultdict(list)
    for path in sorted(set(files)):
        by_size[path.stat().st_size].append(path)
    pairs = []
    for same_size in (group for group in by_size.values() if len(group) > 1):
        by_digest: dict[str, list[Path]] = defaultdict(list)
        for path in same_size:
            by_digest[_digest(path)].append(path)
        for first, *rest in by_digest.values():
            pairs += [(dup, first) for dup in rest if not os.path.samefile(dup, first)]
    return pairs


def apply(todo: Plan) -> None:
    """Delete, then link (through a temporary name and a rename: a file is never missing or half there)."""
    for path in todo.delete:
        path.unlink()
    for dup, original in todo.link:
        tmp = dup.with_name(dup.name + ".prune-tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(original, tmp)
        except OSError as exc:  # another file system, or one without hard links: the copy stays
            print(f"kept   {dup} ({exc.strerror or exc})")
            continue
        tmp.replace(dup)


def _completed(run: Path) -> bool:
    record = read_results(run)
    return bool(record) and record.get("status") == "completed"


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kd_lightning.prune",
        description="Free disk under sweeps and the teacher registry; completed runs only (docs/reliability.md).",
    )
    parser.add_argument("folders", type=Path, nargs="+", help="sweep folders, output folders or the registry")
    parser.add_argument("--exports", action="store_true", help="delete completed runs' export/model.onnx")
    parser.add_argument("--last-checkpoints", action="store_true", help="delete completed runs' last.ckpt")
    parser.add_argument("--apply", action="store_true", help="do it (default: list what would be done)")
    args = parser.parse_args(argv)
    missing = [str(f) for f in args.folders if not f.is_dir()]
    if missing:
        parser.error(f"not a folder: {missing}")
    todo = plan(args.folders, args.exports, args.last_checkpoints)
    for path in todo.delete:
        print(f"delete {path}")
    for dup, original in todo.link:
        print(f"link   {dup} -> {original}")
    freed = todo.freed
    if args.apply:
        apply(todo)
        print(f"{len(todo.delete)} file(s) deleted, {len(todo.link)} linked: freed {freed / 1e9:.2f} GB")
    else:
        print(f"{len(todo.delete)} file(s) to delete, {len(todo.link)} to link: {freed / 1e9:.2f} GB (--apply does it)")
    return 0
