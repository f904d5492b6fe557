"""The sampling/representation interface every metric shares, and discrete information measures.

A *representation function* maps a float image batch (N, C, H, W) to codes (N, D). Metrics draw all
factors for a sample at once, gather all images, and encode them in large batches; every random
draw comes from an explicit ``np.random.Generator`` made from the metric's seed.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..data import FactorDataset
from ..errors import DisentkitError

EncodeFn = Callable[[torch.Tensor], "torch.Tensor | np.ndarray"]


def representation_function(vae: torch.nn.Module, representation: str = "mean", seed: int = 0) -> EncodeFn:
    """Encode with a trained VAE: the posterior mean (dlib's default) or one posterior sample."""
    if representation not in ("mean", "sampled"):
        raise DisentkitError(f"--representation must be 'mean' or 'sampled', got '{representation}'")
    device = next(vae.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)

    @torch.no_grad()
    def encode(x: torch.Tensor) -> torch.Tensor:
        mu, logvar = vae.encoder(x.to(device))
        if representation == "mean":
            return mu
        return mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen, device=device)

    encode.device = device  # type: ignore[attr-defined]
    return encode


def encode_images(encode_fn: EncodeFn, images: torch.Tensor, batch_size: int = 2048) -> np.ndarray:
    """Codes (N, D) as float64 numpy, encoding ``images`` in large batches."""
    out = [np.asarray(_to_numpy(encode_fn(images[i:i + batch_size]))) for i in range(0, len(images), batch_size)]
    codes = np.concatenate(out, 0).astype(np.float64)
    return codes.reshape(len(codes), -1)


def _to_numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def generate_batch_factor_code(encode_fn: EncodeFn, dataset: FactorDataset, num_points: int,
                               rng: np.random.Generator, batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """``num_points`` uniformly drawn factor classes (N, F) and the codes of their images (N, D).

    Same name and meaning as disentanglement_lib's ``utils.generate_batch_factor_code``, but all
    factors are drawn in one call and images are gathered and encoded in chunks of ``batch_size``.
    """
    if not dataset.has_factors:
        raise DisentkitError(f"dataset '{dataset.name}' has no ground-truth factors; "
                             "disentanglement metrics need a dataset with factors (e.g. dsprites_procedural)")
    factors = dataset.sample_factors(num_points, rng)
    device = getattr(encode_fn, "device", "cpu")
    codes = []
    for i in range(0, num_points, batch_size):
        imgs = dataset.sample_observations_from_factors(factors[i:i + batch_size], rng, device=device)
        codes.append(encode_images(encode_fn, imgs, batch_size))
    return factors, np.concatenate(codes, 0)


def histogram_discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Per latent, 20 equal-width bins over its observed range (dlib's ``_histogram_discretize``).

    ``codes`` is (N, D); returns int (N, D). dlib: ``np.digitize(x, np.histogram(x, bins)[1][:-1])``,
    so bin labels run 1..num_bins; a constant latent falls in one bin (no NaN downstream).
    """
    out = np.zeros(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], num_bins)[1][:-1]
        out[:, j] = np.digitize(codes[:, j], edges)
    return out


def _relabel(x: np.ndarray) -> tuple[np.ndarray, int]:
    uniq, inv = np.unique(x, return_inverse=True)
    return inv.ravel(), len(uniq)


def mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) in nats of two discrete label vectors; equals ``sklearn.metrics.mutual_info_score``."""
    a, ka = _relabel(a)
    b, kb = _relabel(b)
    n = len(a)
    joint = np.bincount(a * kb + b, minlength=ka * kb).reshape(ka, kb).astype(np.float64)
    pa, pb = joint.sum(1), joint.sum(0)
    nz = joint > 0
    pij = joint[nz]
    outer = pa[:, None] * pb[None, :]
    mi = np.sum(pij / n * (np.log(pij) - np.log(outer[nz]) + np.log(n)))
    return float(max(mi, 0.0))


def discrete_mutual_info(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """MI matrix [latents × factors] in nats between discretized codes (N, D) and factors (N, F)."""
    return np.array([[mutual_info(codes[:, i], factors[:, j]) for j in range(factors.shape[1])]
                     for i in range(codes.shape[1])])


def discrete_entropy(factors: np.ndarray) -> np.ndarray:
    """Entropy H(v_k) in nats of each factor column (N, F) -> (F,)."""
    out = []
    for j in range(factors.shape[1]):
        _, counts = np.unique(factors[:, j], return_counts=True)
        p = counts / counts.sum()
        out.append(float(-(p * np.log(p)).sum()))
    return np.array(out)
