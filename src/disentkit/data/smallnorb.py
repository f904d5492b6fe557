"""SmallNORB (LeCun, Huang & Bottou 2004) from the six published ``.mat.gz`` binary-matrix files.

``-dat`` holds (24300, 2, 96, 96) uint8 stereo pairs, ``-cat`` (24300,) int32 categories and
``-info`` (24300, 4) int32: instance, elevation class, azimuth (0, 2, …, 34) and lighting. Training
and test halves are joined and the left camera kept, resized to 64×64 with Lanczos filtering as the
published study (disentanglement_lib) did. Grid: category 5, instance 10 (training 4, 6, 7, 8, 9 and
test 0, 1, 2, 3, 5), elevation 9 (30°–70°), azimuth 18 (0°–340°), lighting 6. Unlike
disentanglement_lib, which samples the instance at random, the instance is kept as a factor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DisentkitError
from .base import Factor
from .cache import CacheWriter, register_converter
from .formats import read_norb_matrix
from .registry import DatasetSource

NAMES = ("category", "instance", "elevation", "azimuth", "lighting")
SIZES = (5, 10, 9, 18, 6)
CATEGORIES = ("animal", "human", "airplane", "truck", "car")


def resize_gray(images: np.ndarray, size: int = 64) -> np.ndarray:
    """Lanczos-resize uint8 (N, H, W) images to (N, size, size) (PIL's ANTIALIAS, as dlib)."""
    from PIL import Image

    out = np.empty((len(images), size, size), dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = np.asarray(Image.fromarray(img).resize((size, size), Image.LANCZOS))
    return out


@register_converter("smallnorb")
def convert(files: dict[str, Path], out: Path, source: DatasetSource, sizes: tuple[int, ...] = SIZES) -> Path:
    n = int(np.prod(sizes))
    strides = np.concatenate([np.cumprod(np.asarray(sizes[::-1], dtype=np.int64))[::-1][1:], [1]])
    writer = CacheWriter(out, n, (64, 64))
    for split in ("training", "testing"):
        parts = {}
        for kind in ("dat", "cat", "info"):
            match = [p for name, p in files.items() if f"-{split}-{kind}." in name]
            if not match:
                raise DisentkitError(f"smallnorb: the {split}-{kind} file is missing")
            parts[kind] = read_norb_matrix(match[0])
        dat, cat, info = parts["dat"], parts["cat"], parts["info"]
        if dat.ndim != 4 or dat.shape[1] != 2 or len(cat) != len(dat) or info.shape != (len(dat), 4):
            raise DisentkitError(f"smallnorb {split}: dat {dat.shape}, cat {cat.shape}, info {info.shape} do not "
                                 "fit the published layout (N, 2, 96, 96), (N,), (N, 4)")
        classes = np.column_stack([cat, info[:, 0], info[:, 1], info[:, 2] // 2, info[:, 3]]).astype(np.int64)
        if (classes < 0).any() or (classes >= np.asarray(sizes)).any():
            raise DisentkitError(f"smallnorb {split}: factor classes outside the grid {dict(zip(NAMES, sizes))}")
        index = (classes * strides).sum(1)
        if writer.filled[index].any() or len(np.unique(index)) != len(index):
            raise DisentkitError(f"smallnorb {split}: some factor combinations occur twice")
        writer.put(index, resize_gray(dat[:, 0]))
    factors = (
        Factor("category", tuple(float(v) for v in range(sizes[0])), CATEGORIES if sizes[0] == 5 else ()),
        Factor("instance", tuple(float(v) for v in range(sizes[1]))),
        Factor("elevation", tuple(30.0 + 5.0 * k for k in range(sizes[2]))),
        Factor("azimuth", tuple(20.0 * k for k in range(sizes[3]))),
        Factor("lighting", tuple(float(v) for v in range(sizes[4]))),
    )
    return writer.finish("smallnorb", factors)
