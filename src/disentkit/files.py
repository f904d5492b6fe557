"""Writing files so that a reader, or a crash, never sees half of one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """A file to write ``path`` through: written as ``path.part``, flushed to disk, then renamed, so readers
    (and a run killed at any moment) see the old file or the whole new one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, mode) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_file`)."""
    with atomic_file(path) as f:
        f.write(text)
    return Path(path)
