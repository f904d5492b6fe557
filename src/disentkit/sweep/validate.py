"""Checking a sweep's names (models, datasets, metrics, hyperparameters) before anything trains."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import DisentkitError
from ..train.config import TrainConfig

if TYPE_CHECKING:
    from .grid import RunSpec


def validate_runs(runs: list[RunSpec]) -> None:
    """Check every name a sweep uses against the registries before anything trains.

    Unknown models, datasets, metrics, or hyperparameters a model does not declare raise a
    :class:`DisentkitError` naming the entry and the stage (a typo must not silently do nothing).

    Example:

        >>> from disentkit.sweep import expand, validate_runs
        >>> validate_runs(expand({"model": "beta_vae", "grid": {"beta": [1, 4]}}).runs)     # all known
        >>> validate_runs(expand({"model": "beta_vae", "grid": {"bta": [4]}}).runs)
        Traceback (most recent call last):
        ...
        disentkit.errors.DisentkitError: stage 'beta_vae': 'bta' is neither a `disentkit train` option nor ...
    """
    from ..data import DATASETS
    from ..metrics import METRICS
    from ..models import OBJECTIVES

    unknown: dict[str, set[str]] = {"model": set(), "dataset": set(), "metric": set()}
    for r in runs:
        if r.model not in OBJECTIVES:
            unknown["model"].add(r.model)
        if r.dataset.split(":", 1)[0] not in DATASETS:
            unknown["dataset"].add(r.dataset)
        unknown["metric"].update(m for m in r.metrics if m not in METRICS)
    known = {"model": OBJECTIVES, "dataset": DATASETS, "metric": METRICS}
    parts = [f"unknown {kind}(s) {', '.join(sorted(names))} (registered: {', '.join(sorted(known[kind]))})"
             for kind, names in unknown.items() if names]
    if parts:
        raise DisentkitError("this sweep names " + "; ".join(parts) + ". Install a disentkit that has them, or "
                             "replace them (--datasets, --metrics, or edit the config)")
    from ..metrics import SPECS
    from ..metrics.utils import check_params

    for name, kw in (runs[0].metrics.items() if runs else ()):
        try:
            check_params(SPECS[name], dict(kw))
        except DisentkitError as e:
            raise DisentkitError(f"sweep config: {e}") from None
    by_id = {r.run_id: r for r in runs}
    for r in runs:
        where = f"stage '{r.stage}'"
        declared = {p.name for p in OBJECTIVES[r.model].hparams}
        inherited = set(by_id[r.parent].train["hparams"]) if r.parent in by_id else set()
        for k in sorted(set(r.train["hparams"]) - inherited):
            if k not in declared:
                raise DisentkitError(f"{where}: '{k}' is neither a `disentkit train` option nor a hyperparameter of "
                                     f"{r.model} (its hyperparameters: {', '.join(sorted(declared)) or 'none'})")
        cfg = TrainConfig.from_dict({**{k: v for k, v in r.train.items() if k != "hparams"},
                                     "hparams": {k: v for k, v in r.train["hparams"].items() if k in declared}})
        try:
            cfg.validate()
        except DisentkitError as e:
            raise DisentkitError(f"{where}, run {r.run_id}: {e}") from None
