"""Your own images and factor labels as a factor dataset, and any factor dataset as a ``torch`` Dataset::

    ds = FactorDataset.from_arrays(images, factors, names=["shape", "size"])   # (N, H, W[, C]) and (N, F)
    ds = FactorDataset.from_file("mydata.npz")          # keys: images, factors[, names]; or .h5 / .hdf5
    disentkit.metrics.mig(model, ds)
    loader = torch.utils.data.DataLoader(ds.torch_dataset(), batch_size=64, shuffle=True)

Each factor column becomes classes: its distinct values, sorted. Rows that form the complete factor grid
(every combination once) give an :class:`ArrayFactorDataset` in grid order, exactly as the built-in
datasets. Otherwise (combinations missing or repeated) factors are drawn as the rows are — uniform over
rows, so by their joint distribution, not independently — and a combination's image is its first row;
metrics that intervene on one factor (FactorVAE and BetaVAE scores) then need combinations the data may
not have, and say so.

Example:
    Five of the six combinations of a 2 x 3 grid: a dataset of rows, which the metrics that intervene
    on one factor refuse:

    >>> import numpy as np
    >>> from disentkit.data import FactorDataset
    >>> ds = FactorDataset.from_arrays(np.zeros((5, 8, 8), np.uint8), [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1]])
    >>> type(ds).__name__, ds.num_images, ds.factor_sizes
    ('LabelledFactorDataset', 5, (2, 3))
    >>> ds.factors_to_index(np.array([[1, 2]]))
    Traceback (most recent call last):
    ...
    disentkit.errors.DisentkitError: user_data has no image with factor classes {'factor0': 1, 'factor1': 2}: ...
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import DisentkitError
from .base import ArrayFactorDataset, Factor, FactorDataset, grid_strides


def uint8_scale(x: np.ndarray | torch.Tensor) -> float:
    """What maps uint8 pixels to [0, 1]: 1 for binary {0, 1} images, else 1/255."""
    return 1.0 if len(x) == 0 or int(x.max()) <= 1 else 1 / 255


def _images_nhwc(images: Any) -> tuple[np.ndarray | torch.Tensor, float]:
    """Images as (N, H, W) or (N, H, W, C) and the scale mapping them to [0, 1]; (N, C, H, W) with C in
    {1, 3} is transposed; uint8 is scaled by 1/255 unless binary; floats must lie in [0, 1]."""
    x = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] != 3):
        raise DisentkitError(f"images must be (N, H, W), (N, H, W, C) or (N, C, H, W) with 1 or 3 channels, got "
                             f"shape {x.shape}")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x), uint8_scale(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise DisentkitError(f"images must be uint8 or floats in [0, 1], got dtype {x.dtype}")
    if not np.isfinite(x).all() or x.min(initial=0) < 0 or x.max(initial=0) > 1:
        raise DisentkitError("float images must be finite and within [0, 1] (scale 8-bit images by 1/255, or pass uint8)")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), 1.0


def _factor_classes(factors: Any, names: Sequence[str] | None, n: int) -> tuple[np.ndarray, list[Factor]]:
    """(N, F) class indices and the :class:`Factor` of each column (its sorted distinct values)."""
    y = np.asarray(factors)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or len(y) != n:
        raise DisentkitError(f"factors must be (N, F) with N = {n} images, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.number) or not np.isfinite(y).all():
        raise DisentkitError("factors must be finite numbers (class labels or values), one row per image")
    names = list(names) if names is not None else [f"factor{i}" for i in range(y.shape[1])]
    if len(names) != y.shape[1] or len(set(names)) != len(names):
        raise DisentkitError(f"names must give {y.shape[1]} distinct factor names, got {names}")
    classes, out = np.empty(y.shape, dtype=np.int64), []
    for j, name in enumerate(names):
        values, classes[:, j] = np.unique(y[:, j], return_inverse=True)
        out.append(Factor(str(name), tuple(float(v) for v in values)))
    return classes, out


class LabelledFactorDataset(ArrayFactorDataset):
    """Images with factor labels that are not one complete grid: an image index is a row, factors are
    drawn as rows are, and a combination's image is its first row (see the module docstring)."""

    def __init__(self, name: str, factors: Sequence[Factor], images, classes: np.ndarray, scale: float) -> None:
        self.classes = classes
        self._rows = len(classes)
        code = (classes * grid_strides([f.size for f in factors])).sum(1)
        self._codes, first = np.unique(code, return_index=True)
        self._first = first.astype(np.int64)
        super().__init__(name, factors, images, scale)

    @property
    def num_images(self) -> int:
        return self._rows

    def index_to_factors(self, index):
        if isinstance(index, torch.Tensor):
            return torch.as_tensor(self.classes, device=index.device)[index.long()]
        return self.classes[np.asarray(index, dtype=np.int64)]

    def factors_to_index(self, factors):
        as_torch = isinstance(factors, torch.Tensor)
        f = factors.cpu().numpy() if as_torch else np.asarray(factors, dtype=np.int64)
        code = (f.astype(np.int64) * self._strides).sum(1)
        at = np.clip(np.searchsorted(self._codes, code), 0, len(self._codes) - 1)
        missing = self._codes[at] != code
        if missing.any():
            bad = dict(zip(self.factor_names, (int(v) for v in f[np.argmax(missing)])))
            raise DisentkitError(f"{self.name} has no image with factor classes {bad}: its rows are not a complete "
                                 "factor grid, so metrics that fix one factor and vary the others (factor_vae_score, "
                                 "beta_vae_score) cannot run on it; use mig, sap, dci, modularity, irs, im or unsupervised")
        index = self._first[at]
        return torch.as_tensor(index, device=factors.device) if as_torch else index

    def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
        """Factor classes of ``num`` rows drawn uniformly (the data's joint distribution)."""
        return self.classes[rng.integers(0, self._rows, size=num)]


def from_arrays(images: Any, factors: Any, names: Sequence[str] | None = None, name: str = "user_data"
                ) -> FactorDataset:
    """A factor dataset from images (N, H, W), (N, H, W, C) or (N, C, H, W) — uint8 or floats in [0, 1] —
    and factor labels (N, F) (classes or values; each column's distinct values become its classes)."""
    x, scale = _images_nhwc(images)
    classes, fs = _factor_classes(factors, names, len(x))
    if len(x) < 2:
        raise DisentkitError(f"{name}: need at least 2 images, got {len(x)}")
    sizes = [f.size for f in fs]
    code = (classes * grid_strides(sizes)).sum(1)
    if len(x) == int(np.prod(sizes)) and len(np.unique(code)) == len(x):  # the complete grid: put it in order
        order = np.argsort(code, kind="stable")
        return ArrayFactorDataset(name, fs, x[torch.as_tensor(order)] if isinstance(x, torch.Tensor) else x[order],
                                  scale)
    return LabelledFactorDataset(name, fs, x, classes, scale)


def from_file(path: str | Path, name: str | None = None) -> FactorDataset:
    """:func:`from_arrays` of an ``.npz`` or ``.h5``/``.hdf5`` file holding ``images`` (or ``imgs``) and
    ``factors`` (or ``latents_classes``, dSprites' name), and optionally ``names`` (factor names)."""
    p = Path(path)
    if not p.is_file():
        raise DisentkitError(f"no such file: {p}")
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as f:
                data = {k: f[k] for k in f.files}
        elif p.suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(p, "r") as f:
                data = {k: f[k][()] for k in f.keys()}
        else:
            raise DisentkitError(f"{p}: expected an .npz, .h5 or .hdf5 file")
    except (OSError, ValueError, zipfile.BadZipFile, KeyError) as e:
        raise DisentkitError(f"{p} could not be read ({e}); is it a complete .npz / HDF5 file?") from None
    images = next((data[k] for k in ("images", "imgs") if k in data), None)
    factors = next((data[k] for k in ("factors", "latents_classes") if k in data), None)
    if images is None or factors is None:
        raise DisentkitError(f"{p} holds {sorted(data)}; it needs 'images' (or 'imgs') and 'factors' "
                             "(or 'latents_classes')")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in data["names"]] if "names" in data else None
    return from_arrays(images, factors, names, name=name or p.stem)


class TorchDataset(torch.utils.data.Dataset):
    """A factor dataset as a ``torch.utils.data.Dataset``: item i is (image (C, H, W) float32 in [0, 1],
    factor classes (F,) int64); ``__getitems__`` renders or gathers a DataLoader's whole batch in one call."""

    def __init__(self, dataset: FactorDataset, indices: Sequence[int] | None = None) -> None:
        self.dataset = dataset
        self.indices = None if indices is None else torch.as_tensor(np.asarray(indices), dtype=torch.long)

    def __len__(self) -> int:
        return self.dataset.num_images if self.indices is None else len(self.indices)

    def _index(self, items: Sequence[int]) -> torch.Tensor:
        idx = torch.as_tensor(np.asarray(items, dtype=np.int64))
        if idx.numel() and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise IndexError(f"index out of range for {len(self)} items of {self.dataset.name}")
        idx = idx % len(self)
        return idx if self.indices is None else self.indices[idx]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.__getitems__([i])[0]

    def __getitems__(self, items: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        idx = self._index(items)
        images = self.dataset.images_at(idx)
        factors = torch.as_tensor(np.asarray(self.dataset.index_to_factors(idx.numpy())))
        return list(zip(images.unbind(0), factors.unbind(0)))
