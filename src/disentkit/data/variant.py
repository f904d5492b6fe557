"""A dataset seen through a variant (``name:corr(...)``, ``name:holes(...)``): the base dataset's images
and factors, with its own training distribution or training set. Variants stack; each one delegates what
it does not change to the dataset below it."""

from __future__ import annotations

import numpy as np
import torch

from .base import FactorDataset


class DatasetVariant(FactorDataset):
    """``base`` under another name: images, factors, placement, pair redraws and training draws are the base's
    until a subclass overrides them."""

    def __init__(self, base: FactorDataset, name: str) -> None:
        self.base, self.name = base, name
        self.factors = base.factors
        self.observation_shape = base.observation_shape
        self.has_factors = base.has_factors

    def _gather(self, index: torch.Tensor) -> torch.Tensor:
        return self.base._gather(index)

    def to(self, device) -> "DatasetVariant":
        self.base.to(device)
        return self

    def placement_bytes(self) -> int:
        return self.base.placement_bytes()

    def hold_on(self, device: torch.device) -> None:
        self.base.hold_on(device)

    def redraw_factors(self, factors: torch.Tensor, changed: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.base.redraw_factors(factors, changed, generator)

    def sample_training_indices(self, n: int, generator: torch.Generator,
                                indices: torch.Tensor | None = None) -> torch.Tensor:
        return self.base.sample_training_indices(n, generator, self.default_indices(indices, generator.device))

    def training_images(self) -> np.ndarray | None:
        return self.base.training_images()

    def default_indices(self, indices: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
        """``indices``, or when None the images training may use (None: all), as a tensor on ``device``
        (made once per device)."""
        if indices is not None:
            return indices
        allowed = self.training_images()
        if allowed is None:
            return None
        cache = self.__dict__.setdefault("_allowed_cache", {})
        if device not in cache:
            cache[device] = torch.as_tensor(allowed, device=device)
        return cache[device]
