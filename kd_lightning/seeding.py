"""Random streams that belong to a seed, not to the order in which a run happens to draw numbers.

Common random numbers: for one seed, the scratch, RKD and IKD students must start from the same
weights and see the same batches and augmentation draws, so that their paired difference carries no
seed noise they share. Anything drawn from torch's global generator between seeding and building the
student (building or loading the teacher, initialising IKD's adapters) would break that, and so would
data order or augmentation taken from the global stream. Hence:

- :func:`derive_seed` gives every stream its own seed, a pure function of the run seed and a name
  (and the epoch / batch number), so a resumed run draws exactly what an uninterrupted one drew;
- :func:`isolated_rng` runs code that must not touch the caller's stream (teacher, adapters).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch


def derive_seed(seed: int, *names: str | int) -> int:
    """A 63-bit seed for the stream ``names`` of run seed ``seed`` (numpy's SeedSequence hashing).

    Different names give statistically independent streams; the same arguments always the same seed.
    """
    words = [int(seed)]
    for name in names:
        words.extend(name.encode() if isinstance(name, str) else [int(name)])
        words.append(0xFFFF)  # separator: ("ab", 1) and ("a", "b1") differ
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0]) >> 1


def generator(seed: int, *names: str | int) -> torch.Generator:
    """A CPU ``torch.Generator`` for the stream ``names`` of ``seed``."""
    return torch.Generator().manual_seed(derive_seed(seed, *names))


@contextlib.contextmanager
def isolated_rng(seed: int | None = None) -> Iterator[None]:
    """Run the block on a private copy of torch's CPU (and CUDA) generators; the caller's streams are restored.

    With ``seed`` the block starts from that seed, so what it draws is reproducible on its own.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        if seed is not None:
            torch.manual_seed(seed)
        yield


#: run seeds of students (and of the paper's single teacher) lie below this; ensemble members' seeds at or above
#: it, below 2^32 (what ``lightning.seed_everything`` accepts). So no member is ever a student of a sweep, and a
#: member's initial weights, data order and augmentation never equal a student's.
MEMBER_SEED_BASE = 2**31


def member_seed(seed: int, member: int) -> int:
    """The run seed of ensemble member ``member`` (0-based) of run seed ``seed``: its own stream, in
    ``[MEMBER_SEED_BASE, 2^32)``. A pure function of both, so a member is found again by every student."""
    return MEMBER_SEED_BASE + derive_seed(seed, "ensemble_member", member) % MEMBER_SEED_BASE
