"""disentkit: train, evaluate and compare disentangled representation learners (β-VAE, FactorVAE and
their relatives) on ground-truth-factor datasets.

Where things are (each imports torch, so ``import disentkit`` alone stays light):

* ``disentkit.train``    — ``fit(config)``, ``resume(run)``, ``TrainConfig``, ``load_checkpoint(path)``
* ``disentkit.metrics``  — ``mig``, ``sap``, ``dci``, ``factor_vae_score``, … and ``evaluate(encode_fn, dataset, "all")``
* ``disentkit.data``     — ``get_dataset(name)``: procedural and real factor datasets
* ``disentkit.models``   — the objectives (``OBJECTIVES``) and architectures
* ``disentkit.sweep``    — grids of runs, local or on Ray

The command line: ``disentkit --help``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("disentkit")
except PackageNotFoundError:  # run from a source tree that was never installed (PYTHONPATH=src)
    __version__ = "0+unknown"

__all__ = ["__version__"]
