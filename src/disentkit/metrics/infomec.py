"""InfoMEC (Hsu et al. 2023, "Disentanglement via Latent Quantization", §4): modularity, explicitness and
compactness from information, on 10,000 points (the paper's validation set).

- NMI[k, j] = I(v_k; z_j) / H(v_k): each latent standardized, its mutual information with each factor by the
  k-nearest-neighbour estimator for a continuous variable and a discrete one (Ross 2014; scikit-learn's
  ``mutual_info_classif(n_neighbors=10)``, seeded), divided by the factor's entropy (nats).
- Inactive latents are pruned: a latent is active when its range exceeds 1/20 of the largest latent range.
- InfoM = (mean over active latents of max_k NMI / Σ_k NMI − 1/K) / (1 − 1/K), K factors: each latent
  informs about one factor;
  InfoC = (mean over factors of max_j NMI / Σ_j NMI − 1/L) / (1 − 1/L), L active latents: each factor is in
  one latent.
- InfoE = mean over factors of (H − CE) / H, the normalized predictive linear information: CE is the training
  log-loss of an unpenalized multinomial logistic regression (lbfgs, 100 iterations, balanced class weights)
  from all standardized latents to the factor, H the log-loss of the same regression from no input.

Headline ``infomec`` = InfoM (as DCI's headline is D); ``infoc``, ``infoe``, ``nmi`` (factors × latents) and
``active_latents`` beside it. Deviations: a latent (or factor) whose NMI sums to 0 counts as uniform (it adds
0 before the mean) where the authors' ratio is 0/0; with one active latent InfoC is 1, with one factor InfoM is
1 (the authors' normalization divides by 0); codes are continuous (the authors' discrete-latent branch, for
quantized codes, uses plug-in MI of the code values instead).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..data import FactorDataset
from .utils import METRICS, EncodeFn, MetricSpec, discrete_entropy, normalize_data, run_metric


def nmi_matrix(codes: np.ndarray, factors: np.ndarray, n_neighbors: int = 10, seed: int = 0) -> np.ndarray:
    """NMI [factors × latents]: kNN mutual information of each standardized latent with each factor over
    the factor's entropy (0 for a constant factor)."""
    from sklearn.feature_selection import mutual_info_classif

    z, _, _ = normalize_data(np.asarray(codes, dtype=np.float64))
    entropy = discrete_entropy(factors)
    out = np.zeros((factors.shape[1], z.shape[1]))
    for k in range(factors.shape[1]):
        if entropy[k] > 0:
            mi = mutual_info_classif(z, factors[:, k], discrete_features=False, n_neighbors=n_neighbors,
                                     random_state=seed)
            out[k] = mi / entropy[k]
    return out


def _concentration(nmi: np.ndarray, axis: int) -> float:
    """(mean of max / sum along ``axis`` − 1/n) / (1 − 1/n), n the length of that axis; a zero sum counts as
    uniform (1/n), a single entry as perfectly concentrated (1)."""
    n = nmi.shape[axis]
    if n <= 1:
        return 1.0
    total = nmi.sum(axis)
    ratio = np.where(total > 0, nmi.max(axis) / np.where(total > 0, total, 1.0), 1.0 / n)
    return float((ratio.mean() - 1.0 / n) / (1.0 - 1.0 / n))


def infom_infoc(nmi: np.ndarray, codes: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(InfoM, InfoC, active-latent mask) of an NMI matrix [factors × latents] and the codes it came from."""
    ranges = np.ptp(np.asarray(codes, dtype=np.float64), axis=0)
    active = ranges > ranges.max() / 20 if ranges.max() > 0 else np.zeros(len(ranges), dtype=bool)
    if not active.any():
        return 0.0, 0.0, active
    pruned = nmi[:, active]
    return _concentration(pruned, axis=0), _concentration(pruned, axis=1), active


def _log_loss(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    model = LogisticRegression(C=np.inf, class_weight="balanced", solver="lbfgs", max_iter=100, random_state=seed)
    # 100 lbfgs iterations often stop short, as in the paper's runs; gradients of near-separable classes underflow
    with warnings.catch_warnings(), np.errstate(under="ignore"):
        warnings.simplefilter("ignore")
        model.fit(x, y)
        return float(log_loss(y, model.predict_proba(x), labels=model.classes_))


def infoe(codes: np.ndarray, factors: np.ndarray, seed: int = 0) -> tuple[float, list[float]]:
    """InfoE and its per-factor values: normalized predictive linear information of each factor."""
    z, _, _ = normalize_data(np.asarray(codes, dtype=np.float64))
    per = []
    for k in range(factors.shape[1]):
        y = factors[:, k]
        if len(np.unique(y)) < 2:
            per.append(1.0)                    # nothing to predict: a constant factor is read off exactly
            continue
        h = _log_loss(np.zeros_like(z), y, seed)
        per.append(float((h - _log_loss(z, y, seed)) / h))
    return float(np.mean(per)), per


def infomec_from_codes(codes: np.ndarray, factors: np.ndarray, n_neighbors: int = 10, seed: int = 0) -> dict:
    """InfoM, InfoC and InfoE of codes (N, D) against factor classes (N, F).

    Example (each factor in its own latent: modular, compact and linearly explicit):

        >>> import numpy as np
        >>> from disentkit.metrics.infomec import infomec_from_codes
        >>> f = np.random.default_rng(0).integers(0, 4, size=(2000, 2))
        >>> out = infomec_from_codes(f + 0.1 * np.random.default_rng(1).normal(size=f.shape), f)
        >>> out["infom"] > 0.98, out["infoc"] > 0.98, out["infoe"] > 0.9
        (True, True, True)
    """
    nmi = nmi_matrix(codes, factors, n_neighbors, seed)
    m, c, active = infom_infoc(nmi, codes)
    e, e_per = infoe(codes, factors, seed)
    return {"infomec": m, "infom": m, "infoc": c, "infoe": e, "infoe_per_factor": e_per, "nmi": nmi.tolist(),
            "active_latents": active.tolist(), "num_active_latents": int(active.sum())}


def _sample(dataset: FactorDataset, rng: np.random.Generator, num_train: int, **_) -> dict[str, np.ndarray]:
    return {"train": dataset.sample_factors(num_train, rng)}


def _score(codes: dict, factors: dict, dataset: FactorDataset, seed: int, n_neighbors: int, **_) -> dict:
    out = infomec_from_codes(codes["train"], factors["train"], n_neighbors, seed)
    out["infoe_per_factor"] = dict(zip(dataset.factor_names, out["infoe_per_factor"]))
    return out


SPEC = METRICS.register(MetricSpec(
    "infomec", _sample, _score, {"num_train": 10_000, "n_neighbors": 10},
    paper="Hsu et al. 2023, Disentanglement via Latent Quantization (InfoMEC)", group="extended"))


def infomec(encode_fn: EncodeFn, dataset: FactorDataset, seed: int = 0, **params) -> dict:
    """InfoMEC of a representation function on a factor dataset (defaults: num_train=10,000, n_neighbors=10).

    Example:

        >>> from disentkit.metrics import infomec
        >>> from disentkit.testing import IdentityDataset        # images = the factors: a perfect code
        >>> out = infomec(lambda x: x.flatten(1), IdentityDataset((4, 4, 4)), num_train=1000)
        >>> out["infom"] > 0.98, out["infoc"] > 0.98, out["infoe"] > 0.9
        (True, True, True)
    """
    return run_metric(SPEC, encode_fn, dataset, seed, **params)
