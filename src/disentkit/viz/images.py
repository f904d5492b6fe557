"""Reconstruction grids and latent traversals as PNG and GIF (PIL and imageio; no torchvision)."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from PIL import Image

from ..data import FactorDataset
from ..models import GaussianVAE


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] -> (N, H, W, 3) uint8 (grey images repeated to RGB)."""
    x = images.detach().float().clamp(0, 1).mul(255).round().byte().cpu()
    x = x.permute(0, 2, 3, 1).numpy()
    return np.repeat(x, 3, axis=3) if x.shape[3] == 1 else x


def grid(images: np.ndarray, nrow: int, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile (N, H, W, 3) uint8 images into rows of ``nrow``, separated by ``pad`` pixels."""
    n, h, w, c = images.shape
    rows = (n + nrow - 1) // nrow
    out = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), fill, dtype=np.uint8)
    for i, img in enumerate(images):
        r, col = divmod(i, nrow)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = img
    return out


def upscale(img: np.ndarray, factor: int = 2) -> np.ndarray:
    return img.repeat(factor, 0).repeat(factor, 1) if factor > 1 else img


@torch.no_grad()
def reconstructions(vae: GaussianVAE, dataset: FactorDataset, path: str | Path, num: int = 8,
                    seed: int = 0) -> Path:
    """PNG: a row of originals above a row of reconstructions (sigmoid of the decoded mean)."""
    device = next(vae.parameters()).device
    rng = np.random.default_rng(seed)
    x = dataset.sample_observations_from_factors(dataset.sample_factors(num, rng), rng, device=device)
    Image.fromarray(upscale(reconstruction_grid(vae, x))).save(path)
    return Path(path)


@torch.no_grad()
def reconstruction_grid(vae: GaussianVAE, x: torch.Tensor) -> np.ndarray:
    """uint8 (H, W, 3): the images ``x`` in a row above their reconstructions (sigmoid of the decoded mean)."""
    recon = torch.sigmoid(vae.decode(vae.encode_mean(x)))
    return grid(np.concatenate([to_uint8(x), to_uint8(recon)]), nrow=len(x))


def traversal_grid(frames: torch.Tensor) -> np.ndarray:
    """uint8 (H, W, 3) of :func:`traversal_frames` (steps, D, C, H, W): one row per latent, one column per step."""
    s, d = frames.shape[:2]
    return grid(to_uint8(frames.transpose(0, 1).reshape(s * d, *frames.shape[2:])), nrow=s)


@torch.no_grad()
def traversal_frames(vae: GaussianVAE, x: torch.Tensor, steps: int = 10, limit: float = 2.0,
                     posterior_range: torch.Tensor | None = None) -> torch.Tensor:
    """Decoded images (steps, D, C, H, W): latent d swept over ±``limit`` (or its posterior range)
    with the others held at μ(x)."""
    mu = vae.encode_mean(x[None])[0]
    d = mu.numel()
    if posterior_range is None:
        lo, hi = torch.full((d,), -limit, device=mu.device), torch.full((d,), limit, device=mu.device)
    else:
        lo, hi = posterior_range[0].to(mu.device), posterior_range[1].to(mu.device)
    t = torch.linspace(0, 1, steps, device=mu.device)
    values = lo[None, :] + t[:, None] * (hi - lo)[None, :]               # (steps, D)
    z = mu.repeat(steps, d, 1)                                            # (steps, D, D)
    idx = torch.arange(d, device=mu.device)
    z[:, idx, idx] = values
    out = torch.sigmoid(vae.decode(z.view(steps * d, d)))
    return out.view(steps, d, *out.shape[1:])


def traversals(vae: GaussianVAE, dataset: FactorDataset, png: str | Path, gif: str | Path | None = None,
               steps: int = 10, limit: float = 2.0, seed: int = 0, order: list[int] | None = None) -> Path:
    """PNG: one row per latent, ``steps`` columns from −limit to +limit. GIF: the sweep over time,
    each frame showing every latent's image side by side (forward then back)."""
    device = next(vae.parameters()).device
    rng = np.random.default_rng(seed)
    x = dataset.sample_observations_from_factors(dataset.sample_factors(1, rng), rng, device=device)[0]
    frames = traversal_frames(vae, x, steps, limit)                      # (steps, D, C, H, W)
    if order is not None:
        frames = frames[:, order]
    s, d = frames.shape[:2]
    Image.fromarray(upscale(traversal_grid(frames))).save(png)
    if gif is not None:
        pics = [upscale(grid(to_uint8(frames[i]), nrow=d)) for i in range(s)]
        imageio.mimsave(gif, pics + pics[-2:0:-1], duration=0.12, loop=0)
    return Path(png)
