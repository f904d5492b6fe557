"""dSprites rendered procedurally: the exact factor grid of the real file, no download.

Factors (Matthey et al. 2017): shape 3 (square, ellipse, heart), scale 6 = linspace(0.5, 1, 6),
orientation 40 = linspace(0, 2π, 40), posX 32 and posY 32 = linspace(0, 1, 32); 737,280 binary
64×64 images in the file's index order (posY fastest). The real file's constant ``color`` factor is
left out, as disentanglement_lib's metrics leave it out.

Rendering (fitted to the real frames, see ``shared/data/README.md``): a pixel is lit when its centre
lies inside the shape, in canvas coordinates [0, 1]², with the shape centred at
(0.25 + 0.5·posX, 0.25 + 0.5·posY), rotated by the orientation and scaled. Everything is one
vectorized torch expression per shape, on whatever device the indices live on.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .base import DATASETS, DatasetEntry, Factor, FactorDataset

SIZE = 64
WINDOW = 32  # pixels evaluated around each shape's centre
SQUARE_HALF = 0.15
ELLIPSE_AXES = (0.2, 0.113)
HEART_L = 0.1766
HEART_SHIFT = 0.003
_BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)

FACTORS = (
    Factor("shape", (1.0, 2.0, 3.0), ("square", "ellipse", "heart")),
    Factor("scale", tuple(np.linspace(0.5, 1.0, 6).tolist())),
    Factor("orientation", tuple(np.linspace(0.0, 2 * math.pi, 40).tolist())),
    Factor("posX", tuple(np.linspace(0.0, 1.0, 32).tolist())),
    Factor("posY", tuple(np.linspace(0.0, 1.0, 32).tolist())),
)


def render(shape: torch.Tensor, scale: torch.Tensor, orientation: torch.Tensor,
           pos_x: torch.Tensor, pos_y: torch.Tensor, sync_free: bool | None = None) -> torch.Tensor:
    """Boolean images (N, 64, 64) for per-image factor *values* (shape as class 0/1/2).

    No shape reaches more than 14 px from its centre, so each image is evaluated on a 32×32 window
    around the centre and scattered into the canvas. The rotated coordinates are separable,
    u = A[col] − B[row] and v = C[col] + D[row], so a pixel costs a handful of elementwise ops.
    ``sync_free`` (default: off a CPU) tests every window against every shape instead of selecting each
    shape's images, which on a GPU would wait for the selection; the images are the same.
    """
    device, n = scale.device, len(scale)
    cx = 0.25 + 0.5 * pos_x.float()
    cy = 0.25 + 0.5 * pos_y.float()
    offs = torch.arange(WINDOW, device=device)
    col0 = (cx * SIZE).floor().long() - WINDOW // 2                       # window's first column
    row0 = (cy * SIZE).floor().long() - WINDOW // 2
    cols, rows = col0[:, None] + offs, row0[:, None] + offs               # (N, 32) canvas indices
    dx = (cols.float() + 0.5) / SIZE - cx[:, None]
    dy = (rows.float() + 0.5) / SIZE - cy[:, None]
    cos = (torch.cos(orientation.float()) / scale.float())[:, None]
    sin = (torch.sin(orientation.float()) / scale.float())[:, None]
    tests = (_square, _ellipse, _heart)
    if not (device.type != "cpu" if sync_free is None else sync_free):  # each image through its own shape's test
        window = torch.empty(n, WINDOW, WINDOW, dtype=torch.bool, device=device)
        for k, fn in enumerate(tests):
            sel = (shape == k).nonzero().squeeze(1)
            if sel.numel():
                window[sel] = fn(*_rotated(cos[sel], sin[sel], dx[sel], dy[sel]))
    else:  # every test on every window, each image's own selected: no data-dependent indexing, no device sync
        u, v = _rotated(cos, sin, dx, dy)
        k = shape.view(n, 1, 1)
        window = torch.where(k == 0, _square(u, v), torch.where(k == 1, _ellipse(u, v), _heart(u, v)))
    out = torch.zeros(n, SIZE * SIZE, dtype=torch.bool, device=device)
    flat = (rows[:, :, None] * SIZE + cols[:, None, :]).view(n, -1)
    return out.scatter_(1, flat, window.view(n, -1)).view(n, SIZE, SIZE)


def _rotated(cos: torch.Tensor, sin: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Window coordinates (u, v), (N, 32, 32), rotated and scaled into each shape's frame."""
    return (cos * dx)[:, None, :] - (sin * dy)[:, :, None], (sin * dx)[:, None, :] + (cos * dy)[:, :, None]


def _square(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (u.abs() < SQUARE_HALF) & (v.abs() < SQUARE_HALF)


def _ellipse(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    a, b = ELLIPSE_AXES
    return (u * (1 / a)).square_() + (v * (1 / b)).square_() < 1


def _heart(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    v = v - HEART_SHIFT
    d = HEART_L / math.sqrt(2)
    r2 = (HEART_L / 2) ** 2
    vv = (v + d / 2).square()
    inside = u.abs() + v.abs() < d
    inside |= (u - d / 2).square() + vv < r2
    inside |= (u + d / 2).square() + vv < r2
    return inside


def pack_bits(images: torch.Tensor) -> torch.Tensor:
    """Boolean (N, 64, 64) -> uint8 (N, 64, 8), 8 pixels a byte (most significant bit first)."""
    w = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=images.device)
    return (images.view(*images.shape[:-1], -1, 8).to(torch.uint8) * w).sum(-1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 64, 8) -> uint8 {0,1} (N, 64, 64); inverse of :func:`pack_bits`."""
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=packed.device)
    return ((packed[..., None] >> shifts) & 1).flatten(-2)


_FLOAT_LUT: dict[torch.device, torch.Tensor] = {}


def unpack_bits_float(packed: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 64, 8) -> float32 {0., 1.} (N, 64, 64) in one table lookup (byte -> its 8 bits):
    the batch-gather hot path, one kernel instead of shift/mask/convert (≈ 3× faster on a CPU)."""
    lut = _FLOAT_LUT.get(packed.device)
    if lut is None:
        lut = ((torch.arange(256)[:, None] >> torch.arange(7, -1, -1)) & 1).float().to(packed.device)
        _FLOAT_LUT[packed.device] = lut
    return torch.nn.functional.embedding(packed.long(), lut).flatten(-2)


class DSpritesProcedural(FactorDataset):
    """Procedural dSprites: images rendered on demand, or all at once into a bit-packed tensor.

    ``materialize()`` renders the whole grid (0.38 GB bit-packed) onto a device, after which batches
    are gathered by index; ``cache_path`` keeps that rendering on disk between runs.
    """

    name = "dsprites_procedural"
    factors = FACTORS
    observation_shape = (1, SIZE, SIZE)

    def __init__(self) -> None:
        self._values = [torch.tensor(f.values, dtype=torch.float64) for f in self.factors]
        self.packed: torch.Tensor | None = None

    def render_factors(self, factors: torch.Tensor) -> torch.Tensor:
        """Boolean images (N, 64, 64) of factor classes (N, 5), on factors' device."""
        dev = factors.device
        vals = [v.to(dev)[factors[:, i]] for i, v in enumerate(self._values)]
        return render(factors[:, 0], vals[1].float(), vals[2].float(), vals[3].float(), vals[4].float())

    def _gather(self, index: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            return unpack_bits_float(self.packed[index.to(self.packed.device)]).to(index.device).unsqueeze(1)
        bits = self.render_factors(self.index_to_factors(index))
        return bits.unsqueeze(1).float()

    def materialize(self, device: str | torch.device = "cpu", chunk: int = 1024,
                    cache_path: str | Path | None = None, progress: bool = False) -> "DSpritesProcedural":
        """Render the full grid into a bit-packed tensor on ``device`` (loaded from cache if present)."""
        if cache_path is not None and Path(cache_path).is_file():
            arr = np.load(cache_path, mmap_mode="r")
            if arr.shape == (self.num_images, SIZE, SIZE // 8):
                # read into memory (0.38 GB): a tensor over the memory map would page-fault on every
                # random batch (≈ 3 ms a batch of 64 until the whole file has been touched)
                self.packed = torch.from_numpy(np.array(arr)).to(device)
                return self
        packed = torch.empty(self.num_images, SIZE, SIZE // 8, dtype=torch.uint8, device=device)
        starts = range(0, self.num_images, chunk)
        if progress:
            from tqdm import tqdm
            starts = tqdm(starts, desc="rendering dsprites_procedural", unit="chunk")
        for start in starts:
            idx = torch.arange(start, min(start + chunk, self.num_images), device=device)
            packed[start:start + len(idx)] = pack_bits(self.render_factors(self.index_to_factors(idx)))
        self.packed = packed
        if cache_path is not None:
            Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(str(cache_path) + ".part.npy")
            np.save(tmp, packed.cpu().numpy())
            tmp.replace(cache_path)
        return self

    def to(self, device: str | torch.device) -> "DSpritesProcedural":
        if self.packed is not None:
            self.packed = self.packed.to(device)
        return self

    def placement_bytes(self) -> int:
        """The bit-packed grid: N × 64 × 8 bytes (0.38 GB), rendered straight onto the device."""
        return 0 if self.packed is not None and self.packed.device.type != "cpu" else self.num_images * SIZE * SIZE // 8

    def hold_on(self, device: torch.device) -> None:
        if self.packed is not None:
            self.to(device)
        else:
            self.materialize(device, chunk=8192)


DATASETS.register(DatasetEntry("dsprites_procedural", DSpritesProcedural, "dSprites factor grid (737,280 binary "
                               "64x64 images) rendered procedurally; no download", procedural=True))
