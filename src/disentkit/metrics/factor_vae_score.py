"""FactorVAE score (Kim & Mnih 2018, Sec. 4), dlib version and study configuration.

Global variances of each latent from 10,000 observations (``ddof=1``); latents with std < 0.05 are
pruned (``prune_dims.threshold = 0.05``). A vote: fix one random factor across a batch of 64, divide
each active latent's within-batch variance (``ddof=1``) by its global variance, take the argmin
latent. 10,000 training votes build a majority-vote classifier (latent → most-voted factor);
5,000 fresh votes measure its evaluation accuracy. All groups are drawn at once and every image is
encoded in one pass; the per-group variances are a single numpy reduction.
"""

from __future__ import annotations

import numpy as np

from ..data import FactorDataset
from .utils import METRICS, EncodeFn, MetricSpec, run_metric, sample_grouped


def votes_from_codes(fixed: np.ndarray, group_codes: np.ndarray, global_var: np.ndarray, active: np.ndarray,
                     num_factors: int) -> np.ndarray:
    """Vote matrix [factors × active latents] of groups (G,) with codes (G, B, D)."""
    local = group_codes[:, :, active].var(axis=1, ddof=1)
    argmin = np.argmin(local / global_var[active], axis=1)
    n_active = int(active.sum())
    return np.bincount(fixed * n_active + argmin, minlength=num_factors * n_active).reshape(num_factors, n_active)


def factor_vae_from_codes(var_codes: np.ndarray, train_fixed: np.ndarray, train_codes: np.ndarray,
                          eval_fixed: np.ndarray, eval_codes: np.ndarray, num_factors: int,
                          prune_threshold: float = 0.05) -> dict:
    """Score from the variance sample (N, D) and group codes (G, B, D) with their fixed factors (G,).

    Example:
        Groups of 8 codes of 2 latents in which the group's fixed factor's latent is constant:

        >>> import numpy as np
        >>> from disentkit.metrics import factor_vae_from_codes
        >>> rng = np.random.default_rng(0)
        >>> def groups(n):
        ...     fixed, codes = rng.integers(0, 2, size=n), rng.normal(size=(n, 8, 2))
        ...     codes[np.arange(n), :, fixed] = codes[np.arange(n), 0, fixed][:, None]
        ...     return fixed, codes
        >>> (train_fixed, train), (eval_fixed, evals) = groups(100), groups(50)
        >>> result = factor_vae_from_codes(rng.normal(size=(1000, 2)), train_fixed, train, eval_fixed, evals,
        ...                                num_factors=2)
        >>> result["factor_vae_score"], result["active_dims"]
        (1.0, [0, 1])
    """
    global_var = np.var(var_codes, axis=0, ddof=1)
    active = np.sqrt(global_var) >= prune_threshold
    if prune_threshold <= 0:  # never divide by a zero variance, whatever the threshold
        active &= global_var > 0
    if not active.any():
        return {"factor_vae_score": 0.0, "train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0,
                "active_dims": []}
    train_votes = votes_from_codes(train_fixed, train_codes, global_var, active, num_factors)
    classifier = np.argmax(train_votes, axis=0)  # factor predicted for each active latent
    cols = np.arange(train_votes.shape[1])
    train_acc = train_votes[classifier, cols].sum() / train_votes.sum()
    eval_votes = votes_from_codes(eval_fixed, eval_codes, global_var, active, num_factors)
    eval_acc = eval_votes[classifier, cols].sum() / eval_votes.sum()
    return {"factor_vae_score": float(eval_acc), "train_accuracy": float(train_acc), "eval_accuracy": float(eval_acc),
            "num_active_dims": int(active.sum()), "active_dims": np.flatnonzero(active).tolist(),
            "train_votes": train_votes.tolist()}


def _sample(dataset: FactorDataset, rng: np.random.Generator, num_variance_estimate: int, num_train: int,
            num_eval: int, batch_size: int, **_) -> dict:
    var = dataset.sample_factors(num_variance_estimate, rng)
    train_fixed, train = sample_grouped(dataset, rng, num_train, batch_size)
    eval_fixed, evals = sample_grouped(dataset, rng, num_eval, batch_size)
    return {"variance": var, "train": train, "eval": evals,
            # the fixed factor of each group, carried as a (G, 1) "factor array" is not needed for codes
            "_train_fixed": train_fixed, "_eval_fixed": eval_fixed}


def _score(codes: dict, factors: dict, dataset: FactorDataset, prune_threshold: float, **_) -> dict:
    return factor_vae_from_codes(codes["variance"], factors["_train_fixed"], codes["train"],
                                 factors["_eval_fixed"], codes["eval"], dataset.num_factors, prune_threshold)


SPEC = METRICS.register(MetricSpec("factor_vae_score", _sample, _score,
                  {"num_variance_estimate": 10_000, "num_train": 10_000, "num_eval": 5_000, "batch_size": 64,
                   "prune_threshold": 0.05},
                  paper="Kim & Mnih 2018, Disentangling by Factorising"))


def factor_vae_score(encode_fn: EncodeFn, dataset: FactorDataset, seed: int = 0, **params) -> dict:
    """FactorVAE score (headline = eval accuracy); also train accuracy and the true number of active dims.

    Example:

        >>> from disentkit.metrics import factor_vae_score
        >>> from disentkit.testing import IdentityDataset        # images = the factors: a perfect code
        >>> result = factor_vae_score(lambda x: x.flatten(1), IdentityDataset(), num_variance_estimate=1000,
        ...                           num_train=100, num_eval=50)
        >>> result["factor_vae_score"], result["num_active_dims"]
        (1.0, 5)
    """
    return run_metric(SPEC, encode_fn, dataset, seed, **params)
