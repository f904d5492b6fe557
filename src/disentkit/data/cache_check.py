"""Checks of a converted cache against what its loader expects: readable, complete, the right factor grid.

Run after every conversion (before anything is pinned or moved into place) and by
``disentkit datasets verify`` (which also re-hashes the cache against the checksums recorded at conversion).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DisentkitError
from .base import grid_strides
from .registry import DatasetSource

CACHE_FILES = ("images.npy", "classes.npy")
Grids = Callable[[], dict[int, tuple[int, ...]]]
GRIDS_OF: dict[str, Grids] = {}


def register_grids(*names: str) -> Callable[[Grids], Grids]:
    """Decorator of a function giving a dataset's published grids by image count (MPI3D has two).

    Datasets without one must hold exactly ``source.num_images`` images.
    """
    def deco(fn: Grids) -> Grids:
        for n in names:
            GRIDS_OF[n] = fn
        return fn
    return deco


def cache_digests(folder: str | Path) -> dict[str, str]:
    """sha256 of the cache's arrays, recorded in ``meta.json`` at conversion and checked by ``verify``."""
    from .download import hash_file

    return {f: hash_file(Path(folder) / f)["sha256"] for f in CACHE_FILES}


def check_cache(source: DatasetSource, folder: str | Path, raw_sha: dict[str, str] | None = None,
                deep: bool = False) -> str:
    """Check the cache in ``folder``; returns a one-line summary, raises :class:`DisentkitError` naming the problem.

    ``raw_sha`` (file name -> sha256 of the raw file now present) is compared with the sha256 recorded
    at conversion; ``deep`` re-hashes the arrays against ``meta.json``'s ``cache_sha256``.
    """
    try:
        return _check(source, Path(folder), raw_sha, deep)
    except (KeyError, TypeError, AttributeError) as e:
        raise DisentkitError(f"meta.json is malformed ({type(e).__name__}: {e})") from None


def _check(source: DatasetSource, folder: Path, raw_sha: dict[str, str] | None, deep: bool) -> str:
    from .cache import CACHE_VERSION, class_dtype

    try:
        meta = json.loads((folder / "meta.json").read_text())
        images = np.load(folder / "images.npy", mmap_mode="r")
        classes = np.load(folder / "classes.npy", mmap_mode="r")
    except (OSError, ValueError, EOFError) as e:
        raise DisentkitError(f"unreadable or truncated ({type(e).__name__}: {e})") from None
    if meta.get("version") != CACHE_VERSION:
        raise DisentkitError(f"written by another disentkit version (cache version {meta.get('version')})")
    if meta.get("name") != source.name or bool(meta.get("has_factors")) != source.has_factors:
        raise DisentkitError(f"holds '{meta.get('name')}', not '{source.name}'")
    for f, arr in zip(CACHE_FILES, (images, classes)):
        size = (folder / f).stat().st_size
        if size != arr.offset + arr.nbytes:
            raise DisentkitError(f"{f} is {size:,} bytes, its header says {arr.offset + arr.nbytes:,} (incomplete)")
    n = images.shape[0]
    h, w, c = source.image_shape
    shapes = [(h, w, c)] + ([(h, w)] if c == 1 else [])
    if images.dtype != np.uint8 or images.shape[1:] not in shapes:
        raise DisentkitError(f"images.npy is {images.shape} {images.dtype}; expected (N, {h}, {w}, {c}) uint8")
    sizes = tuple(int(f["size"]) for f in meta["factors"])
    if n != meta.get("num_images") or math.prod(sizes) != n:
        raise DisentkitError(f"{n:,} images, but meta.json says {meta.get('num_images')} on a grid {sizes}")
    grids = GRIDS_OF[source.name]() if source.name in GRIDS_OF else {source.num_images: None}
    if n not in grids or grids[n] not in (None, sizes):
        want = " or ".join(f"{k:,}" + (f" on {v}" if v else "") for k, v in grids.items())
        raise DisentkitError(f"{n:,} images on a grid {sizes}; the loader expects {want}")
    if classes.shape != (n, len(sizes)) or classes.dtype != class_dtype(sizes) or not _grid_ok(classes, sizes):
        raise DisentkitError(f"classes.npy ({classes.shape} {classes.dtype}) is not the factor grid {sizes}")
    for fname, sha in (raw_sha or {}).items():
        recorded = meta.get("sources", {}).get(fname, {}).get("sha256")
        if recorded and recorded != sha:
            raise DisentkitError(f"converted from {fname} sha256:{recorded}, but the raw file is now sha256:{sha}")
    note = ""
    if deep:
        recorded = meta.get("cache_sha256")
        if recorded:
            bad = [f for f, sha in cache_digests(folder).items() if recorded.get(f) != sha]
            if bad:
                raise DisentkitError(f"{', '.join(bad)} changed since conversion (sha256 differs from meta.json)")
            note = ", checksums match"
        else:
            note = ", no checksums recorded (converted by an older disentkit)"
    grid = dict(zip((f["name"] for f in meta["factors"]), sizes)) if source.has_factors else "none"
    return f"{n:,} images {tuple(images.shape[1:])}, factors {grid}{note}"


def _grid_ok(classes: np.ndarray, sizes: tuple[int, ...], chunk: int = 1 << 16) -> bool:
    """True when ``classes`` row i is the mixed-radix digits of i (last factor fastest)."""
    strides, radix = grid_strides(sizes), np.asarray(sizes, dtype=np.int64)
    for s in range(0, len(classes), chunk):
        idx = np.arange(s, min(s + chunk, len(classes)), dtype=np.int64)
        if not np.array_equal(classes[s:s + len(idx)], (idx[:, None] // strides) % radix):
            return False
    return True
