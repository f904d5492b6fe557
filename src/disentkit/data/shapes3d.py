"""3D Shapes from the published ``3dshapes.h5`` (Burgess & Kim 2018).

Keys ``images`` (480000, 64, 64, 3) uint8 and ``labels`` (480000, 6) float64, in factor-grid order
with orientation fastest: floor_hue 10, wall_hue 10, object_hue 10, scale 8 (0.75–1.25),
shape 4 (cube, cylinder, sphere, capsule), orientation 15 (−30°–30°). Classes come from the image
index; the float labels only supply each class's value and are checked against the grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DisentkitError
from .base import Factor
from .cache import CacheWriter, _grid_classes, iter_chunks, register_converter
from .registry import DatasetSource

NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
SIZES = (10, 10, 10, 8, 4, 15)
SHAPE_LABELS = ("cube", "cylinder", "sphere", "capsule")


@register_converter("shapes3d")
def convert(files: dict[str, Path], out: Path, source: DatasetSource, sizes: tuple[int, ...] = SIZES,
            chunk: int = 8192) -> Path:
    import h5py

    path = files["3dshapes.h5"]
    n = int(np.prod(sizes))
    with h5py.File(path, "r") as f:
        if "images" not in f or "labels" not in f:
            raise DisentkitError(f"{path.name}: expected keys 'images' and 'labels', found {sorted(f.keys())}")
        images, labels = f["images"], f["labels"][()]
        if images.shape != (n, 64, 64, 3) or images.dtype != np.uint8 or labels.shape != (n, 6):
            raise DisentkitError(f"{path.name}: images {images.shape} {images.dtype}, labels {labels.shape}; "
                                 f"expected ({n}, 64, 64, 3) uint8 and ({n}, 6) for the grid {sizes}")
        classes = _grid_classes(list(sizes), n, np.int64)
        strides = np.concatenate([np.cumprod(np.asarray(sizes[::-1]))[::-1][1:], [1]])
        factors = []
        for i, (name, size) in enumerate(zip(NAMES, sizes)):
            vals = labels[np.arange(size) * strides[i], i]          # first image of each class
            if not np.allclose(labels[:, i], vals[classes[:, i]], atol=1e-6):
                raise DisentkitError(f"{path.name}: labels of factor {name} do not follow the grid order "
                                     f"(orientation fastest); the file is not the published layout")
            factors.append(Factor(name, tuple(float(v) for v in vals), SHAPE_LABELS if name == "shape" and size == 4
                                  else ()))
        writer = CacheWriter(out, n, (64, 64, 3))
        for rows in iter_chunks(n, chunk):
            writer.put(rows, images[rows])
    return writer.finish("shapes3d", tuple(factors))
