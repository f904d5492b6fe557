"""MPI3D toy / realistic / real (Gondal et al. 2019) and MPI3D-complex, from the published ``.npz`` files.

Key ``images`` uint8 (N, 64, 64, 3) in factor-grid order (last factor fastest). Two grids are
published and the one that applies is inferred from N: 1,036,800 = 6·6·2·3·3·40·40 (toy, realistic,
real) and 460,800 = 4·4·2·3·3·40·40 (complex, and early toy releases). The array is streamed out of
the archive into the cache, so conversion needs one chunk of memory, not 12.7 GB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DisentkitError
from .base import Factor
from .cache import CacheWriter, register_converter
from .cache_check import register_grids
from .formats import iter_npz_array, npz_array_info
from .registry import DatasetSource

NAMES = ("object_color", "object_shape", "object_size", "camera_height", "background_color",
         "horizontal_axis", "vertical_axis")
GRIDS: dict[int, tuple[int, ...]] = {
    1_036_800: (6, 6, 2, 3, 3, 40, 40),
    460_800: (4, 4, 2, 3, 3, 40, 40),
}
# Class names from the rr-learning/disentanglement_dataset README (6-class grid).
LABELS = {
    "object_color": ("white", "green", "red", "blue", "brown", "olive"),
    "object_shape": ("cone", "cube", "cylinder", "hexagonal", "pyramid", "sphere"),
    "object_size": ("small", "large"),
    "camera_height": ("top", "center", "bottom"),
    "background_color": ("purple", "sea green", "salmon"),
}


def factors_for(sizes: tuple[int, ...]) -> tuple[Factor, ...]:
    out = []
    for name, size in zip(NAMES, sizes):
        labels = LABELS.get(name, ())
        out.append(Factor(name, tuple(float(v) for v in range(size)), labels if len(labels) == size else ()))
    return tuple(out)


@register_grids("mpi3d_toy", "mpi3d_realistic", "mpi3d_real", "mpi3d_complex")
def published_grids() -> dict[int, tuple[int, ...]]:
    """The published grids by image count (read at call time, so a test may swap :data:`GRIDS`)."""
    return GRIDS


@register_converter("mpi3d_toy", "mpi3d_realistic", "mpi3d_real", "mpi3d_complex")
def convert(files: dict[str, Path], out: Path, source: DatasetSource,
            grids: dict[int, tuple[int, ...]] | None = None, chunk: int = 8192) -> Path:
    grids = grids or GRIDS
    (path,) = files.values()
    shape, dtype = npz_array_info(path, "images")
    if len(shape) != 4 or shape[1:] != (64, 64, 3) or dtype != np.uint8:
        raise DisentkitError(f"{path.name}: images are {shape} {dtype}; expected (N, 64, 64, 3) uint8")
    n = shape[0]
    if n not in grids:
        raise DisentkitError(f"{path.name}: {n:,} images match no published MPI3D grid "
                             f"({', '.join(f'{k:,}' for k in grids)}); the file is truncated or not MPI3D")
    sizes = grids[n]
    writer = CacheWriter(out, n, (64, 64, 3))
    for rows, block in iter_npz_array(path, "images", chunk):
        writer.put(rows, block)
    return writer.finish(source.name, factors_for(sizes))
