"""I_m: mutual information of the best one-to-one latent↔factor matching (reference experiment E2).

On the MIG sample and MI matrix (10,000 points, 20 histogram bins, nats), the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``) picks the latent-to-factor matching with the largest
summed MI. ``im`` is that sum in nats (E2's unnormalized value); ``im_normalized`` divides it by
Σ_k H(v_k), so a perfect code of every factor scores 1.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..data import FactorDataset
from .mig import _sample
from .utils import (METRICS, EncodeFn, MetricSpec, discrete_entropy, discrete_mutual_info, histogram_discretize,
                    run_metric)


def im_from_mi(mi: np.ndarray, entropy: np.ndarray) -> dict:
    """I_m of an MI matrix [latents × factors] (nats) and the factors' entropies (nats).

    Example:

        >>> import numpy as np
        >>> from disentkit.metrics import im_from_mi
        >>> result = im_from_mi(np.array([[0.1, 1.2], [0.9, 0.2]]), entropy=np.array([1.0, 1.5]))
        >>> round(result["im"], 2), round(result["im_normalized"], 2), result["im_matching"]   # factor -> latent
        (2.1, 0.84, {1: 0, 0: 1})
    """
    mi = np.asarray(mi, dtype=np.float64)
    rows, cols = linear_sum_assignment(mi, maximize=True)
    total = float(mi[rows, cols].sum())
    h = float(np.sum(entropy))
    return {"im": total, "im_normalized": total / h if h > 0 else 0.0,
            "im_matching": {int(c): int(r) for r, c in zip(rows, cols)}}  # factor -> latent


def im_from_codes(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> dict:
    """I_m of codes (N, D) against factor classes (N, F), on the histogram-discretized codes.

    Example:

        >>> import numpy as np
        >>> from disentkit.metrics import im_from_codes
        >>> factors = np.random.default_rng(0).integers(0, 4, size=(1000, 2))    # 2 factors, 4 classes each
        >>> mixed = np.stack([factors[:, 0] + factors[:, 1], factors[:, 0] - factors[:, 1]], 1).astype(float)
        >>> round(im_from_codes(factors.astype(float), factors)["im_normalized"], 2)
        1.0
        >>> round(im_from_codes(mixed, factors)["im_normalized"], 2)
        0.33
    """
    mi = discrete_mutual_info(histogram_discretize(codes, num_bins), factors)
    return im_from_mi(mi, discrete_entropy(factors))


def _score(codes: dict, factors: dict, dataset: FactorDataset, num_bins: int, **_) -> dict:
    out = im_from_codes(codes["train"], factors["train"], num_bins)
    names = dataset.factor_names
    out["im_matching"] = {names[f]: z for f, z in out["im_matching"].items()}
    return out


SPEC = METRICS.register(MetricSpec("im", _sample, _score, {"num_train": 10_000, "num_bins": 20},
                  paper="MI of the Hungarian latent↔factor matching (E2)"))


def im(encode_fn: EncodeFn, dataset: FactorDataset, seed: int = 0, **params) -> dict:
    """I_m (raw, nats) and I_m normalized by Σ H(v_k), on MIG's sample (same seed → same images).

    Example:

        >>> from disentkit.metrics import im
        >>> from disentkit.testing import IdentityDataset        # images = the factors: a perfect code
        >>> result = im(lambda x: x.flatten(1), IdentityDataset((2, 3)), num_train=1000)
        >>> round(result["im_normalized"], 2), result["im_matching"]
        (1.0, {'f0': 0, 'f1': 1})
    """
    return run_metric(SPEC, encode_fn, dataset, seed, **params)
