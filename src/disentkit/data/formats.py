"""Readers for the published file formats that need care: arrays streamed out of ``.npz`` archives
(never the whole multi-GB array in memory) and NORB's binary-matrix files."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import DisentkitError


def npz_array_info(path: str | Path, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of array ``key`` in an ``.npz`` file, read from its ``.npy`` header only."""
    with zipfile.ZipFile(path) as zf, zf.open(_member(zf, key, path)) as f:
        shape, _, dtype = _read_header(f)
    return shape, dtype


def iter_npz_array(path: str | Path, key: str, chunk_rows: int = 4096) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield ``(rows, block)`` of array ``key`` in ``chunk_rows`` first-axis blocks, streamed from the zip.

    Works for stored and deflated archives alike (``np.savez`` / ``np.savez_compressed``); memory use
    is one block. Object arrays (pickles) are refused: use :func:`np.load` on a verified file for those.
    """
    with zipfile.ZipFile(path) as zf, zf.open(_member(zf, key, path)) as f:
        shape, fortran, dtype = _read_header(f)
        if dtype.hasobject:
            raise DisentkitError(f"{path}: array '{key}' holds Python objects; it cannot be streamed")
        if fortran and len(shape) > 1:
            raise DisentkitError(f"{path}: array '{key}' is in Fortran order; expected C order")
        row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        n = shape[0]
        for start in range(0, n, chunk_rows):
            k = min(chunk_rows, n - start)
            buf = _read_exact(f, k * row, path, key)
            yield slice(start, start + k), np.frombuffer(buf, dtype=dtype).reshape((k,) + tuple(shape[1:]))


def _member(zf: zipfile.ZipFile, key: str, path) -> str:
    name = key + ".npy"
    if name not in zf.namelist():
        raise DisentkitError(f"{path}: no array '{key}' (found: {', '.join(n[:-4] for n in zf.namelist())})")
    return name


def _read_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def _read_exact(f, n: int, path, key) -> bytes:
    chunks, got = [], 0
    while got < n:
        b = f.read(n - got)
        if not b:
            raise DisentkitError(f"{path}: array '{key}' ends early (truncated file)")
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


# ------------------------------------------------------------------------------------ NORB
NORB_DTYPES = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32, 0x1E3D4C51: np.float32, 0x1E3D4C53: np.float64,
               0x1E3D4C56: np.int16}


def read_norb_matrix(path: str | Path) -> np.ndarray:
    """A NORB binary matrix (optionally gzipped): int32 magic, int32 ndim, max(3, ndim) int32 dims, data.

    Magic numbers (little-endian): 0x1E3D4C55 uint8, 0x1E3D4C54 int32, 0x1E3D4C51 float32,
    0x1E3D4C53 float64, 0x1E3D4C56 int16 (LeCun & Huang's smallNORB page).
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 20:
        raise DisentkitError(f"{path}: too short for a NORB binary matrix")
    magic, ndim = (int(x) for x in np.frombuffer(data, "<i4", 2))
    if magic not in NORB_DTYPES or not 0 < ndim <= 16:
        raise DisentkitError(f"{path}: not a NORB binary matrix (magic {magic:#x}, ndim {ndim})")
    eff = max(3, ndim)
    dims = tuple(int(d) for d in np.frombuffer(data, "<i4", eff, 8)[:ndim])
    dtype = np.dtype(NORB_DTYPES[magic]).newbyteorder("<")
    count = int(np.prod(dims, dtype=np.int64))
    offset = 8 + 4 * eff
    if len(data) - offset < count * dtype.itemsize:
        raise DisentkitError(f"{path}: NORB matrix {dims} needs {count * dtype.itemsize:,} bytes of data, "
                             f"file has {len(data) - offset:,} (truncated)")
    return np.frombuffer(data, dtype, count, offset).reshape(dims)


def write_norb_matrix(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` in the NORB binary-matrix format (gzipped when ``path`` ends in .gz); for tests/tools."""
    inv = {np.dtype(v).newbyteorder("<").str: k for k, v in NORB_DTYPES.items()}
    arr = np.ascontiguousarray(array, dtype=np.dtype(array.dtype).newbyteorder("<"))
    dims = list(arr.shape) + [1] * max(0, 3 - arr.ndim)
    header = np.array([inv[arr.dtype.str], arr.ndim, *dims], dtype="<i4").tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + arr.tobytes())
