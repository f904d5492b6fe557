"""``evaluate_checkpoint``: score a trained run with disentanglement metrics and record it in ``metrics.json``.

The one place where a checkpoint is scored: ``disentkit evaluate`` and the sweep runner both call it. All
metrics share one encoding (:func:`disentkit.metrics.evaluate`: each distinct image encoded once), and the
record adds up only with an earlier record of the same evaluation (checkpoint bytes, dataset, seed,
representation; ``metrics/record.py``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from .errors import DisentkitError

from .files import write_atomic


def evaluate_checkpoint(checkpoint: str | Path, metrics: str | list[str] = "mig", *, dataset: str | None = None,
                        data_root: str | None = None, seed: int = 0, representation: str = "mean",
                        params: dict[str, dict[str, Any]] | None = None, device: str = "cpu",
                        baseline: bool = False, out: str | Path | None = None,
                        vae: Any = None, allow_partial: bool = False,
                        only_applicable: bool = False) -> tuple[dict[str, Any], Path]:
    """Score ``checkpoint`` (a run folder or a ``.safetensors`` file) with ``metrics`` on ``dataset``
    (default: the one it was trained on); with ``baseline`` also the same model untrained (its initial
    weights). Writes the record to ``out`` (default: ``metrics.json`` beside the checkpoint) atomically and
    returns it with its path. ``params`` overrides metric defaults, e.g. ``{"dci": {"num_train": 2000}}``.
    A run of your own VAE loads into ``vae``, a fresh instance of its class; its baseline is that instance
    as it was passed (untrained). A run that has not finished (training, killed, diverged) is an error unless
    ``allow_partial``; its record then says so (``partial``: why, and the checkpoint's step). With
    ``only_applicable`` (sweeps: one metric list for many datasets) a metric that cannot score on the dataset
    (``recombination`` without holes) is left out and listed under ``skipped``."""
    from .data import get_dataset
    from .metrics import evaluate, representation_function, resolve_metrics
    from .metrics.record import earlier_record, evaluation_context
    from .train.checkpoint import load_checkpoint
    from .models.custom import as_vae
    from .train.members import initial_vae
    from .train.run import resolve_device
    from .train.status import require_finished

    from .train.config import MAX_SEED

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise DisentkitError(f"--seed must be an integer in 0..{MAX_SEED}, got {seed!r}")
    if out is not None and Path(out).is_dir():
        raise DisentkitError(f"--out {out} is a folder; name the metrics JSON file to write (e.g. {Path(out) / 'metrics.json'})")
    names = resolve_metrics(metrics)
    dev = resolve_device(device)
    folder = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
    status = require_finished(folder, allow_partial)
    untrained = copy.deepcopy(vae) if baseline and vae is not None else None  # before the run's weights go in
    ck = load_checkpoint(checkpoint, device=dev, vae=vae)
    ds = get_dataset(dataset or ck.config["dataset"], data_root=data_root or ck.config.get("data_root"))
    skipped = {}
    if only_applicable:
        from .metrics import METRICS

        skipped = {n: f"does not apply to {ds.name}" for n in names
                   if METRICS[n].applies is not None and not METRICS[n].applies(ds)}
        names = [n for n in names if n not in skipped]
    results = evaluate(representation_function(ck.vae, representation, seed=seed), ds, names, seed=seed,
                       params=params)
    path = Path(out) if out else ck.path.parent / "metrics.json"
    context = evaluation_context(ck.path, ck.config["model"], ds, seed, representation)
    record = earlier_record(path, context)
    record.update(context)
    record.setdefault("results", {}).update(results)
    record.pop("partial", None)
    if skipped:
        record["skipped"] = skipped
    if not status.finished:
        record["partial"] = {"why": status.why, "step": int(json.loads(ck.meta.get("step", "0")))}
    if baseline:
        fresh = (initial_vae(ck.config) if untrained is None else as_vae(untrained)).to(dev).eval()
        record.setdefault("untrained", {}).update(
            evaluate(representation_function(fresh, representation, seed), ds, names, seed, params))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=1))
    if ck.config.get("dataset") == ds.name:  # TensorBoard's HParams tab: the run's settings beside its scores
        from .train.tensorboard import log_evaluation

        log_evaluation(ck.path.parent, results, int(json.loads(ck.meta.get("step", "0"))))
    return record, path
