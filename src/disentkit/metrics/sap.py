"""Separated Attribute Predictability (Kumar et al. 2018, DIP-VAE paper, Sec. 3), dlib version.

dlib study config: 10,000 train / 5,000 test points, discrete factors. For every (latent i, factor k)
a ``LinearSVC(C=0.01, class_weight="balanced")`` is fit on latent i alone and scored by test
accuracy; per factor, best − second-best score; averaged over factors. (The continuous-factor
variant scores R² = Cov(z_i, v_k)² / (Var z_i · Var v_k) and needs no test set.)
"""

from __future__ import annotations

import warnings

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from ..data import FactorDataset
from .utils import METRICS, EncodeFn, MetricSpec, avg_diff_top_two, run_metric, top_two_gaps


def _latent_scores(z: np.ndarray, ys: np.ndarray, z_test: np.ndarray, ys_test: np.ndarray) -> np.ndarray:
    """Test accuracy of a one-feature linear SVM per factor, for one latent."""
    out = np.zeros(ys.shape[1])
    for k in range(ys.shape[1]):
        if len(np.unique(ys[:, k])) < 2:  # a factor with one class is predicted perfectly by anything
            out[k] = 1.0
            continue
        # dual=False: the same L2-regularized squared-hinge objective as dlib's dual=True default
        # (unique optimum), but liblinear's primal solver converges fast for one feature.
        clf = LinearSVC(C=0.01, class_weight="balanced", dual=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(z[:, None], ys[:, k])
        out[k] = np.mean(clf.predict(z_test[:, None]) == ys_test[:, k])
    return out


def sap_score_matrix(codes: np.ndarray, factors: np.ndarray, codes_test: np.ndarray | None = None,
                     factors_test: np.ndarray | None = None, continuous_factors: bool = False,
                     n_jobs: int = 1) -> np.ndarray:
    """Score matrix [latents × factors]: SVM test accuracy (discrete) or R² (continuous)."""
    d = codes.shape[1]
    if continuous_factors:
        zc = codes - codes.mean(0)
        yc = factors - factors.mean(0)
        n = len(codes) - 1
        cov = zc.T @ yc / n
        var_z, var_y = zc.var(0, ddof=1), yc.var(0, ddof=1)
        ok = (var_z[:, None] > 1e-12) & (var_y[None, :] > 0)
        denom = np.where(ok, var_z[:, None] * var_y[None, :], 1.0)
        return np.where(ok, cov ** 2 / denom, 0.0)
    rows = Parallel(n_jobs=n_jobs, prefer="threads")(
        delayed(_latent_scores)(codes[:, i], factors, codes_test[:, i], factors_test) for i in range(d))
    return np.stack(rows)


def sap_from_codes(codes: np.ndarray, factors: np.ndarray, codes_test: np.ndarray | None = None,
                   factors_test: np.ndarray | None = None, continuous_factors: bool = False,
                   n_jobs: int = 1) -> dict:
    """SAP of train/test codes (N, D) and factor classes (N, F).

    Example:

        >>> import numpy as np
        >>> from disentkit.metrics import sap_from_codes
        >>> rng = np.random.default_rng(0)
        >>> factors, test = rng.integers(0, 4, size=(1000, 2)), rng.integers(0, 4, size=(500, 2))   # 2 factors
        >>> def mix(f):                                 # both factors in both latents
        ...     return np.stack([f[:, 0] + f[:, 1], f[:, 0] - f[:, 1]], 1).astype(float)
        >>> round(sap_from_codes(factors.astype(float), factors, test.astype(float), test)["sap"], 2)
        0.48
        >>> round(sap_from_codes(mix(factors), factors, mix(test), test)["sap"], 2)
        0.01
        >>> round(sap_from_codes(factors.astype(float), factors, continuous_factors=True)["sap"], 2)   # R²: no test
        1.0
    """
    m = sap_score_matrix(codes, factors, codes_test, factors_test, continuous_factors, n_jobs)
    return {"sap": avg_diff_top_two(m), "sap_per_factor": top_two_gaps(m).tolist(), "score_matrix": m.tolist()}


def _sample(dataset: FactorDataset, rng: np.random.Generator, num_train: int, num_test: int, **_) -> dict:
    return {"train": dataset.sample_factors(num_train, rng), "test": dataset.sample_factors(num_test, rng)}


def _score(codes: dict, factors: dict, dataset: FactorDataset, continuous_factors: bool, n_jobs: int, **_) -> dict:
    out = sap_from_codes(codes["train"], factors["train"], codes["test"], factors["test"], continuous_factors, n_jobs)
    out["sap_per_factor"] = dict(zip(dataset.factor_names, out["sap_per_factor"]))
    return out


SPEC = METRICS.register(MetricSpec("sap", _sample, _score,
                  {"num_train": 10_000, "num_test": 5_000, "continuous_factors": False, "n_jobs": 2},
                  paper="Kumar et al. 2018, Variational Inference of Disentangled Latent Concepts (DIP-VAE)",
                  runtime_params=("n_jobs",)))


def sap(encode_fn: EncodeFn, dataset: FactorDataset, seed: int = 0, **params) -> dict:
    """SAP score (defaults: 10,000 train / 5,000 test, LinearSVC(C=0.01, balanced) per latent×factor).

    Example:

        >>> from disentkit.metrics import sap
        >>> from disentkit.testing import IdentityDataset        # images = the factors: a perfect code
        >>> result = sap(lambda x: x.flatten(1), IdentityDataset((2, 2)), num_train=500, num_test=500)
        >>> round(result["sap"], 2), sorted(result["sap_per_factor"])
        (0.52, ['f0', 'f1'])
    """
    return run_metric(SPEC, encode_fn, dataset, seed, **params)
