"""CelebA aligned faces (Liu et al. 2015) from ``img_align_celeba.zip``: images without factors.

202,599 JPEGs of 178×218 under ``img_align_celeba/``; each is center-cropped to 148×148 and resized
to 64×64 (Lanczos), the usual VAE preprocessing. ``has_factors`` is False: the set trains and is
visualised, and metrics refuse it.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DisentkitError
from .cache import CacheWriter, image_factor, register_converter
from .registry import DatasetSource

CROP = 148


def crop_resize(data: bytes, crop: int = CROP, size: int = 64) -> np.ndarray:
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    c = min(crop, w, h)
    left, top = (w - c) // 2, (h - c) // 2
    return np.asarray(img.crop((left, top, left + c, top + c)).resize((size, size), Image.LANCZOS))


@register_converter("celeba")
def convert(files: dict[str, Path], out: Path, source: DatasetSource, expected: int | None = None) -> Path:
    (archive,) = files.values()
    expected = source.num_images if expected is None else expected
    with zipfile.ZipFile(archive) as zf:
        names = sorted(n for n in zf.namelist() if n.lower().endswith(".jpg"))
        if len(names) != expected:
            raise DisentkitError(f"{archive.name}: {len(names):,} JPEGs, expected {expected:,}")
        writer = CacheWriter(out, len(names), (64, 64, 3))
        for i, name in enumerate(names):
            writer.put(slice(i, i + 1), crop_resize(zf.read(name))[None])
    return writer.finish("celeba", image_factor(len(names)), has_factors=False)
