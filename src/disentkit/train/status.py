"""A run folder's lifecycle: a lock while it trains, a ``finished.json`` written last, and the status that
``evaluate`` and ``report`` check, so that an unfinished run is never scored as if it were finished.

A run is *finished* when its ``finished.json`` exists, or (folders written before the marker) when its
training state says every step was trained or every member stopped early, or it has only a final
``model.safetensors``. It is *unfinished* while it trains (the lock is held), after it was killed (its state
is behind its total), and after it diverged (``diverged.json``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import DisentkitError
from ..files import lock_file, write_atomic
from .checkpoint import STATE_FILE, load_state
from .guard import DIVERGED_FILE

LOCK_FILE = "run.lock"
FINISHED_FILE = "finished.json"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"process {info['pid']} on {info['host']} (started {info['started']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold ``run.lock`` in ``run_dir`` while a run trains there: a second training of the same folder is one
    line naming the process that holds it. The lock dies with its process (even on SIGKILL); the file is
    removed on the way out. A folder this call created is removed again if training fails before writing
    anything into it."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise DisentkitError(f"--out {run_dir} is a file, not a folder; choose another --out")
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        f = open(run_dir / LOCK_FILE, "a+")
    except OSError as e:
        raise DisentkitError(f"cannot write the run folder {run_dir} ({e.strerror}); choose another --out") from None
    try:
        lock_file(f, True)
    except OSError:
        f.close()
        raise DisentkitError(f"{run_dir} is being trained by {_holder(run_dir / LOCK_FILE)}; wait for it to end "
                             "or stop it, or choose another --out") from None
    f.seek(0)
    f.truncate()
    f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                        "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
    f.flush()
    failed = False
    try:
        yield run_dir
    except BaseException:
        failed = True
        raise
    finally:
        with contextlib.suppress(OSError):
            (run_dir / LOCK_FILE).unlink()
        lock_file(f, False)
        f.close()
        if created and (not any(run_dir.iterdir()) or (failed and not _worth_keeping(run_dir))):
            shutil.rmtree(run_dir, ignore_errors=True)   # failed before any weights: leave no folder behind


def _worth_keeping(run_dir: Path) -> bool:
    """Whether a run folder this call created holds anything after a failure: weights, a training state or
    the record of a divergence."""
    return any(True for pattern in ("**/*.safetensors", "**/training_state.pt", "**/diverged.json")
               for _ in run_dir.glob(pattern))


def is_locked(run_dir: Path) -> bool:
    """Whether a process holds the run's lock now (it is training)."""
    path = run_dir / LOCK_FILE
    if not path.is_file():
        return False
    try:
        with open(path, "a+") as f:
            lock_file(f, True)
            lock_file(f, False)
    except OSError:
        return True
    return False


def mark_finished(run_dir: str | Path, steps: int) -> None:
    """Write ``finished.json``, the last file a run writes."""
    write_atomic(Path(run_dir) / FINISHED_FILE, json.dumps({"steps": steps,
                                                             "finished": time.strftime("%Y-%m-%d %H:%M:%S")}))


@dataclass
class RunStatus:
    """Whether a run folder holds a finished run; if not, why, and how far it trained."""

    finished: bool
    why: str = ""
    step: int | None = None
    total: int | None = None


def run_status(folder: str | Path) -> RunStatus:
    """The status of the run in ``folder`` (a plain folder of checkpoints counts as finished)."""
    folder = Path(folder)
    if is_locked(folder):
        return RunStatus(False, f"is training now ({_holder(folder / LOCK_FILE)})")
    if (folder / DIVERGED_FILE).is_file():
        try:
            d = json.loads((folder / DIVERGED_FILE).read_text())
            return RunStatus(False, f"diverged at step {d['step']} (see its {DIVERGED_FILE})", d.get("kept_step"))
        except (OSError, ValueError, KeyError, TypeError):
            return RunStatus(False, f"diverged (see its {DIVERGED_FILE})")
    if (folder / FINISHED_FILE).is_file():
        return RunStatus(True)
    only_last = (folder / "last.safetensors").is_file() and not (folder / "model.safetensors").is_file()
    if (folder / STATE_FILE).is_file():
        try:
            state = load_state(folder / STATE_FILE)
        except DisentkitError:
            return RunStatus(False, f"has an unreadable {STATE_FILE}")
        done, total = int(state["done"]), int(state["total"])
        stopped = bool(state["trackers"]) and all(t["stopped"] for t in state["trackers"])
        if done < total and not stopped:
            return RunStatus(False, f"stopped after {done} of {total} steps (killed, or still to be resumed)",
                             done, total)
        if not only_last:
            return RunStatus(True, step=done, total=total)
    if only_last:     # killed before its result was written
        return RunStatus(False, "has only an intermediate checkpoint (last.safetensors)")
    return RunStatus(True)


def require_finished(folder: str | Path, allow_partial: bool, what: str = "evaluate") -> RunStatus:
    """The run's status; an error naming why unless it is finished or ``allow_partial``."""
    status = run_status(folder)
    if not status.finished and not allow_partial:
        resume = f"; finish it with `disentkit train --resume {folder}`" if "steps" in status.why else ""
        raise DisentkitError(f"{folder} {status.why}: not a finished run{resume}, or {what} it as it is with "
                             "--allow-partial")
    return status
