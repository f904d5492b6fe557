"""Sweep folders: one per sweep, one per run, and the files that say what happened.

Sweep folder::

    sweep.json     the expanded sweep (every run spec) and its config hash
    sweep.yaml     the config as given (for people)
    events.jsonl   start / done / failed events, appended by every attempt
    runs/<id>/     one `disentkit train` run folder + run.json + metrics.json + DONE
    ensembles/     the training state and log of runs trained as one fused ensemble

A run counts as done only when ``model.safetensors`` and ``metrics.json`` exist and ``DONE`` (written
atomically, last) holds the run's config hash. A folder that holds a different sweep config is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import traceback
from pathlib import Path
from typing import Any, Iterator

import yaml

from ..errors import DisentkitError
from ..files import lock_file, write_atomic
from .grid import RunSpec, Sweep

DONE = "DONE"
ERROR = "error.txt"


def run_dir(sweep_dir: str | Path, run_id: str) -> Path:
    return Path(sweep_dir) / "runs" / run_id


def is_done(folder: Path, spec: RunSpec) -> bool:
    """True when the run finished with this exact config (``DONE`` holds its hash)."""
    marker = folder / DONE
    if not (marker.is_file() and (folder / "model.safetensors").is_file() and (folder / "metrics.json").is_file()):
        return False
    try:
        return json.loads(marker.read_text()).get("config_hash") == spec.config_hash
    except (OSError, ValueError):
        return False


def log_event(sweep_dir: Path, **event: Any) -> None:
    """Append one JSON line to ``events.jsonl`` (a single small write: whole lines even when processes race)."""
    line = json.dumps({"time": round(time.time(), 3), **event}) + "\n"
    fd = os.open(sweep_dir / "events.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_events(sweep_dir: Path) -> list[dict[str, Any]]:
    """The events of ``events.jsonl`` in order (none if it is missing; a torn or foreign line is skipped)."""
    try:
        lines = (Path(sweep_dir) / "events.jsonl").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict):
            out.append(e)
    return out


def logged_done(sweep_dir: Path) -> set[str]:
    """Run ids with a ``done`` event."""
    return {e.get("run") for e in read_events(sweep_dir) if e.get("event") == "done"}


def load_sweep_dir(sweep_dir: str | Path) -> tuple[dict[str, Any], list[RunSpec]]:
    """The saved sweep record and its run specs; a folder without ``sweep.json`` is not a sweep."""
    p = Path(sweep_dir) / "sweep.json"
    if not p.is_file():
        raise DisentkitError(f"{sweep_dir} is not a sweep folder (no sweep.json); run `disentkit sweep CONFIG` first")
    rec = json.loads(p.read_text())
    return rec, [RunSpec.from_dict(r) for r in rec["runs"]]


def is_sweep_dir(path: str | Path) -> bool:
    return (Path(path) / "sweep.json").is_file()


def default_out(sweep: Sweep) -> Path:
    return Path("runs") / "sweeps" / f"{sweep.name}-{sweep.config_hash[:8]}"


def prepare_sweep_dir(sweep: Sweep, out: str | Path, source_text: str | None = None) -> Path:
    """Create the folder, or check that it holds this very sweep; never mixes two configs."""
    out = Path(out)
    rec_path = out / "sweep.json"
    if rec_path.is_file():
        old = json.loads(rec_path.read_text())
        if old.get("config_hash") != sweep.config_hash:
            raise DisentkitError(
                f"{out} holds sweep '{old.get('name')}' with another configuration (hash {old.get('config_hash', '?')[:8]} "
                f"≠ {sweep.config_hash[:8]}: different grid, steps or settings); choose another --out (or leave "
                "--out out to get a folder per config)")
    elif out.exists() and any(out.iterdir()):
        raise DisentkitError(f"{out} exists and is not a sweep folder; choose another --out")
    (out / "runs").mkdir(parents=True, exist_ok=True)
    if not rec_path.is_file():
        record = {"name": sweep.name, "description": sweep.description, "config_hash": sweep.config_hash,
                  "created": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": [r.to_dict() for r in sweep.runs]}
        write_atomic(rec_path, json.dumps(record, indent=1))
        write_atomic(out / "sweep.yaml", source_text or yaml.safe_dump(sweep.source, sort_keys=False))
    return out


@contextlib.contextmanager
def sweep_lock(out: Path) -> Iterator[None]:
    """One sweep process per folder at a time (the lock dies with its process, even on SIGKILL; forked run
    processes drop their inherited copy, :func:`drop_inherited_lock`, so none keeps it after the sweep died)."""
    f = open(out / ".lock", "w")
    try:
        lock_file(f, True)
    except OSError:  # BlockingIOError (POSIX) or PermissionError (Windows): held by another process
        f.close()
        raise DisentkitError(f"another `disentkit sweep` is running in {out}; wait for it or stop it first") from None
    _LOCKS.append(f.fileno())
    try:
        yield
    finally:
        _LOCKS.remove(f.fileno())
        lock_file(f, False)
        f.close()


_LOCKS: list[int] = []   # this process's sweep-lock descriptors


def drop_inherited_lock() -> None:
    """In a forked run process: close the sweep lock's descriptor (closing, not unlocking: the sweep keeps
    its lock), so that a run dying after its sweep holds no lock a restarted sweep would wait for."""
    for fd in _LOCKS:
        with contextlib.suppress(OSError):
            os.close(fd)
    _LOCKS.clear()


def failure_reason(folder: Path, fallback: str) -> str:
    """The last line of a run's ``error.txt`` (the exception), else ``fallback``."""
    err = folder / ERROR
    if err.is_file():
        lines = [ln for ln in err.read_text().strip().splitlines() if ln.strip()]
        if lines:
            return lines[-1].strip()
    return fallback


def write_error(folder: Path, exc: BaseException) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if isinstance(exc, DisentkitError):
        text += f"\nDisentkitError: {exc}"
    (folder / ERROR).write_text(text)


def last_logged_step(folder: Path) -> int | None:
    """The last step in a running run's CSV log (Lightning flushes it every 100 steps), if any."""
    path = folder / "csv" / "metrics.csv"
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 4096))
            lines = f.read().decode(errors="ignore").strip().splitlines()
        header = path.open().readline().strip().split(",")
        return int(float(lines[-1].split(",")[header.index("step")]))
    except (OSError, ValueError, IndexError):
        return None
