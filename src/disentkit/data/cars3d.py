"""Cars3D (Reed et al. 2015) from ``nips2015-analogy-data.tar.gz``.

The archive holds ``data/cars/car_XXX_mesh.mat`` (183 files), each with ``im`` of shape
(128, 128, 3, 24, 4): 24 azimuths × 4 elevations of one car model. Grid (disentanglement_lib order):
elevation 4, azimuth 24, object 183 (files in sorted name order), resized to 64×64 with Lanczos
filtering. Extraction refuses any member whose path would escape the target folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..errors import DisentkitError
from .base import Factor
from .cache import CacheWriter, register_converter
from .download import safe_extract
from .registry import DatasetSource

NAMES = ("elevation", "azimuth", "object")
SIZES = (4, 24, 183)


def resize_rgb(images: np.ndarray, size: int = 64) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = np.asarray(Image.fromarray(img).resize((size, size), Image.LANCZOS))
    return out


@register_converter("cars3d")
def convert(files: dict[str, Path], out: Path, source: DatasetSource, sizes: tuple[int, ...] = SIZES) -> Path:
    import scipy.io

    (archive,) = files.values()
    tmp = out.parent / "extract.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        mats = sorted((p for p in safe_extract(archive, tmp, lambda n: "cars/" in n and n.endswith(".mat"))),
                      key=lambda p: p.name)
        n_elev, n_az, n_obj = sizes
        if len(mats) != n_obj:
            raise DisentkitError(f"{archive.name}: found {len(mats)} car .mat files under data/cars/, expected {n_obj}")
        writer = CacheWriter(out, n_elev * n_az * n_obj, (64, 64, 3))
        elev = np.tile(np.arange(n_elev), n_az)        # file order after im -> (az, elev, H, W, C): elevation fastest
        az = np.repeat(np.arange(n_az), n_elev)
        for obj, path in enumerate(mats):
            im = scipy.io.loadmat(path)["im"]
            if im.ndim != 5 or im.shape[2:] != (3, n_az, n_elev):
                raise DisentkitError(f"{path.name}: 'im' is {im.shape}, expected (H, W, 3, {n_az}, {n_elev})")
            views = np.einsum("abcde->deabc", im).reshape(n_az * n_elev, *im.shape[:3])
            writer.put((elev * n_az + az) * n_obj + obj, resize_rgb(views.astype(np.uint8)))
        factors = (Factor("elevation", tuple(float(v) for v in range(n_elev))),
                   Factor("azimuth", tuple(float(v) for v in range(n_az))),
                   Factor("object", tuple(float(v) for v in range(n_obj))))
        return writer.finish("cars3d", factors)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
