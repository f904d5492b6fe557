"""Interventional Robustness Score (Suter et al. 2019), dlib version and study configuration.

10,000 points; factors histogram-discretized into 20 bins (so dSprites' 32 x/y positions and 40
orientations are merged into 20 bins, as in dlib); constant latents dropped. For latent j and
factor i: the 0.99-quantile of |z_j − E[z_j | v_i]| within each value of v_i, averaged over values,
divided by latent j's maximum deviation from its mean; IRS_ji = 1 − that. Each latent's score is its
best factor's; the headline is their average weighted by each latent's maximum deviation.
"""

from __future__ import annotations

import numpy as np

from ..data import FactorDataset
from .utils import METRICS, EncodeFn, MetricSpec, histogram_discretize, run_metric


def irs_matrix(factors: np.ndarray, codes: np.ndarray, diff_quantile: float = 0.99) -> tuple[np.ndarray, np.ndarray]:
    """IRS matrix [latents × factors] of non-constant codes (N, D), and each latent's max deviation."""
    max_dev = np.max(np.abs(codes - codes.mean(axis=0)), axis=0)
    cum = np.zeros((codes.shape[1], factors.shape[1]))
    for i in range(factors.shape[1]):
        values, inverse = np.unique(factors[:, i], return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(values) + 1))
        for k in range(len(values)):
            group = codes[order[bounds[k]:bounds[k + 1]]]
            cum[:, i] += np.quantile(np.abs(group - group.mean(axis=0)), diff_quantile, axis=0)
        cum[:, i] /= len(values)
    return 1.0 - cum / max_dev[:, None], max_dev


def irs_from_codes(codes: np.ndarray, factors: np.ndarray, diff_quantile: float = 0.99, num_bins: int = 20) -> dict:
    """IRS of codes (N, D) against factor classes (N, F) (factors are discretized as dlib does).

    Example:

        >>> import numpy as np
        >>> from disentkit.metrics import irs_from_codes
        >>> factors = np.random.default_rng(0).integers(0, 4, size=(1000, 2))    # 2 factors, 4 classes each
        >>> mixed = np.stack([factors[:, 0] + factors[:, 1], factors[:, 0] - factors[:, 1]], 1).astype(float)
        >>> irs_from_codes(factors.astype(float), factors)["irs"]
        1.0
        >>> result = irs_from_codes(mixed, factors)
        >>> round(result["irs"], 2), result["num_active_dims"]
        (0.49, 2)
    """
    active = codes.var(axis=0) > 0
    if not active.any():
        return {"irs": 0.0, "num_active_dims": 0, "irs_per_latent": [0.0] * codes.shape[1]}
    mat, max_dev = irs_matrix(histogram_discretize(factors, num_bins), codes[:, active], diff_quantile)
    per_latent = mat.max(axis=1)
    score = np.average(per_latent, weights=max_dev) if max_dev.sum() > 0 else per_latent.mean()
    full = np.zeros(codes.shape[1])
    full[active] = per_latent
    return {"irs": float(score), "num_active_dims": int(active.sum()), "irs_per_latent": full.tolist(),
            "irs_matrix": mat.tolist(), "parents": mat.argmax(axis=1).tolist()}


def _sample(dataset: FactorDataset, rng: np.random.Generator, num_train: int, **_) -> dict:
    return {"train": dataset.sample_factors(num_train, rng)}


def _score(codes: dict, factors: dict, dataset: FactorDataset, diff_quantile: float, num_bins: int, **_) -> dict:
    return irs_from_codes(codes["train"], factors["train"], diff_quantile, num_bins)


SPEC = METRICS.register(MetricSpec("irs", _sample, _score, {"num_train": 10_000, "diff_quantile": 0.99, "num_bins": 20},
                  paper="Suter et al. 2019, Robustly Disentangled Causal Mechanisms"))


def irs(encode_fn: EncodeFn, dataset: FactorDataset, seed: int = 0, **params) -> dict:
    """Interventional Robustness Score (defaults: 10,000 points, diff_quantile 0.99).

    Example:

        >>> from disentkit.metrics import irs
        >>> from disentkit.testing import IdentityDataset        # images = the factors: a perfect code
        >>> result = irs(lambda x: x.flatten(1), IdentityDataset(), num_train=1000)
        >>> result["irs"], result["parents"]                # each latent's factor
        (1.0, [0, 1, 2, 3, 4])
    """
    return run_metric(SPEC, encode_fn, dataset, seed, **params)
