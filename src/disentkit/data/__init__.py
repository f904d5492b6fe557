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


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    build: Callable[..., FactorDataset]
    description: str
    procedural: bool = False


DATASETS: dict[str, DatasetEntry] = {}


def register(name: str, build: Callable[..., FactorDataset], description: str, procedural: bool = False) -> None:
    DATASETS[name] = DatasetEntry(name, build, description, procedural)


def get_dataset(name: str, **kwargs) -> FactorDataset:
    """Build the dataset registered as ``name``; unknown names raise a :class:`DisentkitError`."""
    if name not in DATASETS:
        raise DisentkitError(
            f"unknown dataset '{name}'; choose one of: {', '.join(sorted(DATASETS))} "
            "(see `disentkit datasets list`)"
        )
    return DATASETS[name].build(**kwargs)


register("dsprites_procedural", DSpritesProcedural,
         "dSprites factor grid (737,280 binary 64x64 images) rendered procedurally; no download", procedural=True)

__all__ = ["ArrayFactorDataset", "DATASETS", "Factor", "FactorDataset", "get_dataset", "register"]
