"""Running a sweep: one folder per sweep, one per run, resumable at any moment.

Sweep folder::

    sweep.json     the expanded sweep (every run spec) and its config hash
    sweep.yaml     the config as given (for people)
    events.jsonl   start / done / failed events, appended by every attempt
    runs/<id>/     one `disentkit train` run folder + metrics.json + DONE

A run counts as done only when ``model.safetensors`` and ``metrics.json`` exist and ``DONE`` (written
atomically, last) holds the run's config hash. A restarted sweep skips done runs and retrains any
other run from scratch, so a sweep killed at any moment resumes without mixing partial results. A
folder that holds a different sweep config is refused.

Each run trains in its own process (the local backend forks one per run; Ray runs it in a worker
process), so a crash fails that run only: its reason is shown and the other runs go on.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import multiprocessing as mp
import os
import shutil
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_sentinels
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from ..errors import DisentkitError
from .grid import RunSpec, Sweep, validate_runs

DONE = "DONE"
ERROR = "error.txt"


# ----------------------------------------------------------------------------- folder bookkeeping
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


def write_atomic(path: Path, text: str) -> None:
    """Write to ``path.part``, flush to disk, then rename: readers see the old file or the whole new one."""
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def log_event(sweep_dir: Path, **event: Any) -> None:
    """Append one JSON line to ``events.jsonl`` (a single small write: whole lines even when processes race)."""
    line = json.dumps({"time": round(time.time(), 3), **event}) + "\n"
    fd = os.open(sweep_dir / "events.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


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
    """One sweep process per folder at a time (the lock dies with its process, even on SIGKILL)."""
    f = open(out / ".lock", "w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise DisentkitError(f"another `disentkit sweep` is running in {out}; wait for it or stop it first") from None
    try:
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


# ----------------------------------------------------------------------------- one run
@contextlib.contextmanager
def redirect_output(path: Path) -> Iterator[None]:
    """Send this process's stdout/stderr (file descriptors, so C code and Lightning too) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _run_settings(spec: RunSpec, folder: Path, parent_folder: Path | None, threads: int,
                  device: str | None) -> dict[str, Any]:
    """The run's TrainConfig options, pointed at ``folder`` (and at its parent's checkpoint)."""
    settings = {**spec.train, "out": str(folder), "progress": False, "overwrite": False}
    if threads:
        settings["threads"] = threads
    if device:
        settings["device"] = device
    if spec.parent:
        if parent_folder is None or not (parent_folder / "model.safetensors").is_file():
            raise DisentkitError(f"parent run {spec.parent} has no model.safetensors to start from")
        settings["init_from"] = str(parent_folder / "model.safetensors")
    return settings


def _fresh_folder(spec: RunSpec, folder: Path) -> None:
    """Remove whatever an unfinished attempt left: a run is either done, with every file from one
    attempt, or absent."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(spec.to_dict(), indent=1))


def _score_and_finish(spec: RunSpec, folder: Path, settings: dict[str, Any], t0: float) -> float:
    """Score the trained run's metrics, write ``metrics.json``, then ``DONE`` (last, atomically)."""
    import torch

    from ..data import get_dataset
    from ..metrics import METRICS, representation_function
    from ..metrics.record import evaluation_context
    from ..train import load_checkpoint
    from ..train.run import setup_cpu

    setup_cpu(int(settings.get("threads") or 0))
    ck = load_checkpoint(folder / "model.safetensors", device="cuda" if torch.cuda.is_available()
                         and settings.get("device", "auto") != "cpu" else "cpu")
    dataset = get_dataset(spec.dataset, data_root=settings.get("data_root"))
    ev = spec.evaluation
    encode = representation_function(ck.vae, ev.get("representation", "mean"), seed=int(ev.get("seed", 0)))
    results = {name: METRICS[name](encode, dataset, seed=int(ev.get("seed", 0)), **kw)
               for name, kw in spec.metrics.items()}
    record = {**evaluation_context(ck.path, spec.model, dataset, int(ev.get("seed", 0)),
                                   ev.get("representation", "mean")), "results": results}
    write_atomic(folder / "metrics.json", json.dumps(record, indent=1))
    seconds = time.time() - t0
    write_atomic(folder / DONE, json.dumps({"run_id": spec.run_id, "config_hash": spec.config_hash,
                                            "seconds": round(seconds, 2),
                                            "finished": time.strftime("%Y-%m-%d %H:%M:%S")}))
    # logged by the run itself, right after DONE: a sweep killed at this moment still has the record
    if (folder.parent.parent / "sweep.json").is_file():
        log_event(folder.parent.parent, event="done", run=spec.run_id, pid=os.getpid(), seconds=round(seconds, 2))
    return seconds


def execute_run(spec: RunSpec, folder: Path, parent_folder: Path | None = None, threads: int = 0,
                device: str | None = None) -> dict[str, Any]:
    """Train one run from scratch into ``folder``, score its metrics, then write ``DONE``."""
    from ..train import TrainConfig, fit

    t0 = time.time()
    _fresh_folder(spec, folder)
    settings = _run_settings(spec, folder, parent_folder, threads, device)
    with redirect_output(folder / "log.txt"):
        fit(TrainConfig.from_dict(settings))
        seconds = _score_and_finish(spec, folder, settings, t0)
    return {"seconds": seconds}


def group_folder(folders: list[Path]) -> Path:
    """Where a fused ensemble of sweep runs keeps its own log: ``ensembles/<first run id>+<N-1>``."""
    return folders[0].parent.parent / "ensembles" / f"{folders[0].name}+{len(folders) - 1}"


def execute_group(specs: list[RunSpec], folders: list[Path], parent_folders: list[Path | None],
                  threads: int = 0, device: str | None = None) -> dict[str, str | None]:
    """Train several runs as one fused ensemble (``train/ensemble.py``), then score each and write its
    ``DONE``. Member i trains as run i would alone (same seed, same losses to float tolerance), so a
    run's id and results do not depend on whether it was fused. Returns run id -> failure reason or
    None; a training failure fails every member, a scoring failure only its run."""
    from ..train import TrainConfig
    from ..train.ensemble import train_members

    t0 = time.time()
    settings = []
    for spec, folder, parent in zip(specs, folders, parent_folders):
        _fresh_folder(spec, folder)
        settings.append(_run_settings(spec, folder, parent, threads, device))
    gdir = group_folder(folders)
    if gdir.exists():
        shutil.rmtree(gdir)
    gdir.mkdir(parents=True)
    members = [TrainConfig.from_dict(s).validate() for s in settings]
    base = TrainConfig.from_dict({**settings[0], "out": str(gdir)})
    out: dict[str, str | None] = {}
    with redirect_output(gdir / "log.txt"):
        try:
            train_members(base, members, gdir, init_from=[m.init_from for m in members])
        except BaseException as e:  # noqa: BLE001 - recorded as every member's reason
            for folder in folders:
                write_error(folder, e)
            raise
        for spec, folder, s in zip(specs, folders, settings):
            (folder / "log.txt").write_text(f"trained in the fused ensemble {gdir} (see its log.txt)\n")
            try:
                _score_and_finish(spec, folder, s, t0)
                out[spec.run_id] = None
            except Exception as e:  # noqa: BLE001 - one member's scoring failure fails that run only
                write_error(folder, e)
                out[spec.run_id] = failure_reason(folder, f"{type(e).__name__}: {e}")
    return out


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


# ----------------------------------------------------------------------------- progress
@dataclass
class Progress:
    """Counts and ETA of a sweep, printed as one line per event."""

    total: int
    workers: int
    printer: Callable[[str], None] = print
    steps: dict[str, int] = field(default_factory=dict)        # run id -> training steps
    done: int = 0
    skipped: int = 0
    finished: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def eta(self) -> str:
        """Remaining time from a fit seconds ≈ a + b·steps over finished runs (fixed cost: start-up, metrics)."""
        left = [rid for rid in self.steps if rid not in self.finished and rid not in self.failed]
        if not left:
            return "0s"
        if not self.durations:
            return "?"
        a, b = _fit_cost([(self.steps[r], sec) for r, sec in self.durations.items()])
        now = time.time()
        work = sum(max(0.0, a + b * self.steps[r] - (now - self.running[r])) if r in self.running
                   else a + b * self.steps[r] for r in left)
        return _duration(work / max(1, self.workers))

    last_line: float = field(default_factory=time.time)

    def line(self, what: str) -> None:
        finished = self.done + self.skipped
        self.printer(f"[{finished}/{self.total} done, {len(self.running)} running, {len(self.failed)} failed, "
                     f"ETA {self.eta()}] {what}")
        self.last_line = time.time()


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


def _fit_cost(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares (a, b) of seconds = a + b·steps, both ≥ 0; proportional when all runs have one length."""
    xs = [float(x) for x, _ in points]
    ys = [y for _, y in points]
    if len(set(xs)) < 2:
        return 0.0, sum(ys) / max(1.0, sum(xs))
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    b = max(0.0, b)
    return max(0.0, my - b * mx), b


def _duration(secs: float) -> str:
    secs = int(round(secs))
    if secs < 60:
        return f"{secs}s"
    if secs < 3600:
        return f"{secs // 60}m{secs % 60:02d}s"
    return f"{secs // 3600}h{secs % 3600 // 60:02d}m"


# ----------------------------------------------------------------------------- the scheduler
@dataclass
class SweepResult:
    out: Path
    total: int
    done: int
    skipped: int
    failed: dict[str, str]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.failed and self.done + self.skipped == self.total


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


class LocalBackend(Backend):
    """N worker processes on this machine, one fresh process per job (fork on Linux: no re-import)."""

    def __init__(self, workers: int = 1, threads: int = 0) -> None:
        self.slots = max(1, workers)
        self.threads = threads        # 0: the config's `threads`, else cores / workers
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        self.ctx = mp.get_context(method)
        self.procs: list[tuple[Any, list[tuple[str, Path]]]] = []   # (process, its runs)

    def _spawn(self, target: Callable, args: tuple, runs: list[tuple[str, Path]]) -> int | None:
        import disentkit.train  # noqa: F401  (torch and Lightning imported once here: forked runs start at once)

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


def run_sweep(sweep: Sweep, out: str | Path | None = None, backend: str = "local", workers: int = 1,
              address: str | None = None, gpus_per_run: float | None = None, cpus_per_run: float = 1.0,
              threads: int = 0, printer: Callable[[str], None] = print, source_text: str | None = None,
              ray_init: dict[str, Any] | None = None, ensemble: int = 0) -> SweepResult:
    """Run every unfinished run of ``sweep`` (parents before children) and return the tally.

    ``ensemble`` > 1 trains up to that many ready runs that differ only in seed and real-valued
    hyperparameters as one fused ensemble (one process, one set of stacked weights: the fast path on a
    GPU, see docs/speed.md); their results are those of the same runs trained one by one."""
    validate_runs(sweep.runs)
    out = Path(out) if out else default_out(sweep)
    prepare_sweep_dir(sweep, out, source_text)
    t0 = time.time()
    with sweep_lock(out):
        if backend == "local":
            be: Backend = LocalBackend(workers, threads)
        elif backend == "ray":
            from .ray_backend import RayBackend

            be = RayBackend(address=address, workers=workers, gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run,
                            threads=threads, init_kwargs=ray_init)
        else:
            raise DisentkitError(f"unknown --backend '{backend}'; choose local or ray")
        try:
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
                    log_dirs.update({g.run_id: group_folder(folders) for g in group})
                for spec in group:
                    prog.running[spec.run_id] = time.time()
                    log_event(out, event="start", run=spec.run_id, pid=pid, **({"fused": len(group)} if len(group) > 1 else {}))
                prog.line(f"started {group[0].run_id}" if len(group) == 1 else
                          f"started {len(group)} runs as one fused ensemble: {', '.join(g.run_id for g in group)}")
            if prog.running and time.time() - prog.last_line >= heartbeat:
                steps = []
                for rid in prog.running:
                    step = last_logged_step(log_dirs.get(rid, run_dir(out, rid)))
                    steps.append(f"{rid} step {step if step is not None else '?'}/{specs[rid].train.get('steps')}")
                prog.line("running: " + "; ".join(steps))
            for rid, reason in be.wait(timeout=2.0):
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
