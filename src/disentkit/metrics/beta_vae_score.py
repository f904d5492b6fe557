"""BetaVAE score (Higgins et al. 2017, Sec. 3), dlib's ``beta_vae_sklearn`` with its study config.

A point: pick one factor at random, draw 64 pairs of factor vectors that agree on that factor,
and average |z(x₁) − z(x₂)| over the pairs; its label is the factor. A logistic regression is trained
on 10,000 points and evaluated on 5,000 more; the score is its evaluation accuracy. All pairs of
all points are drawn at once and encoded in one pass.

dlib calls ``LogisticRegression(random_state=...)`` with the scikit-learn of 2018–19, whose default
was the liblinear solver, one-vs-rest; ``solver="liblinear"`` reproduces that (current sklearn's
default, lbfgs multinomial, is available as ``solver="lbfgs"``).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ..data import FactorDataset
from .utils import METRICS, EncodeFn, MetricSpec, logistic_regression, run_metric


def _sample_points(dataset: FactorDataset, rng: np.random.Generator, num_points: int, batch_size: int,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (G,) and the two factor arrays (G, B, F) agreeing on the label's factor."""
    label = rng.integers(0, dataset.num_factors, size=num_points)
    f1 = dataset.sample_factors(num_points * batch_size, rng).reshape(num_points, batch_size, -1)
    f2 = dataset.sample_factors(num_points * batch_size, rng).reshape(num_points, batch_size, -1)
    g = np.arange(num_points)[:, None]
    f2[g, np.arange(batch_size)[None, :], label[:, None]] = f1[g, np.arange(batch_size)[None, :], label[:, None]]
    return label, f1, f2


def beta_vae_from_features(train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray, eval_y: np.ndarray,
                           solver: str = "liblinear", seed: int = 0) -> dict:
    """Train/eval accuracy of a logistic regression on feature vectors (G, D) with factor labels (G,)."""
    if len(np.unique(train_y)) < 2:
        acc = float(np.mean(eval_y == train_y[0]))
        return {"beta_vae_score": acc, "train_accuracy": float(np.mean(train_y == train_y[0])), "eval_accuracy": acc}
    model = logistic_regression(solver, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(train_x, train_y)
    train_acc, eval_acc = float(model.score(train_x, train_y)), float(model.score(eval_x, eval_y))
    return {"beta_vae_score": eval_acc, "train_accuracy": train_acc, "eval_accuracy": eval_acc}


def _sample(dataset: FactorDataset, rng: np.random.Generator, num_train: int, num_eval: int, batch_size: int,
            **_) -> dict:
    ty, t1, t2 = _sample_points(dataset, rng, num_train, batch_size)
    ey, e1, e2 = _sample_points(dataset, rng, num_eval, batch_size)
    return {"train1": t1, "train2": t2, "eval1": e1, "eval2": e2, "_train_y": ty, "_eval_y": ey}


def _score(codes: dict, factors: dict, dataset: FactorDataset, seed: int, solver: str, **_) -> dict:
    train_x = np.abs(codes["train1"] - codes["train2"]).mean(axis=1)
    eval_x = np.abs(codes["eval1"] - codes["eval2"]).mean(axis=1)
    return beta_vae_from_features(train_x, factors["_train_y"], eval_x, factors["_eval_y"], solver, seed)


SPEC = METRICS.register(MetricSpec("beta_vae_score", _sample, _score,
                  {"num_train": 10_000, "num_eval": 5_000, "batch_size": 64, "solver": "liblinear"},
                  paper="Higgins et al. 2017, β-VAE: Learning Basic Visual Concepts with a Constrained "
                        "Variational Framework"))


def beta_vae_score(encode_fn: EncodeFn, dataset: FactorDataset, seed: int = 0, **params) -> dict:
    """BetaVAE score (headline = eval accuracy) and train accuracy.

    Example:

        >>> from disentkit.metrics import beta_vae_score
        >>> from disentkit.testing import IdentityDataset        # images = the factors: a perfect code
        >>> result = beta_vae_score(lambda x: x.flatten(1), IdentityDataset(), num_train=100, num_eval=50)
        >>> result["beta_vae_score"], result["params"]["batch_size"]
        (1.0, 64)
    """
    return run_metric(SPEC, encode_fn, dataset, seed, **params)
