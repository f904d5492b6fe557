"""A factor dataset whose observations are the factor classes themselves.

disentanglement_lib's ``IdentityObservationsData``: the known-answer case for metrics (a perfect,
axis-aligned code), used by the tests and ``benchmarks/known_answers.py``.
"""

from __future__ import annotations

import torch

from ..data.base import Factor, FactorDataset


class IdentityDataset(FactorDataset):
    """Observations (N, F, 1, 1) equal the factor classes; ``sizes`` gives each factor's class count."""

    name = "identity"

    def __init__(self, sizes: tuple[int, ...] = (10, 10, 10, 10, 10)) -> None:
        self.factors = tuple(Factor(f"f{i}", tuple(float(v) for v in range(s))) for i, s in enumerate(sizes))
        self.observation_shape = (len(sizes), 1, 1)

    def _gather(self, index: torch.Tensor) -> torch.Tensor:
        return self.index_to_factors(index).float().view(len(index), -1, 1, 1)
