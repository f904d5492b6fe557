"""Modularity and Explicitness (Ridgeway & Zemel 2018, Sec. 3), dlib version and study config.

10,000 train / 5,000 test points. Modularity: from the MI matrix m [latents × factors] of the
histogram-discretized (20 bins) train codes, per latent 1 − Σ_{k≠k*} m_ik² / (m_ik*² (K − 1)), with a
latent carrying no information scoring 0; averaged over latents. Explicitness: per factor, a
one-vs-rest ``LogisticRegression`` on the standardized codes; the macro ROC-AUC of its class
probabilities, averaged over factors, on train and test points (headline: test).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score

from ..data import FactorDataset
from .utils import (METRICS, EncodeFn, MetricSpec, discrete_mutual_info, histogram_discretize, logistic_regression,
                    normalize_data, run_metric)


def modularity_from_mi(mi: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean modularity over latents of an MI matrix [latents × factors], and the per-latent values.

    Example:

        >>> import numpy as np
        >>> from disentkit.metrics import modularity_from_mi
        >>> modularity_from_mi(np.array([[1.0, 0.0], [0.5, 0.5]]))   # latent 0 is modular, latent 1 is not
        (0.5, array([1., 0.]))
    """
    sq = np.square(np.asarray(mi, dtype=np.float64))
    top = sq.max(axis=1)
    rest = sq.sum(axis=1) - top
    k = sq.shape[1]
    ok = (top > 0) & (k > 1)
    delta = np.where(ok, rest / np.where(ok, top * (k - 1.0), 1.0), 0.0)
    per_latent = np.where(top > 0, 1.0 - delta, 0.0)
    return float(per_latent.mean()), per_latent


def _macro_auc(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    """Macro ROC-AUC over classes (one-vs-rest indicator of y against each class's probability).

    Equals dlib's ``roc_auc_score(MultiLabelBinarizer(y), proba)`` when every class occurs; classes
    absent from ``y`` (where AUC is undefined) are skipped instead of raising.
    """
    aucs = []
    for j, c in enumerate(classes):
        t = y == c
        if t.any() and not t.all():
            aucs.append(roc_auc_score(t, proba[:, j]))
    return float(np.mean(aucs)) if aucs else 1.0


def explicitness_per_factor(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                            solver: str = "liblinear", seed: int = 0) -> tuple[float, float]:
    """ROC-AUC (train, test) of a logistic regression predicting one factor from all latents."""
    if len(np.unique(y)) < 2:
        return 1.0, 1.0
    clf = logistic_regression(solver, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    return (_macro_auc(y, clf.predict_proba(x), clf.classes_),
            _macro_auc(y_test, clf.predict_proba(x_test), clf.classes_))


def modularity_from_codes(codes: np.ndarray, factors: np.ndarray, codes_test: np.ndarray, factors_test: np.ndarray,
                          num_bins: int = 20, solver: str = "liblinear", seed: int = 0) -> dict:
    """Modularity and explicitness of train/test codes (N, D) and factor classes (N, F).

    Example:

        >>> import numpy as np
        >>> from disentkit.metrics import modularity_from_codes
        >>> rng = np.random.default_rng(0)
        >>> factors, test = rng.integers(0, 4, size=(1000, 2)), rng.integers(0, 4, size=(500, 2))   # 2 factors
        >>> def mix(f):                                 # both factors in both latents
        ...     return np.stack([f[:, 0] + f[:, 1], f[:, 0] - f[:, 1]], 1).astype(float)
        >>> result = modularity_from_codes(factors.astype(float), factors, test.astype(float), test)
        >>> round(result["modularity"], 2), round(result["explicitness_test"], 2)
        (1.0, 1.0)
        >>> round(modularity_from_codes(mix(factors), factors, mix(test), test)["modularity"], 2)
        0.0
    """
    mi = discrete_mutual_info(histogram_discretize(codes, num_bins), factors)
    mod, per_latent = modularity_from_mi(mi)
    x, mean, std = normalize_data(codes)
    x_test, _, _ = normalize_data(codes_test, mean, std)
    expl = np.array([explicitness_per_factor(x, factors[:, k], x_test, factors_test[:, k], solver, seed)
                     for k in range(factors.shape[1])])
    return {"modularity": mod, "modularity_per_latent": per_latent.tolist(),
            "explicitness_train": float(expl[:, 0].mean()), "explicitness_test": float(expl[:, 1].mean()),
            "explicitness_per_factor": expl[:, 1].tolist()}


def _sample(dataset: FactorDataset, rng: np.random.Generator, num_train: int, num_test: int, **_) -> dict:
    return {"train": dataset.sample_factors(num_train, rng), "test": dataset.sample_factors(num_test, rng)}


def _score(codes: dict, factors: dict, dataset: FactorDataset, seed: int, num_bins: int, solver: str, **_) -> dict:
    out = modularity_from_codes(codes["train"], factors["train"], codes["test"], factors["test"], num_bins, solver,
                                seed)
    out["explicitness_per_factor"] = dict(zip(dataset.factor_names, out["explicitness_per_factor"]))
    return out


SPEC = METRICS.register(MetricSpec("modularity", _sample, _score,
                  {"num_train": 10_000, "num_test": 5_000, "num_bins": 20, "solver": "liblinear"},
                  paper="Ridgeway & Zemel 2018, Learning Deep Disentangled Embeddings with the F-Statistic Loss"))


def modularity(encode_fn: EncodeFn, dataset: FactorDataset, seed: int = 0, **params) -> dict:
    """Modularity (headline) and explicitness (train/test ROC-AUC).

    Example:

        >>> from disentkit.metrics import modularity
        >>> from disentkit.testing import IdentityDataset        # images = the factors: a perfect code
        >>> result = modularity(lambda x: x.flatten(1), IdentityDataset((4, 4)), num_train=500, num_test=500)
        >>> round(result["modularity"], 2), round(result["explicitness_test"], 2)
        (1.0, 1.0)
    """
    return run_metric(SPEC, encode_fn, dataset, seed, **params)
