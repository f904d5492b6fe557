"""Reconstruction grids and latent traversals as PNG and GIF (PIL; no torchvision).

Every picture goes through the VAE protocol's two methods only, ``vae.encode(x)`` -> (μ, log σ²) and
``vae.decode(z)`` -> logits, so a user's VAE gets the same pictures. Grey PNGs are saved as 8-bit grey, and
a GIF's frames share one adaptive palette: a traversal GIF stays within a few hundred kB.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data import FactorDataset

GIF_STEPS = 7                 # traversal values a GIF shows (forward then back: 12 frames)
GIF_COLORS = 128              # a GIF's palette: a trained shapes3d run's GIF 0.15 MB (256: 0.18, 64: 0.12)
GIF_UPSCALE_MAX_WIDTH = 400   # a GIF narrower than this is pixel-doubled; a wider one stays native


def device_of(vae: torch.nn.Module) -> torch.device:
    """The device of the VAE's first parameter (CPU for a VAE without parameters)."""
    return next((p.device for p in vae.parameters()), torch.device("cpu"))


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
    """Pixel-double (nearest neighbour) an (H, W, C) array ``factor`` times."""
    return img.repeat(factor, 0).repeat(factor, 1) if factor > 1 else img


def to_image(img: np.ndarray, palette: bool = False) -> Image.Image:
    """A PIL image of an (H, W, 3) uint8 array: mode ``L`` when the three channels are equal (a third the
    bytes); with ``palette`` a colour one through its own 256-colour adaptive palette, undithered."""
    if img.ndim == 3 and (img == img[..., :1]).all():
        return Image.fromarray(np.ascontiguousarray(img[..., 0]))
    im = Image.fromarray(img)
    return im.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE) if palette else im


def save_png(img: np.ndarray, path: str | Path, palette: bool = False) -> Path:
    """Write an (H, W, 3) uint8 array as an optimized PNG (grey when it is grey, see :func:`to_image`)."""
    to_image(img, palette).save(path, optimize=True)
    return Path(path)


def png_bytes(img: np.ndarray, palette: bool = True) -> bytes:
    """The optimized PNG file of an (H, W, 3) uint8 array, in memory (for a page to embed)."""
    buf = io.BytesIO()
    to_image(img, palette).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def save_gif(pictures: list[np.ndarray], path: str | Path, duration_ms: int = 150, colors: int = GIF_COLORS) -> Path:
    """Write (H, W, 3) uint8 frames as a looping, optimized GIF through one adaptive palette of ``colors``
    made from all frames (no dithering, which only adds noise to compress)."""
    pal = Image.fromarray(np.concatenate(pictures, axis=0)).quantize(colors, method=Image.Quantize.FASTOCTREE)
    frames = [Image.fromarray(p).quantize(palette=pal, dither=Image.Dither.NONE) for p in pictures]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration_ms, loop=0, optimize=True)
    return Path(path)


@torch.no_grad()
def sample_images(dataset: FactorDataset, num: int, seed: int, device: torch.device) -> torch.Tensor:
    """``num`` observations (N, C, H, W) of random factor values drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    return dataset.sample_observations_from_factors(dataset.sample_factors(num, rng), rng, device=device)


@torch.no_grad()
def reconstruction_grid(vae: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """uint8 (H, W, 3): the images ``x`` in a row above their reconstructions (sigmoid of the decoded mean)."""
    recon = torch.sigmoid(vae.decode(vae.encode(x)[0]))
    return grid(np.concatenate([to_uint8(x), to_uint8(recon)]), nrow=len(x))


def reconstructions(vae: torch.nn.Module, dataset: FactorDataset, path: str | Path, num: int = 8,
                    seed: int = 0) -> Path:
    """PNG: a row of originals above a row of reconstructions (sigmoid of the decoded mean).

    Example:

        >>> import tempfile
        >>> from disentkit.data import get_dataset
        >>> from disentkit.models import GaussianVAE
        >>> from disentkit.viz import reconstructions
        >>> vae = GaussianVAE("locatello", channels=1, latent_dim=6).eval()    # untrained: grey blur
        >>> reconstructions(vae, get_dataset("dsprites_procedural"), tempfile.mkdtemp() + "/recon.png").name
        'recon.png'
    """
    x = sample_images(dataset, num, seed, device_of(vae))
    return save_png(upscale(reconstruction_grid(vae, x)), path)


def traversal_grid(frames: torch.Tensor) -> np.ndarray:
    """uint8 (H, W, 3) of :func:`traversal_frames` (steps, D, C, H, W): one row per latent, one column per step."""
    s, d = frames.shape[:2]
    return grid(to_uint8(frames.transpose(0, 1).reshape(s * d, *frames.shape[2:])), nrow=s)


@torch.no_grad()
def traversal_frames(vae: torch.nn.Module, x: torch.Tensor, steps: int = 10, limit: float = 2.0,
                     posterior_range: torch.Tensor | None = None) -> torch.Tensor:
    """Decoded images (steps, D, C, H, W): latent d swept over ±``limit`` (or its posterior range)
    with the others held at μ(x)."""
    mu = vae.encode(x[None])[0][0]
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


def sample_traversal(vae: torch.nn.Module, dataset: FactorDataset, steps: int = 10, limit: float = 2.0,
                     seed: int = 0, order: list[int] | None = None) -> torch.Tensor:
    """:func:`traversal_frames` of one image drawn with ``seed``, latents in ``order`` (default: as encoded)."""
    x = sample_images(dataset, 1, seed, device_of(vae))[0]
    frames = traversal_frames(vae, x, steps, limit)
    return frames if order is None else frames[:, order]


def traversal_gif(frames: torch.Tensor, path: str | Path, max_steps: int = GIF_STEPS) -> Path:
    """GIF of (steps, D, C, H, W) frames: each frame every latent's image side by side, at most ``max_steps``
    of the steps (both ends kept), forward then back; pixel-doubled only while it stays narrow."""
    s, d = frames.shape[:2]
    keep = np.unique(np.linspace(0, s - 1, min(s, max_steps)).round().astype(int))
    pics = [grid(to_uint8(frames[i]), nrow=d) for i in keep]
    factor = 2 if pics[0].shape[1] * 2 <= GIF_UPSCALE_MAX_WIDTH else 1
    pics = [upscale(p, factor) for p in pics]
    return save_gif(pics + pics[-2:0:-1], path)


def traversal_rows(frames: torch.Tensor) -> list[np.ndarray]:
    """One uint8 strip (H, W, 3) per latent of (steps, D, C, H, W) frames: its ``steps`` images side by side."""
    return [grid(to_uint8(frames[:, j]), nrow=frames.shape[0]) for j in range(frames.shape[1])]


def traversals(vae: torch.nn.Module, dataset: FactorDataset, png: str | Path, gif: str | Path | None = None,
               steps: int = 10, limit: float = 2.0, seed: int = 0, order: list[int] | None = None) -> Path:
    """PNG: one row per latent, ``steps`` columns from −limit to +limit. GIF: the sweep over time,
    each frame showing every latent's image side by side (forward then back).

    Example:

        >>> import tempfile
        >>> from disentkit.data import get_dataset
        >>> from disentkit.models import GaussianVAE
        >>> from disentkit.viz import traversals
        >>> out = tempfile.mkdtemp()
        >>> vae = GaussianVAE("locatello", channels=1, latent_dim=4).eval()
        >>> traversals(vae, get_dataset("dsprites_procedural"), out + "/t.png", out + "/t.gif", steps=5).name
        't.png'
    """
    frames = sample_traversal(vae, dataset, steps, limit, seed, order)
    save_png(upscale(traversal_grid(frames)), png)
    if gif is not None:
        traversal_gif(frames, gif)
    return Path(png)
