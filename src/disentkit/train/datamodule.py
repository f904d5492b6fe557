"""Batches for Lightning without a DataLoader: random index batches gathered in one vectorized call.

Training draws indices uniformly with replacement from the training split (as disentanglement_lib
does), with a generator seeded from the run's seed, so the same seed gives the same batches. The draw
goes through the dataset's ``sample_training_indices`` hook, so a correlated-factor variant
(``disentkit.data.correlated``) can change the training distribution without touching the metrics.
"""

from __future__ import annotations

from typing import Iterator

import lightning as L
import numpy as np
import torch

from ..data import FactorDataset


class RandomBatches:
    """An endless iterable of image batches (B, C, H, W) drawn from ``indices`` of ``dataset``."""

    def __init__(self, dataset: FactorDataset, indices: torch.Tensor | None, batch_size: int, seed: int,
                 device: str | torch.device = "cpu") -> None:
        self.dataset, self.batch_size, self.device = dataset, batch_size, torch.device(device)
        self.indices = None if indices is None else indices.to(self.device)
        self.seed = seed

    def __iter__(self) -> Iterator[torch.Tensor]:
        gen = torch.Generator(device=self.device).manual_seed(self.seed)
        while True:
            idx = self.dataset.sample_training_indices(self.batch_size, gen, self.indices)
            yield self.dataset.images_at(idx, check=False)  # in range by construction: no device sync


class FixedBatches:
    """A finite, ordered pass over ``indices`` in batches: the validation set."""

    def __init__(self, dataset: FactorDataset, indices: torch.Tensor, batch_size: int,
                 device: str | torch.device = "cpu") -> None:
        self.dataset, self.indices, self.batch_size = dataset, indices.to(device), batch_size

    def __len__(self) -> int:
        return (len(self.indices) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[torch.Tensor]:
        for start in range(0, len(self.indices), self.batch_size):
            yield self.dataset.images_at(self.indices[start:start + self.batch_size])


def num_val_images(num_images: int, val_fraction: float) -> int:
    """How many images :func:`split_indices` holds out for validation (0 without validation)."""
    return max(1, int(round(num_images * val_fraction))) if val_fraction > 0 else 0


def num_train_images(config: dict) -> int | None:
    """N of a run config: the images it trains on (the dataset less its validation split), which is
    what β-TCVAE's estimators need (Chen et al. 2018, eq. 5 counts the data q(z) is built from)."""
    n = config.get("num_images")
    return None if n is None else int(n) - num_val_images(int(n), float(config.get("val_fraction") or 0.0))


def split_indices(num_images: int, val_fraction: float, seed: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(train, val) index tensors; (None, None) means train on everything with no validation."""
    if val_fraction <= 0:
        return None, None
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(num_images))
    n_val = num_val_images(num_images, val_fraction)
    return perm[n_val:], perm[:n_val]


class FactorDataModule(L.LightningDataModule):
    """Training and (optional) validation batches of a factor dataset, produced on ``device``."""

    def __init__(self, dataset: FactorDataset, batch_size: int, seed: int, val_fraction: float = 0.0,
                 val_batches: int = 20, device: str | torch.device = "cpu") -> None:
        super().__init__()
        self.dataset, self.batch_size, self.seed, self.device = dataset, batch_size, seed, device
        self.train_idx, val_idx = split_indices(dataset.num_images, val_fraction, seed)
        # Validation scores a fixed subset (val_batches × batch_size) of the held-out split each time.
        self.val_idx = None if val_idx is None else val_idx[: val_batches * batch_size]

    def train_dataloader(self) -> RandomBatches:
        return RandomBatches(self.dataset, self.train_idx, self.batch_size, self.seed, self.device)

    def val_dataloader(self) -> FixedBatches | list:
        if self.val_idx is None:
            return []
        return FixedBatches(self.dataset, self.val_idx, self.batch_size, self.device)
