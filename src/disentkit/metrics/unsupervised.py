"""Unsupervised scores of a representation (Locatello et al. 2019, Sec. 4; dlib ``unsupervised_metrics``).

On 10,000 codes: Σ = Cov(μ) (ddof=1). Gaussian total correlation KL(N(0, Σ) ‖ N(0, diag Σ)) =
½(Σ log Σ_jj − log det Σ); Gaussian Wasserstein correlation W₂² between N(0, Σ) and N(0, diag Σ) =
2 tr Σ − 2 tr (diag(Σ)^½ Σ diag(Σ)^½)^½, and that divided by tr Σ; the mean pairwise MI (nats)
between histogram-discretized (20 bins) latents. Headline ``unsupervised`` = the mean pairwise MI.
"""

from __future__ import annotations

import numpy as np

from ..data import FactorDataset
from .utils import METRICS, EncodeFn, MetricSpec, discrete_mutual_info, histogram_discretize, run_metric


def gaussian_total_correlation(cov: np.ndarray) -> float:
    """TC of a zero-mean Gaussian; constant latents (zero variance) are independent of all others and
    are left out (dlib would return NaN). A singular Σ among the rest gives +inf (it is infinite)."""
    d = np.diag(cov)
    keep = d > 0
    if keep.sum() < 2:
        return 0.0
    sub = cov[np.ix_(keep, keep)]
    sign, logdet = np.linalg.slogdet(sub)
    if sign <= 0:
        return float("inf")
    return float(max(0.5 * (np.sum(np.log(d[keep])) - logdet), 0.0))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
    """W₂² between N(0, Σ) and N(0, diag Σ), via the symmetric form (same trace as dlib's sqrtm(Σ·diag))."""
    s = np.sqrt(np.clip(np.diag(cov), 0, None))
    eig = np.linalg.eigvalsh(s[:, None] * cov * s[None, :])
    return float(max(2 * np.trace(cov) - 2 * np.sum(np.sqrt(np.clip(eig, 0, None))), 0.0))


def unsupervised_from_codes(codes: np.ndarray, num_bins: int = 20) -> dict:
    """All unsupervised scores of codes (N, D).

    Example:
        Two latents that are uncorrelated (a Gaussian sees no dependence) but far from independent:

        >>> import numpy as np
        >>> from disentkit.metrics import unsupervised_from_codes
        >>> factors = np.random.default_rng(0).integers(0, 4, size=(1000, 2))    # 2 factors, 4 classes each
        >>> mixed = np.stack([factors[:, 0] + factors[:, 1], factors[:, 0] - factors[:, 1]], 1).astype(float)
        >>> result = unsupervised_from_codes(mixed)
        >>> round(result["gaussian_total_correlation"], 2), round(result["mutual_info_score"], 2)
        (0.0, 0.9)
        >>> round(unsupervised_from_codes(factors.astype(float))["mutual_info_score"], 2)   # independent latents
        0.01
    """
    d = codes.shape[1]
    cov = np.atleast_2d(np.cov(codes, rowvar=False))
    wc = gaussian_wasserstein_correlation(cov)
    tr = float(np.trace(cov))
    disc = histogram_discretize(codes, num_bins)
    mi = discrete_mutual_info(disc, disc)
    np.fill_diagonal(mi, 0.0)
    mean_mi = float(mi.sum() / (d * d - d)) if d > 1 else 0.0
    return {"unsupervised": mean_mi, "mutual_info_score": mean_mi,
            "gaussian_total_correlation": gaussian_total_correlation(cov),
            "gaussian_wasserstein_correlation": wc,
            "gaussian_wasserstein_correlation_norm": wc / tr if tr > 0 else 0.0}


def _sample(dataset: FactorDataset, rng: np.random.Generator, num_train: int, **_) -> dict:
    return {"train": dataset.sample_factors(num_train, rng)}


def _score(codes: dict, factors: dict, dataset: FactorDataset, num_bins: int, **_) -> dict:
    return unsupervised_from_codes(codes["train"], num_bins)


SPEC = METRICS.register(MetricSpec("unsupervised", _sample, _score, {"num_train": 10_000, "num_bins": 20},
                  paper="Locatello et al. 2019, Challenging Common Assumptions ... (Sec. 4)"))


def unsupervised(encode_fn: EncodeFn, dataset: FactorDataset, seed: int = 0, **params) -> dict:
    """Gaussian total correlation, Wasserstein correlation (raw and normalized), mean pairwise MI.

    Example:

        >>> from disentkit.metrics import unsupervised
        >>> from disentkit.testing import IdentityDataset        # images = the factors: a perfect code
        >>> result = unsupervised(lambda x: x.flatten(1), IdentityDataset(), num_train=1000)
        >>> round(result["unsupervised"], 2), round(result["gaussian_total_correlation"], 2)
        (0.04, 0.0)
    """
    return run_metric(SPEC, encode_fn, dataset, seed, **params)
