"""DCI-ES explicitness and size (Eastwood et al., ICLR 2023, "DCI-ES: An Extended Disentanglement Framework
with Connections to Identifiability"): how *easily* each factor is read off the codes, and how large the code
is relative to the factors. Disentanglement and completeness (the D and C) are the ``dci`` metric's: run
``--metrics dci,dci_es``.

One training sample of ``num_train`` (10,000) and one test sample of ``num_test`` (5,000) are drawn, in that
order (dlib's DCI sizes). For each factor j, a probe family of increasing capacity predicts the factor from
the codes: the paper's random-forest family, scikit-learn ``RandomForestRegressor(n_estimators=num_trees,
max_depth=d, random_state=seed)`` (100 trees, other settings scikit-learn's defaults) for ``d`` in ``depths``
(the authors' configuration: 1, 2, 3, 4, 8, 10, 12, 14, 16, 18, 20, 32); capacity κ = max_depth on a linear
axis. The regression target is the factor's *class index* as a float (R² is unchanged by an affine map of the
target, so this equals regressing the factor value wherever the values are evenly spaced). Then:

- loss ℓ_j(κ) = 1 − R² on the test sample (scikit-learn ``r2_score``); the loss–capacity curve is made
  monotone by the running minimum (the lowest loss reached up to that capacity), as the authors do;
- ℓ*_j = the curve's lowest loss; AULCC_j = trapezoid area between the curve and ℓ*_j over [κ_min, κ_max];
- explicitness E_j = 1 − AULCC_j / Z_j with the baseline loss ℓ^b = 1 (predicting the mean):

  * ``normalization="authors"`` (default, the released code's): Z_j = ½·(κ_max − κ_min)·ℓ^b, so
    E = 1 − 2·AULCC/((κ_max − κ_min)·ℓ^b) ∈ [−1, 1]: 1 when the lowest loss is reached at the smallest
    capacity, 0 for a linear decline from the baseline to 0 over the whole range, negative when slower;
  * ``normalization="rectangle"``: Z_j = (κ_max − κ_min)·ℓ^b, E ∈ [0, 1]; E_rect = (E_authors + 1)/2.

  Explicitness is measured above the representation's *own* best loss: a factor no probe can predict (pure
  noise) has a flat curve, AULCC = 0 and E = 1; informativeness carries that loss.

Headline ``dci_es`` = ``explicitness`` = mean E_j over factors; also ``explicitness_per_factor``,
``informativeness`` (mean over factors of 1 − ℓ*_j, the best test R² of the family; not clipped, so slightly
negative for noise), ``informativeness_per_factor``, ``loss_capacity`` (per factor the raw test losses, one per
depth, before the running minimum), ``capacities`` (the depths), ``normalization``. Size S = K / L, the number
of factors over the code dimension (1 when equal, < 1 for a larger code); ``size_active`` = K / the number of
latents whose variance over the training codes exceeds 1e-12 × the largest (None when every latent is
constant; ``num_active_latents`` gives the count): what pruning dead latents would change.

Deviations: a factor with a single class is predicted exactly (loss 0 at every depth, E = 1) without fitting.
Speed: a forest none of whose trees reached its depth limit is the forest every larger limit grows (same
seeds, same bootstraps, same splits in the same order), so its loss is reused for the larger depths instead of
refitting; this is exact. Truncating one depth-32 forest to every depth is *not* exact (scikit-learn breaks
ties between features with equal gains by a random feature order whose stream depends on the nodes grown
before), so every other depth is fitted on its own.
"""

from __future__ import annotations

import numpy as np

from ..data import FactorDataset
from ..errors import DisentkitError
from .utils import METRICS, EncodeFn, MetricSpec, run_metric

NORMALIZATIONS = ("authors", "rectangle")
#: the authors' random-forest family (configs/random_forest): max_depth values, the capacity axis
DEPTHS = [1, 2, 3, 4, 8, 10, 12, 14, 16, 18, 20, 32]


def _check(depths, normalization: str) -> list[int]:
    if normalization not in NORMALIZATIONS:
        raise DisentkitError(f"dci_es: normalization must be one of {', '.join(NORMALIZATIONS)}, got '{normalization}'")
    ok = isinstance(depths, (list, tuple)) and len(depths) >= 2 and all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1 for d in depths)
    if not ok or any(b <= a for a, b in zip(depths, depths[1:])):
        raise DisentkitError(f"dci_es: depths must be at least two strictly increasing integers ≥ 1, e.g. {DEPTHS}; "
                             f"got {depths!r}")
    return [int(d) for d in depths]


def explicitness(capacities, losses, baseline: float = 1.0, normalization: str = "authors") -> dict:
    """E of one loss–capacity curve: the running minimum of ``losses``, ℓ* (its lowest loss), the trapezoid
    area between the curve and ℓ* (``aulcc``) and E = 1 − aulcc/Z (module docstring).

    Example:

        >>> from disentkit.metrics.dci_es import explicitness
        >>> out = explicitness([1, 2, 3], [1.0, 0.5, 0.0])        # a linear decline from the baseline
        >>> out["aulcc"], out["explicitness"]                  # Z = ½·(3 − 1)·1
        (1.0, 0.0)
        >>> explicitness([1, 2, 3], [1.0, 0.5, 0.0], normalization="rectangle")["explicitness"]   # Z = (3 − 1)·1
        0.5
        >>> explicitness([1, 2, 3], [0.2, 0.2, 0.3])["explicitness"]   # at its lowest loss from the start
        1.0
    """
    x = np.asarray(capacities, dtype=np.float64)
    curve = np.minimum.accumulate(np.asarray(losses, dtype=np.float64))
    if normalization not in NORMALIZATIONS:
        raise DisentkitError(f"dci_es: normalization must be one of {', '.join(NORMALIZATIONS)}, got '{normalization}'")
    if len(x) < 2 or len(x) != len(curve) or np.any(np.diff(x) <= 0):
        raise DisentkitError(f"dci_es: a loss–capacity curve needs at least two strictly increasing capacities and "
                             f"one loss each; got {len(x)} capacities, {len(curve)} losses")
    best = float(curve[-1])
    aulcc = float(np.sum(0.5 * (curve[1:] + curve[:-1] - 2 * best) * np.diff(x)))
    z = (x[-1] - x[0]) * baseline * (0.5 if normalization == "authors" else 1.0)
    return {"curve": curve.tolist(), "best_loss": best, "aulcc": aulcc, "explicitness": float(1.0 - aulcc / z)}


def probe_losses(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, depths=DEPTHS,
                 num_trees: int = 100, seed: int = 0, n_jobs: int = 1) -> list[float]:
    """Test losses 1 − R² of ``RandomForestRegressor(num_trees, max_depth=d, random_state=seed)`` predicting
    ``y`` from ``x``, one per depth (a forest that did not reach its depth limit is reused for larger ones)."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.metrics import r2_score

    y, y_test = np.asarray(y, dtype=np.float64), np.asarray(y_test, dtype=np.float64)
    if np.ptp(y) == 0 and np.all(y_test == y[0]):         # one class: predicted exactly by any probe
        return [0.0] * len(depths)
    losses: list[float] = []
    saturated = False
    for d in depths:
        if not saturated:
            forest = RandomForestRegressor(n_estimators=num_trees, max_depth=d, random_state=seed, n_jobs=n_jobs)
            forest.fit(x, y)
            forest.n_jobs = 1       # threads would sum the trees' predictions in the order they finish
            loss = 1.0 - float(r2_score(y_test, forest.predict(x_test)))
            saturated = max(t.get_depth() for t in forest.estimators_) < d
        losses.append(loss)
    return losses


def size(codes: np.ndarray, num_factors: int) -> dict:
    """S = K / L and K / the number of latents with variance > 1e-12 × the largest (``size_active``).

    Example:

        >>> import numpy as np
        >>> from disentkit.metrics.dci_es import size
        >>> size(np.c_[np.random.default_rng(0).normal(size=(50, 2)), np.zeros(50)], 2)
        {'size': 0.6666666666666666, 'size_active': 1.0, 'num_active_latents': 2}
    """
    var = np.var(np.asarray(codes, dtype=np.float64), axis=0)
    active = int(np.sum(var > 1e-12 * var.max())) if var.size and var.max() > 0 else 0
    return {"size": num_factors / codes.shape[1], "size_active": num_factors / active if active else None,
            "num_active_latents": active}


def dci_es_from_codes(codes: np.ndarray, factors: np.ndarray, codes_test: np.ndarray, factors_test: np.ndarray,
                      depths=DEPTHS, num_trees: int = 100, normalization: str = "authors", seed: int = 0,
                      n_jobs: int = 1, factor_names: list[str] | None = None) -> dict:
    """DCI-ES explicitness and size of train/test codes (N, D) and factor classes (N, F).

    Example:

        >>> import numpy as np
        >>> from disentkit.metrics.dci_es import dci_es_from_codes
        >>> rng = np.random.default_rng(0)
        >>> f, ft = rng.integers(0, 4, size=(400, 2)), rng.integers(0, 4, size=(200, 2))
        >>> out = dci_es_from_codes(f * 1.0, f, ft * 1.0, ft, depths=[1, 2, 4], num_trees=10)
        >>> round(out["informativeness"], 3), out["size"], out["capacities"]
        (1.0, 1.0, [1, 2, 4])
    """
    depths = _check(depths, normalization)
    names = list(factor_names) if factor_names is not None else [f"f{k}" for k in range(factors.shape[1])]
    losses, per_e, per_i = {}, {}, {}
    for k, name in enumerate(names):
        raw = probe_losses(codes, factors[:, k], codes_test, factors_test[:, k], depths, num_trees, seed, n_jobs)
        e = explicitness(depths, raw, 1.0, normalization)
        losses[name], per_e[name], per_i[name] = raw, e["explicitness"], 1.0 - e["best_loss"]
    mean_e = float(np.mean(list(per_e.values())))
    return {"dci_es": mean_e, "explicitness": mean_e, "explicitness_per_factor": per_e,
            "informativeness": float(np.mean(list(per_i.values()))), "informativeness_per_factor": per_i,
            "loss_capacity": losses, "capacities": depths, "normalization": normalization,
            **size(codes, factors.shape[1])}


def _sample(dataset: FactorDataset, rng: np.random.Generator, num_train: int, num_test: int, depths=DEPTHS,
            normalization: str = "authors", **_) -> dict:
    _check(depths, normalization)                        # bad settings fail before anything is encoded
    return {"train": dataset.sample_factors(num_train, rng), "test": dataset.sample_factors(num_test, rng)}


def _score(codes: dict, factors: dict, dataset: FactorDataset, seed: int, depths, num_trees: int,
           normalization: str, n_jobs: int, **_) -> dict:
    return dci_es_from_codes(codes["train"], factors["train"], codes["test"], factors["test"], depths, num_trees,
                             normalization, seed, n_jobs, dataset.factor_names)


SPEC = METRICS.register(MetricSpec(
    "dci_es", _sample, _score,
    {"num_train": 10_000, "num_test": 5_000, "depths": list(DEPTHS), "num_trees": 100, "normalization": "authors",
     "n_jobs": -1},
    paper="Eastwood et al. 2023, DCI-ES: An Extended Disentanglement Framework with Connections to "
          "Identifiability", runtime_params=("n_jobs",), group="extended"))


def dci_es(encode_fn: EncodeFn, dataset: FactorDataset, seed: int = 0, **params) -> dict:
    """DCI-ES explicitness (headline ``dci_es``) and size (defaults: num_train=10000, num_test=5000, the
    authors' 12 depths, num_trees=100, normalization="authors"); D and C are the ``dci`` metric's.

    Example:

        >>> from disentkit.metrics.dci_es import dci_es
        >>> from disentkit.testing import IdentityDataset        # images = the factors: a perfect code
        >>> out = dci_es(lambda x: x.flatten(1), IdentityDataset((4, 4)), num_train=300, num_test=100,
        ...              depths=[1, 2, 4, 8], num_trees=10)
        >>> round(out["informativeness"], 3), out["size"], sorted(out["explicitness_per_factor"])
        (1.0, 1.0, ['f0', 'f1'])
    """
    return run_metric(SPEC, encode_fn, dataset, seed, **params)
