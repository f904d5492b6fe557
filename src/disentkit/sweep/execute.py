"""One sweep run (or a group of them as one fused ensemble): train or resume it, score it, mark it done."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from ..errors import DisentkitError, TrainingDiverged
from ..files import write_atomic
from .folders import DONE, failure_reason, log_event, write_error
from .grid import RunSpec


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
    """The run's TrainConfig options, pointed at ``folder`` (and at its parent's checkpoint). Hyperparameters
    inherited from a parent stage that this run's model does not take are left out."""
    from ..models import get_objective

    declared = {p.name for p in get_objective(spec.model).hparams}
    settings = {**spec.train, "out": str(folder), "progress": False, "overwrite": False,
                "hparams": {k: v for k, v in spec.train.get("hparams", {}).items() if k in declared}}
    if threads:
        settings["threads"] = threads
    if device:
        settings["device"] = device
    if spec.parent:
        if parent_folder is None or not (parent_folder / "model.safetensors").is_file():
            raise DisentkitError(f"parent run {spec.parent} has no model.safetensors to start from")
        settings["init_from"] = str(parent_folder / "model.safetensors")
    return settings


def resumable(spec: RunSpec, folder: Path) -> bool:
    """Whether ``folder`` holds a partly trained attempt at this very run (its ``run.json`` and a
    training state) that can be continued instead of retrained."""
    from ..train.checkpoint import STATE_FILE

    try:
        same = json.loads((folder / "run.json").read_text()).get("config_hash") == spec.config_hash
    except (OSError, ValueError):
        return False
    return same and (folder / STATE_FILE).is_file() and (folder / "config.yaml").is_file()


def _fresh_folder(spec: RunSpec, folder: Path) -> None:
    """Remove whatever an attempt left that cannot be continued: a run is done, resumable, or absent."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(spec.to_dict(), indent=1))


def _score_and_finish(spec: RunSpec, folder: Path, settings: dict[str, Any], t0: float) -> float:
    """Score the trained run's metrics (one shared encoding), write ``metrics.json``, then ``DONE`` (last,
    atomically)."""
    from ..evaluate import evaluate_checkpoint

    ev = spec.evaluation
    evaluate_checkpoint(folder / "model.safetensors", list(spec.metrics), dataset=spec.dataset,
                        data_root=settings.get("data_root"), seed=int(ev.get("seed", 0)),
                        representation=ev.get("representation", "mean"), params=spec.metrics,
                        device=settings.get("device", "auto"), only_applicable=True)
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
    """Train one run into ``folder`` (continuing a partly trained attempt), score it, then write ``DONE``."""
    from ..train import TrainConfig, fit, resume
    from ..train.run import finished, setup_process

    t0 = time.time()
    again = resumable(spec, folder)
    if not again:
        _fresh_folder(spec, folder)
    settings = _run_settings(spec, folder, parent_folder, threads, device)
    setup_process(int(settings.get("threads") or 0))
    with redirect_output(folder / "log.txt"):
        if again and finished(folder):
            print(f"{folder.name} finished training before: scoring it", flush=True)
        elif again:
            print(f"continuing {folder.name} from its training state", flush=True)
            resume(folder, threads=settings.get("threads"), device=settings.get("device"), progress=False)
        else:
            fit(TrainConfig.from_dict(settings))
        seconds = _score_and_finish(spec, folder, settings, t0)
    return {"seconds": seconds}


def group_folder(folders: list[Path]) -> Path:
    """Where a fused ensemble of sweep runs keeps its state and log: ``ensembles/<first run id>+<N-1>``."""
    return folders[0].parent.parent / "ensembles" / f"{folders[0].name}+{len(folders) - 1}"


def execute_group(specs: list[RunSpec], folders: list[Path], parent_folders: list[Path | None],
                  threads: int = 0, device: str | None = None) -> dict[str, str | None]:
    """Train several runs as one fused ensemble (continuing a partly trained attempt of the same group),
    then score each and write its ``DONE``. Member i trains as run i would alone (same seed, same losses to
    float tolerance), so a run's id and results do not depend on whether it was fused. Returns run id ->
    failure reason or None; a training failure fails every member, a member that diverged or failed scoring
    only its run."""
    from ..train import TrainConfig
    from ..train.checkpoint import STATE_FILE
    from ..train.guard import DIVERGED_FILE
    from ..train.loop import train
    from ..train.run import finished, setup_process

    t0 = time.time()
    gdir = group_folder(folders)
    again = (gdir / STATE_FILE).is_file() and all(resumable(s, f) for s, f in zip(specs, folders))
    settings = []
    for spec, folder, parent in zip(specs, folders, parent_folders):
        if not again:
            _fresh_folder(spec, folder)
        settings.append(_run_settings(spec, folder, parent, threads, device))
    if not again:
        if gdir.exists():
            shutil.rmtree(gdir)
        gdir.mkdir(parents=True)
    members = [TrainConfig.from_dict(s).validate() for s in settings]
    base = TrainConfig.from_dict({**settings[0], "out": str(gdir)}).validate()
    setup_process(base.threads)
    out: dict[str, str | None] = {}
    with redirect_output(gdir / "log.txt"):
        try:
            if not (again and finished(gdir)):
                train(base, members, gdir, resume=again)
        except TrainingDiverged:
            pass            # the diverged members stopped alone (diverged.json); the others finished
        except BaseException as e:  # noqa: BLE001 - recorded as every member's reason
            for folder in folders:
                write_error(folder, e)
            raise
        for spec, folder, s in zip(specs, folders, settings):
            (folder / "log.txt").write_text(f"trained in the fused ensemble {gdir} (see its log.txt)\n")
            if (folder / DIVERGED_FILE).is_file():
                why = TrainingDiverged(json.loads((folder / DIVERGED_FILE).read_text())["message"])
                write_error(folder, why)
                out[spec.run_id] = f"TrainingDiverged: {why}"
                continue
            try:
                _score_and_finish(spec, folder, s, t0)
                out[spec.run_id] = None
            except Exception as e:  # noqa: BLE001 - one member's scoring failure fails that run only
                write_error(folder, e)
                out[spec.run_id] = failure_reason(folder, f"{type(e).__name__}: {e}")
    return out
