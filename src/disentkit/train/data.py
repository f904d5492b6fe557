"""Which images a run trains, validates and tests on, and its training batches (no DataLoader).

- :func:`plan_indices`: a fixed random subset (``--subsample``) and disjoint train / validation / test
  indices (``--split``), both from ``--data-seed``, so every seed of a study shares them.
- :class:`Batches`: index batches gathered in one vectorized call, for 1..M members. With ``--steps``
  indices are drawn uniformly with replacement (disentanglement_lib); with ``--epochs`` each epoch is a
  fresh shuffle of the training split (the last partial batch dropped). Member i's draws come from a
  generator seeded with its seed, so member i gets the batches its single run gets. The state (generators,
  place in the epoch) is saved with a run and restored by ``--resume``.

Draws go through the dataset's ``sample_training_indices`` hook, so a correlated-factor variant
(``disentkit.data.correlated``) changes the training distribution without touching the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from ..data import FactorDataset
from ..errors import DisentkitError


@dataclass
class Indices:
    """A run's image indices: ``train`` (None: every image of the dataset), ``val`` and ``test``."""

    train: torch.Tensor | None
    val: torch.Tensor | None
    test: torch.Tensor | None
    num_images: int

    @property
    def num_train(self) -> int:
        return self.num_images if self.train is None else len(self.train)


def num_held_out(n: int, fraction: float) -> int:
    """Images a split share of ``fraction`` holds out of ``n`` (at least one when the share is positive)."""
    return max(1, int(round(n * fraction))) if fraction > 0 else 0


def plan_indices(num_images: int, fractions: tuple[float, float, float], subsample: int = 0,
                 data_seed: int = 0, allowed: np.ndarray | None = None) -> Indices:
    """The subset (``subsample`` > 0: that many images, drawn without replacement) and its split into
    train / validation / test by one permutation: validation first, then test, then train. ``allowed``
    (sorted indices: a dataset's :meth:`~disentkit.data.FactorDataset.training_images`, holes left out)
    is the pool everything is drawn from; None: every image."""
    pool = None if allowed is None else np.asarray(allowed, dtype=np.int64)
    available = num_images if pool is None else len(pool)
    if subsample:
        if subsample > available:
            what = "dataset's" if pool is None else "dataset's trainable (outside its holes)"
            raise DisentkitError(f"--subsample {subsample} is more than the {what} {available:,} images")
        rng = np.random.default_rng([data_seed, 1])
        picked = np.sort(rng.choice(available, size=subsample, replace=False))
        pool = picked if pool is None else pool[picked]
    n = num_images if pool is None else len(pool)
    n_val, n_test = num_held_out(n, fractions[1]), num_held_out(n, fractions[2])
    if n_val + n_test >= n:
        raise DisentkitError(f"--split {','.join(f'{f:g}' for f in fractions)} leaves no training images of {n:,}")
    if not (n_val or n_test):
        train = None if pool is None else torch.from_numpy(pool)
        return Indices(train, None, None, n)
    perm = np.random.default_rng(data_seed).permutation(n)
    if pool is not None:
        perm = pool[perm]
    perm_t = torch.from_numpy(perm)
    val, test, train = perm_t[:n_val], perm_t[n_val:n_val + n_test], perm_t[n_val + n_test:]
    return Indices(train, val if n_val else None, test if n_test else None, n)


def shared_seed(seeds: list[int]) -> int:
    """The one seed of ``--ensemble-rng shared``: the members' batch generator (their noise generator: + 1)."""
    return hash(tuple(int(s) for s in seeds)) % (2 ** 31)


def pair_k(objective: Any) -> int | None:
    """The k of an objective that trains on pairs (``pairs = True``: Ada-GVAE, …), else None."""
    return int(objective.k) if type(objective).pairs else None


class Batches:
    """Training batches for ``seeds`` (one member per seed): (B, C, H, W) for one member, (M, B, C, H, W)
    for several. ``rng="shared"`` draws all members' indices from one generator (fewer launches)."""

    def __init__(self, dataset: FactorDataset, indices: torch.Tensor | None, batch_size: int, seeds: list[int],
                 device: torch.device, epochs: bool = False, rng: str = "member", pairs_k: int | None = None) -> None:
        self.dataset, self.batch_size, self.device = dataset, batch_size, torch.device(device)
        self.pairs_k = pairs_k
        self.indices = None if indices is None else indices.to(self.device)
        self.allowed = None             # pairs' partners stay within the training images (split, holes)
        if pairs_k is not None and self.indices is not None:
            self.allowed = torch.zeros(dataset.num_images, dtype=torch.bool, device=self.device)
            self.allowed[self.indices] = True
        self.epochs, self.shared, self.m = epochs, rng == "shared", len(seeds)
        gen_seeds = [shared_seed(seeds)] if self.shared else seeds
        self.gens = [torch.Generator(device=self.device).manual_seed(int(s)) for s in gen_seeds]
        # the partners' own streams: an epoch's shuffle is redrawn from its start state on resume
        self.pair_gens = [] if pairs_k is None else [torch.Generator(device=self.device).manual_seed(int(s) + 7919)
                                                     for s in gen_seeds]
        n = dataset.num_images if indices is None else len(indices)
        self.steps_per_epoch = n // batch_size
        if epochs and self.steps_per_epoch == 0:
            raise DisentkitError(f"--batch-size {batch_size} is larger than the {n:,} training images: no full batch")
        self.position = 0                                  # batches taken in the current epoch
        self._epoch_states: list[torch.Tensor] = []        # generator states the epoch's shuffle was drawn from
        self._orders: torch.Tensor | None = None           # (G, n) the epoch's shuffles

    # ------------------------------------------------------------------ drawing
    def _draw(self, g: torch.Generator, count: int) -> torch.Tensor:
        return self.dataset.sample_training_indices(count, g, self.indices)

    def _start_epoch(self) -> None:
        n = self.dataset.num_images if self.indices is None else len(self.indices)
        self._epoch_states = [g.get_state() for g in self.gens]
        gens = self.gens * self.m if self.shared else self.gens   # shared: every member's shuffle from one stream
        self._orders = torch.stack([torch.randperm(n, generator=g, device=self.device) for g in gens])
        self.position = 0

    def _epoch_indices(self) -> torch.Tensor:
        if self._orders is None or self.position == self.steps_per_epoch:
            self._start_epoch()
        assert self._orders is not None
        b, k = self.batch_size, self.position
        self.position += 1
        pick = self._orders[:, k * b:(k + 1) * b]
        return pick if self.indices is None else self.indices[pick]

    def next_indices(self) -> torch.Tensor:
        """Image indices (M, B) of the next batch (M = 1 for a single run)."""
        if self.epochs:
            return self._epoch_indices()
        if self.shared:
            return self._draw(self.gens[0], self.m * self.batch_size).view(self.m, self.batch_size)
        return torch.stack([self._draw(g, self.batch_size) for g in self.gens])

    def __iter__(self) -> Iterator[torch.Tensor]:
        while True:
            yield self.next()

    def next(self) -> torch.Tensor:
        """(B, C, H, W) or (M, B, C, H, W); for pairs 2B images, the B first images then their B partners."""
        idx = self.next_indices()
        if self.pairs_k is not None:
            from ..data.pairs import partner_indices

            gens = self.pair_gens * self.m if self.shared else self.pair_gens
            partners = torch.stack([partner_indices(self.dataset, row, self.pairs_k, g, self.allowed)
                                    for row, g in zip(idx, gens)])
            idx = torch.cat([idx, partners], 1)
        images = self.dataset.images_at(idx.flatten(), check=False)  # in range by construction: no device sync
        return images if self.m == 1 else images.view(self.m, idx.shape[1], *images.shape[1:])

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        pairs = {"pair_generators": [g.get_state() for g in self.pair_gens]} if self.pairs_k is not None else {}
        if self.epochs and self._epoch_states:  # the shuffle is redrawn from the epoch's start state
            return {"generators": self._epoch_states, "position": self.position, "in_epoch": True, **pairs}
        return {"generators": [g.get_state() for g in self.gens], "position": self.position, "in_epoch": False,
                **pairs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for g, s in zip(self.gens, state["generators"]):
            g.set_state(s)
        for g, s in zip(self.pair_gens, state.get("pair_generators", [])):
            g.set_state(s)
        if state.get("in_epoch"):
            self._start_epoch()
            self.position = int(state["position"])


def fixed_batches(dataset: FactorDataset, indices: torch.Tensor, batch_size: int,
                  device: torch.device) -> Iterator[torch.Tensor]:
    """An ordered pass over ``indices`` in batches (the last one partial): validation and test."""
    indices = indices.to(device)
    for start in range(0, len(indices), batch_size):
        yield dataset.images_at(indices[start:start + batch_size])
