"""The Ray backend (``disentkit sweep --backend ray``): the same runs as Ray tasks.

By default it starts a private local Ray instance; ``--address`` joins an existing cluster
(``ray start --head`` on one machine, ``ray start --address=HEAD:6379`` on the others), whose nodes
must have disentkit installed and see the sweep folder at the same path (a shared filesystem).
``--gpus-per-run 0.25`` lets four runs share one GPU (default: the cluster's GPUs divided among
``--workers`` runs, or one GPU per run; 0 trains on CPU); ``--cpus-per-run`` sets each task's CPU share.

Ray is an optional extra: ``pip install 'disentkit[ray]'``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..errors import DisentkitError
from .grid import RunSpec
from .backends import Backend
from .execute import execute_group, execute_run
from .folders import failure_reason, write_error


def _ray_task(spec_dict: dict, folder: str, parent: str | None, threads: int) -> str | None:
    """Runs inside a Ray worker process: None on success, else the failure reason."""
    spec = RunSpec.from_dict(spec_dict)
    try:
        execute_run(spec, Path(folder), Path(parent) if parent else None, threads=threads)
        return None
    except BaseException as e:  # noqa: BLE001 - a failed run is reported, never raised into Ray
        write_error(Path(folder), e)
        return failure_reason(Path(folder), f"{type(e).__name__}: {e}")


def _ray_group_task(spec_dicts: list[dict], folders: list[str], parents: list[str | None],
                    threads: int) -> dict[str, str | None]:
    """A fused ensemble of runs in one Ray worker: run id -> None on success, else the failure reason."""
    specs = [RunSpec.from_dict(d) for d in spec_dicts]
    try:
        return execute_group(specs, [Path(f) for f in folders], [Path(p) if p else None for p in parents],
                             threads=threads)
    except BaseException as e:  # noqa: BLE001 - execute_group wrote each member's error.txt
        return {s.run_id: failure_reason(Path(f), f"{type(e).__name__}: {e}") for s, f in zip(specs, folders)}


class RayBackend(Backend):
    """Submits each run as a Ray task with ``num_cpus``/``num_gpus`` resources (fractions allowed)."""

    def __init__(self, address: str | None = None, workers: int = 0, gpus_per_run: float | None = None,
                 cpus_per_run: float = 1.0, threads: int = 0, init_kwargs: dict[str, Any] | None = None) -> None:
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
            if address:
                kwargs["address"] = address
            elif workers:
                kwargs["num_cpus"] = int(workers * cpus_per_run + 0.999)
            kwargs.update(init_kwargs or {})
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise DisentkitError(f"could not start or join Ray ({'address ' + address if address else 'local'}): "
                                     f"{str(e).splitlines()[0]}") from None
        total = ray.cluster_resources()
        if gpus_per_run is None:  # auto: share the cluster's GPUs among the runs at a time (Ray hides GPUs
            gpus = total.get("GPU", 0)  # from tasks that ask for none, so asking for 0 would mean CPU)
            gpus_per_run = min(1.0, gpus / workers) if gpus and workers else (1.0 if gpus else 0.0)
        cpu_slots = int(total.get("CPU", 1) / max(cpus_per_run, 1e-6)) if cpus_per_run else 10 ** 6
        gpu_slots = int(total.get("GPU", 0) / gpus_per_run) if gpus_per_run else 10 ** 6
        if gpus_per_run and gpu_slots == 0:
            raise DisentkitError(f"--gpus-per-run {gpus_per_run} but the Ray cluster has {total.get('GPU', 0)} GPUs")
        self.slots = max(1, min(cpu_slots, gpu_slots, workers or 10 ** 6))
        self.threads = threads        # 0: the config's `threads`, else the task's CPU share
        self.cpus_per_run = cpus_per_run
        resources = dict(num_cpus=cpus_per_run, num_gpus=gpus_per_run)
        self.task = ray.remote(max_retries=0)(_ray_task).options(**resources)
        self.group_task = ray.remote(max_retries=0)(_ray_group_task).options(**resources)
        self.refs: dict[Any, list[tuple[str, Path]]] = {}   # task -> its runs (several for a fused ensemble)

    def _threads(self, spec: RunSpec) -> int:
        return int(self.threads or spec.train.get("threads") or max(1, int(self.cpus_per_run)))

    def start(self, spec: RunSpec, folder: Path, parent: Path | None) -> int | None:
        ref = self.task.remote(spec.to_dict(), str(folder), str(parent) if parent else None, self._threads(spec))
        self.refs[ref] = [(spec.run_id, folder)]
        return None

    def start_group(self, specs: list[RunSpec], folders: list[Path], parents: list[Path | None]) -> int | None:
        ref = self.group_task.remote([s.to_dict() for s in specs], [str(f) for f in folders],
                                     [str(p) if p else None for p in parents], self._threads(specs[0]))
        self.refs[ref] = [(s.run_id, f) for s, f in zip(specs, folders)]
        return None

    def active(self) -> int:
        return len(self.refs)

    def wait(self, timeout: float) -> list[tuple[str, str | None]]:
        if not self.refs:
            return []
        ready, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=timeout)
        if ready:  # collect every other finished task too
            more, _ = self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0)
            ready = list(dict.fromkeys(ready + more))
        out = []
        for ref in ready:
            runs = self.refs.pop(ref)
            try:
                result = self.ray.get(ref)
                reasons = result if isinstance(result, dict) else {runs[0][0]: result}
                out.extend((rid, reasons.get(rid, "no result from its fused ensemble")) for rid, _ in runs)
            except self.ray.exceptions.RayError as e:  # the worker process died (OOM, segfault, ...)
                out.extend((rid, failure_reason(folder, f"Ray task failed: {str(e).splitlines()[0]}"))
                           for rid, folder in runs)
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
