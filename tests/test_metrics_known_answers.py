"""Known-answer cases for every metric (in the spirit of disentanglement_lib's metric tests).

Representations of an ``IdentityDataset`` (observations = factor classes): the identity, a random
rotation, pure noise, duplicated latents, constant extra dims, one code covering two factors.
Sample sizes are small to keep the suite fast; the expected values are written out.
"""

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from disentkit.testing import IdentityDataset

from disentkit.metrics import (beta_vae_score, completeness, dci, disentanglement, factor_vae_from_codes,
                               factor_vae_score, im, im_from_mi, irs, irs_from_codes, mig, modularity,
                               modularity_from_mi, sap, sap_from_codes, unsupervised)
from disentkit.metrics.unsupervised import gaussian_total_correlation, gaussian_wasserstein_correlation

LN2_LN10 = math.log(2) / math.log(10)
Q = torch.as_tensor(np.linalg.qr(np.random.default_rng(0).normal(size=(5, 5)))[0])


def identity(x):
    return x.flatten(1)


def rotation(x):
    return x.flatten(1).double() @ Q


def noise(x):  # fresh noise on every call, reproducible (seeded by the batch)
    return torch.randn(len(x), 5, generator=torch.Generator().manual_seed(int(x.sum()) + len(x)))


noise.deterministic = False  # a stochastic encoder: metrics must call it for every draw


def duplicated(x):
    return torch.cat([x.flatten(1), x.flatten(1)], 1)


def constant_extra(x):
    return torch.cat([x.flatten(1), torch.zeros(len(x), 3)], 1)


def all_constant(x):
    return torch.zeros(len(x), 4)


@pytest.fixture(scope="module")
def binary():
    return IdentityDataset(sizes=(2, 2, 2, 2, 2))


@pytest.fixture(scope="module")
def ten():
    return IdentityDataset()


# ----------------------------------------------------------------------------------- I_m
def test_im_pure_matching():
    mi = np.array([[1.0, 0.2], [0.3, 0.5], [0.9, 0.1]])
    out = im_from_mi(mi, np.array([2.0, 1.0]))
    assert out["im"] == pytest.approx(1.5) and out["im_normalized"] == pytest.approx(0.5)
    assert out["im_matching"] == {0: 0, 1: 1}


def test_im_identity_rotation_noise(ten):
    ident = im(identity, ten, num_train=5000)
    assert ident["im_normalized"] == pytest.approx(1.0, abs=1e-12)
    assert ident["im"] == pytest.approx(5 * math.log(10), abs=0.02)  # Σ H(v_k) in nats
    assert im(rotation, ten, num_train=5000)["im_normalized"] < 0.5
    assert im(noise, ten, num_train=5000)["im_normalized"] < 0.02


# ----------------------------------------------------------------------------------- SAP
def test_sap_pure_matrix():
    codes = np.array([[0.0, 5.0], [1.0, 5.0]] * 50)
    ys = np.array([[0], [1]] * 50)
    out = sap_from_codes(codes, ys, codes, ys)
    assert out["score_matrix"] == [[1.0], [0.5]] and out["sap"] == pytest.approx(0.5)


def test_sap_discrete_binary_identity_and_duplicates(binary):
    assert sap(identity, binary, num_train=2000, num_test=1000)["sap"] == pytest.approx(0.5, abs=0.05)
    assert sap(duplicated, binary, num_train=2000, num_test=1000)["sap"] == 0.0
    assert sap(all_constant, binary, num_train=2000, num_test=1000)["sap"] == 0.0


def test_sap_continuous_variant(ten):
    kw = dict(num_train=3000, num_test=100, continuous_factors=True)
    assert sap(identity, ten, **kw)["sap"] >= 0.99
    assert sap(all_constant, ten, **kw)["sap"] == 0.0
    assert sap(duplicated, ten, **kw)["sap"] == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------------- DCI
@pytest.mark.parametrize("matrix, d, c", [
    (np.diag(5.0 * np.ones(5)), 1.0, 1.0),
    (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 1.0, 1.0),  # an empty code
    (np.zeros((10, 10)), 0.0, 0.0),
    (np.vstack([np.diag(5.0 * np.ones(5))] * 2), 1.0, 1 - LN2_LN10),  # redundant codes
    (np.diag(5.0 * np.ones(5))[:2], 1.0, 1.0),  # missed factors
    (np.hstack([np.diag(5.0 * np.ones(5))] * 2), 1 - LN2_LN10, 1.0),  # one code, two factors
])
def test_dci_entropy_formulas(matrix, d, c):
    assert disentanglement(matrix) == pytest.approx(d, abs=1e-7)
    assert completeness(matrix) == pytest.approx(c, abs=1e-7)


@pytest.fixture(scope="module")
def three():
    return IdentityDataset(sizes=(3, 3, 3))


def test_dci_identity_and_noise(three):
    kw = dict(num_train=300, num_test=300, n_jobs=1)
    good = dci(identity, three, **kw)
    assert good["disentanglement"] > 0.95 and good["completeness"] > 0.95
    assert good["informativeness_test"] == 1.0 and good["dci"] == good["disentanglement"]
    bad = dci(noise, three, **kw)
    assert bad["disentanglement"] < 0.2 and bad["informativeness_test"] < 0.5


def test_dci_one_code_two_factors(three):
    """Latent 0 = 3·v0 + v1 codes two factors, latent 1 = v2: R = [[1, 1, 0], [0, 0, 1]]
    -> disentanglement = 1 − (2/3)·ln2/ln3, completeness = 1."""
    def two_in_one(x):
        v = x.flatten(1)
        return torch.stack([3 * v[:, 0] + v[:, 1], v[:, 2]], 1)

    res = dci(two_in_one, three, num_train=300, num_test=300, n_jobs=1)
    assert res["disentanglement"] == pytest.approx(1 - 2 / 3 * math.log(2) / math.log(3), abs=0.03)
    assert res["completeness"] == pytest.approx(1.0, abs=0.03)


# ----------------------------------------------------------------------------------- FactorVAE score
FV = dict(num_variance_estimate=2000, num_train=300, num_eval=200)


def test_factor_vae_identity_duplicates_constant_dims(ten):
    assert factor_vae_score(identity, ten, **FV)["eval_accuracy"] == 1.0
    dup = factor_vae_score(duplicated, ten, **FV)
    assert dup["eval_accuracy"] == 1.0 and dup["num_active_dims"] == 10
    const = factor_vae_score(constant_extra, ten, **FV)
    assert const["eval_accuracy"] == 1.0 and const["num_active_dims"] == 5  # the true count (dlib: 8)


def test_factor_vae_all_constant_is_zero_not_nan(ten):
    res = factor_vae_score(all_constant, ten, **FV)
    assert res["factor_vae_score"] == 0.0 and res["num_active_dims"] == 0


def test_factor_vae_prunes_std_below_threshold(ten):
    """Latent 0 scaled by 0.01 has std ≈ 0.029 < 0.05: pruned; its factor's votes go astray."""
    res = factor_vae_score(lambda x: x.flatten(1) * torch.tensor([0.01, 1, 1, 1, 1]), ten, **FV)
    assert res["num_active_dims"] == 4 and res["active_dims"] == [1, 2, 3, 4]
    assert 0.7 <= res["eval_accuracy"] <= 0.9


def test_factor_vae_noise_and_rotation(ten):
    assert factor_vae_score(noise, ten, **FV)["eval_accuracy"] < 0.4
    assert factor_vae_score(rotation, ten, **FV)["eval_accuracy"] < 0.95


def test_factor_vae_pure_votes():
    var_codes = np.random.default_rng(0).normal(size=(100, 2))
    group = np.ones((4, 3, 2))
    group[:, :, 0] = [[0, 1, 2]] * 4  # latent 1 is constant within every group -> every vote for it
    out = factor_vae_from_codes(var_codes, np.array([0, 0, 1, 0]), group, np.array([0, 1]), group[:2], 2)
    assert out["train_votes"] == [[0, 3], [0, 1]]
    assert out["train_accuracy"] == 0.75 and out["eval_accuracy"] == 0.5


# ----------------------------------------------------------------------------------- BetaVAE score
BV = dict(num_train=300, num_eval=200)


def test_beta_vae_identity_noise_constant(ten):
    assert beta_vae_score(identity, ten, **BV)["eval_accuracy"] == 1.0
    assert beta_vae_score(constant_extra, ten, **BV)["eval_accuracy"] == 1.0
    assert beta_vae_score(noise, ten, **BV)["eval_accuracy"] < 0.4
    res = beta_vae_score(all_constant, ten, **BV)
    assert np.isfinite(res["eval_accuracy"]) and res["eval_accuracy"] < 0.4


# ----------------------------------------------------------------------------------- Modularity, explicitness
@pytest.mark.parametrize("matrix, expected", [
    (np.diag(5.0 * np.ones(5)), 1.0),
    (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 2 / 3),  # an empty code scores 0
    (np.zeros((10, 10)), 0.0),
    (np.vstack([np.diag(5.0 * np.ones(5))] * 2), 1.0),
    (np.hstack([np.diag(5.0 * np.ones(5))] * 2), 8 / 9),  # 1 − 1/(K − 1), K = 10
])
def test_modularity_formula(matrix, expected):
    assert modularity_from_mi(matrix)[0] == pytest.approx(expected)


def test_modularity_explicitness_end_to_end(binary, ten):
    good = modularity(identity, binary, num_train=2000, num_test=1000)
    assert good["modularity"] == pytest.approx(1.0, abs=1e-3)
    assert good["explicitness_test"] == pytest.approx(1.0)
    const = modularity(constant_extra, binary, num_train=2000, num_test=1000)
    assert const["modularity"] == pytest.approx(5 / 8, abs=1e-3)  # 3 empty codes score 0
    assert const["explicitness_test"] == pytest.approx(1.0)
    bad = modularity(noise, binary, num_train=2000, num_test=1000)
    assert bad["explicitness_test"] == pytest.approx(0.5, abs=0.05)


# ----------------------------------------------------------------------------------- IRS
def test_irs_identity_constant_noise(ten):
    assert irs(identity, ten, num_train=3000)["irs"] == pytest.approx(1.0)
    c = irs(constant_extra, ten, num_train=3000)
    assert c["irs"] == pytest.approx(1.0) and c["num_active_dims"] == 5
    assert irs(all_constant, ten, num_train=3000) ["irs"] == 0.0
    assert irs(noise, ten, num_train=3000)["irs"] < 0.5
    assert irs(rotation, ten, num_train=3000)["irs"] < 0.8


def test_irs_pure_case():
    factors = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 25)
    codes = factors[:, :1].astype(float) * 2.0  # latent = 2·v0: within v0 groups no deviation
    out = irs_from_codes(codes, factors)
    assert out["irs"] == pytest.approx(1.0) and out["parents"] == [0]


# ----------------------------------------------------------------------------------- unsupervised
def test_gaussian_formulas():
    rho = 0.6
    cov = np.array([[1.0, rho], [rho, 1.0]])
    assert gaussian_total_correlation(cov) == pytest.approx(-0.5 * math.log(1 - rho ** 2))
    dlib_wc = 2 * np.trace(cov) - 2 * np.trace(scipy.linalg.sqrtm(cov * np.diag(cov)[:, None])).real
    assert gaussian_wasserstein_correlation(cov) == pytest.approx(dlib_wc)
    assert gaussian_wasserstein_correlation(cov) == pytest.approx(4 - 2 * (math.sqrt(1 + rho) + math.sqrt(1 - rho)))
    assert gaussian_total_correlation(np.diag([1.0, 2.0, 0.0])) == 0.0  # constant latent: no NaN


def test_unsupervised_identity_duplicates_constant(ten):
    ident = unsupervised(identity, ten, num_train=5000)
    assert ident["gaussian_total_correlation"] < 0.01 and ident["unsupervised"] < 0.02
    dup = unsupervised(duplicated, ten, num_train=5000)
    # each latent has a twin (MI = H = ln 10) among 9 others: mean pairwise MI ≈ ln(10) / 9
    assert dup["unsupervised"] == pytest.approx(math.log(10) / 9, abs=0.02)
    const = unsupervised(constant_extra, ten, num_train=5000)
    assert all(np.isfinite(v) for k, v in const.items() if isinstance(v, float))


# ----------------------------------------------------------------------------------- every metric
@pytest.mark.parametrize("fn, kw", [
    (mig, {}), (im, {}), (sap, dict(num_train=500, num_test=200)), (irs, {}), (unsupervised, {}),
    (factor_vae_score, FV), (beta_vae_score, BV), (modularity, dict(num_train=500, num_test=200)),
    (dci, dict(num_train=100, num_test=100, n_jobs=1)),
])
@pytest.mark.parametrize("encoder", [all_constant, constant_extra])
def test_no_nan_with_constant_latents(fn, kw, encoder, three):
    res = fn(encoder, three, seed=0, **kw)
    values = [v for v in res.values() if isinstance(v, float)]
    assert values and not any(math.isnan(v) for v in values)


def test_dci_lightgbm_backend_is_labelled_not_comparable(three):
    pytest.importorskip("lightgbm")
    res = dci(identity, three, num_train=300, num_test=300, n_jobs=1, backend="lightgbm")
    assert res["disentanglement"] > 0.95 and res["completeness"] > 0.95
    assert res["comparable_to_dlib"] is False
    assert dci(identity, three, num_train=100, num_test=100, n_jobs=1, n_estimators=5)["comparable_to_dlib"] is False
