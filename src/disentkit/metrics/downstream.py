"""Downstream-task scores (disentanglement_lib's ``downstream_task``; Locatello et al. 2019, §5): how well
each factor can be predicted from few labelled codes, as sample efficiency.

For each size in ``num_train`` (10, 100, 1,000, 10,000), a fresh training sample of that size and a test
sample of ``num_test`` (5,000) are drawn, in that order; one classifier per factor learns the factor's class
from the codes, and its accuracy on both samples is reported:

- ``predictor="logistic_regression_cv"`` (dlib's default): scikit-learn's ``LogisticRegressionCV(Cs=10,
  cv=KFold(n_splits=5))`` on the raw codes;
- ``predictor="gradient_boosting"``: ``GradientBoostingClassifier()`` (100 depth-3 trees), by the torch
  re-implementation DCI uses (:mod:`disentkit.metrics.gbt`, equal to scikit-learn's within DCI's tolerance).

Keys follow dlib's (``"{size}:mean_test_accuracy"``, ``":min_test_accuracy"``, train likewise, per factor
under ``"{size}:test_accuracy"``); the headline ``downstream_task`` is the mean test accuracy at the largest
size. Deviation: where a training sample holds a single class of a factor (possible at size 10), that
factor's classifier predicts that class (scikit-learn refuses to fit one class); where a fold of the
cross-validation misses classes, scikit-learn's own handling applies.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..data import FactorDataset
from ..errors import DisentkitError
from .utils import METRICS, EncodeFn, MetricSpec, run_metric

PREDICTORS = ("logistic_regression_cv", "gradient_boosting")


def _sample(dataset: FactorDataset, rng: np.random.Generator, num_train, num_test: int, **_) -> dict:
    draws = {}
    for size in _sizes(num_train):                      # dlib's order: train, then test, per size
        draws[f"train_{size}"] = dataset.sample_factors(size, rng)
        draws[f"test_{size}"] = dataset.sample_factors(num_test, rng)
    return draws


def _sizes(num_train) -> list[int]:
    sizes = [num_train] if isinstance(num_train, (int, np.integer)) else list(num_train)
    if not sizes or any(int(s) < 1 for s in sizes):
        raise DisentkitError(f"downstream_task: num_train must be positive sizes, e.g. [10, 100, 1000, 10000]; "
                             f"got {num_train!r}")
    return [int(s) for s in sizes]


def logistic_accuracies(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                        seed: int) -> tuple[float, float]:
    """(train, test) accuracy of ``LogisticRegressionCV(Cs=10, cv=KFold(5))`` predicting ``y`` from ``x``."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import KFold

    if len(np.unique(y)) == 1:                           # one class seen: predict it
        return 1.0, float(np.mean(y_test == y[0]))
    with warnings.catch_warnings():                      # convergence and missing-class-in-fold warnings
        warnings.simplefilter("ignore")
        model = LogisticRegressionCV(Cs=10, cv=KFold(n_splits=5), random_state=seed).fit(x, y)
    return float(np.mean(model.predict(x) == y)), float(np.mean(model.predict(x_test) == y_test))


def downstream_from_codes(draws: dict[str, tuple[np.ndarray, np.ndarray]], predictor: str = "logistic_regression_cv",
                          seed: int = 0, device: str = "cpu") -> dict:
    """Scores of ``{"train_N": (codes, factors), "test_N": (codes, factors), ...}`` (codes (n, D), factor
    classes (n, F)) with one ``predictor`` per factor and size.

    Example (the codes are the factors: every factor is read off exactly):

        >>> import numpy as np
        >>> from disentkit.metrics.downstream import downstream_from_codes
        >>> f = np.random.default_rng(0).integers(0, 3, size=(300, 2))
        >>> out = downstream_from_codes({"train_200": (f[:200] * 1.0, f[:200]), "test_200": (f[200:] * 1.0, f[200:])})
        >>> out["200:mean_test_accuracy"], out["downstream_task"]
        (1.0, 1.0)
    """
    if predictor not in PREDICTORS:
        raise DisentkitError(f"downstream_task: predictor must be one of {', '.join(PREDICTORS)}, got '{predictor}'")
    out: dict = {"predictor": predictor}
    sizes = sorted(int(k.split("_", 1)[1]) for k in draws if k.startswith("train_"))
    for size in sizes:
        (x, y), (xt, yt) = draws[f"train_{size}"], draws[f"test_{size}"]
        if predictor == "gradient_boosting":
            from .gbt import fit_probes

            probes = fit_probes(x, list(y.T), xt, list(yt.T), device=device, seed=seed)
            train, test = [p.train_accuracy for p in probes], [p.test_accuracy for p in probes]
        else:
            pairs = [logistic_accuracies(x, y[:, k], xt, yt[:, k], seed) for k in range(y.shape[1])]
            train, test = [a for a, _ in pairs], [b for _, b in pairs]
        out.update({f"{size}:mean_train_accuracy": float(np.mean(train)), f"{size}:mean_test_accuracy": float(np.mean(test)),
                    f"{size}:min_train_accuracy": float(np.min(train)), f"{size}:min_test_accuracy": float(np.min(test)),
                    f"{size}:train_accuracy": [float(a) for a in train], f"{size}:test_accuracy": [float(a) for a in test]})
    out["downstream_task"] = out[f"{sizes[-1]}:mean_test_accuracy"]
    return out


def _score(codes: dict, factors: dict, dataset: FactorDataset, seed: int, predictor: str, device: str | None = None,
           encoder_device: str = "cpu", **_) -> dict:
    out = downstream_from_codes({k: (codes[k], factors[k]) for k in codes}, predictor, seed,
                                str(device or encoder_device))
    for key in [k for k in out if k.endswith(":train_accuracy") or k.endswith(":test_accuracy")]:
        out[key] = dict(zip(dataset.factor_names, out[key]))
    return out


SPEC = METRICS.register(MetricSpec(
    "downstream_task", _sample, _score,
    {"num_train": [10, 100, 1000, 10000], "num_test": 5000, "predictor": "logistic_regression_cv", "device": None},
    paper="Locatello et al. 2019, Challenging Common Assumptions in the Unsupervised Learning of Disentangled "
          "Representations (downstream task)", runtime_params=("device",), group="extended"))


def downstream_task(encode_fn: EncodeFn, dataset: FactorDataset, seed: int = 0, **params) -> dict:
    """Downstream-task accuracies (defaults: num_train=[10, 100, 1000, 10000], num_test=5000,
    predictor="logistic_regression_cv").

    Example:

        >>> from disentkit.metrics import downstream_task
        >>> from disentkit.testing import IdentityDataset        # images = the factors: a perfect code
        >>> out = downstream_task(lambda x: x.flatten(1), IdentityDataset((3, 3)), num_train=[10, 100], num_test=100)
        >>> out["10:mean_test_accuracy"] <= out["100:mean_test_accuracy"] == 1.0, out["downstream_task"]
        (True, 1.0)
    """
    return run_metric(SPEC, encode_fn, dataset, seed, **params)
