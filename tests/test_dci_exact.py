"""DCI's ``exact`` backend (``disentkit.metrics.gbt``) against scikit-learn's GradientBoostingClassifier.

Where no two candidate splits tie, the torch probe grows the same trees as sklearn: same predictions,
importances equal to rounding. Ties between equally good splits (duplicated or identically splitting
latents, tiny nodes) are broken differently — sklearn by its random feature order (``random_state``)
and float rounding, gbt by a seeded random feature priority — so elsewhere the probe is compared
against sklearn's spread over 5 random states. DCI itself must agree with the sklearn backend within
0.01 on every known-answer case of ``test_metrics_known_answers.py``.
"""

import math

import numpy as np
import pytest
import torch
from disentkit.testing import IdentityDataset
from sklearn.ensemble import GradientBoostingClassifier

from disentkit.data import get_dataset
from disentkit.metrics import dci, dci_from_codes
from disentkit.metrics.gbt import fit_probes

from test_metrics_known_answers import all_constant, constant_extra, duplicated, identity, noise

SEEDS = range(5)


def _data(kind: str, n: int, d: int, k: int, seed: int = 1):
    """Train/test features with a signal in the first two columns, in one of several awkward forms."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, 2 * n)
    x = rng.normal(size=(2 * n, d))
    x[:, 0] += 0.8 * y
    x[:, 1] += 0.5 * np.sin(y)
    if kind == "tied":  # exact ties, near-ties closer than sklearn's FEATURE_THRESHOLD (1e-7), a constant
        x = np.round(x, 1)
        x[::7, 2] += 5e-8
        x[:, -1] = 3.0
    elif kind == "duplicated":
        x[:, 3] = x[:, 0]
    elif kind == "integer":
        x = np.round(x).clip(-2, 3)
    return x[:n], y[:n], x[n:], y[n:]


def _sklearn(x, y, xt, n_estimators):
    models = [GradientBoostingClassifier(n_estimators=n_estimators, random_state=s).fit(x, y) for s in SEEDS]
    return (np.array([m.feature_importances_ for m in models]), np.array([m.predict(x) for m in models]),
            np.array([m.predict(xt) for m in models]))


@pytest.mark.parametrize("kind, n, d, k, n_estimators", [
    ("continuous", 3000, 5, 2, 20),  # binomial
    ("continuous", 3000, 5, 4, 3),  # multinomial
])
def test_same_trees_as_sklearn_without_ties(kind, n, d, k, n_estimators):
    x, y, xt, yt = _data(kind, n, d, k)
    probe = fit_probes(x, [y], xt, [yt], n_estimators=n_estimators)[0]
    imp, pred, pred_test = _sklearn(x, y, xt, n_estimators)
    assert np.ptp(imp, 0).max() < 1e-12  # sklearn's random_state makes no difference: nothing ties
    np.testing.assert_allclose(probe.importance, imp[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(probe.train_pred, pred[0])
    np.testing.assert_array_equal(probe.test_pred, pred_test[0])
    assert probe.train_accuracy == np.mean(pred[0] == y) and probe.test_accuracy == np.mean(pred_test[0] == yt)


@pytest.mark.parametrize("kind, n, d, k, n_estimators", [
    ("continuous", 400, 4, 2, 100), ("continuous", 300, 5, 4, 40), ("tied", 300, 5, 3, 40),
    ("duplicated", 300, 5, 3, 40), ("integer", 200, 3, 5, 40),
])
def test_within_sklearn_spread(kind, n, d, k, n_estimators):
    x, y, xt, yt = _data(kind, n, d, k)
    probe = fit_probes(x, [y], xt, [yt], n_estimators=n_estimators)[0]
    imp, pred, pred_test = _sklearn(x, y, xt, n_estimators)
    assert np.all(probe.importance >= imp.min(0) - 0.01) and np.all(probe.importance <= imp.max(0) + 0.01)
    acc, acc_test = (pred == y).mean(1), (pred_test == yt).mean(1)
    assert acc.min() - 0.01 <= probe.train_accuracy <= acc.max() + 0.01
    assert acc_test.min() - 0.02 <= probe.test_accuracy <= acc_test.max() + 0.02
    for mine, ref in ((probe.train_pred, pred), (probe.test_pred, pred_test)):  # as close as sklearn's seeds
        assert max(np.mean(mine == p) for p in ref) >= min(np.mean(ref[0] == p) for p in ref[1:]) - 0.03
    if kind == "tied":
        assert probe.importance[-1] == 0.0
    if kind == "duplicated":  # the two copies share the importance, as under sklearn's random feature order
        assert abs(probe.importance[0] - probe.importance[3]) < 0.1 * probe.importance[[0, 3]].sum()


@pytest.mark.parametrize("kind, n, d, k, depth", [
    ("continuous", 500, 4, 2, 3), ("continuous", 400, 5, 4, 3), ("tied", 300, 5, 3, 3), ("duplicated", 300, 5, 3, 2),
    ("integer", 200, 3, 5, 3), ("integer", 60, 3, 2, 5), ("continuous", 7, 2, 2, 3),
])
def test_compiled_engine_equals_torch_engine(kind, n, d, k, depth):
    """The CPU default (numba, one tree at a time) grows the trees of the torch engine (all at once,
    the CUDA path): same predictions, importances equal to rounding, ties and zero-gain nodes included."""
    x, y, xt, yt = _data(kind, n, d, k, seed=n)
    y2, yt2 = (x[:, 1] > 0).astype(int), (xt[:, 1] > 0).astype(int)
    fits = [fit_probes(x, [y, y2], xt, [yt, yt2], n_estimators=30, max_depth=depth, seed=2, engine=e)
            for e in ("compiled", "torch")]
    for a, b in zip(*fits):
        np.testing.assert_array_equal(a.train_pred, b.train_pred)
        np.testing.assert_array_equal(a.test_pred, b.test_pred)
        np.testing.assert_allclose(a.importance, b.importance, rtol=1e-9, atol=1e-12)


def test_engine_names_are_checked():
    x, y, xt, yt = _data("continuous", 50, 2, 2)
    with pytest.raises(ValueError, match="engine"):
        fit_probes(x, [y], xt, [yt], engine="numba")


def test_without_numba_the_cpu_default_is_the_torch_engine(monkeypatch):
    """A machine without numba (a bare GPU box) still scores DCI on CPU codes: ``auto`` picks torch's engine;
    naming ``compiled`` there says what to install."""
    import importlib.util
    import sys

    from disentkit.errors import DisentkitError

    x, y, xt, yt = _data("continuous", 120, 3, 3)
    want = fit_probes(x, [y], xt, [yt], engine="torch", n_estimators=5)[0]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "numba" else real(name, *a))
    got = fit_probes(x, [y], xt, [yt], n_estimators=5)[0]
    assert np.array_equal(got.test_pred, want.test_pred) and np.array_equal(got.importance, want.importance)
    monkeypatch.delitem(sys.modules, "disentkit.metrics.trees_cpu", raising=False)
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba now raises ImportError
    with pytest.raises(DisentkitError, match="pip install numba"):
        fit_probes(x, [y], xt, [yt], engine="compiled", n_estimators=5)


def test_several_factors_at_once_equal_one_by_one():
    x, y, xt, yt = _data("continuous", 400, 4, 3)
    y2, yt2 = (x[:, 1] > 0).astype(int), (xt[:, 1] > 0).astype(int)
    y3, yt3 = np.full(len(y), 7), np.full(len(yt), 7)  # constant factor: zero importance, accuracy 1
    both = fit_probes(x, [y, y2, y3], xt, [yt, yt2, yt3], seed=3)
    assert both[2].train_accuracy == both[2].test_accuracy == 1.0 and not both[2].importance.any()
    for probe, labels in zip(both, [(y, yt), (y2, yt2)]):
        alone = fit_probes(x, [labels[0]], xt, [labels[1]], seed=3)[0]
        np.testing.assert_array_equal(probe.train_pred, alone.train_pred)
        assert probe.test_accuracy == alone.test_accuracy
        np.testing.assert_allclose(probe.importance, alone.importance, atol=0.02)  # tie-breaks draw apart


def test_backend_is_default_recorded_and_comparable():
    three = IdentityDataset(sizes=(3, 3, 3))
    res = dci(identity, three, num_train=200, num_test=100)
    assert res["backend"] == "exact" and res["comparable_to_dlib"] is True
    assert dci(identity, three, num_train=200, num_test=100, backend="sklearn", n_jobs=1)["backend"] == "sklearn"


@pytest.fixture(scope="module")
def three():
    return IdentityDataset(sizes=(3, 3, 3))


def two_in_one(x):
    v = x.flatten(1)
    return torch.stack([3 * v[:, 0] + v[:, 1], v[:, 2]], 1)


@pytest.mark.parametrize("encoder, num, seeds", [
    (identity, 300, 1), (noise, 300, 1), (two_in_one, 300, 1), (all_constant, 100, 1), (constant_extra, 100, 1),
    (duplicated, 300, 5),  # which copy gets a split is a tie: compare with sklearn's spread over random states
])
def test_known_answer_cases_agree_with_sklearn(encoder, num, seeds, three):
    factors = {k: three.sample_factors(num, np.random.default_rng(i)) for i, k in enumerate(("train", "test"))}
    codes = {k: encoder(torch.as_tensor(three.sample_observations_from_factors(f, None))).numpy().astype(float)
             for k, f in factors.items()}
    args = (codes["train"], factors["train"], codes["test"], factors["test"])
    exact = dci_from_codes(*args, backend="exact")
    refs = [dci_from_codes(*args, backend="sklearn", seed=s) for s in range(seeds)]
    for key in ("disentanglement", "completeness", "informativeness_train", "informativeness_test"):
        ref = [r[key] for r in refs]
        assert min(ref) - 0.01 <= exact[key] <= max(ref) + 0.01, (key, exact[key], ref)
    assert not any(math.isnan(v) for v in exact.values() if isinstance(v, float))


def _realistic_code(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """dSprites factor classes and a VAE-like code: noisy nonlinear mixtures of the factors plus two
    inactive latents (posterior means squeezed near 0) and one duplicated latent."""
    factors = get_dataset("dsprites_procedural").sample_factors(n, rng)
    v = factors / np.array([2.0, 5.0, 39.0, 31.0, 31.0]) - 0.5  # each factor in [-0.5, 0.5]
    z = np.stack([np.tanh(2 * v[:, 3]) + 0.3 * v[:, 4], np.sin(2 * v[:, 4]) - 0.2 * v[:, 3],
                  v[:, 1] + 0.5 * v[:, 0] ** 2, np.cos(3 * v[:, 2]) * (1 + v[:, 1]), v[:, 0] - 0.3 * v[:, 2],
                  0.2 * v[:, 3] * v[:, 1]], 1)
    z += 0.05 * rng.normal(size=z.shape)
    inactive = 1e-3 * rng.normal(size=(n, 2))
    return factors, np.concatenate([z, inactive, z[:, :1]], 1).astype(np.float32).astype(np.float64)


@pytest.mark.slow
def test_realistic_code_agrees_with_sklearn():
    """2,000 / 1,000 points of a 9-latent code of the 5 dSprites factors (113 trees a stage); sklearn ≈ 45 s."""
    rng = np.random.default_rng(0)
    f, z = _realistic_code(2000, rng)
    ft, zt = _realistic_code(1000, rng)
    exact = dci_from_codes(z, f, zt, ft, backend="exact")
    ref = dci_from_codes(z, f, zt, ft, backend="sklearn", n_jobs=2)
    for key in ("disentanglement", "completeness", "informativeness_train", "informativeness_test"):
        assert exact[key] == pytest.approx(ref[key], abs=0.01), key
    np.testing.assert_allclose(exact["importance_matrix"], ref["importance_matrix"], atol=0.03)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    x, y, xt, yt = _data("tied", 300, 5, 3)
    cpu, cuda = (fit_probes(x, [y], xt, [yt], device=dev, n_estimators=40)[0] for dev in ("cpu", "cuda"))
    np.testing.assert_array_equal(cpu.train_pred, cuda.train_pred)
    np.testing.assert_array_equal(cpu.test_pred, cuda.test_pred)
    np.testing.assert_allclose(cpu.importance, cuda.importance, atol=1e-9)
