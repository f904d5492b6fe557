"""Chen et al.'s MIG with their sampled-posterior estimator (``chen_mig``), on known posteriors over an
``IdentityDataset`` grid (images = factor classes): encode functions carry a ``.posterior`` giving (μ, log σ²).

The 10 x 10 x 10 grid (N = 1,000) is small enough that every image is a Monte-Carlo sample (S = N); the
values measured with seed 0 are written beside each assertion.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from disentkit.testing import IdentityDataset

from disentkit.errors import DisentkitError
from disentkit.metrics import evaluate, resolve_metrics
from disentkit.metrics.chen_mig import NO_POSTERIOR, chen_mig, chen_mig_from_posterior

DS = IdentityDataset((10, 10, 10))
LOG10 = math.log(10)
TINY = math.log(0.01 ** 2)                       # σ = 0.01: the grid's unit spacing is 100 σ
GAUSS_ENTROPY = 0.5 * math.log(2 * math.pi * math.e)   # H(N(0, 1)) = 1.4189 nats
Q = torch.as_tensor(np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0])
NOISE = torch.randn(DS.num_images, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def with_posterior(mean, logvar: float = TINY):
    """An encode function (the means) whose ``.posterior`` is N(mean(factors), exp(logvar)) per latent."""
    def encode(x):
        return mean(x.flatten(1).double())

    def posterior(x):
        mu = mean(x.flatten(1).double())
        return mu, torch.full_like(mu, logvar)

    encode.posterior = posterior
    return encode


identity = with_posterior(lambda f: f)
rotation = with_posterior(lambda f: f @ Q)
duplicated = with_posterior(lambda f: torch.cat([f, f], 1))
noise = with_posterior(lambda f: NOISE[DS.factors_to_index(f.long())], logvar=0.0)       # unit-variance posteriors
noise_tiny = with_posterior(lambda f: NOISE[DS.factors_to_index(f.long())])
sum_of_two = with_posterior(lambda f: torch.stack([f[:, 0] + f[:, 1], f[:, 2]], 1))      # z0 = v0 + v1, z1 = v2
pair_code = with_posterior(lambda f: torch.stack([10 * f[:, 0] + f[:, 1], f[:, 2]], 1))  # z0 = (v0, v1) exactly
standard_normal = with_posterior(lambda f: torch.zeros(len(f), 3, dtype=torch.float64), logvar=0.0)


def test_identity_carries_each_factor_in_its_own_latent():
    out = chen_mig(identity, DS)
    assert out["chen_mig"] > 0.999, out["chen_mig"]                      # measured 1.0000
    mi = np.array(out["mi_matrix"])
    assert mi.shape == (3, 3) and out["num_images"] == 1000
    np.testing.assert_allclose(np.diag(mi), LOG10, atol=1e-6)             # I(z_k; v_k) = H(v_k) = log 10
    assert np.abs(mi - np.diag(np.diag(mi))).max() < 1e-6                # the others exactly 0 on a full grid
    np.testing.assert_allclose(out["factor_entropy"], [LOG10] * 3)
    # H(z_j) = log 10 + H(N(0, σ²)) = −0.8800; measured −0.8805, −0.8923, −0.8863 (1,000 samples)
    np.testing.assert_allclose(out["marginal_entropy"], LOG10 + GAUSS_ENTROPY + 0.5 * TINY, atol=0.05)
    assert set(out["mig_per_factor"]) == {"f0", "f1", "f2"}
    assert out["params"] == {"num_samples": 10000, "max_images": None, "seed": 0}


def test_rotation_spreads_every_factor_over_the_latents():
    out = chen_mig(rotation, DS)
    assert 0.1 < out["chen_mig"] < 0.4, out["chen_mig"]                  # measured 0.2912 (identity: 1.0)
    assert min(out["mig_per_factor"].values()) < 0.15                    # measured f0 0.105, f1 0.307, f2 0.463
    assert np.array(out["mi_matrix"]).min() > 0.8                        # every latent informs every factor


def test_noise_carries_no_information():
    out = chen_mig(noise, DS)
    assert abs(out["chen_mig"]) < 0.01, out["chen_mig"]                  # measured 0.0006
    assert np.abs(out["mi_matrix"]).max() < 0.05                         # measured ≤ 0.020 (finite-grid bias)
    # near-deterministic noise: each image is its own cluster, so every latent "knows" every factor a little
    # (the estimator's finite-grid limit), yet no latent stands out: the gap stays ≈ 0
    tiny = chen_mig(noise_tiny, DS)
    assert np.array(tiny["mi_matrix"]).min() > 0.3 and tiny["chen_mig"] < 0.05   # measured MI ≥ 0.52, 0.0088


def test_duplicated_latents_close_every_gap():
    out = chen_mig(duplicated, DS)
    assert abs(out["chen_mig"]) < 1e-6, out["chen_mig"]                  # measured 0.0 (top two both log 10)
    mi = np.array(out["mi_matrix"])
    np.testing.assert_allclose(mi[:3], mi[3:], atol=1e-6)


def test_one_latent_for_two_factors():
    """z0 = v0 + v1: I(z0; v0) = H(v0 + v1) − log 10 = 0.4912 nats (the triangular law's entropy 2.7938 minus
    log 10), normalised 0.2133; v2 keeps its own latent. A code of the pair itself, z0 = 10·v0 + v1, tells each
    factor exactly: MIG does not penalise one latent for two factors (per factor it only asks for a gap)."""
    p = np.convolve(np.ones(10), np.ones(10)) / 100
    expected = -(p * np.log(p)).sum() - LOG10
    out = chen_mig(sum_of_two, DS)
    mi = np.array(out["mi_matrix"])
    np.testing.assert_allclose(mi[0, :2], expected, atol=1e-3)            # measured 0.4912
    per = out["mig_per_factor"]
    assert abs(per["f0"] - expected / LOG10) < 1e-3 and abs(per["f1"] - expected / LOG10) < 1e-3   # 0.2133
    assert per["f2"] > 0.999                                             # measured 1.0000
    assert 0.45 < out["chen_mig"] < 0.5                                  # measured 0.4755 = (2 · 0.2133 + 1) / 3
    paired = chen_mig(pair_code, DS)["mig_per_factor"]
    assert min(paired.values()) > 0.999                                  # measured 1.0, 1.0, 1.0


def test_entropy_estimator_on_a_standard_normal_aggregate():
    """μ = 0, log σ² = 0 for every image: q(z_j) = N(0, 1), so H(z_j) = ½ log(2πe) and every MI is 0."""
    out = chen_mig(standard_normal, DS)
    h = np.array(out["marginal_entropy"])
    # the per-sample −log q has sd √½: one latent's 1,000-sample mean is within 0.07 (3 sd); measured
    # 1.4221, 1.4103, 1.4163 (mean 1.4162)
    assert np.abs(h - GAUSS_ENTROPY).max() < 0.07 and abs(h.mean() - GAUSS_ENTROPY) < 0.04, h
    assert np.abs(out["mi_matrix"]).max() < 1e-12 and abs(out["chen_mig"]) < 1e-12    # every log q(z|v) = log q(z)


def test_estimator_equals_a_direct_logsumexp():
    """Against the definition written out in one logsumexp (the same one z per image, drawn first from the
    seed; with S ≥ N every image is a sample, so the order of the sample draw does not matter), with
    log-variances from −20 to 5 (σ from 5e-5 to 12) so that the chunks' common shift is put to work."""
    rng = np.random.default_rng(1)
    factors = DS.index_to_factors(np.arange(DS.num_images))[:200]          # a 2 x 10 x 10 sub-grid
    mu = torch.as_tensor(rng.normal(size=(200, 2)) + factors[:, 1:] * 0.5)
    logvar = torch.as_tensor(rng.uniform(-20, 5, size=(200, 2)))

    def direct(members):
        z = mu + torch.exp(0.5 * logvar) * torch.randn(200, 2, generator=torch.Generator().manual_seed(3),
                                                       dtype=torch.float64)
        zs, m, lv = z[members], mu[members], logvar[members]
        log_density = -0.5 * (math.log(2 * math.pi) + lv[None] + (zs[:, None] - m[None]) ** 2 * torch.exp(-lv[None]))
        return -(torch.logsumexp(log_density, 1) - math.log(len(members))).mean(0).numpy()

    out = chen_mig_from_posterior(mu, logvar, factors, (2, 10, 10), num_samples=10_000, seed=3)
    h = direct(np.arange(200))
    np.testing.assert_allclose(out["marginal_entropy"], h, rtol=1e-10, atol=1e-10)
    for k, size in enumerate((2, 10, 10)):
        cond = sum(direct(np.flatnonzero(factors[:, k] == v)) for v in range(size)) / size
        np.testing.assert_allclose(np.array(out["mi_matrix"])[:, k], h - cond, rtol=1e-9, atol=1e-9)
    mi = np.maximum(np.array(out["mi_matrix"]), 0) / np.log([2, 10, 10])
    top = np.sort(mi, 0)
    assert out["chen_mig"] == pytest.approx(float((top[-1] - top[-2]).mean()), abs=1e-12)


def test_a_single_valued_factor_scores_0_and_one_latent_has_no_second():
    ds = IdentityDataset((1, 6, 6))
    out = chen_mig(identity, ds)
    assert out["factor_entropy"][0] == 0.0 and out["mig_per_factor"]["f0"] == 0.0
    assert out["chen_mig"] == pytest.approx(2 / 3, abs=1e-6)              # measured 0.6667: f1, f2 score 1
    one = chen_mig(with_posterior(lambda f: f[:, 1:2]), ds)              # one latent, = v1
    assert np.array(one["mi_matrix"]).shape == (1, 3)
    assert one["mig_per_factor"] == pytest.approx({"f0": 0.0, "f1": 1.0, "f2": 0.0}, abs=1e-6)


def test_max_images_and_num_samples_estimate_within_a_draw():
    """400 of the 1,000 images: q(z_j) mixes 400 posteriors, each subset holds the drawn images with its value and
    p(v) is their share, so the draw's chance dependence between factors shows as MI (the plug-in bias of 400
    draws over 10 x 10 values); fewer samples than images add Monte-Carlo noise (H(z) and each H(z|v) on
    their own samples, as Chen et al.'s estimator)."""
    out = chen_mig(identity, DS, max_images=400)
    assert out["num_images"] == 400 and 0.95 < out["chen_mig"] < 1.0     # measured 0.9688
    mi = np.array(out["mi_matrix"])
    np.testing.assert_allclose(np.diag(mi), LOG10, atol=0.03)            # measured 2.2944, 2.2923, 2.2997
    assert np.abs(mi - np.diag(np.diag(mi))).max() < 0.1                 # measured ≤ 0.0654
    assert out["params"] == {"num_samples": 10000, "max_images": 400, "seed": 0}
    assert chen_mig(identity, DS, max_images=400, num_samples=100)["chen_mig"] > 0.9   # measured 0.9601
    assert chen_mig(identity, DS, num_samples=200)["chen_mig"] > 0.98                  # measured 0.9928
    assert chen_mig(identity, DS, max_images=5000)["num_images"] == 1000  # more than the grid: all of it


def test_same_seed_same_value_and_the_seed_matters():
    a, b = chen_mig(rotation, DS, num_samples=300), chen_mig(rotation, DS, num_samples=300)
    assert a == b
    c = chen_mig(rotation, DS, num_samples=300, seed=1)
    assert c["chen_mig"] != a["chen_mig"] and abs(c["chen_mig"] - a["chen_mig"]) < 0.05   # measured 0.2896, 0.2913
    sub = chen_mig(identity, DS, max_images=300, seed=2), chen_mig(identity, DS, max_images=300, seed=2)
    assert sub[0] == sub[1]


def test_errors_are_one_line():
    with pytest.raises(DisentkitError) as err:
        chen_mig(lambda x: x.flatten(1), DS)                             # a plain encoder: no posterior
    assert str(err.value) == NO_POSTERIOR
    assert str(err.value) == ("chen_mig needs an encoder's posterior (mean and log-variance): score a trained VAE "
                              "(disentkit.load(run)), or give the encode function a .posterior(images) -> (mu, logvar)")
    with pytest.raises(DisentkitError, match="max_images must be None \\(the full grid\\) or an integer ≥ 2"):
        chen_mig(identity, DS, max_images=1)
    with pytest.raises(DisentkitError, match="num_samples must be an integer ≥ 2"):
        chen_mig(identity, DS, num_samples=0.5)
    nan = with_posterior(lambda f: f * float("nan"))
    with pytest.raises(DisentkitError, match="posterior is non-finite"):
        chen_mig(nan, DS, max_images=10)
    with pytest.raises(DisentkitError, match="log-variances reach 800; beyond ±500"):
        chen_mig(with_posterior(lambda f: f, logvar=-800.0), DS, max_images=10)


def test_registered_in_extended_beside_mig():
    assert "chen_mig" in resolve_metrics("extended") and "chen_mig" not in resolve_metrics("all")
    assert "mig" in resolve_metrics("all")
    both = evaluate(identity, DS, "mig,chen_mig", params={"mig": {"num_train": 500}, "chen_mig": {"num_samples": 200}})
    assert both["chen_mig"] == chen_mig(identity, DS, num_samples=200)    # as if run alone
    assert both["mig"]["mig"] > 0.9 and both["chen_mig"]["chen_mig"] > 0.98    # measured 0.9601, 0.9928


def test_a_real_vae_posterior():
    """An untrained GaussianVAE on procedural dSprites, 2,000 grid images: its posterior is scored end to end."""
    from disentkit.data import get_dataset
    from disentkit.metrics import representation_function
    from disentkit.models import GaussianVAE

    torch.manual_seed(0)
    encode = representation_function(GaussianVAE(latent_dim=4))
    ds = get_dataset("dsprites_procedural")
    out = chen_mig(encode, ds, max_images=2000, num_samples=500)
    assert out["num_images"] == 2000 and list(out["mig_per_factor"]) == list(ds.factor_names)
    assert np.array(out["mi_matrix"]).shape == (4, 5) and len(out["marginal_entropy"]) == 4
    assert 0.0 <= out["chen_mig"] < 0.05, out["chen_mig"]                # untrained: measured 0.0022
    assert out == chen_mig(encode, ds, max_images=2000, num_samples=500)
