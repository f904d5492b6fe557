"""The data root and the converted cache: memory-mappable uint8 images + factor classes + a JSON.

Layout under the data root (``--data-root``, else ``$DISENTKIT_DATA``, else a per-user cache dir)::

    <root>/<dataset>/raw/<published files>       downloaded or imported, verified
    <root>/<dataset>/cache/images.npy            uint8 (N, H, W) or (N, H, W, C), dataset index order
    <root>/<dataset>/cache/classes.npy           factor classes (N, F), smallest unsigned int type
    <root>/<dataset>/cache/meta.json             factor names / sizes / values / labels, source files

A dataset is converted once; loading memory-maps ``images.npy`` (read-only), so memory use is the
image pages actually touched and a dataset larger than RAM (MPI3D, 12.7 GB) still works.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import DisentkitError
from .base import DATASETS, ArrayFactorDataset, DatasetEntry, Factor
from .registry import SOURCES, DatasetSource

CACHE_VERSION = 1


def data_root(explicit: str | Path | None = None) -> Path:
    """``explicit`` (``--data-root``), else ``$DISENTKIT_DATA``, else the per-user cache folder; a path
    that names a file is a one-line error saying which setting to fix."""
    env = os.environ.get("DISENTKIT_DATA")
    for value, where in ((explicit, "--data-root"), (env, "$DISENTKIT_DATA")):
        if value:
            root = Path(value).expanduser()
            if root.exists() and not root.is_dir():
                raise DisentkitError(f"{where} {root} is a file, not a folder; point {where} at a folder for "
                                     "datasets (or leave it unset for the user cache)")
            return root
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "disentkit"


def writable_root(explicit: str | Path | None = None) -> Path:
    """The data root, checked to be a folder this process can write (or create) before a download or
    import starts; nothing is created here."""
    root = data_root(explicit)
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise DisentkitError(f"cannot write datasets into {root} ({probe} is not a writable folder); choose a "
                             "writable --data-root or $DISENTKIT_DATA")
    return root


def raw_dir(name: str, root: str | Path | None = None) -> Path:
    return data_root(root) / name / "raw"


def cache_dir(name: str, root: str | Path | None = None) -> Path:
    return data_root(root) / name / "cache"


def class_dtype(sizes) -> np.dtype:
    return np.dtype(np.uint8 if max(sizes) <= 256 else np.uint16 if max(sizes) <= 65536 else np.uint32)


# ------------------------------------------------------------------------------------ writing
class CacheWriter:
    """Writes a cache folder: images filled in chunks into a ``.npy`` memory map, then made final.

    Everything is written into ``<cache>.part`` and renamed to ``<cache>`` by :meth:`finish`, so an
    interrupted conversion never leaves a cache that looks complete.
    """

    def __init__(self, folder: str | Path, num_images: int, image_shape: tuple[int, ...]) -> None:
        self.folder = Path(folder)
        self.part = self.folder.with_name(self.folder.name + ".part")
        shutil.rmtree(self.part, ignore_errors=True)
        self.part.mkdir(parents=True)
        self.images = np.lib.format.open_memmap(self.part / "images.npy", mode="w+", dtype=np.uint8,
                                                shape=(num_images, *image_shape))
        self.filled = np.zeros(num_images, dtype=bool)

    def put(self, index: np.ndarray | slice, images: np.ndarray) -> None:
        """Store uint8 ``images`` at dataset indices ``index`` (an index array or a slice)."""
        self.images[index] = images
        self.filled[index] = True

    def finish(self, name: str, factors: tuple[Factor, ...], has_factors: bool = True,
               sources: dict | None = None, scale: float = 1 / 255) -> Path:
        if not self.filled.all():
            missing = int((~self.filled).sum())
            shutil.rmtree(self.part, ignore_errors=True)
            raise DisentkitError(f"{name}: conversion left {missing:,} of {len(self.filled):,} images unset; "
                                 "the input files do not cover the factor grid")
        self.images.flush()
        del self.images
        sizes = [f.size for f in factors]
        grid = _grid_classes(sizes, len(self.filled), class_dtype(sizes))
        np.save(self.part / "classes.npy", grid)
        meta = {"version": CACHE_VERSION, "name": name, "has_factors": has_factors, "scale": scale,
                "num_images": len(self.filled),
                "factors": [{"name": f.name, "size": f.size, "values": list(f.values), "labels": list(f.labels)}
                            for f in factors],
                "sources": sources or {}, "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (self.part / "meta.json").write_text(json.dumps(meta, indent=1))
        shutil.rmtree(self.folder, ignore_errors=True)
        self.part.replace(self.folder)
        return self.folder


def _grid_classes(sizes: list[int], n: int, dtype: np.dtype) -> np.ndarray:
    """Factor classes (N, F) of indices 0..N-1 in mixed radix (last factor fastest)."""
    idx = np.arange(n, dtype=np.int64)
    strides = np.concatenate([np.cumprod(np.asarray(sizes[::-1], dtype=np.int64))[::-1][1:], [1]])
    return ((idx[:, None] // strides) % np.asarray(sizes)).astype(dtype)


# ------------------------------------------------------------------------------------ loading
class ImageOnlyDataset(ArrayFactorDataset):
    """Images without ground-truth factors (CelebA, 3D Chairs): they train and visualise; metrics refuse.

    Indices are addressed through one pseudo-factor ``image`` (one class per image) so that the
    sampling API of :class:`FactorDataset` keeps working for reconstructions and traversals.
    """

    has_factors = False


def load_cache(folder: str | Path, device=None) -> ArrayFactorDataset:
    """Open a converted cache: a read-only memory map, or a tensor on ``device`` when one is given."""
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    if meta.get("version") != CACHE_VERSION:
        raise DisentkitError(f"{folder} was written by another disentkit version; delete it to convert again")
    factors = tuple(Factor(f["name"], tuple(f["values"]), tuple(f["labels"])) for f in meta["factors"])
    images = np.load(folder / "images.npy", mmap_mode="r")
    cls = ArrayFactorDataset if meta["has_factors"] else ImageOnlyDataset
    ds = cls(meta["name"], factors, images, scale=meta["scale"])
    if device is not None:
        ds.to(device)
    return ds


def image_factor(n: int) -> tuple[Factor, ...]:
    """The pseudo-factor of a dataset without factors (see :class:`ImageOnlyDataset`)."""
    return (Factor("image", tuple(range(n))),)


# ------------------------------------------------------------------------------------ status
def present_files(source: DatasetSource, root: str | Path | None = None) -> dict[str, Path]:
    """Published files of ``source`` found in its raw folder, by file name (``.part`` files excluded)."""
    folder = raw_dir(source.name, root)
    return {f.filename: folder / f.filename for f in source.files + source.alternatives
            if (folder / f.filename).is_file()}


def complete(source: DatasetSource, have) -> bool:
    """True when the file names in ``have`` are enough to convert ``source`` (all its files, or one alternative)."""
    return all(f.filename in have for f in source.files) or any(f.filename in have for f in source.alternatives)


def is_converted(name: str, root: str | Path | None = None) -> bool:
    return (cache_dir(name, root) / "meta.json").is_file()


def status(source: DatasetSource, root: str | Path | None = None) -> str:
    """``converted``, ``downloaded`` (files present, not converted yet) or ``missing``."""
    if is_converted(source.name, root):
        return "converted"
    have = present_files(source, root)
    if complete(source, have):
        return "downloaded"
    return "missing"


def how_to_get(source: DatasetSource, root: str | Path | None = None) -> str:
    """The exact commands that make ``source`` available (shown when it is missing)."""
    folder = raw_dir(source.name, root)
    flag = f" --data-root {root}" if root else ""
    manual = "; ".join(f.manual for f in source.files if f.manual)
    urls = ", ".join(f.urls[0] for f in source.files)
    return (f"dataset '{source.name}' is not in {data_root(root)} (set by --data-root, else $DISENTKIT_DATA). "
            f"Get it with `disentkit datasets download {source.name}{flag}`, or download {urls} yourself and "
            f"run `disentkit datasets import {source.name} --from-file PATH{flag}` (files go to {folder})"
            + (f". Note: {manual}" if manual else ""))


# ------------------------------------------------------------------------------------ conversion
Converter = Callable[[dict[str, Path], Path, "DatasetSource"], Path]


def load_real(name: str, data_root: str | Path | None = None, device=None, convert: Converter | None = None,
              progress: bool = True) -> ArrayFactorDataset:
    """A real dataset from its cache, converting its verified raw files first if needed.

    Missing files raise a :class:`DisentkitError` that says exactly how to get them; files that do
    not convert raise one that names them (nothing is cached or pinned, see :mod:`.convert`).
    """
    from .convert import ConversionError, convert_files

    source = SOURCES[name]
    cdir = cache_dir(name, data_root)
    if not (cdir / "meta.json").is_file():
        have = present_files(source, data_root)
        if not complete(source, have):
            raise DisentkitError(how_to_get(source, data_root))
        try:
            convert_files(source, have, data_root, convert=convert, progress=progress)
        except ConversionError as e:
            from .pins import read_pins

            flag = f" --data-root {data_root}" if data_root else ""
            pinned = set(read_pins(raw_dir(name, data_root))) & set(have)
            forget = f" (and clear its pin: `disentkit datasets forget {name}{flag}`)" if pinned else ""
            raise DisentkitError(f"{e}; nothing was cached. Delete {', '.join(str(p) for p in have.values())}{forget} "
                                 f"and get the published file(s) again: `disentkit datasets download {name}{flag}` or "
                                 f"`disentkit datasets import {name} --from-file PATH{flag}`") from e
    return load_cache(cdir, device)


CONVERTERS: dict[str, Converter] = {}


def register_converter(*names: str) -> Callable[[Converter], Converter]:
    """Decorator of a real dataset's converter: registers the converter and the datasets it makes
    (``get_dataset(name)`` loads the converted cache, converting the verified files once)."""
    def deco(fn: Converter) -> Converter:
        for n in names:
            CONVERTERS[n] = fn
            DATASETS.register(DatasetEntry(n, _real(n), SOURCES[n].description))
        return fn
    return deco


def _real(name: str) -> Callable[..., ArrayFactorDataset]:
    def build(data_root: str | Path | None = None, device=None) -> ArrayFactorDataset:
        return load_real(name, data_root, device=device)
    build.__name__ = f"load_{name}"
    return build


def iter_chunks(n: int, chunk: int) -> Iterator[slice]:
    for s in range(0, n, chunk):
        yield slice(s, min(s + chunk, n))
