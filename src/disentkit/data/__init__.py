"""Factor datasets: one module per dataset, each registering itself in :data:`DATASETS`.

``get_dataset("dsprites_procedural")`` returns a :class:`FactorDataset`. A new dataset is one module that
calls ``DATASETS.register(DatasetEntry(...))`` (procedural) or decorates its converter with
``register_converter`` (a real file format; its published files are listed in ``registry.py``).

Public names: :func:`get_dataset`, :func:`register`, :data:`DATASETS` (name -> :class:`DatasetEntry`),
:class:`FactorDataset` (the interface; ``FactorDataset.from_arrays`` for your own images),
:class:`ArrayFactorDataset` (images held in an array) and :class:`Factor`.

Example:
    ``DATASETS`` maps every dataset's name to its :class:`DatasetEntry`; the procedural ones need no files:

    >>> from disentkit.data import DATASETS, get_dataset
    >>> sorted(name for name, entry in DATASETS.items() if entry.procedural)
    ['dsprites_procedural', 'shapes3d_procedural']
    >>> "dsprites" in DATASETS                      # the real file, downloaded by `disentkit datasets get`
    True
    >>> ds = get_dataset("dsprites_procedural")
    >>> ds.factor_names, ds.num_images
    (('shape', 'scale', 'orientation', 'posX', 'posY'), 737280)
"""

from __future__ import annotations

from ..names import split_outside_parens
from ..registry import import_all
from .base import DATASETS, ArrayFactorDataset, DatasetEntry, Factor, FactorDataset

import_all(__name__, __path__, skip=lambda name: name == "datasets_cli")


def get_dataset(name: str, data_root: str | None = None, **kwargs) -> FactorDataset:
    """Build the dataset registered as ``name``; unknown names raise a :class:`DisentkitError`.

    ``name`` may carry a variant after a colon, e.g. ``dsprites_procedural:corr(posX,posY,0.2)``
    (see :mod:`disentkit.data.correlated`). ``data_root`` locates real datasets (else
    ``$DISENTKIT_DATA``, else the per-user cache folder); procedural datasets ignore it.

    Example:

        >>> from disentkit.data import get_dataset
        >>> ds = get_dataset("dsprites_procedural")          # rendered on demand: nothing to download
        >>> ds.factor_sizes, ds.observation_shape
        ((3, 6, 40, 32, 32), (1, 64, 64))
        >>> ds.images_at([0, 1]).shape
        torch.Size([2, 1, 64, 64])
        >>> get_dataset("dsprites_procedural:corr(posX,posY,0.2)").name   # training draws posX ~ posY
        'dsprites_procedural:corr(posX,posY,0.2)'
        >>> holes = get_dataset("dsprites_procedural:holes(shape=heart & scale>=0.8)")   # never trained on
        >>> holes.kind, len(holes.held_out_images())
        ('recombination-to-range', 122880)
    """
    base, *variants = split_variants(name)
    entry = DATASETS[base]
    dataset = entry.build(**kwargs) if entry.procedural else entry.build(data_root=data_root, **kwargs)
    # correlations first, holes last (whatever the order written): a hole is then cut from the correlated draws
    for variant in sorted(variants, key=lambda v: v.startswith("holes(")):
        if variant.startswith("holes("):
            from .holes import Holes

            dataset = Holes(dataset, variant)
        else:
            from .correlated import CorrelatedFactors, parse_variant

            dataset = CorrelatedFactors(dataset, *parse_variant(variant))
    return dataset


def split_variants(name: str) -> list[str]:
    """``base:variant(...):variant(...)`` -> [base, variant, ...]; a colon inside parentheses stays."""
    return split_outside_parens(name, ":")


def register(name: str, build, description: str, procedural: bool = False) -> None:
    """Register a dataset built by ``build(**kwargs)`` (procedural) or ``build(data_root=...)`` (files).

    Example:

        >>> from disentkit.data import DATASETS, get_dataset, register
        >>> from disentkit.testing import IdentityDataset
        >>> register("tiny_identity", lambda: IdentityDataset((2, 3)), "a 2 x 3 grid", procedural=True)
        >>> get_dataset("tiny_identity").num_images
        6
        >>> DATASETS.unregister("tiny_identity")
    """
    DATASETS.register(DatasetEntry(name, build, description, procedural))


__all__ = ["ArrayFactorDataset", "DATASETS", "DatasetEntry", "Factor", "FactorDataset", "get_dataset", "register"]
