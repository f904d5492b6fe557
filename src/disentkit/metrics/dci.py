"""Disentanglement, Completeness, Informativeness (Eastwood & Williams 2018), dlib variant.

dlib study config: 10,000 train / 5,000 test points. One ``GradientBoostingClassifier()`` (sklearn
defaults: 100 depth-3 trees, lr 0.1) per factor on all latents; R[i, k] = |feature_importances_| of
latent i for factor k. Backends: ``exact`` (default) re-implements that classifier in torch with every
factor's trees grown together (:mod:`.gbt`: the same values up to how ties between equally good
latents are broken, several times faster; docs/metrics.md has the measured times), ``sklearn`` is the
reference itself, ``lightgbm`` a fast look-alike that is *not* comparable (it gives ties to the first
latent). Disentanglement: per latent 1 − H_K(R[i, :] / Σ_k R[i, k]) (entropy in base K =
number of factors, +1e-11 inside), weighted by each latent's share of total importance. Completeness:
per factor 1 − H_D(R[:, k] / Σ_i R[i, k]) (base D = number of latents), weighted by factor share.
Informativeness is dlib's: the mean over factors of the classifiers' **accuracy** (not the paper's
prediction error), on train and test points — reported as ``informativeness_train/_test``.
"""

from __future__ import annotations

import numpy as np
import scipy.stats
from joblib import Parallel, delayed
from sklearn.ensemble import GradientBoostingClassifier

from ..data import FactorDataset
from ..errors import DisentkitError
from .gbt import fit_probes
from .utils import METRICS, EncodeFn, MetricSpec, run_metric

BACKENDS = ("exact", "sklearn", "lightgbm")


def disentanglement(importance: np.ndarray) -> float:
    """Importance-weighted mean over latents of 1 − H_K(P_i.) (dlib ``disentanglement``).

    Example:

        >>> import numpy as np
        >>> from disentkit.metrics import disentanglement
        >>> round(disentanglement(np.eye(3)), 2)                # importance [latents × factors]
        1.0
        >>> round(disentanglement(np.array([[0.9, 0.1], [0.0, 1.0]])), 2)   # latent 0 leaks into factor 1
        0.77
        >>> round(disentanglement(np.ones((2, 2))), 2) == 0      # every latent for every factor
        True
    """
    importance = np.asarray(importance, dtype=np.float64)
    per_code = 1.0 - scipy.stats.entropy(importance.T + 1e-11, base=importance.shape[1])
    if importance.sum() == 0.0:
        importance = np.ones_like(importance)
    weight = importance.sum(1) / importance.sum()
    return float(np.sum(per_code * weight))


def completeness(importance: np.ndarray) -> float:
    """Importance-weighted mean over factors of 1 − H_D(P_.k) (dlib ``completeness``).

    Example:

        >>> import numpy as np
        >>> from disentkit.metrics import completeness
        >>> round(completeness(np.eye(3)), 2)                   # importance [latents × factors]
        1.0
        >>> round(completeness(np.array([[0.9, 0.1], [0.0, 1.0]])), 2)      # factor 1 in both latents
        0.76
        >>> round(completeness(np.ones((2, 2))), 2) == 0         # every factor in every latent
        True
    """
    importance = np.asarray(importance, dtype=np.float64)
    per_factor = 1.0 - scipy.stats.entropy(importance + 1e-11, base=importance.shape[0])
    if importance.sum() == 0.0:
        importance = np.ones_like(importance)
    weight = importance.sum(0) / importance.sum()
    return float(np.sum(per_factor * weight))


def _fit_factor(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, backend: str,
                seed: int, n_estimators: int = 100) -> tuple[np.ndarray, float, float]:
    """Importances of every latent for one factor, and train/test accuracy of the probe."""
    if len(np.unique(y)) < 2:  # nothing to predict: zero importance, perfect accuracy
        return np.zeros(x.shape[1]), 1.0, 1.0
    if backend == "sklearn":
        model = GradientBoostingClassifier(n_estimators=n_estimators, random_state=seed).fit(x, y)
        imp = np.abs(model.feature_importances_)
    elif backend == "lightgbm":
        try:
            import lightgbm
        except ImportError:
            raise DisentkitError("DCI backend 'lightgbm' needs the lightgbm package: "
                                 "pip install 'disentkit[fast]'") from None
        model = lightgbm.LGBMClassifier(n_estimators=n_estimators, max_depth=3, num_leaves=8, learning_rate=0.1,
                                        importance_type="gain", random_state=seed, n_jobs=1, verbose=-1,
                                        deterministic=True, force_row_wise=True)
        model.fit(x, y)
        imp = np.abs(model.feature_importances_).astype(np.float64)
        imp = imp / imp.sum() if imp.sum() > 0 else imp
    else:
        raise DisentkitError(f"DCI backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
    return imp, float(np.mean(model.predict(x) == y)), float(np.mean(model.predict(x_test) == y_test))


def dci_from_codes(codes: np.ndarray, factors: np.ndarray, codes_test: np.ndarray, factors_test: np.ndarray,
                   backend: str = "exact", n_jobs: int = 1, seed: int = 0, n_estimators: int = 100,
                   device: str = "cpu") -> dict:
    """DCI of train/test codes (N, D) and factor classes (N, F).

    ``exact`` fits every factor's probe at once on ``device``; the other backends fit one probe per
    factor, ``n_jobs`` processes in parallel.

    Example:

        >>> import numpy as np
        >>> from disentkit.metrics import dci_from_codes
        >>> rng = np.random.default_rng(0)
        >>> factors, test = rng.integers(0, 4, size=(1000, 2)), rng.integers(0, 4, size=(500, 2))   # 2 factors
        >>> def mix(f):                                 # both factors in both latents
        ...     return np.stack([f[:, 0] + f[:, 1], f[:, 0] - f[:, 1]], 1).astype(float)
        >>> result = dci_from_codes(factors.astype(float), factors, test.astype(float), test, n_estimators=10)
        >>> round(result["disentanglement"], 2), round(result["completeness"], 2), result["informativeness_test"]
        (1.0, 1.0, 1.0)
        >>> result = dci_from_codes(mix(factors), factors, mix(test), test, n_estimators=10)
        >>> round(result["disentanglement"], 2), np.shape(result["importance_matrix"])
        (0.0, (2, 2))
    """
    if backend == "exact":
        probes = fit_probes(codes, list(factors.T), codes_test, list(factors_test.T), device=device,
                            n_estimators=n_estimators, seed=seed)
        fits = [(np.abs(p.importance), p.train_accuracy, p.test_accuracy) for p in probes]
    elif backend in BACKENDS:
        fits = Parallel(n_jobs=n_jobs)(
            delayed(_fit_factor)(codes, factors[:, k], codes_test, factors_test[:, k], backend, seed, n_estimators)
            for k in range(factors.shape[1]))
    else:
        raise DisentkitError(f"DCI backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
    importance = np.stack([f[0] for f in fits], 1)  # [latents × factors]
    return {"disentanglement": disentanglement(importance), "completeness": completeness(importance),
            "informativeness_train": float(np.mean([f[1] for f in fits])),
            "informativeness_test": float(np.mean([f[2] for f in fits])),
            "importance_matrix": importance.tolist(), "backend": backend}


def _sample(dataset: FactorDataset, rng: np.random.Generator, num_train: int, num_test: int, **_) -> dict:
    return {"train": dataset.sample_factors(num_train, rng), "test": dataset.sample_factors(num_test, rng)}


def _score(codes: dict, factors: dict, dataset: FactorDataset, seed: int, backend: str, n_jobs: int,
           n_estimators: int, device: str | None = None, encoder_device: str = "cpu", **_) -> dict:
    out = dci_from_codes(codes["train"], factors["train"], codes["test"], factors["test"], backend, n_jobs, seed,
                         n_estimators, str(device or encoder_device))
    out["dci"] = out["disentanglement"]
    out["comparable_to_dlib"] = backend in ("sklearn", "exact") and n_estimators == 100
    return out


SPEC = METRICS.register(MetricSpec("dci", _sample, _score,
                  {"num_train": 10_000, "num_test": 5_000, "backend": "exact", "n_estimators": 100, "n_jobs": 2,
                   "device": None},
                  paper="Eastwood & Williams 2018, A Framework for the Quantitative Evaluation of "
                        "Disentangled Representations", runtime_params=("n_jobs", "device")))


def dci(encode_fn: EncodeFn, dataset: FactorDataset, seed: int = 0, **params) -> dict:
    """DCI (headline ``dci`` = disentanglement); backend 'exact' (default) reproduces the dlib reference
    'sklearn'; ``device`` (default: the encoder's) is where the exact probes run.

    Example:

        >>> from disentkit.metrics import dci
        >>> from disentkit.testing import IdentityDataset        # images = the factors: a perfect code
        >>> result = dci(lambda x: x.flatten(1), IdentityDataset(), num_train=500, num_test=200, n_estimators=10)
        >>> round(result["dci"], 2), round(result["completeness"], 2), result["informativeness_test"]
        (1.0, 1.0, 1.0)
        >>> result["comparable_to_dlib"]                # only with dlib's 100 boosting stages
        False
    """
    return run_metric(SPEC, encode_fn, dataset, seed, **params)
