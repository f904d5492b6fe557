"""Discrete information measures and small estimators the metrics share (dlib's helpers).

Histogram discretization, mutual information and entropy of label vectors in nats (equal to
scikit-learn's ``mutual_info_score``), per-latent standardization, top-two gaps, and dlib's logistic
regression. :mod:`disentkit.metrics.utils` re-exports every name, where the metrics import them from.

Example:

    >>> import numpy as np
    >>> from disentkit.metrics.measures import discrete_entropy, histogram_discretize, mutual_info
    >>> codes = np.array([[0.0], [0.5], [1.0], [1.0]])
    >>> histogram_discretize(codes, num_bins=2).ravel()          # bin labels run 1..num_bins
    array([1, 2, 2, 2])
    >>> labels = np.array([0, 0, 1, 1])
    >>> round(mutual_info(labels, labels), 4), discrete_entropy(labels[:, None]).round(4)   # ln 2 nats each
    (0.6931, array([0.6931]))
"""

from __future__ import annotations

import numpy as np


def histogram_discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Per latent, 20 equal-width bins over its observed range (dlib's ``_histogram_discretize``).

    ``codes`` is (N, D); returns int (N, D). dlib: ``np.digitize(x, np.histogram(x, bins)[1][:-1])``,
    so bin labels run 1..num_bins; a constant latent falls in one bin (no NaN downstream).
    """
    out = np.zeros(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], num_bins)[1][:-1]
        out[:, j] = np.digitize(codes[:, j], edges)
    return out


def _relabel(x: np.ndarray) -> tuple[np.ndarray, int]:
    uniq, inv = np.unique(x, return_inverse=True)
    return inv.ravel(), len(uniq)


def mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) in nats of two discrete label vectors; equals ``sklearn.metrics.mutual_info_score``."""
    a, ka = _relabel(a)
    b, kb = _relabel(b)
    if ka == 1 or kb == 1:  # a constant carries no information (exactly 0, as sklearn returns)
        return 0.0
    n = len(a)
    joint = np.bincount(a * kb + b, minlength=ka * kb).reshape(ka, kb).astype(np.float64)
    pa, pb = joint.sum(1), joint.sum(0)
    nz = joint > 0
    pij = joint[nz]
    outer = pa[:, None] * pb[None, :]
    mi = np.sum(pij / n * (np.log(pij) - np.log(outer[nz]) + np.log(n)))
    return float(max(mi, 0.0))


def discrete_mutual_info(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """MI matrix [latents × factors] in nats between discretized codes (N, D) and factors (N, F)."""
    return np.array([[mutual_info(codes[:, i], factors[:, j]) for j in range(factors.shape[1])]
                     for i in range(codes.shape[1])])


def discrete_entropy(factors: np.ndarray) -> np.ndarray:
    """Entropy H(v_k) in nats of each factor column (N, F) -> (F,)."""
    out = []
    for j in range(factors.shape[1]):
        _, counts = np.unique(factors[:, j], return_counts=True)
        p = counts / counts.sum()
        out.append(float(-(p * np.log(p)).sum()))
    return np.array(out)


def normalize_data(data: np.ndarray, mean: np.ndarray | None = None, std: np.ndarray | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-latent standardization (dlib ``normalize_data``); a constant latent gets std 1, not NaN."""
    mean = data.mean(0) if mean is None else mean
    std = data.std(0) if std is None else std
    std = np.where(std > 0, std, 1.0)
    return (data - mean) / std, mean, std


def top_two_gaps(matrix: np.ndarray) -> np.ndarray:
    """Per column, largest − second-largest entry (one row: the largest)."""
    top = np.sort(matrix, axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros_like(top[0])
    return top[0] - second


def avg_diff_top_two(matrix: np.ndarray) -> float:
    """Mean over columns of (largest − second largest) entry (dlib ``_compute_avg_diff_top_two``)."""
    return float(np.mean(top_two_gaps(matrix)))


def logistic_regression(solver: str = "liblinear", seed: int = 0):
    """dlib's ``LogisticRegression()`` as its published numbers were computed (scikit-learn ≤ 0.21:
    liblinear, one-vs-rest, C=1); current sklearn needs the explicit one-vs-rest wrapper for that.
    ``solver="lbfgs"`` gives today's multinomial default instead."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    if solver == "liblinear":
        return OneVsRestClassifier(LogisticRegression(solver="liblinear", random_state=seed))
    return LogisticRegression(solver=solver, random_state=seed, max_iter=1000)
