"""Writers of small (or real-size) files in the exact published formats, for tests and benchmarks.

Each writer produces the layout a loader meets in the wild — the dSprites ``.npz`` with its
Python-2 (latin1) pickled metadata, the HDF5 keys, NORB binary matrices, the Cars3D tarball — with a
factor grid of any size. Pixel content encodes the image's grid index, so a test can check that a
loader put every image in the right place.
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..data.formats import write_norb_matrix


# ------------------------------------------------------------------------------------ npz pieces
class _Py2Pickler(pickle._Pickler):  # type: ignore[misc]
    """Pickles ``str`` as Python-2 byte strings (SHORT_BINSTRING / BINSTRING, latin1 bytes), as the
    dSprites release does: reading it back needs ``encoding='latin1'``."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_str(self, obj: str) -> None:
        b = obj.encode("latin1")
        if len(b) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(b)]) + b)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(b)) + b)
        self.memoize(obj)

    dispatch[str] = save_str


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def _py2_object_npy(obj) -> bytes:
    """A 0-d object ``.npy`` whose payload is a protocol-2 pickle with Python-2 strings."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": ()})
    arr = np.empty((), dtype=object)
    arr[()] = obj
    _Py2Pickler(buf, protocol=2).dump(arr)
    return buf.getvalue()


def _write_streamed_array(zf: zipfile.ZipFile, key: str, shape: tuple[int, ...], dtype,
                          blocks: Iterable[np.ndarray]) -> None:
    """Write array ``key`` into an open zip in first-axis blocks (never the whole array in memory)."""
    with zf.open(key + ".npy", "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                 "fortran_order": False, "shape": tuple(shape)})
        for b in blocks:
            f.write(np.ascontiguousarray(b, dtype=dtype).tobytes())


def grid_classes(sizes: tuple[int, ...]) -> np.ndarray:
    """All factor-class vectors of a grid in index order (last factor fastest), int64 (N, F)."""
    return np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"), -1).reshape(-1, len(sizes))


def index_bits_images(index: np.ndarray) -> np.ndarray:
    """Binary {0,1} uint8 (N, 64, 64) images whose first row spells the index in bits, plus a square."""
    out = np.zeros((len(index), 64, 64), dtype=np.uint8)
    bits = (index[:, None] >> np.arange(63, -1, -1)) & 1
    out[:, 0, :] = bits
    out[:, 20:30, 20:30] = 1
    return out


# ------------------------------------------------------------------------------------ dSprites
DSPRITES_NAMES = ("color", "shape", "scale", "orientation", "posX", "posY")


def write_dsprites_npz(path: str | Path, sizes: tuple[int, ...] = (1, 3, 6, 40, 32, 32),
                       images: Callable[[np.ndarray], np.ndarray] = index_bits_images, chunk: int = 16384) -> Path:
    """A dSprites-format ``.npz``: ``imgs``, ``latents_classes``, ``latents_values``, py2 ``metadata``."""
    path = Path(path)
    classes = grid_classes(sizes)
    values = _dsprites_values(sizes)
    lat_values = np.stack([values[n][classes[:, i]] for i, n in enumerate(DSPRITES_NAMES)], 1)
    metadata = {
        "date": "April 2017", "version": 1, "author": "lmatthey@google.com",
        "title": "dSprites dataset",
        "description": "Disentanglement test Sprites dataset. Procedurally generated 2D shapes \xe9",  # non-ASCII byte
        "latents_names": DSPRITES_NAMES,
        "latents_possible_values": {n: [float(v) for v in values[n]] for n in DSPRITES_NAMES},
        "latents_sizes": [int(s) for s in sizes],
    }
    n = len(classes)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        zf.writestr("metadata.npy", _py2_object_npy(metadata))
        zf.writestr("latents_classes.npy", _npy_bytes(classes.astype(np.int64)))
        zf.writestr("latents_values.npy", _npy_bytes(lat_values.astype(np.float64)))
        _write_streamed_array(zf, "imgs", (n, 64, 64), np.uint8,
                              (images(np.arange(s, min(s + chunk, n))) for s in range(0, n, chunk)))
    return path


def _dsprites_values(sizes: tuple[int, ...]) -> dict[str, np.ndarray]:
    return {"color": np.ones(sizes[0]), "shape": np.arange(1, sizes[1] + 1, dtype=float),
            "scale": np.linspace(0.5, 1, sizes[2]), "orientation": np.linspace(0, 2 * np.pi, sizes[3]),
            "posX": np.linspace(0, 1, sizes[4]), "posY": np.linspace(0, 1, sizes[5])}


def write_dsprites_hdf5(path: str | Path, sizes: tuple[int, ...] = (1, 3, 6, 40, 32, 32)) -> Path:
    """The HDF5 variant: ``imgs``, ``latents/classes``, ``latents/values``."""
    import h5py

    classes = grid_classes(sizes)
    values = _dsprites_values(sizes)
    with h5py.File(path, "w") as f:
        f["imgs"] = index_bits_images(np.arange(len(classes)))
        f["latents/classes"] = classes
        f["latents/values"] = np.stack([values[n][classes[:, i]] for i, n in enumerate(DSPRITES_NAMES)], 1)
    return Path(path)


# ------------------------------------------------------------------------------------ 3D Shapes / MPI3D
def index_rgb_images(index: np.ndarray) -> np.ndarray:
    """uint8 (N, 64, 64, 3) images whose top-left pixel holds the index as 3 bytes (little-endian)."""
    out = np.full((len(index), 64, 64, 3), 128, dtype=np.uint8)
    out[:, 0, 0, 0], out[:, 0, 0, 1], out[:, 0, 0, 2] = index & 255, (index >> 8) & 255, (index >> 16) & 255
    return out


def decode_rgb_index(images: np.ndarray) -> np.ndarray:
    p = images[:, 0, 0].astype(np.int64)
    return p[:, 0] | (p[:, 1] << 8) | (p[:, 2] << 16)


def write_shapes3d_h5(path: str | Path, sizes: tuple[int, ...] = (10, 10, 10, 8, 4, 15)) -> Path:
    """A ``3dshapes.h5``: ``images`` (N, 64, 64, 3) uint8 and float ``labels`` (N, 6), orientation fastest."""
    import h5py

    classes = grid_classes(sizes)
    vals = [np.linspace(0, 0.9, sizes[0]), np.linspace(0, 0.9, sizes[1]), np.linspace(0, 0.9, sizes[2]),
            np.linspace(0.75, 1.25, sizes[3]), np.arange(sizes[4], dtype=float), np.linspace(-30, 30, sizes[5])]
    with h5py.File(path, "w") as f:
        f["images"] = index_rgb_images(np.arange(len(classes)))
        f["labels"] = np.stack([v[classes[:, i]] for i, v in enumerate(vals)], 1)
    return Path(path)


def write_mpi3d_npz(path: str | Path, n: int, compressed: bool = False, chunk: int = 8192) -> Path:
    """An MPI3D-format ``.npz`` with key ``images`` (n, 64, 64, 3) uint8."""
    mode = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", mode, allowZip64=True) as zf:
        _write_streamed_array(zf, "images", (n, 64, 64, 3), np.uint8,
                              (index_rgb_images(np.arange(s, min(s + chunk, n))) for s in range(0, n, chunk)))
    return Path(path)


# ------------------------------------------------------------------------------------ SmallNORB
def norb_level(classes: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    """Grey level encoding a combined-grid index (tiny grids only: index < 256)."""
    strides = np.concatenate([np.cumprod(np.asarray(sizes[::-1]))[::-1][1:], [1]])
    return (classes * strides).sum(1)


def write_smallnorb(folder: str | Path, sizes: tuple[int, ...] = (5, 10, 9, 18, 6), side: int = 96,
                    seed: int = 0) -> dict[str, Path]:
    """The six ``.mat.gz`` files; instances split as the release does (even half to training), rows shuffled.

    Each image is a constant grey level equal to its combined-grid index (so tiny grids only).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    inst = np.arange(sizes[1])
    train_inst = set(inst[len(inst) // 2:].tolist()) if sizes[1] != 10 else {4, 6, 7, 8, 9}
    allc = grid_classes(sizes)
    out = {}
    for split, tag in (("training", "5x46789x9x18x6x2x96x96-training"), ("testing", "5x01235x9x18x6x2x96x96-testing")):
        keep = np.array([(c[1] in train_inst) == (split == "training") for c in allc])
        c = allc[keep][rng.permutation(int(keep.sum()))]
        level = norb_level(c, sizes).astype(np.uint8)
        dat = np.broadcast_to(level[:, None, None, None], (len(c), 2, side, side)).copy()
        info = np.column_stack([c[:, 1], c[:, 2], 2 * c[:, 3], c[:, 4]]).astype(np.int32)
        for kind, arr in (("dat", dat), ("cat", c[:, 0].astype(np.int32)), ("info", info)):
            p = folder / f"smallnorb-{tag}-{kind}.mat.gz"
            write_norb_matrix(p, arr)
            out[p.name] = p
    return out


# ------------------------------------------------------------------------------------ Cars3D
def write_cars3d_tar(path: str | Path, n_obj: int = 183, n_az: int = 24, n_elev: int = 4, side: int = 128) -> Path:
    """``nips2015-analogy-data.tar.gz`` layout: ``data/cars/car_XXX_mesh.mat`` with ``im`` (side, side, 3, az, elev).

    View (az, elev) of object o is a constant colour (o, az, elev) so placement can be checked.
    """
    import scipy.io

    with tarfile.open(path, "w:gz") as tar:
        names = []
        for o in range(n_obj):
            im = np.zeros((side, side, 3, n_az, n_elev), dtype=np.uint8)
            for a in range(n_az):
                for e in range(n_elev):
                    im[:, :, :, a, e] = (o, a, e)
            buf = io.BytesIO()
            scipy.io.savemat(buf, {"im": im, "mask": np.ones((side, side, n_az, n_elev), dtype=np.uint8)})
            name = f"car_{o + 1:03d}_mesh"
            names.append(name)
            _add_bytes(tar, f"data/cars/{name}.mat", buf.getvalue())
        _add_bytes(tar, "data/cars/list.txt", "\n".join(names).encode())
        _add_bytes(tar, "data/sprites/readme.txt", b"other part of the archive")
    return Path(path)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


# ------------------------------------------------------------------------------------ CelebA / Chairs
def _png_or_jpeg(color: tuple[int, int, int], size: tuple[int, int], fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


def write_celeba_zip(path: str | Path, n: int) -> Path:
    """``img_align_celeba.zip``: ``img_align_celeba/000001.jpg``… (178×218 JPEGs)."""
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            zf.writestr(f"img_align_celeba/{i + 1:06d}.jpg", _png_or_jpeg((10 * i % 256, 100, 200), (178, 218), "JPEG"))
    return Path(path)


def write_chairs_tar(path: str | Path, n_chairs: int, views: int) -> Path:
    """``rendered_chairs.tar``: ``rendered_chairs/<id>/renders/image_XXX_....png`` (600×600 PNGs)."""
    with tarfile.open(path, "w") as tar:
        for c in range(n_chairs):
            for v in range(views):
                _add_bytes(tar, f"rendered_chairs/chair_{c:04d}/renders/image_{v:03d}_p020_t000_r096.png",
                           _png_or_jpeg((c * 40 % 256, v * 30 % 256, 50), (600, 600), "PNG"))
    return Path(path)
