"""Factor datasets: one module per dataset, each registering itself in :data:`DATASETS`.

``get_dataset("dsprites_procedural")`` returns a :class:`FactorDataset`. A new dataset is one module that
calls ``DATASETS.register(DatasetEntry(...))`` (procedural) or decorates its converter with
``register_converter`` (a real file format; its published files are listed in ``registry.py``).
"""

from __future__ import annotations

from ..registry import import_all
from .base import DATASETS, ArrayFactorDataset, DatasetEntry, Factor, FactorDataset

import_all(__name__, __path__, skip=lambda name: name == "datasets_cli")


def get_dataset(name: str, data_root: str | None = None, **kwargs) -> FactorDataset:
    """Build the dataset registered as ``name``; unknown names raise a :class:`DisentkitError`.

    ``name`` may carry a variant after a colon, e.g. ``dsprites_procedural:corr(posX,posY,0.2)``
    (see :mod:`disentkit.data.correlated`). ``data_root`` locates real datasets (else
    ``$DISENTKIT_DATA``, else the per-user cache folder); procedural datasets ignore it.
    """
    base, _, variant = name.partition(":")
    entry = DATASETS[base]
    dataset = entry.build(**kwargs) if entry.procedural else entry.build(data_root=data_root, **kwargs)
    if variant:
        from .correlated import CorrelatedFactors, parse_variant

        dataset = CorrelatedFactors(dataset, *parse_variant(variant))
    return dataset


def register(name: str, build, description: str, procedural: bool = False) -> None:
    """Register a dataset built by ``build(**kwargs)`` (procedural) or ``build(data_root=...)`` (files)."""
    DATASETS.register(DatasetEntry(name, build, description, procedural))


__all__ = ["ArrayFactorDataset", "DATASETS", "DatasetEntry", "Factor", "FactorDataset", "get_dataset", "register"]
