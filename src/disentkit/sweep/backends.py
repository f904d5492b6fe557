"""Where sweep runs execute: the :class:`Backend` interface and the local one (a fresh process per job).

Each run trains in its own process (the local backend forks one per run, see :func:`start_method`; Ray runs it
in a worker process, ``ray_backend.py``), so a crash fails that run only: its reason is shown and the others go on.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
from multiprocessing.connection import wait as wait_sentinels
from pathlib import Path
from typing import Any, Callable

from .execute import execute_group, execute_run
from .folders import ERROR, drop_inherited_lock, failure_reason, write_error
from .grid import RunSpec


class Backend:
    """Starts runs (alone, or several as one fused ensemble) and reports finished ones; the scheduler
    does the rest. ``slots`` counts jobs at a time; an ensemble is one job."""

    slots: int = 1

    def start(self, spec: RunSpec, folder: Path, parent: Path | None) -> int | None:
        """Start a run; returns its process id where known."""
        raise NotImplementedError

    def start_group(self, specs: list[RunSpec], folders: list[Path], parents: list[Path | None]) -> int | None:
        """Start runs that train together as one fused ensemble (:func:`execute_group`)."""
        raise NotImplementedError

    def active(self) -> int:
        """Jobs running now."""
        raise NotImplementedError

    def wait(self, timeout: float) -> list[tuple[str, str | None]]:
        """(run id, failure reason or None) of runs that finished since the last call."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop everything still running (the sweep was interrupted)."""

    def notes(self) -> list[str]:
        """Lines for the sweep's output since the last call (a cluster's resources, a retried run)."""
        return []


def run_threads(spec: RunSpec, explicit: int, runs_at_once: int) -> int:
    """Torch threads for a run: --threads if given, else the config's ``threads``, else cores / runs at once."""
    return int(explicit or spec.train.get("threads") or max(1, (os.cpu_count() or 1) // max(1, runs_at_once)))


def _set_parent_death_signal() -> None:
    """Linux: the kernel kills this process when its parent dies (a SIGKILLed sweep leaves no orphans)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _enter_child(ppid: int) -> None:
    """Set up a forked run process: default SIGTERM, Ctrl-C left to the sweep (which stops its runs),
    and death with the sweep; exits at once if the sweep already died."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    drop_inherited_lock()
    _set_parent_death_signal()
    if os.getppid() != ppid:  # the sweep died before prctl took effect
        os._exit(1)


def _child(spec_dict: dict, folder: str, parent: str | None, threads: int, ppid: int) -> None:
    """Entry point of a forked run process: train, score, or write error.txt and exit 1."""
    _enter_child(ppid)
    spec = RunSpec.from_dict(spec_dict)
    try:
        execute_run(spec, Path(folder), Path(parent) if parent else None, threads=threads)
    except BaseException as e:  # noqa: BLE001 - every failure is recorded as the run's reason
        write_error(Path(folder), e)
        sys.stderr.flush()
        os._exit(1)
    os._exit(0)


def _group_child(spec_dicts: list[dict], folders: list[str], parents: list[str | None], threads: int,
                 ppid: int) -> None:
    """Entry point of a forked fused-ensemble process; each member's outcome is in its folder."""
    _enter_child(ppid)
    try:
        execute_group([RunSpec.from_dict(d) for d in spec_dicts], [Path(f) for f in folders],
                      [Path(p) if p else None for p in parents], threads=threads)
    except BaseException:  # noqa: BLE001 - execute_group wrote every member's error.txt
        sys.stderr.flush()
        os._exit(1)
    os._exit(0)


def start_method() -> str:
    """``fork`` on Linux (runs start at once, nothing re-imported), except in a process that has loaded Ray: its
    gRPC threads make a forked child unsafe (a local sweep after a Ray sweep in one process once lost its runs
    to SIGSEGV at start), so ``spawn`` there, as on other systems."""
    return "fork" if sys.platform.startswith("linux") and "ray" not in sys.modules else "spawn"


class LocalBackend(Backend):
    """N worker processes on this machine, one fresh process per job (fork on Linux: no re-import)."""

    def __init__(self, workers: int = 1, threads: int = 0) -> None:
        self.slots = max(1, workers)
        self.threads = threads        # 0: the config's `threads`, else cores / workers
        self.ctx = mp.get_context(start_method())
        self.procs: list[tuple[Any, list[tuple[str, Path]]]] = []   # (process, its runs)

    def _spawn(self, target: Callable, args: tuple, runs: list[tuple[str, Path]]) -> int | None:
        import lightning.fabric  # noqa: F401  (torch and Lightning imported once here: forked runs start at once)

        import disentkit.train.session  # noqa: F401

        p = self.ctx.Process(target=target, args=(*args, os.getpid()), daemon=False)
        p.start()
        self.procs.append((p, runs))
        return p.pid

    def start(self, spec: RunSpec, folder: Path, parent: Path | None) -> int | None:
        threads = run_threads(spec, self.threads, self.slots)
        return self._spawn(_child, (spec.to_dict(), str(folder), str(parent) if parent else None, threads),
                           [(spec.run_id, folder)])

    def start_group(self, specs: list[RunSpec], folders: list[Path], parents: list[Path | None]) -> int | None:
        threads = run_threads(specs[0], self.threads, self.slots)
        return self._spawn(_group_child, ([s.to_dict() for s in specs], [str(f) for f in folders],
                                          [str(p) if p else None for p in parents], threads),
                           [(s.run_id, f) for s, f in zip(specs, folders)])

    def active(self) -> int:
        return len(self.procs)

    def wait(self, timeout: float) -> list[tuple[str, str | None]]:
        if not self.procs:
            return []
        wait_sentinels([p.sentinel for p, _ in self.procs], timeout)
        out = []
        for job in list(self.procs):
            p, runs = job
            if p.is_alive():
                continue
            p.join()
            self.procs.remove(job)
            code = p.exitcode
            why = f"killed by signal {-code}" if code and code < 0 else f"exit status {code}"
            for rid, folder in runs:
                failed = code != 0 or (folder / ERROR).is_file()
                out.append((rid, failure_reason(folder, why) if failed else None))
        return out

    def stop(self) -> None:
        for p, _ in self.procs:
            with contextlib.suppress(Exception):
                p.terminate()
        for p, _ in self.procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
        self.procs.clear()
