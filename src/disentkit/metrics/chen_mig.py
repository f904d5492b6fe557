"""Chen et al.'s MIG (2018, §4.1 eq. 6) with the paper's own estimator: MI of the *sampled* representation,
from the aggregate posterior over the whole factor grid (not histograms of means, as ``mig`` computes).

Every image x_n of the factor grid is encoded to its posterior q(z|x_n) = N(μ_n, diag exp(log σ²_n)), and one
z_n ~ q(z|x_n) is drawn per image. For each latent j:

- H(z_j) = −E[log q(z_j)], q(z_j) = 1/N Σ_n q(z_j|x_n): ``num_samples`` (10,000) images drawn without
  replacement, log q(z_sj) = logsumexp_n log N(z_sj; μ_nj, σ²_nj) − log N over all N images (float64);
- H(z_j|v_k) = Σ_v p(v) H(z_j|v_k=v): the same estimator within the images having v_k = v (samples from that
  subset, min(num_samples, its size) of them, logsumexp over it, minus the log of its size), p(v) its share;
- I(z_j; v_k) = H(z_j) − H(z_j|v_k), in nats (``mi_matrix``, latents × factors, as estimated: Monte-Carlo
  noise can make it slightly negative); each factor's gap is (largest − second largest over latents of
  max(I, 0)) / H(v_k), H(v_k) = log K_k (the uniform grid); a factor with one value scores 0;
  ``chen_mig`` is the mean over factors.

Defaults: the full grid (``max_images=None``: 737,280 dSprites images) and ``num_samples=10,000``, as the
paper. ``max_images`` = M draws M grid images uniformly without replacement (the metric's rng) and estimates
everything within them (q(z_j) over the M, subsets = the drawn images with each value, p(v) = their share):
faster (the work grows as M·num_samples per entropy), but q(z_j) is then a mixture of M posteriors only. It is
``max_*``, not ``num_*``, because ``None`` (all images) is its default. The work is ~(F+1) · num_samples · N · D
log-densities, in chunks of ~8 MB (CPU) on the encoder's device (``device``): dSprites, D = 10, on 2 AMD EPYC
cores, 4.4e11 of them, 16 min (2 min encoding, 14 min estimating, 1.9 ns each); ``max_images=100_000``: 86 s.

As Chen et al.'s released estimator: one z per image, drawn once and reused by every conditional; samples
drawn without replacement; I clamped at 0 before the gap; H(v_k) = log K_k. Deviations: every factor is
scored (their dSprites number leaves shape out and averages scale, orientation, posX, posY: take those four
from ``mig_per_factor``); float64 throughout (theirs float32); the image and z draws are seeded (``seed``:
same seed, same value; the same draws on any device); ``max_images`` is ours. Needs the encoder's
posterior: a trained VAE (``disentkit.load(run)``) or an encode function with ``.posterior(images) ->
(μ, log σ²)``; log-variances beyond ±500 are an error (outside float64's range).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..data import FactorDataset
from ..errors import DisentkitError
from .utils import METRICS, EncodeFn, MetricSpec, run_metric

UNDERFLOW = -700.0   #: log-densities (shifted) are clamped here before exp: e^-700 is a normal float64

NO_POSTERIOR = ("chen_mig needs an encoder's posterior (mean and log-variance): score a trained VAE "
                "(disentkit.load(run)), or give the encode function a .posterior(images) -> (mu, logvar)")


def _sample(dataset: FactorDataset, rng: np.random.Generator, max_images: int | None = None,
            **_) -> dict[str, np.ndarray]:
    n = dataset.num_images
    if max_images is not None and not (isinstance(max_images, (int, np.integer)) and not isinstance(max_images, bool)
                                       and max_images >= 2):
        raise DisentkitError(f"metric 'chen_mig': max_images must be None (the full grid) or an integer ≥ 2, "
                             f"got {max_images!r}")
    if max_images is None or max_images >= n:
        return {"_index": np.arange(n, dtype=np.int64)}
    return {"_index": np.sort(rng.choice(n, size=int(max_images), replace=False)).astype(np.int64)}


def encode_posterior(posterior, dataset: FactorDataset, index: np.ndarray, device: torch.device,
                     encoder_device: str = "cpu", batch_size: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ, log σ²) float64 (N, D) on ``device`` of the images at flat ``index``, gathered in batches."""
    mus, logvars = [], []
    for i in range(0, len(index), batch_size):
        idx = torch.as_tensor(index[i:i + batch_size], device=encoder_device)
        mu, logvar = posterior(dataset.images_at(idx))
        mus.append(torch.as_tensor(mu).reshape(len(idx), -1).to(device, torch.float64))
        logvars.append(torch.as_tensor(logvar).reshape(len(idx), -1).to(device, torch.float64))
    mu, logvar = torch.cat(mus), torch.cat(logvars)
    bad = int((~torch.isfinite(mu) | ~torch.isfinite(logvar)).any(1).sum())
    if bad:
        raise DisentkitError(f"the encoder's posterior is non-finite (NaN or inf) for {bad} of {len(mu)} images of "
                             f"{dataset.name}; check the model's weights (a diverged run?)")
    return mu, logvar


def _entropies(z: torch.Tensor, params: torch.Tensor, pick: torch.Tensor) -> torch.Tensor:
    """−mean_s log q(z_sj) + shift_j, (D,): q(z_j) the mixture of the M posteriors ``params`` (3, D, M) = (μ, 1/σ,
    log-density peak − shift_j), at the samples ``z[:, pick]`` (z: (D, M)). The shift (the largest peak) keeps
    every exp(·) ≤ 1; terms below e^-700 count as e^-700, which keeps exp off its slow denormal path (2x): at
    most M·e^-700 more in a sum that holds the sample's own term, ≥ e^-(500 + ε²/2) as |log σ²| ≤ 500."""
    mu, inv_std, peak = params
    d, m = mu.shape
    zs = z[:, pick].unsqueeze(-1)                                     # (D, S, 1)
    mu, inv_std, peak = mu.unsqueeze(1), inv_std.unsqueeze(1), peak.unsqueeze(1)   # (D, 1, M)
    budget = (1 << 20) if z.device.type == "cpu" else (1 << 24)       # elements a chunk: 8 MB / 128 MB
    n_chunk = min(m, 4096 if z.device.type == "cpu" else 65536)
    s_chunk = max(1, budget // (d * n_chunk))
    acc = torch.zeros(d, zs.shape[1], dtype=torch.float64, device=z.device)
    buf = torch.empty(d * s_chunk * n_chunk, dtype=torch.float64, device=z.device)
    for s0 in range(0, zs.shape[1], s_chunk):
        zc = zs[:, s0:s0 + s_chunk]
        for n0 in range(0, m, n_chunk):
            n1 = min(m, n0 + n_chunk)
            out = buf[:d * zc.shape[1] * (n1 - n0)].view(d, zc.shape[1], n1 - n0)
            torch.sub(zc, mu[..., n0:n1], out=out).mul_(inv_std[..., n0:n1])       # standardised distances
            torch.addcmul(peak[..., n0:n1], out, out, value=-0.5, out=out)        # log-densities − shift
            acc[:, s0:s0 + s_chunk] += out.clamp_(min=UNDERFLOW).exp_().sum(-1)
    return -acc.log().mean(1) + math.log(m)


def chen_mig_from_posterior(mu, logvar, factors: np.ndarray, factor_sizes, num_samples: int = 10_000,
                            seed: int = 0, device: str | torch.device | None = None) -> dict:
    """Chen et al.'s MIG of posteriors (μ, log σ²) (N, D) of images with factor classes (N, F) (``factor_sizes``:
    each factor's class count K_k, for H(v_k) = log K_k): ``chen_mig``, per-factor values, the MI matrix
    (latents × factors, nats), H(z_j), H(v_k) and ``num_images``.

    Example (the posterior means are the factors, σ = 0.01: each factor in its own latent):

        >>> import numpy as np
        >>> from disentkit.metrics.chen_mig import chen_mig_from_posterior
        >>> factors = np.stack(np.meshgrid(np.arange(4), np.arange(3), indexing="ij"), -1).reshape(-1, 2)
        >>> out = chen_mig_from_posterior(factors * 1.0, np.full((12, 2), np.log(1e-4)), factors, (4, 3))
        >>> mi = np.array(out["mi_matrix"])                     # latents x factors, nats: log 4 and log 3
        >>> round(out["chen_mig"], 3), np.diag(mi).round(2).tolist(), bool(abs(mi[0, 1]) < 1e-6)
        (1.0, [1.39, 1.1], True)
    """
    device = torch.device(device or (mu.device if isinstance(mu, torch.Tensor) else "cpu"))
    mu = torch.as_tensor(mu).to(device, torch.float64)
    logvar = torch.as_tensor(logvar).to(device, torch.float64)
    if mu.shape != logvar.shape or mu.ndim != 2:
        raise DisentkitError(f"chen_mig: the posterior's mean {tuple(mu.shape)} and log-variance {tuple(logvar.shape)} "
                             "must both be (N, D)")
    if logvar.abs().max() > 500:                                      # float64's range, with room for UNDERFLOW
        raise DisentkitError(f"chen_mig: the posterior's log-variances reach {float(logvar.abs().max()):.3g}; "
                             "beyond ±500 (σ = e^±250) its densities leave float64's range: check the model "
                             "(a diverged run?)")
    factors = np.asarray(factors, dtype=np.int64)
    n, d = mu.shape
    gen = torch.Generator().manual_seed(int(seed))                    # CPU draws: the same values on any device
    z = (mu + torch.exp(0.5 * logvar) * torch.randn(n, d, generator=gen, dtype=torch.float64).to(device)).T
    peak = -0.5 * (math.log(2 * math.pi) + logvar)                    # each log-density's maximum
    shift = peak.max(0).values
    params = torch.stack([mu.T, torch.exp(-0.5 * logvar).T, (peak - shift).T])     # (3, D, N)
    del mu, logvar, peak

    def entropy(members: np.ndarray | None) -> torch.Tensor:
        size = n if members is None else len(members)
        pick = torch.randperm(size, generator=gen)[:min(num_samples, size)].to(device)
        if members is None:
            return _entropies(z, params, pick) - shift
        rows = torch.as_tensor(members, device=device)
        return _entropies(z[:, rows], params[:, :, rows], pick) - shift

    marginal = entropy(None)
    sizes = [int(s) for s in factor_sizes]
    mi = torch.zeros(d, len(sizes), dtype=torch.float64, device=device)
    for k in range(len(sizes)):
        values, counts = np.unique(factors[:, k], return_counts=True)
        cond = sum(c / n * entropy(np.flatnonzero(factors[:, k] == v)) for v, c in zip(values, counts))
        mi[:, k] = marginal - cond
    mi_np = mi.cpu().numpy()
    entropy_v = np.log(np.asarray(sizes, dtype=np.float64))
    top = np.sort(np.maximum(mi_np, 0.0), axis=0)[::-1]               # Chen et al. clamp estimates at 0
    second = top[1] if d > 1 else np.zeros(len(sizes))
    per_factor = np.where(entropy_v > 0, (top[0] - second) / np.where(entropy_v > 0, entropy_v, 1.0), 0.0)
    return {"chen_mig": float(per_factor.mean()), "mig_per_factor": per_factor.tolist(), "mi_matrix": mi_np.tolist(),
            "marginal_entropy": marginal.cpu().tolist(), "factor_entropy": entropy_v.tolist(), "num_images": int(n)}


def _score(codes: dict, factors: dict, dataset: FactorDataset, seed: int, num_samples: int, posterior=None,
           device: str | None = None, encoder_device: str = "cpu", **_) -> dict:
    if posterior is None:
        raise DisentkitError(NO_POSTERIOR)
    index = factors["_index"]
    target = torch.device(device or encoder_device)
    mu, logvar = encode_posterior(posterior, dataset, index, target, encoder_device)
    out = chen_mig_from_posterior(mu, logvar, dataset.index_to_factors(index), dataset.factor_sizes, num_samples,
                                  seed, target)
    out["mig_per_factor"] = dict(zip(dataset.factor_names, out["mig_per_factor"]))
    return out


SPEC = METRICS.register(MetricSpec(
    "chen_mig", _sample, _score, {"num_samples": 10_000, "max_images": None, "device": None},
    paper="Chen et al. 2018, Isolating Sources of Disentanglement in VAEs (§4.1: the sampled-posterior estimator)",
    runtime_params=("device",), group="extended"))


def chen_mig(encode_fn: EncodeFn, dataset: FactorDataset, seed: int = 0, **params) -> dict:
    """Chen et al.'s MIG of an encoder with a posterior (defaults: the full grid, num_samples=10,000; see the
    module docstring).

    Example (an encode function whose posterior means are the factors, σ = 0.01):

        >>> import torch
        >>> from disentkit.metrics.chen_mig import chen_mig
        >>> from disentkit.testing import IdentityDataset        # images = the factors
        >>> encode = lambda x: x.flatten(1)
        >>> encode.posterior = lambda x: (x.flatten(1), torch.full((len(x), 2), -9.21))
        >>> out = chen_mig(encode, IdentityDataset((4, 3)), num_samples=100)
        >>> round(out["chen_mig"], 3), out["num_images"], out["params"]
        (1.0, 12, {'num_samples': 100, 'max_images': None, 'seed': 0})
    """
    return run_metric(SPEC, encode_fn, dataset, seed, **params)
