"""The ground-truth factor dataset interface shared by training, metrics and visualisation.

It follows disentanglement_lib's ``GroundTruthData``: a full factorial grid of factors, each
image addressed by an index whose factor classes are its mixed-radix digits (last factor fastest).
Images are held as tensors and gathered by index in one vectorized call: there is no per-sample
``__getitem__`` on the training path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from ..registry import Registry


def grid_strides(sizes: Sequence[int]) -> np.ndarray:
    """Mixed-radix strides (F,) int64 of a factor grid, last factor fastest: index = Σ class · stride."""
    sizes = np.asarray(sizes, dtype=np.int64)
    return np.concatenate([np.cumprod(sizes[::-1])[::-1][1:], [1]]).astype(np.int64)


@dataclass(frozen=True)
class Factor:
    """One ground-truth factor: its name, and the value of each of its classes.

    Example:

        >>> from disentkit.data import Factor
        >>> shape = Factor("shape", (1.0, 2.0, 3.0), labels=("square", "ellipse", "heart"))
        >>> shape.size, shape.labels[2]
        (3, 'heart')
    """

    name: str
    values: tuple[float, ...]
    labels: tuple[str, ...] = field(default=())  # names of categorical classes, if any

    @property
    def size(self) -> int:
        return len(self.values)


class FactorDataset:
    """A full grid of images over independent discrete factors.

    Subclasses implement :meth:`_gather` (index tensor -> float images in [0, 1]) and set
    ``factors``, ``observation_shape`` (C, H, W) and ``name``.

    Example:
        Four one-pixel images whose brightness is the one factor:

        >>> import numpy as np, torch
        >>> from disentkit.data import Factor, FactorDataset
        >>> class Brightness(FactorDataset):
        ...     name = "brightness"
        ...     factors = (Factor("level", (0.0, 0.25, 0.5, 1.0)),)
        ...     observation_shape = (1, 1, 1)
        ...     def _gather(self, index):
        ...         return torch.tensor(self.factors[0].values)[index].view(-1, 1, 1, 1)
        >>> ds = Brightness()
        >>> ds.num_images, ds.factor_names
        (4, ('level',))
        >>> ds.images_at(torch.tensor([3, 1])).flatten()
        tensor([1.0000, 0.2500])
        >>> factors, images = ds.sample(5, np.random.default_rng(0))   # what the metrics draw
        >>> factors.shape, images.shape
        ((5, 1), torch.Size([5, 1, 1, 1]))
    """

    name: str = "factor_dataset"
    factors: tuple[Factor, ...] = ()
    observation_shape: tuple[int, int, int] = (1, 64, 64)
    #: ``False`` for datasets with images but no ground-truth factors (CelebA, 3D Chairs).
    has_factors: bool = True

    # ----------------------------------------------------------------- factor bookkeeping
    @property
    def factor_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.factors)

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        return tuple(f.size for f in self.factors)

    @property
    def num_factors(self) -> int:
        return len(self.factors)

    @property
    def num_images(self) -> int:
        return math.prod(self.factor_sizes)

    def __len__(self) -> int:
        return self.num_images

    @property
    def _strides(self) -> np.ndarray:
        return grid_strides(self.factor_sizes)

    def index_to_factors(self, index: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Factor classes (N, F) of flat image indices (N,); numpy in, numpy out; torch likewise.

        Example:

            >>> import numpy as np
            >>> from disentkit.testing import IdentityDataset
            >>> ds = IdentityDataset((2, 3))                # index = 3 * f0 + f1: the last factor fastest
            >>> ds.index_to_factors(np.array([0, 4, 5]))
            array([[0, 0],
                   [1, 1],
                   [1, 2]])
            >>> ds.factors_to_index(np.array([[1, 1]]))
            array([4])
        """
        if isinstance(index, torch.Tensor):
            strides_t, sizes_t = self._index_tables(index.device)
            return torch.div(index.long()[:, None], strides_t, rounding_mode="floor") % sizes_t
        strides, sizes = self._strides, np.asarray(self.factor_sizes, dtype=np.int64)
        return (np.asarray(index, dtype=np.int64)[:, None] // strides) % sizes

    def _index_tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Strides and sizes of the factor grid as tensors on ``device``, made once per device (a batch's
        index arithmetic on a GPU then copies nothing from the host)."""
        cache = self.__dict__.setdefault("_index_cache", {})
        if device not in cache:
            cache[device] = (torch.as_tensor(self._strides, device=device),
                             torch.as_tensor(np.asarray(self.factor_sizes, dtype=np.int64), device=device))
        return cache[device]

    def factors_to_index(self, factors: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Flat image indices (N,) of factor classes (N, F)."""
        if isinstance(factors, torch.Tensor):
            return (factors.long() * self._index_tables(factors.device)[0]).sum(1)
        return (np.asarray(factors, dtype=np.int64) * self._strides).sum(1)

    def factor_values_of(self, factors: np.ndarray) -> np.ndarray:
        """Real-valued factor values (N, F) of factor classes (N, F)."""
        factors = np.asarray(factors)
        return np.stack(
            [np.asarray(f.values, dtype=np.float64)[factors[:, i]] for i, f in enumerate(self.factors)], 1
        )

    # ----------------------------------------------------------------- sampling (dlib API)
    def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
        """``num`` factor-class vectors drawn uniformly and independently, shape (num, F).

        Example:

            >>> import numpy as np
            >>> from disentkit.testing import IdentityDataset
            >>> factors = IdentityDataset((2, 3)).sample_factors(1000, np.random.default_rng(0))
            >>> factors.shape, factors.max(0).tolist()
            ((1000, 2), [1, 2])
        """
        return np.stack([rng.integers(0, s, size=num) for s in self.factor_sizes], axis=1).astype(np.int64)

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.Generator | None = None, device: str | torch.device = "cpu"
    ) -> torch.Tensor:
        """Images (N, C, H, W), float32 in [0, 1], for factor classes (N, F).

        ``rng`` is accepted for API compatibility with datasets that have unobserved factors.
        """
        index = torch.as_tensor(self.factors_to_index(factors), device=device)
        return self.images_at(index)

    def sample(self, num: int, rng: np.random.Generator, device: str | torch.device = "cpu"):
        """Factors and matching observations in one call."""
        factors = self.sample_factors(num, rng)
        return factors, self.sample_observations_from_factors(factors, rng, device=device)

    def sample_training_indices(self, n: int, generator: torch.Generator,
                                indices: torch.Tensor | None = None) -> torch.Tensor:
        """Image indices (n,) for one training batch: uniform over ``indices`` (or all images).

        Training draws through this hook so that a dataset may use a non-uniform training
        distribution (see :mod:`disentkit.data.correlated`) while :meth:`sample_factors`, which
        metrics use, stays uniform.
        """
        m = self.num_images if indices is None else len(indices)
        pick = torch.randint(0, m, (n,), generator=generator, device=generator.device)
        return pick if indices is None else indices[pick]

    def training_images(self) -> np.ndarray | None:
        """The images training may use (sorted indices), or None for all; held-out combinations
        (:mod:`disentkit.data.holes`) are left out, and a run's split is drawn from these."""
        return None

    def sample_pairs(self, n: int, k: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Training draws (n,) and partners differing from them in exactly ``k`` factors (−1: 1..F−1 at
        random), Locatello et al. 2020's weak supervision; see :mod:`disentkit.data.pairs`."""
        from .pairs import partner_indices

        first = self.sample_training_indices(n, generator)
        return first, partner_indices(self, first, k, generator)

    def redraw_factors(self, factors: torch.Tensor, changed: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The ``changed`` of ``factors`` (n, F) redrawn to other values: uniformly (correlated variants: from the joint)."""
        from .pairs import redraw_uniform

        return redraw_uniform(factors, changed, self._index_tables(factors.device)[1], generator)

    # ----------------------------------------------------------------- your own data, torch's Dataset
    @staticmethod
    def from_arrays(images, factors, names: Sequence[str] | None = None, name: str = "user_data") -> "FactorDataset":
        """Your images (N, H, W[, C]) or (N, C, H, W) and factor labels (N, F) as a factor dataset
        (:func:`disentkit.data.arrays.from_arrays`): ``mig(model, FactorDataset.from_arrays(x, y))``.

        Example:

            >>> import numpy as np
            >>> from disentkit.data import FactorDataset
            >>> images = np.zeros((6, 8, 8), dtype=np.uint8)
            >>> factors = [[0, 10], [0, 20], [0, 30], [1, 10], [1, 20], [1, 30]]   # classes or values
            >>> ds = FactorDataset.from_arrays(images, factors, names=["shape", "size"])
            >>> ds.describe()
            {'name': 'user_data', 'num_images': 6, 'observation_shape': [1, 8, 8], 'factors': {'shape': 2, 'size': 3}}
            >>> ds.factors[1].values                      # a column's distinct values, sorted
            (10.0, 20.0, 30.0)
        """
        from .arrays import from_arrays

        return from_arrays(images, factors, names, name)

    @staticmethod
    def from_file(path, name: str | None = None) -> "FactorDataset":
        """:meth:`from_arrays` of an ``.npz`` / ``.h5`` file with ``images`` and ``factors`` (and ``names``).

        Example:

            >>> import pathlib, tempfile
            >>> import numpy as np
            >>> from disentkit.data import FactorDataset
            >>> with tempfile.TemporaryDirectory() as tmp:
            ...     path = pathlib.Path(tmp) / "tiny.npz"
            ...     np.savez(path, images=np.zeros((4, 8, 8), np.uint8), factors=[[0, 0], [0, 1], [1, 0], [1, 1]],
            ...              names=["a", "b"])
            ...     ds = FactorDataset.from_file(path)
            >>> ds.name, ds.factor_names, ds.num_images
            ('tiny', ('a', 'b'), 4)
        """
        from .arrays import from_file

        return from_file(path, name)

    def torch_dataset(self, indices: Sequence[int] | None = None):
        """This dataset (or the images at ``indices``) as a ``torch.utils.data.Dataset`` of
        (image (C, H, W), factor classes (F,)) pairs, e.g. for a ``DataLoader``.

        Example:

            >>> import torch
            >>> from disentkit.testing import IdentityDataset
            >>> data = IdentityDataset((2, 3)).torch_dataset()
            >>> len(data), data[4][1]
            (6, tensor([1, 1]))
            >>> images, factors = next(iter(torch.utils.data.DataLoader(data, batch_size=4)))
            >>> images.shape, factors.shape
            (torch.Size([4, 2, 1, 1]), torch.Size([4, 2]))
        """
        from .arrays import TorchDataset

        return TorchDataset(self, indices)

    # ----------------------------------------------------------------- fast batch access
    def images_at(self, index: torch.Tensor, check: bool = True) -> torch.Tensor:
        """Float32 images (N, C, H, W) in [0, 1] for flat indices (a tensor: on its device; or an array).

        ``check=False`` skips the range check, which reads the indices back to the host (a device
        sync on a GPU): for indices that are in range by construction, as training's random batches.
        """
        if not isinstance(index, torch.Tensor):
            index = torch.as_tensor(np.asarray(index, dtype=np.int64))
        if check and index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.num_images):
            raise IndexError(f"image index out of range [0, {self.num_images}) for dataset {self.name}")
        return self._gather(index.long())

    def _gather(self, index: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def to(self, device: str | torch.device) -> "FactorDataset":
        """Move any image storage to ``device`` (no-op for datasets rendered on demand)."""
        return self

    # ----------------------------------------------------------------- device placement
    def placement_bytes(self) -> int:
        """Bytes the whole dataset takes once held on a device (0: nothing to place, e.g. already there)."""
        return 0

    def hold_on(self, device: torch.device) -> None:
        """Hold every image on ``device`` (render or copy them there): :meth:`place`'s action."""

    def place(self, device: str | torch.device, free_bytes: int | None = None, max_fraction: float = 0.5) -> bool:
        """Hold the images on ``device`` when they take at most ``max_fraction`` of its free memory
        (``free_bytes``, default: what CUDA reports), so that batches are gathered there by index; returns
        whether it did. On a CPU nothing moves (batches are rendered or read from a memory map as needed)."""
        device = torch.device(device)
        need = self.placement_bytes()
        if device.type == "cpu" or need == 0:
            return False
        if free_bytes is None:
            free_bytes = torch.cuda.mem_get_info(device)[0]
        if need > max_fraction * free_bytes:
            return False
        self.hold_on(device)
        return True

    def describe(self) -> dict:
        return {
            "name": self.name,
            "num_images": self.num_images,
            "observation_shape": list(self.observation_shape),
            "factors": {f.name: f.size for f in self.factors},
        }


class ArrayFactorDataset(FactorDataset):
    """A factor dataset whose images are a uint8 array in dataset index order.

    ``images`` is (N, H, W) or (N, H, W, C) uint8 — a torch tensor (CPU or GPU) or a numpy array,
    which may be a read-only memory map larger than RAM. ``scale`` maps stored values to [0, 1]
    (1 for binary {0,1} images, 1/255 for 8-bit images).

    Example:

        >>> import numpy as np, torch
        >>> from disentkit.data import ArrayFactorDataset, Factor
        >>> images = np.zeros((6, 8, 8), dtype=np.uint8)          # a 2 x 3 grid, the last factor fastest
        >>> images[5] = 255                                       # the image of classes (1, 2)
        >>> ds = ArrayFactorDataset("tiny", [Factor("a", (0.0, 1.0)), Factor("b", (0.0, 0.5, 1.0))], images)
        >>> ds.observation_shape, ds.num_images
        ((1, 8, 8), 6)
        >>> ds.images_at(torch.tensor([5, 0])).amax((1, 2, 3))
        tensor([1., 0.])
    """

    def __init__(self, name: str, factors: Sequence[Factor], images, scale: float = 1 / 255) -> None:
        self.name = name
        self.factors = tuple(factors)
        self.images = images
        self.scale = scale
        shape = tuple(images.shape)
        if shape[0] != self.num_images:
            raise ValueError(f"{name}: {shape[0]} images but the factor grid has {self.num_images}")
        h, w = shape[1], shape[2]
        self.observation_shape = (shape[3] if len(shape) == 4 else 1, h, w)

    def _gather(self, index: torch.Tensor) -> torch.Tensor:
        if isinstance(self.images, torch.Tensor):
            batch = self.images[index.to(self.images.device)]
        else:  # numpy / memmap: read rows in increasing order (sequential disk access), then restore order
            idx = index.cpu().numpy()
            order = np.argsort(idx, kind="stable")
            rows = np.empty((len(idx),) + self.images.shape[1:], dtype=self.images.dtype)
            rows[order] = self.images[idx[order]]
            batch = torch.from_numpy(rows)
        batch = batch.to(index.device, non_blocking=True)
        batch = batch.unsqueeze(1) if batch.ndim == 3 else batch.permute(0, 3, 1, 2)
        return batch.float().mul_(self.scale)

    def placement_bytes(self) -> int:
        on_device = isinstance(self.images, torch.Tensor) and self.images.device.type != "cpu"
        return 0 if on_device else int(self.images.nbytes)

    def hold_on(self, device: torch.device) -> None:
        self.to(device)

    def to(self, device: str | torch.device) -> "ArrayFactorDataset":
        """Hold the images on ``device`` (e.g. the GPU when they fit); returns self.

        A numpy array or memory map is copied in chunks, so moving a memory-mapped dataset to the
        GPU never needs a second full copy in host memory.
        """
        if isinstance(self.images, torch.Tensor):
            self.images = self.images.to(device)
            return self
        out = torch.empty(self.images.shape, dtype=torch.uint8, device=device)
        step = max(1, (256 << 20) // max(1, int(np.prod(self.images.shape[1:]))))   # ~256 MB per copy
        for start in range(0, len(self.images), step):
            out[start:start + step] = torch.from_numpy(np.array(self.images[start:start + step], dtype=np.uint8))
        self.images = out
        return self


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: how to build it, a one-line description, and whether it needs files.

    Example:

        >>> from disentkit.data import DATASETS
        >>> entry = DATASETS["dsprites_procedural"]
        >>> entry.procedural, entry.description
        (True, 'dSprites factor grid (737,280 binary 64x64 images) rendered procedurally; no download')
        >>> entry.build().num_images
        737280
    """

    name: str
    build: Callable[..., FactorDataset]
    description: str
    procedural: bool = False


#: every dataset by name; each registers itself in its own module (procedural renderers, and real
#: datasets through their converters, :func:`disentkit.data.cache.register_converter`)
DATASETS: Registry[DatasetEntry] = Registry("dataset", "(see `disentkit datasets list`)")
