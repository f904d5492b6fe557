"""Test helpers that ship with disentkit: datasets with known answers and writers of published file formats.

- :class:`~disentkit.testing.identity.IdentityDataset`: observations equal the factors (metrics' known answer);
- :mod:`~disentkit.testing.synthetic`: small files in the exact published formats (dSprites npz/HDF5, NORB,
  Cars3D, …), for loader tests and benchmarks.

None of it is on the training or evaluation path.
"""

from .identity import IdentityDataset

__all__ = ["IdentityDataset"]
