"""The Ray backend (``disentkit sweep --backend ray``): the same runs as Ray tasks, on one machine or a cluster.

Without ``--address`` it starts a private local Ray instance, and runs write straight into the sweep folder.
With ``--address HOST:PORT`` (or ``auto``) it joins a cluster (``ray_cluster.py``: token authentication, a
refusal in one line, the nodes' resources). There, by default, no filesystem is assumed shared: a job (one run,
or one fused ensemble) runs in node-local scratch (``$DISENTKIT_SCRATCH``), gets what it needs with the task
(a parent's weights, a resumable attempt) and returns its folders through the object store; the driver writes
them into the sweep folder (``transfer.py``). ``--sync-state`` also sends the training state to the driver at
every checkpoint, so a job whose node dies is retried by Ray from its last checkpoint rather than from
scratch. ``--shared-fs`` keeps the direct path (every node sees the sweep folder at the same path).

A small actor on the driver's node (:class:`Mailbox`) records each attempt's node and holds the latest state
copies for retries. Ray is an optional extra: ``pip install 'disentkit[ray]'``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

from ..errors import DisentkitError
from .backends import Backend
from .execute import execute_group, execute_run, group_folder, resumable
from .folders import DONE, failure_reason, log_event, write_error
from .grid import RunSpec
from .ray_cluster import alive_nodes, describe, join, prepare_auth, slots_per_node
from .transfer import Files, pack, relocate, replace_folders, scratch_root, unpack

RETRIES = 2          # Ray reruns a cluster job this often when its worker or node dies
SYNC_SECONDS = 2.0   # how often a job with --sync-state looks for a new checkpoint


class Mailbox:
    """Lives on the driver's node: each job's attempts (node, scratch folder) and its latest state copy."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}
        self.news: list[dict[str, Any]] = []
        self.states: dict[str, Files] = {}
        self.fresh: dict[str, Files] = {}

    def begin(self, job: str, node: str, scratch: str) -> Files | None:
        """Record an attempt at ``job``; returns its last state copy (a retry resumes from it), if any."""
        self.attempts[job] = self.attempts.get(job, 0) + 1
        self.news.append({"job": job, "attempt": self.attempts[job], "node": node, "scratch": scratch})
        return self.states.get(job)

    def state(self, job: str, files: Files) -> None:
        self.states[job] = self.fresh[job] = files

    def drain(self) -> tuple[list[dict[str, Any]], dict[str, Files]]:
        """Attempts begun and state copies received since the last call."""
        out = self.news, self.fresh
        self.news, self.fresh = [], {}
        return out

    def forget(self, job: str) -> None:
        self.states.pop(job, None)


def _sync_state(mailbox: Any, job: str, root: Path, folders: list[str], stop: threading.Event) -> None:
    """Send the job's folders to the mailbox whenever a newer training state appears (runs in a thread)."""
    import ray

    from ..train.checkpoint import STATE_FILE

    seen = 0.0
    while not stop.wait(SYNC_SECONDS):
        stamps = [(root / f / STATE_FILE).stat().st_mtime for f in folders if (root / f / STATE_FILE).is_file()]
        if stamps and max(stamps) > seen:
            seen = max(stamps)
            ray.get(mailbox.state.remote(job, pack(root, folders)))


def _run_job(specs: list[RunSpec], root: Path, folders: list[str], parents: list[str | None],
             threads: int) -> dict[str, str | None]:
    """Train and score one run or one fused ensemble under ``root``: run id -> None, else the failure reason."""
    paths = [root / f for f in folders]
    parent_paths = [root / p if p else None for p in parents]
    try:
        if len(specs) == 1:
            execute_run(specs[0], paths[0], parent_paths[0], threads=threads)
            return {specs[0].run_id: None}
        return execute_group(specs, paths, parent_paths, threads=threads)
    except BaseException as e:  # noqa: BLE001 - a failed run is reported, never raised into Ray
        if len(specs) == 1:
            write_error(paths[0], e)       # execute_group wrote each member's error.txt itself
        return {s.run_id: failure_reason(p, f"{type(e).__name__}: {e}") for s, p in zip(specs, paths)}


def _job(job: str, spec_dicts: list[dict], folders: list[str], parents: list[str | None], threads: int,
         mailbox: Any, shared_root: str | None, inputs: Files, sync: bool) -> dict[str, Any]:
    """A Ray task: one job, in the shared sweep folder, or in node-local scratch with its folders returned."""
    import ray

    specs = [RunSpec.from_dict(d) for d in spec_dicts]
    node = ray.get_runtime_context().get_node_id()
    root = Path(shared_root) if shared_root else scratch_root() / f"{folders[0].split('/')[-1]}-{uuid.uuid4().hex[:8]}"
    saved = ray.get(mailbox.begin.remote(job, node, str(root)))
    if shared_root:
        return {"reasons": _run_job(specs, root, folders, parents, threads), "node": node}
    watch = folders + ([group_folder([Path(f) for f in folders]).as_posix()] if len(specs) > 1 else [])
    try:
        unpack(root, inputs)
        if saved:                          # a retry: continue from the last state that reached the driver
            for f in watch:
                shutil.rmtree(root / f, ignore_errors=True)
            unpack(root, saved)
        relocate(root, watch)
        stop = threading.Event()
        syncer = threading.Thread(target=_sync_state, args=(mailbox, job, root, watch, stop), daemon=True)
        if sync:
            syncer.start()
        try:
            reasons = _run_job(specs, root, folders, parents, threads)
        finally:
            stop.set()
            if sync:
                syncer.join()
        return {"reasons": reasons, "node": node, "folders": watch, "files": pack(root, watch, intermediate=sync)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


class RayBackend(Backend):
    """Submits each job as a Ray task with ``num_cpus``/``num_gpus`` resources (fractions allowed)."""

    def __init__(self, address: str | None = None, workers: int = 0, gpus_per_run: float | None = None,
                 cpus_per_run: float = 1.0, threads: int = 0, init_kwargs: dict[str, Any] | None = None,
                 shared_fs: bool | None = None, sync_state: bool = False) -> None:
        self.lines: list[str] = []
        auth = prepare_auth(address)       # before Ray is imported: it reads RAY_AUTH_MODE once
        try:
            import ray
        except ImportError:
            raise DisentkitError("--backend ray needs Ray: pip install 'disentkit[ray]' (or pip install ray)") from None
        self.ray = ray
        self.owns = not ray.is_initialized()
        if self.owns:
            kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                                          configure_logging=True)
            src = str(Path(__file__).resolve().parents[2])
            env = {"PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)}
            kwargs["runtime_env"] = {"env_vars": env}
            if not address and workers:
                kwargs["num_cpus"] = int(workers * cpus_per_run + 0.999)
            kwargs.update(init_kwargs or {})
            if address:             # run_sweep checked that something listens there
                join(ray, address, auth, {k: v for k, v in kwargs.items() if k not in ("num_cpus", "num_gpus")})
                self.lines.append(f"joined the Ray cluster at {address}: {auth}")
            else:
                try:
                    ray.init(**kwargs)
                except (ConnectionError, RuntimeError, ValueError) as e:
                    raise DisentkitError(f"could not start Ray here: {str(e).splitlines()[0]}") from None
        nodes = alive_nodes(ray)
        self.lines.append(describe(nodes))
        total_gpus = sum(n["GPU"] for n in nodes)
        if gpus_per_run is None:  # auto: share the cluster's GPUs among the runs at a time (Ray hides GPUs
            gpus_per_run = min(1.0, total_gpus / workers) if total_gpus and workers else (1.0 if total_gpus else 0.0)
        per_node = slots_per_node(nodes, cpus_per_run, gpus_per_run)
        if sum(per_node) == 0:
            biggest = max(nodes, key=lambda n: (n["GPU"], n["CPU"]), default={"CPU": 0, "GPU": 0})
            raise DisentkitError(f"no node of the Ray cluster fits one run of --cpus-per-run {cpus_per_run:g} "
                                 f"--gpus-per-run {gpus_per_run:g} (the largest node has {biggest['CPU']:g} CPUs, "
                                 f"{biggest['GPU']:g} GPUs): lower them, or add a larger node")
        self.slots = max(1, min(sum(per_node), workers or 10 ** 6))
        self.shared = not address if shared_fs is None else shared_fs
        self.sync = sync_state and not self.shared
        self.threads = threads        # 0: the config's `threads`, else the task's CPU share
        self.cpus_per_run = cpus_per_run
        if address or not self.shared:
            how = ("the sweep folder is shared (--shared-fs)" if self.shared else "results come back through Ray "
                   "(no shared filesystem assumed" + ("; training state at every checkpoint)" if self.sync else ")"))
            self.lines.append(f"{self.slots} runs at a time ({cpus_per_run:g} CPU, {gpus_per_run:g} GPU each); {how}")
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.mailbox = ray.remote(Mailbox).options(num_cpus=0, scheduling_strategy=here).remote()
        self.job = ray.remote(max_retries=RETRIES if address else 0)(_job).options(
            num_cpus=cpus_per_run, num_gpus=gpus_per_run)
        self.refs: dict[Any, tuple[str, list[tuple[str, Path]]]] = {}  # task -> (job, its runs)

    def notes(self) -> list[str]:
        out, self.lines = self.lines, []
        return out

    def _threads(self, spec: RunSpec) -> int:
        return int(self.threads or spec.train.get("threads") or max(1, int(self.cpus_per_run)))

    def start(self, spec: RunSpec, folder: Path, parent: Path | None) -> int | None:
        return self.start_group([spec], [folder], [parent])

    def start_group(self, specs: list[RunSpec], folders: list[Path], parents: list[Path | None]) -> int | None:
        root = folders[0].parent.parent
        rel = [f.relative_to(root).as_posix() for f in folders]
        prel = [p.relative_to(root).as_posix() if p else None for p in parents]
        inputs: Files = {}
        if not self.shared:
            for p, r in zip(parents, prel):
                if p and (p / "model.safetensors").is_file():
                    inputs[f"{r}/model.safetensors"] = (p / "model.safetensors").read_bytes()
            gdir = group_folder(folders)
            if all(resumable(s, f) for s, f in zip(specs, folders)) and (len(specs) == 1 or gdir.is_dir()):
                inputs.update(pack(root, rel + ([gdir.relative_to(root).as_posix()] if len(specs) > 1 else [])))
        job = specs[0].run_id
        ref = self.job.remote(job, [s.to_dict() for s in specs], rel, prel, self._threads(specs[0]), self.mailbox,
                              str(root) if self.shared else None, inputs, self.sync)
        self.refs[ref] = (job, [(s.run_id, f) for s, f in zip(specs, folders)])
        return None

    def active(self) -> int:
        return len(self.refs)

    def _news(self, finished: set[str]) -> None:
        """Log where each attempt ran (and retries), and write state copies of jobs still running."""
        jobs = {job: runs for job, runs in self.refs.values()}
        news, fresh = self.ray.get(self.mailbox.drain.remote())
        for n in news:              # an attempt begins before its job can finish: its job is still here
            runs = jobs[n["job"]]
            for rid, folder in runs:
                log_event(folder.parent.parent, event="retry" if n["attempt"] > 1 else "placed", run=rid,
                          node=n["node"], attempt=n["attempt"], scratch=n["scratch"])
            if n["attempt"] > 1:
                self.lines.append(f"retrying {n['job']} (attempt {n['attempt']}, node {n['node'][:6]}): "
                                  "its node or worker died" + (", continuing from its last checkpoint that reached "
                                                               "the driver" if self.sync else ""))
        for job, files in fresh.items():
            if job in jobs and job not in finished:
                unpack(jobs[job][0][1].parent.parent, files)

    def wait(self, timeout: float) -> list[tuple[str, str | None]]:
        if not self.refs:
            return []
        ready, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=timeout)
        if ready:  # collect every other finished task too
            more, _ = self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0)
            ready = list(dict.fromkeys(ready + more))
        self._news({self.refs[r][0] for r in ready})
        out = []
        for ref in ready:
            job, runs = self.refs.pop(ref)
            self.mailbox.forget.remote(job)
            try:
                result = self.ray.get(ref)
            except self.ray.exceptions.RayError as e:  # the worker process or node died, retries spent
                out.extend((rid, failure_reason(folder, f"Ray task failed: {str(e).splitlines()[0]}"))
                           for rid, folder in runs)
                continue
            reasons = result["reasons"]
            if "files" in result:          # came back from a node's scratch: the run logs its done here
                root = runs[0][1].parent.parent
                replace_folders(root, result["folders"], result["files"])
                for rid, folder in runs:
                    if reasons.get(rid) is None and (folder / DONE).is_file():
                        log_event(root, event="done", run=rid, node=result["node"],
                                  seconds=json.loads((folder / DONE).read_text()).get("seconds"))
            out.extend((rid, reasons.get(rid, "no result from its fused ensemble")) for rid, _ in runs)
        return out

    def stop(self) -> None:
        for ref in list(self.refs):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort on shutdown
                pass
        self.refs.clear()
        if self.owns:
            self.ray.shutdown()
