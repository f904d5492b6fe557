"""Correlated factors (Träuble et al., ICML 2021, "On Disentangled Representations Learned from
Correlated Data"): training draws one pair of factors from a correlated joint, evaluation stays uniform.

The joint over the pair's classes (i, j) is a Gaussian-blurred diagonal band on normalised class
positions, p(i, j) ∝ exp(−(x_i − y_j)² / (2σ²)) with x_i = i / (n₁ − 1), y_j = j / (n₂ − 1); small σ
is strong correlation (the paper uses σ ∈ {0.2, 0.4, 0.7}), σ = ∞ (``inf`` / ``off``) is uniform.
All other factors stay uniform and independent. :meth:`sample_training_indices` (used by training's
batches) samples this joint; :meth:`sample_factors` (used by every metric) stays uniform.

Named variants: ``dsprites_procedural:corr(posX,posY,0.2)``.
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch

from ..errors import DisentkitError
from .base import FactorDataset
from .variant import DatasetVariant

SPEC = re.compile(r"^corr\(\s*([\w.-]+)\s*,\s*([\w.-]+)\s*,\s*([\w.+-]+)\s*\)$")


def pair_joint(n1: int, n2: int, sigma: float) -> np.ndarray:
    """Joint probability (n1, n2) of the correlated pair: a blurred diagonal band (uniform for σ = ∞)."""
    if math.isinf(sigma):
        return np.full((n1, n2), 1.0 / (n1 * n2))
    x = np.linspace(0, 1, n1)[:, None]
    y = np.linspace(0, 1, n2)[None, :]
    w = np.exp(-((x - y) ** 2) / (2 * sigma**2))
    return w / w.sum()


class CorrelatedFactors(DatasetVariant):
    """``base`` with factors ``first`` and ``second`` correlated (strength ``sigma``) in training draws."""

    def __init__(self, base: FactorDataset, first: str, second: str, sigma: float) -> None:
        names = base.factor_names
        for f in (first, second):
            if f not in names:
                raise DisentkitError(f"corr(): dataset '{base.name}' has no factor '{f}'; its factors are "
                                     f"{', '.join(names)}")
        if first == second:
            raise DisentkitError("corr(): name two different factors")
        if not sigma > 0:
            raise DisentkitError(f"corr(): the strength σ must be positive (or inf for uniform), got {sigma}")
        if not base.has_factors:
            raise DisentkitError(f"corr(): dataset '{base.name}' has no ground-truth factors to correlate")
        super().__init__(base, f"{base.name}:corr({first},{second},{sigma:g})")
        self.sigma = float(sigma)
        self.pair = (names.index(first), names.index(second))
        self.joint = pair_joint(base.factor_sizes[self.pair[0]], base.factor_sizes[self.pair[1]], self.sigma)
        self._cdf_cache: tuple[int, torch.Tensor] | None = None
        self._joint_tensors: dict[torch.device, torch.Tensor] = {}

    def describe(self) -> dict:
        d = super().describe()
        d["correlated_pair"] = [self.factor_names[i] for i in self.pair]
        d["sigma"] = self.sigma
        return d

    # ------------------------------------------------------------ correlated draws (training)
    def pair_weights(self, factors: np.ndarray | torch.Tensor):
        """Joint probability of each row's pair classes (numpy or torch, as given)."""
        a, b = self.pair
        if isinstance(factors, torch.Tensor):
            joint = torch.as_tensor(self.joint, device=factors.device)
            return joint[factors[:, a], factors[:, b]]
        return self.joint[factors[:, a], factors[:, b]]

    def sample_correlated_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
        """Factor classes (num, F): the pair from the correlated joint, the rest uniform."""
        out = self.sample_factors(num, rng)
        n2 = self.joint.shape[1]
        flat = rng.choice(self.joint.size, size=num, p=self.joint.ravel())
        out[:, self.pair[0]], out[:, self.pair[1]] = flat // n2, flat % n2
        return out

    def _joint_on(self, device: torch.device) -> torch.Tensor:
        """The flattened joint as a float64 tensor on ``device``, copied there once (not every batch)."""
        cached = self._joint_tensors.get(device)
        if cached is None:
            cached = self._joint_tensors[device] = torch.as_tensor(self.joint.ravel(), dtype=torch.float64).to(device)
        return cached

    def redraw_factors(self, factors: torch.Tensor, changed: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A pair's second factors: the changed factors outside the correlated pair redrawn uniformly; a
        changed factor of the pair from the joint given the pair's other value (both: from the joint),
        never to its old value, so that pairs keep the training distribution's correlation."""
        out = super().redraw_factors(factors, changed, generator)
        a, b = self.pair
        n1, n2 = self.joint.shape
        joint = self._joint_on(factors.device).view(n1, n2).clamp_min(1e-300)   # no all-zero row at tiny σ
        i, j = factors[:, a], factors[:, b]
        rows = torch.arange(len(factors), device=factors.device)
        w_a = joint[:, j].T.clone()                      # p(a | b = j), old a excluded
        w_a[rows, i] = 0
        w_b = joint[i, :].clone()                        # p(b | a = i), old b excluded
        w_b[rows, j] = 0
        w_ab = joint.expand(len(factors), n1, n2).clone()   # p(a, b), old a and old b both excluded
        w_ab[rows, i, :] = 0
        w_ab[rows, :, j] = 0
        new_a = torch.multinomial(w_a, 1, generator=generator)[:, 0]
        new_b = torch.multinomial(w_b, 1, generator=generator)[:, 0]
        both = torch.multinomial(w_ab.flatten(1), 1, generator=generator)[:, 0]
        ca, cb = changed[:, a], changed[:, b]
        out[:, a] = torch.where(ca & cb, both // n2, torch.where(ca, new_a, i))
        out[:, b] = torch.where(ca & cb, both % n2, torch.where(cb, new_b, j))
        return out

    def sample_training_indices(self, n: int, generator: torch.Generator,
                                indices: torch.Tensor | None = None) -> torch.Tensor:
        """Training batch indices drawn from the correlated joint (restricted to ``indices`` if given)."""
        device = generator.device
        indices = self.default_indices(indices, device)        # a base with holes: its training images
        if indices is None:
            joint = self._joint_on(device)
            pair = torch.multinomial(joint, n, replacement=True, generator=generator)
            sizes = self.factor_sizes
            factors = torch.stack([torch.randint(0, s, (n,), generator=generator, device=device) for s in sizes], 1)
            n2 = self.joint.shape[1]
            factors[:, self.pair[0]], factors[:, self.pair[1]] = pair // n2, pair % n2
            return self.factors_to_index(factors)
        # a split: weight each allowed image by its pair's joint probability; inverse-CDF sampling
        key = id(indices)
        if self._cdf_cache is None or self._cdf_cache[0] != key:
            w = self.pair_weights(self.index_to_factors(indices.to(device)))
            self._cdf_cache = (key, torch.cumsum(w.double(), 0))
        cdf = self._cdf_cache[1]
        u = torch.rand(n, generator=generator, device=device, dtype=torch.float64) * cdf[-1]
        pick = torch.searchsorted(cdf, u).clamp_max(len(cdf) - 1)
        return indices.to(device)[pick]


def parse_variant(spec: str) -> tuple[str, str, float]:
    """``corr(A,B,σ)`` -> (A, B, σ); ``σ`` may be ``inf`` or ``off`` for uniform."""
    m = SPEC.match(spec.strip())
    if not m:
        raise DisentkitError(f"unknown dataset variant '{spec}'; write e.g. "
                             "'dsprites_procedural:corr(posX,posY,0.2)' (factor, factor, strength σ)")
    a, b, s = m.groups()
    try:
        sigma = math.inf if s.lower() in ("inf", "off", "none") else float(s)
    except ValueError:
        raise DisentkitError(f"corr(): strength must be a number or 'inf', got '{s}'") from None
    return a, b, sigma
