"""Disentanglement metrics: one file per metric, all on the interface in :mod:`.utils`.

Each registered metric is ``fn(encode_fn, dataset, seed=0, **defaults) -> dict`` whose dict holds
the headline value under the metric's own name plus any detail (per-factor values, parameters).
"""

from __future__ import annotations

from typing import Callable

from ..errors import DisentkitError
from .mig import mig, mig_from_codes
from .utils import EncodeFn, generate_batch_factor_code, representation_function

METRICS: dict[str, Callable[..., dict]] = {"mig": mig}


def resolve_metrics(spec: str | list[str]) -> list[str]:
    """'mig,sap' or 'all' -> a list of registered metric names (unknown names are an error)."""
    names = list(METRICS) if spec in ("all", ["all"]) else (spec.split(",") if isinstance(spec, str) else spec)
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise DisentkitError(f"unknown metric(s) {', '.join(unknown)}; choose from: {', '.join(METRICS)} or 'all'")
    return names


def evaluate(encode_fn: EncodeFn, dataset, metrics: str | list[str] = "mig", seed: int = 0) -> dict[str, dict]:
    """Run the named metrics with their default settings; returns {metric: result dict}."""
    return {name: METRICS[name](encode_fn, dataset, seed=seed) for name in resolve_metrics(metrics)}


__all__ = ["METRICS", "EncodeFn", "evaluate", "generate_batch_factor_code", "mig", "mig_from_codes",
           "representation_function", "resolve_metrics"]
