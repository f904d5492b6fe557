"""disentkit: train, evaluate and compare disentangled representation learners (β-VAE, FactorVAE and
their relatives) on ground-truth-factor datasets.

Where things are (each imports torch, so ``import disentkit`` alone stays light):

* ``disentkit.load(run)`` — a trained run as a :class:`~disentkit.api.Model`: ``encode``, ``decode``,
  ``reconstruct``, ``traverse``, ``save``; the metrics take it directly
* ``disentkit.train``    — ``fit(config)`` (``vae=`` your own encoder/decoder), ``resume(run)``, ``TrainConfig``, ``load_checkpoint(path)``
* ``disentkit.metrics``  — ``mig``, ``sap``, ``dci``, ``factor_vae_score``, … and ``evaluate(encode_fn, dataset, "all")``
* ``disentkit.data``     — ``get_dataset(name)``: procedural and real factor datasets;
  ``FactorDataset.from_arrays(images, factors)`` for your own; ``dataset.torch_dataset()`` for a DataLoader
* ``disentkit.models``   — the objectives (``OBJECTIVES``) and architectures
* ``disentkit.sweep``    — grids of runs, local or on Ray

The command line: ``disentkit --help``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("disentkit")
except PackageNotFoundError:  # run from a source tree that was never installed (PYTHONPATH=src)
    __version__ = "0+unknown"

__all__ = ["Model", "__version__", "load"]


def __getattr__(name: str) -> Any:
    """``load`` and ``Model`` import torch, so only when first used."""
    if name in ("load", "Model"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + ["load", "Model"])
