"""UDR, Unsupervised Disentanglement Ranking (Duan et al. 2020, "Unsupervised Model Selection for Variational
Disentangled Representation Learning"), as disentanglement_lib's ``compute_udr_sklearn`` computes it.

No labels: a model is scored by how similar its representation is to those of the other models trained with
the same settings and another seed. On ``num_data_points`` images (the same for every model):

- each model's mean codes are standardized, latents with average KL(q(z_j|x) ‖ N(0, 1)) ≤ 0.01 set to 0;
- for each ordered pair (i, j), a similarity matrix R [latents of i × latents of j]: the absolute Lasso
  coefficients (``Lasso(alpha=0.1)`` regressing j's codes on i's; the headline ``udr``) or the absolute
  Spearman correlations (``udr_spearman``); rows and columns of latents with KL ≤ ``kl_threshold`` dropped;
- the pair's score: ½ (mean over columns of max² / sum + mean over rows of max² / sum) (dlib's
  ``relative_strength_disentanglement``, 0/0 counted as 0);
- a model's UDR: the median of the scores of the pairs in which it is j, over the other models.

Deviations: where either model of a pair has no active latent, the pair scores 0 (dlib's max of an empty
matrix raises); dlib leaves ``num_data_points`` to the config (we use 10,000 images, its other metrics' size).
UDR ranks the runs of a sweep, so it is not in the per-model registry: ``disentkit aggregate SWEEP --udr``
(:func:`disentkit.sweep.udr.sweep_udr`) scores every configuration's seeds against each other.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import torch

from ..data import FactorDataset
from ..errors import DisentkitError
from .utils import as_encode_fn

CORRELATIONS = ("lasso", "spearman")


def relative_strength(corr: np.ndarray) -> float:
    """½ (mean over columns of max²/sum + mean over rows of max²/sum) of a non-negative matrix; 0/0 counts as 0.

    Example (one latent each way: a perfect match; two latents sharing one: half the credit per axis):

        >>> import numpy as np
        >>> from disentkit.metrics.udr import relative_strength
        >>> relative_strength(np.eye(3)), relative_strength(np.array([[1.0, 1.0]]))
        (1.0, 0.75)
    """
    corr = np.asarray(corr, dtype=np.float64)
    if corr.size == 0:
        return 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        cols = np.nan_to_num(corr.max(0) ** 2 / corr.sum(0), nan=0.0)
        rows = np.nan_to_num(corr.max(1) ** 2 / corr.sum(1), nan=0.0)
    return float((cols.mean() + rows.mean()) / 2)


def similarity(a: np.ndarray, b: np.ndarray, correlation: str = "lasso", seed: int = 0) -> np.ndarray:
    """|R| [latents of a × latents of b]: Lasso(alpha=0.1) coefficients of b regressed on a, or Spearman."""
    if correlation == "lasso":
        from sklearn.linear_model import Lasso

        return np.abs(Lasso(alpha=0.1, random_state=seed).fit(a, b).coef_).T
    return np.abs(spearman_matrix(a, b))


def spearman_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman ρ [columns of a × columns of b] (Pearson of average ranks); a constant column gives 0."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a, axis=0), rankdata(b, axis=0)
    ra, rb = ra - ra.mean(0), rb - rb.mean(0)
    norm = np.sqrt((ra ** 2).sum(0))[:, None] * np.sqrt((rb ** 2).sum(0))[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):   # a zeroed latent is constant: 0/0, counted as 0
        return np.nan_to_num((ra.T @ rb) / norm, nan=0.0)


def udr_from_codes(codes: Sequence[np.ndarray], kl: Sequence[np.ndarray], correlation: str = "lasso",
                   kl_threshold: float = 0.01, seed: int = 0) -> dict[str, Any]:
    """UDR of several models from their mean codes (N, D) on the same images and their KL per latent (D,).

    Returns ``model_scores`` (one per model), ``pairwise`` [i][j] (the score with j as the target; the
    diagonal 0) and ``active`` (each model's latents above the KL threshold).

    Example (two models that found the same factors in another order and scale: the Lasso's shrinkage
    (alpha 0.1 on unit-variance codes) leaves coefficients of 0.9, so max²/sum is 0.9, UDR's ceiling):

        >>> import numpy as np
        >>> from disentkit.metrics.udr import udr_from_codes
        >>> f = np.random.default_rng(0).normal(size=(1000, 3))
        >>> out = udr_from_codes([f, 2 * f[:, ::-1]], [np.ones(3), np.ones(3)])
        >>> [round(s, 2) for s in out["model_scores"]]
        [0.9, 0.9]
        >>> [round(s, 2) for s in udr_from_codes([f, 2 * f[:, ::-1]], [np.ones(3)] * 2, "spearman")["model_scores"]]
        [0.99, 0.99]
    """
    if correlation not in CORRELATIONS:
        raise DisentkitError(f"udr: correlation must be one of {', '.join(CORRELATIONS)}, got '{correlation}'")
    if len(codes) < 2:
        raise DisentkitError(f"udr compares models with each other: it needs at least 2, got {len(codes)}")
    reps, active = [], []
    for c, k in zip(codes, kl):
        c = np.asarray(c, dtype=np.float64)
        std = c.std(0)
        z = (c - c.mean(0)) / np.where(std > 0, std, 1.0)
        reps.append(z * (np.asarray(k) > 0.01))       # dlib zeroes low-KL latents at 0.01 whatever the threshold
        active.append(np.asarray(k) > kl_threshold)
    m = len(reps)
    pair = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            if i != j:
                r = similarity(reps[i], reps[j], correlation, seed)
                pair[i, j] = relative_strength(r[active[i]][:, active[j]])
    scores = [float(np.median(np.delete(pair[:, i], i))) for i in range(m)]
    return {"model_scores": scores, "pairwise": pair.tolist(), "active": [a.tolist() for a in active]}


def posterior_codes(model: Any, images: torch.Tensor, batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Mean codes (N, D) and the average KL per latent (D,) of ``model`` (anything :func:`as_encode_fn` takes
    that has a posterior: a trained VAE) on ``images``."""
    encode = as_encode_fn(model)
    posterior = getattr(encode, "posterior", None)
    if posterior is None:
        raise DisentkitError("udr needs each model's posterior (mean and log-variance) for its KL per latent: "
                             "give trained VAEs (disentkit.load(run)) or encoders with .posterior(images)")
    mus, kls = [], []
    for i in range(0, len(images), batch_size):
        mu, logvar = posterior(images[i:i + batch_size])
        mu, logvar = mu.double().cpu(), logvar.double().cpu()
        mus.append(mu.numpy())
        kls.append((0.5 * (mu ** 2 + logvar.exp() - logvar - 1)).sum(0).numpy())
    return np.concatenate(mus), np.sum(kls, 0) / len(images)


def udr(models: Sequence[Any], dataset: FactorDataset, seed: int = 0, num_data_points: int = 10_000,
        kl_threshold: float = 0.01) -> dict[str, Any]:
    """UDR (Lasso, the headline ``udr``) and UDR-Spearman of ``models`` (the same settings, other seeds) on
    ``num_data_points`` images of ``dataset`` drawn with ``seed``.

    Example:

        >>> import torch
        >>> from disentkit.data import get_dataset
        >>> from disentkit.metrics.udr import udr
        >>> from disentkit.models import GaussianVAE
        >>> vaes = [GaussianVAE(latent_dim=4) for _ in range(3)]        # normally disentkit.load(run) of seeds
        >>> out = udr(vaes, get_dataset("dsprites_procedural"), num_data_points=200)
        >>> len(out["udr"]), sorted(out)
        (3, ['active', 'params', 'udr', 'udr_pairwise', 'udr_spearman'])
    """
    if isinstance(num_data_points, bool) or not isinstance(num_data_points, int) or num_data_points < 10:
        raise DisentkitError(f"udr: num_data_points must be an integer ≥ 10, got {num_data_points!r}")
    factors = dataset.sample_factors(num_data_points, np.random.default_rng(seed))
    images = dataset.sample_observations_from_factors(factors)
    codes, kl = zip(*(posterior_codes(m, images) for m in models))
    lasso = udr_from_codes(codes, kl, "lasso", kl_threshold, seed)
    spear = udr_from_codes(codes, kl, "spearman", kl_threshold, seed)
    return {"udr": lasso["model_scores"], "udr_spearman": spear["model_scores"], "udr_pairwise": lasso["pairwise"],
            "active": lasso["active"],
            "params": {"num_data_points": num_data_points, "kl_threshold": kl_threshold, "seed": seed}}
