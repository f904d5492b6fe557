"""Factor datasets: a small registry from name to constructor.

``get_dataset("dsprites_procedural")`` returns a :class:`FactorDataset`. A new dataset is one
module plus one :func:`register` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import DisentkitError
from .base import ArrayFactorDataset, Factor, FactorDataset
from .dsprites_procedural import DSpritesProcedural
from .registry import SOURCES
from .shapes3d_procedural import Shapes3DProcedural
from . import cars3d, celeba, chairs, dsprites, mpi3d, shapes3d, smallnorb  # noqa: F401,E402 (converters)


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    build: Callable[..., FactorDataset]
    description: str
    procedural: bool = False


DATASETS: dict[str, DatasetEntry] = {}


def register(name: str, build: Callable[..., FactorDataset], description: str, procedural: bool = False) -> None:
    DATASETS[name] = DatasetEntry(name, build, description, procedural)


def get_dataset(name: str, data_root: str | None = None, **kwargs) -> FactorDataset:
    """Build the dataset registered as ``name``; unknown names raise a :class:`DisentkitError`.

    ``name`` may carry a variant after a colon, e.g. ``dsprites_procedural:corr(posX,posY,0.2)``
    (see :mod:`disentkit.data.correlated`). ``data_root`` locates real datasets (else
    ``$DISENTKIT_DATA``, else the per-user cache folder); procedural datasets ignore it.
    """
    base, _, variant = name.partition(":")
    if base not in DATASETS:
        raise DisentkitError(
            f"unknown dataset '{base}'; choose one of: {', '.join(sorted(DATASETS))} "
            "(see `disentkit datasets list`)"
        )
    entry = DATASETS[base]
    dataset = entry.build(**kwargs) if entry.procedural else entry.build(data_root=data_root, **kwargs)
    if variant:
        from .correlated import CorrelatedFactors, parse_variant

        dataset = CorrelatedFactors(dataset, *parse_variant(variant))
    return dataset


def _real(name: str) -> Callable[..., FactorDataset]:
    def build(data_root: str | None = None, device=None) -> FactorDataset:
        from .cache import load_real

        return load_real(name, data_root, device=device)
    build.__name__ = f"load_{name}"
    return build


register("dsprites_procedural", DSpritesProcedural,
         "dSprites factor grid (737,280 binary 64x64 images) rendered procedurally; no download", procedural=True)
register("shapes3d_procedural", Shapes3DProcedural,
         "3D Shapes factor grid (480,000 RGB 64x64 images) from a torch ray caster; no download", procedural=True)
for _name, _src in SOURCES.items():
    register(_name, _real(_name), _src.description)

__all__ = ["ArrayFactorDataset", "DATASETS", "Factor", "FactorDataset", "get_dataset", "register"]
