"""Running a sweep: parents before children, ready runs started while there are free slots, fusable runs
trained as one fused ensemble, resumable at any moment.

A restarted sweep skips done runs, continues a partly trained run from its training state (same final
weights as uninterrupted, on a CPU), and retrains a run that never reached its first checkpoint; a folder
never mixes two configs. Folder layout: ``folders.py``; one run: ``execute.py``; backends: ``backends.py``,
``ray_backend.py``; progress lines: ``progress.py``.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import DisentkitError
from .backends import Backend, LocalBackend
from .folders import (ERROR, default_out, is_done, last_logged_step, log_event, logged_done, prepare_sweep_dir, run_dir,
                      sweep_lock)
from .grid import RunSpec, Sweep, validate_runs
from .progress import Progress, _duration


@dataclass
class SweepResult:
    """The tally :func:`run_sweep` returns: its folder, the runs trained now, skipped as done before,
    failed (run id -> why), and the seconds it took.

    Example:

        >>> from pathlib import Path
        >>> from disentkit.sweep import SweepResult
        >>> result = SweepResult(Path("runs/sweeps/demo"), total=4, done=3, skipped=1, failed={}, seconds=12.5)
        >>> result.ok                       # every run done, now or before, and none failed
        True
    """

    out: Path
    total: int
    done: int
    skipped: int
    failed: dict[str, str]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.failed and self.done + self.skipped == self.total


def run_sweep(sweep: Sweep, out: str | Path | None = None, backend: str = "local", workers: int = 1,
              address: str | None = None, gpus_per_run: float | None = None, cpus_per_run: float = 1.0,
              threads: int = 0, printer: Callable[[str], None] = print, source_text: str | None = None,
              ray_init: dict[str, Any] | None = None, ensemble: int = 0, shared_fs: bool | None = None,
              sync_state: bool = False) -> SweepResult:
    """Run every unfinished run of ``sweep`` (parents before children) and return the tally.

    ``ensemble`` > 1 trains up to that many ready runs that differ only in seed and real-valued
    hyperparameters as one fused ensemble (one process, one set of stacked weights: the fast path on a
    GPU, see docs/speed.md); their results are those of the same runs trained one by one.

    On a Ray cluster (``address``) runs execute in node-local scratch and their folders come back to ``out``
    through Ray unless ``shared_fs`` (every node sees ``out``); ``sync_state`` also brings each run's training
    state back at every checkpoint, so a run whose node dies continues from it (``ray_backend.py``).

    Example:
        One β-VAE run of 2 steps (seconds, not a doctest: it trains in a worker process):

        >>> from disentkit.sweep import expand, run_sweep
        >>> sweep = expand({"name": "tiny", "defaults": {"steps": 2, "batch_size": 8}, "model": "beta_vae",
        ...                 "metrics": {"mig": {"num_train": 100}}})
        >>> result = run_sweep(sweep, out="runs/sweeps/tiny")        # doctest: +SKIP
        sweep 'tiny': 1 runs, 0 already done, 1 to run, 1 at a time -> runs/sweeps/tiny
        ...
        >>> result.ok, result.done                                    # doctest: +SKIP
        (True, 1)
    """
    validate_runs(sweep.runs)
    if backend == "ray" and address:
        from .ray_cluster import check_reachable

        check_reachable(address)          # before any folder is made: a wrong address is a one-line error
    out = Path(out) if out else default_out(sweep)
    prepare_sweep_dir(sweep, out, source_text)
    t0 = time.time()
    with sweep_lock(out):
        if backend == "local":
            be: Backend = LocalBackend(workers, threads)
        elif backend == "ray":
            from .ray_backend import RayBackend

            be = RayBackend(address=address, workers=workers, gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run,
                            threads=threads, init_kwargs=ray_init, shared_fs=shared_fs, sync_state=sync_state)
        else:
            raise DisentkitError(f"unknown --backend '{backend}'; choose local or ray")
        try:
            for note in be.notes():
                printer(note)
            return _schedule(sweep, out, be, printer, t0, ensemble=ensemble)
        finally:
            be.stop()


def fusable_runs(first: RunSpec, candidates: list[RunSpec], size: int) -> list[RunSpec]:
    """``first`` plus up to ``size - 1`` candidates that can train with it as one fused ensemble."""
    from ..train import TrainConfig
    from ..train.ensemble import shared_settings, unsupported

    def config(spec: RunSpec) -> TrainConfig:
        return TrainConfig.from_dict({**spec.train, "out": "-"})

    group = [first]
    if size < 2 or unsupported(config(first)) is not None:
        return group
    key = (shared_settings(config(first)), first.dataset, first.metrics, first.evaluation)
    for spec in candidates:
        if len(group) >= size:
            break
        if (shared_settings(config(spec)), spec.dataset, spec.metrics, spec.evaluation) == key:
            group.append(spec)
    return group


def _schedule(sweep: Sweep, out: Path, be: Backend, printer: Callable[[str], None], t0: float,
              heartbeat: float = 60.0, ensemble: int = 0) -> SweepResult:
    specs = {r.run_id: r for r in sweep.runs}
    prog = Progress(len(specs), be.slots * max(1, ensemble), printer,
                    steps={r.run_id: int(r.train.get("steps", 1)) for r in sweep.runs})
    log_dirs: dict[str, Path] = {}  # run id -> folder whose CSV log shows its progress
    pending: list[str] = []
    for r in sweep.runs:
        if is_done(run_dir(out, r.run_id), r):
            prog.skipped += 1
            prog.finished.add(r.run_id)
        else:
            pending.append(r.run_id)
    finished = {rid for rid in specs if rid not in pending}
    # a run killed between its DONE and its "done" line: record it now, so the log holds every finished run once
    for rid in sorted(finished - logged_done(out)):
        log_event(out, event="done", run=rid, recovered=True)
    printer(f"sweep '{sweep.name}': {len(specs)} runs, {prog.skipped} already done, {len(pending)} to run, "
            f"{be.slots} at a time -> {out}")
    log_event(out, event="sweep_start", pid=os.getpid(), todo=len(pending))

    stop = {"signal": None}

    def on_signal(signum, frame):  # noqa: ARG001
        # Only record it: an exception raised inside a signal handler can be swallowed (e.g. when it
        # lands in logging's at-fork lock release), so the loop below checks the flag instead.
        stop["signal"] = signum

    old = signal.signal(signal.SIGTERM, on_signal)
    try:
        while pending or prog.running:
            if stop["signal"] is not None:
                raise KeyboardInterrupt
            # start every ready run (or fusable group of runs) while there are free slots
            ready = []
            for rid in list(pending):
                spec = specs[rid]
                if spec.parent and spec.parent in prog.failed:
                    pending.remove(rid)
                    prog.failed[rid] = f"not run: its parent run {spec.parent} failed"
                    log_event(out, event="failed", run=rid, reason=prog.failed[rid])
                    prog.line(f"SKIPPED {rid}: {prog.failed[rid]}")
                elif not spec.parent or spec.parent in finished:
                    ready.append(spec)
            while ready and be.active() < be.slots:
                group = fusable_runs(ready[0], ready[1:], ensemble)
                for spec in group:
                    ready.remove(spec)
                    pending.remove(spec.run_id)
                folders = [run_dir(out, g.run_id) for g in group]
                parents = [run_dir(out, g.parent) if g.parent else None for g in group]
                if len(group) == 1:
                    pid = be.start(group[0], folders[0], parents[0])
                    log_dirs[group[0].run_id] = folders[0]
                else:
                    pid = be.start_group(group, folders, parents)
                    log_dirs.update({g.run_id: f for g, f in zip(group, folders)})  # each member logs in its folder
                for spec in group:
                    prog.running[spec.run_id] = time.time()
                    fused = {"fused": len(group)} if len(group) > 1 else {}
                    log_event(out, event="start", run=spec.run_id, pid=pid, **fused)
                prog.line(f"started {group[0].run_id}" if len(group) == 1 else
                          f"started {len(group)} runs as one fused ensemble: {', '.join(g.run_id for g in group)}")
            if prog.running and time.time() - prog.last_line >= heartbeat:
                steps = []
                for rid in prog.running:
                    step = last_logged_step(log_dirs.get(rid, run_dir(out, rid)))
                    steps.append(f"{rid} step {step if step is not None else '?'}/{specs[rid].train.get('steps')}")
                prog.line("running: " + "; ".join(steps))
            finished_now = be.wait(timeout=2.0)
            for note in be.notes():
                prog.line(note)
            for rid, reason in finished_now:
                if stop["signal"] is not None:
                    raise KeyboardInterrupt
                began = prog.running.pop(rid, time.time())
                folder = run_dir(out, rid)
                if reason is None and not is_done(folder, specs[rid]):
                    reason = "the run ended without writing model.safetensors, metrics.json and DONE"
                if reason is None:
                    prog.done += 1
                    finished.add(rid)
                    prog.finished.add(rid)
                    prog.durations[rid] = time.time() - began
                    prog.line(f"done {rid} ({_duration(time.time() - began)})")
                else:
                    prog.failed[rid] = reason
                    log_event(out, event="failed", run=rid, reason=reason)
                    prog.line(f"FAILED {rid}: {reason} (see {folder / ERROR})")
    except KeyboardInterrupt:
        log_event(out, event="interrupted", signal=stop["signal"])
        printer(f"interrupted: stopping {len(prog.running)} running run(s); run the same command again to resume")
        raise
    finally:
        signal.signal(signal.SIGTERM, old)
    secs = time.time() - t0
    printer(f"sweep '{sweep.name}' finished in {_duration(secs)}: {prog.done} trained, {prog.skipped} already done, "
            f"{len(prog.failed)} failed -> {out}")
    for rid, why in prog.failed.items():
        printer(f"  failed {rid}: {why}")
    log_event(out, event="sweep_end", done=prog.done, failed=len(prog.failed), seconds=round(secs, 2))
    return SweepResult(out, len(specs), prog.done, prog.skipped, dict(prog.failed), secs)
