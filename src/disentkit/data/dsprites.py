"""dSprites from the published file: the ``.npz`` (latin1 pickle metadata) or the ``.hdf5`` variant.

Keys (Matthey et al. 2017 release): ``imgs`` (737280, 64, 64) uint8 in {0, 1}, ``latents_classes``
(737280, 6) int64, ``latents_values`` (737280, 6) float64, ``metadata`` a Python-2 pickle read with
``allow_pickle=True, encoding='latin1'`` — only ever from a file whose checksum was verified. The HDF5
variant holds ``imgs``, ``latents/classes`` and ``latents/values``. The constant ``color`` factor is
dropped, leaving shape 3, scale 6, orientation 40, posX 32, posY 32 (as disentanglement_lib does).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DisentkitError
from .base import Factor
from .cache import CacheWriter, iter_chunks, register_converter
from .formats import iter_npz_array, npz_array_info
from .registry import DatasetSource

NAMES = ("color", "shape", "scale", "orientation", "posX", "posY")
SIZES = (1, 3, 6, 40, 32, 32)
SHAPE_LABELS = ("square", "ellipse", "heart")


@register_converter("dsprites")
def convert(files: dict[str, Path], out: Path, source: DatasetSource, sizes: tuple[int, ...] = SIZES,
            chunk: int = 16384) -> Path:
    """Convert the npz (preferred) or hdf5 file into the cache; ``sizes`` is the expected full grid."""
    npz = [p for n, p in files.items() if n.endswith(".npz")]
    if npz:
        return _convert_npz(npz[0], out, source, tuple(sizes), chunk)
    h5 = [p for n, p in files.items() if n.endswith((".hdf5", ".h5"))]
    if not h5:
        raise DisentkitError(f"dsprites: no .npz or .hdf5 file among {sorted(files)}")
    return _convert_hdf5(h5[0], out, source, tuple(sizes), chunk)


def _factors(classes: np.ndarray, values: np.ndarray, sizes: tuple[int, ...], names=NAMES) -> tuple[Factor, ...]:
    """Factors with more than one class; each class's value read from the file's own latent values."""
    out = []
    for i, (name, size) in enumerate(zip(names, sizes)):
        if size == 1:
            continue
        vals = np.zeros(size)
        vals[classes[:, i]] = values[:, i]
        out.append(Factor(name, tuple(float(v) for v in vals), SHAPE_LABELS if name == "shape" and size == 3 else ()))
    return tuple(out)


def _index(classes: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    strides = np.concatenate([np.cumprod(np.asarray(sizes[::-1], dtype=np.int64))[::-1][1:], [1]])
    if (classes < 0).any() or (classes >= np.asarray(sizes)).any():
        raise DisentkitError(f"dsprites: latent classes outside the grid {sizes}")
    return (classes.astype(np.int64) * strides).sum(1)


def _convert_npz(path: Path, out: Path, source: DatasetSource, sizes: tuple[int, ...], chunk: int) -> Path:
    data = np.load(path, allow_pickle=True, encoding="latin1")   # metadata is a py2 pickle; file was verified
    meta = data["metadata"][()]
    file_sizes = tuple(int(s) for s in meta["latents_sizes"])
    names = tuple(str(n) for n in meta["latents_names"])
    if file_sizes != sizes or names != NAMES:
        raise DisentkitError(f"{path.name}: factor grid {dict(zip(names, file_sizes))} is not the expected "
                             f"{dict(zip(NAMES, sizes))}")
    classes = data["latents_classes"]
    values = data["latents_values"]
    shape, dtype = npz_array_info(path, "imgs")
    n = int(np.prod(sizes))
    if shape != (n, 64, 64) or dtype != np.uint8:
        raise DisentkitError(f"{path.name}: imgs is {shape} {dtype}, expected ({n}, 64, 64) uint8")
    index = _index(classes, sizes)
    writer = CacheWriter(out, n, (64, 64))
    for rows, block in iter_npz_array(path, "imgs", chunk):
        writer.put(index[rows], block)
    return writer.finish("dsprites", _factors(classes, values, sizes), scale=1.0)


def _convert_hdf5(path: Path, out: Path, source: DatasetSource, sizes: tuple[int, ...], chunk: int) -> Path:
    import h5py

    with h5py.File(path, "r") as f:
        for key in ("imgs", "latents/classes", "latents/values"):
            if key not in f:
                raise DisentkitError(f"{path.name}: no '{key}' in the HDF5 file")
        imgs = f["imgs"]
        classes = f["latents/classes"][()]
        values = f["latents/values"][()]
        file_sizes = tuple(int(c) + 1 for c in classes.max(0))
        n = int(np.prod(sizes))
        if file_sizes != sizes or imgs.shape != (n, 64, 64):
            raise DisentkitError(f"{path.name}: grid {file_sizes} with images {imgs.shape}; expected {sizes} "
                                 f"with ({n}, 64, 64)")
        index = _index(classes, sizes)
        writer = CacheWriter(out, n, (64, 64))
        for rows in iter_chunks(n, chunk):
            writer.put(index[rows], imgs[rows].astype(np.uint8))
    return writer.finish("dsprites", _factors(classes, values, sizes), scale=1.0)
