"""Writing files so that a reader, or a crash, never sees half of one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Iterator


def lock_file(f: IO, lock: bool) -> None:
    """An exclusive, non-blocking lock on an open file (``flock`` on POSIX, ``msvcrt.locking`` on Windows;
    both die with the process); ``OSError`` when another process holds it. Imported here, not at module
    level, so the module imports everywhere."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK if lock else msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(f, (fcntl.LOCK_EX | fcntl.LOCK_NB) if lock else fcntl.LOCK_UN)


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
