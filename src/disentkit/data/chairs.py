"""3D Chairs (Aubry et al. 2014) from ``rendered_chairs.tar``: images without factors.

1,393 chairs × 62 views = 86,366 PNGs (600×600) under ``rendered_chairs/<id>/renders/``, resized to
64×64 RGB (Lanczos). The archive has no published checksum: its sha256 is pinned once it has converted.
Members are checked before anything is read (no path may escape the target folder).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from ..errors import DisentkitError
from .cache import CacheWriter, image_factor, register_converter
from .download import safe_members
from .registry import DatasetSource


def _load(data: bytes, size: int = 64) -> np.ndarray:
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    return np.asarray(img.resize((size, size), Image.LANCZOS))


@register_converter("chairs")
def convert(files: dict[str, Path], out: Path, source: DatasetSource, expected: int | None = None) -> Path:
    (archive,) = files.values()
    expected = source.num_images if expected is None else expected
    with tarfile.open(archive) as tar:
        members = sorted((m for m in safe_members(tar, out.parent / "extract.tmp")
                          if m.isfile() and m.name.lower().endswith(".png")), key=lambda m: m.name)
        if len(members) != expected:
            raise DisentkitError(f"{archive.name}: {len(members):,} PNG views, expected {expected:,}")
        writer = CacheWriter(out, len(members), (64, 64, 3))
        for i, m in enumerate(members):
            writer.put(slice(i, i + 1), _load(tar.extractfile(m).read())[None])
    return writer.finish("chairs", image_factor(len(members)), has_factors=False)
