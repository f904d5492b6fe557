"""Each objective's loss against a hand computation on tiny tensors."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from disentkit.models import OBJECTIVES, VAEOutput, get_objective
from disentkit.models.adaptive_beta_vae import adaptive_betas, pairwise_gaussian_mi
from disentkit.models.annealed_vae import capacity
from disentkit.models.base import batch_covariance, gaussian_kl
from disentkit.models.beta_tcvae import kl_decomposition, mss_log_weights
from disentkit.models.dip_vae import dip_terms
from disentkit.models.factor_vae import discriminator, discriminator_logs, discriminator_loss, permute_dims

NEW = ["factor_vae", "lambda_beta_vae", "annealed_vae", "beta_tcvae", "dip_vae_i", "dip_vae_ii",
       "learnable_beta_vae", "adaptive_beta_vae", "hfs_vae", "hfs_tcvae", "ada_gvae", "ada_ml_vae",
       "pairwise_adaptive_vae"]


def tiny_out(b=4, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu, logvar = torch.randn(b, d, generator=g), 0.3 * torch.randn(b, d, generator=g)
    z = mu + (0.5 * logvar).exp() * torch.randn(b, d, generator=g)
    x = (torch.rand(b, 1, 2, 2, generator=g) > 0.5).float()
    return VAEOutput(mu, logvar, z, torch.randn(b, 1, 2, 2, generator=g)), x


def rec_kl(out, x):
    p = torch.sigmoid(out.logits)
    rec = -(x * p.log() + (1 - x) * (1 - p).log()).sum((1, 2, 3)).mean()
    kl = (0.5 * (out.mu ** 2 + out.logvar.exp() - out.logvar - 1)).sum(1).mean()
    return rec, kl


def test_every_method_is_registered():
    assert set(NEW) <= set(OBJECTIVES)


@pytest.mark.parametrize("name", NEW)
def test_logs_are_tensors_under_stable_names(name):
    out, x = tiny_out()
    obj = get_objective(name)(latent_dim=3, dataset_size=100)
    terms = obj.loss(out, x, 0)
    assert terms.loss.ndim == 0 and torch.isfinite(terms.loss)
    assert {"loss", "reconstruction", "kl", "elbo"} <= set(terms.logs)
    for k, v in terms.logs.items():
        assert isinstance(v, torch.Tensor) and v.ndim == 0, k


# ----------------------------------------------------------------------------------- FactorVAE
def test_permute_dims_permutes_each_column_independently():
    torch.manual_seed(0)
    z = torch.arange(40.0).view(10, 4) * torch.tensor([1.0, 100, 1e4, 1e6])
    zp = permute_dims(z)
    for j in range(4):   # each column holds exactly the same values, reordered
        assert torch.equal(zp[:, j].sort().values, z[:, j].sort().values)
    rows = {tuple(r.tolist()) for r in z}
    assert sum(tuple(r.tolist()) in rows for r in zp) < 10   # rows are mixed across samples
    orders = [zp[:, j].argsort().tolist() for j in range(4)]
    assert len({tuple(o) for o in orders}) > 1               # not one shared permutation


def test_factor_vae_tc_and_loss_by_hand():
    out, x = tiny_out(b=5, d=2)
    obj = get_objective("factor_vae")(latent_dim=2, gamma=7.0)
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 0.0]]))
        lin.bias.copy_(torch.tensor([0.3, -0.1]))
    obj.discriminator = lin
    z = out.z
    l0, l1 = z[:, 0] - 2 * z[:, 1] + 0.3, 0.5 * z[:, 0] - 0.1
    tc = (l0 - l1).mean()                       # log D/(1-D) of the "real" class
    terms = obj.loss(out, x, 0)
    rec, kl = rec_kl(out, x)
    torch.testing.assert_close(terms.logs["tc"], tc)
    torch.testing.assert_close(terms.loss, rec + kl + 7.0 * tc)
    torch.testing.assert_close(terms.logs["d_z_real"], torch.sigmoid(l0 - l1).mean())


def test_discriminator_loss_accuracy_and_probabilities_by_hand():
    real = torch.tensor([[2.0, 0.0], [0.0, 1.0]])     # P(real) = σ(2), σ(-1)
    perm = torch.tensor([[0.0, 3.0], [1.0, 0.0]])     # P(real) = σ(-3), σ(1)
    s = torch.sigmoid
    expected = -0.5 * ((s(torch.tensor(2.0)).log() + s(torch.tensor(-1.0)).log()) / 2
                       + ((1 - s(torch.tensor(-3.0))).log() + (1 - s(torch.tensor(1.0))).log()) / 2)
    torch.testing.assert_close(discriminator_loss(real, perm), expected)
    logs = discriminator_logs(real, perm)
    torch.testing.assert_close(logs["d_z_real"], (s(torch.tensor(2.0)) + s(torch.tensor(-1.0))) / 2)
    torch.testing.assert_close(logs["d_z_perm"], (s(torch.tensor(-3.0)) + s(torch.tensor(1.0))) / 2)
    assert float(logs["disc_accuracy"]) == 0.5           # right on rows 0 of each, wrong on rows 1


def test_discriminator_tc_estimate_converges_to_a_known_tc():
    """For z ~ N(0, R) with equicorrelation ρ, TC = −½ log det R; D trained on z vs permuted z recovers it."""
    torch.manual_seed(0)
    d, rho = 4, 0.8
    corr = torch.full((d, d), rho) + torch.eye(d) * (1 - rho)
    chol = torch.linalg.cholesky(corr)
    true_tc = -0.5 * torch.logdet(corr).item()                            # 1.80 nats
    disc = discriminator(d, hidden=128, layers=2)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-3, betas=(0.5, 0.9))
    for _ in range(300):
        z = torch.randn(64, d) @ chol.T
        loss = discriminator_loss(disc(z), disc(permute_dims(z)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits = disc(torch.randn(8192, d) @ chol.T)
    assert (logits[:, 0] - logits[:, 1]).mean().item() == pytest.approx(true_tc, abs=0.35)


def test_factor_vae_discriminator_shape_and_phases():
    """Two phases, two optimizers: the VAE's Adam has no discriminator weight; D's Adam has D's weights only,
    with disc_lr and betas (0.5, 0.9)."""
    from disentkit.train.members import Single
    from disentkit.train.step import make_optimizers

    d = discriminator(10)
    linears = [m for m in d if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [1000] * 6 + [2]
    assert sum(isinstance(m, nn.LeakyReLU) for m in d) == 6
    cfg = dict(model="factor_vae", architecture="locatello", channels=1, latent_dim=10, reconstruction="bernoulli",
               hparams={"gamma": 5.0, "disc_lr": 1e-4, "disc_hidden": 1000, "disc_layers": 6,
                        "permutation": "same_batch"}, lr=1e-3, batch_size=8, seed=0)
    member = Single(cfg, torch.device("cpu"))
    assert [ph.name for ph in member.objective.phases] == ["vae", "discriminator"]
    vae_opt, d_opt = make_optimizers(member, cfg)
    vae_ids = {id(p) for g in vae_opt.param_groups for p in g["params"]}
    assert vae_ids == {id(p) for p in member.vae.parameters()}          # no discriminator weight in it
    assert {id(p) for g in d_opt.param_groups for p in g["params"]} == \
        {id(p) for p in member.objective.discriminator.parameters()}
    assert d_opt.param_groups[0]["lr"] == 1e-4 and d_opt.param_groups[0]["betas"] == (0.5, 0.9)
    assert vae_opt.param_groups[0]["lr"] == 1e-3 and vae_opt.param_groups[0]["betas"] == (0.9, 0.999)
    assert any(k.startswith("objective.discriminator.") for k in member.member_state(0))


# ----------------------------------------------------------------------------------- λβ-VAE
def test_lambda_beta_vae_loss_by_hand():
    out, x = tiny_out()
    terms = get_objective("lambda_beta_vae")(beta=3.0, lam=2.5).loss(out, x, 0)
    rec, kl = rec_kl(out, x)
    mse = (torch.sigmoid(out.logits) - x).square().sum((1, 2, 3)).mean()
    torch.testing.assert_close(terms.logs["mse"], mse)
    torch.testing.assert_close(terms.loss, rec + 3.0 * kl + 2.5 * mse)
    zero = get_objective("lambda_beta_vae")(beta=3.0, lam=0.0).loss(out, x, 0)
    torch.testing.assert_close(zero.loss, rec + 3.0 * kl)    # λ = 0 is the β-VAE control


# ----------------------------------------------------------------------------------- AnnealedVAE
def test_capacity_schedule():
    assert capacity(0, 25.0, 100_000) == 0.0
    assert capacity(50_000, 25.0, 100_000) == 12.5
    assert capacity(100_000, 25.0, 100_000) == 25.0
    assert capacity(250_000, 25.0, 100_000) == 25.0
    assert capacity(3, 10.0, 0) == 10.0


def test_annealed_vae_loss_by_hand():
    out, x = tiny_out()
    obj = get_objective("annealed_vae")(c_max=10.0, anneal_steps=100)
    assert obj.gamma == 1000.0
    rec, kl = rec_kl(out, x)
    for step, c in ((0, 0.0), (30, 3.0), (500, 10.0)):
        terms = obj.loss(out, x, step)
        torch.testing.assert_close(terms.logs["capacity"], torch.tensor(c))
        torch.testing.assert_close(terms.loss, rec + 1000.0 * (kl - c).abs())


# ----------------------------------------------------------------------------------- β-TCVAE
def test_tc_decomposition_sums_to_the_kl():
    out, _ = tiny_out(b=6, d=3)
    for est in ("mws", "mss"):
        parts = kl_decomposition(out.z, out.mu, out.logvar, dataset_size=1000, estimator=est)
        torch.testing.assert_close(parts["mi"] + parts["tc"] + parts["dwkl"], parts["kl_mc"])
    # in expectation over z ~ q(z|x) the Monte-Carlo KL is the closed-form KL
    torch.manual_seed(0)
    mu, logvar = out.mu, out.logvar
    draws = [kl_decomposition(mu + (0.5 * logvar).exp() * torch.randn_like(mu), mu, logvar, 1000)
             for _ in range(4000)]
    mean_sum = torch.stack([p["mi"] + p["tc"] + p["dwkl"] for p in draws]).mean()
    torch.testing.assert_close(mean_sum, gaussian_kl(mu, logvar).sum(1).mean(), atol=0.05, rtol=0.02)


def test_mws_log_qz_by_hand():
    out, _ = tiny_out(b=3, d=2)
    n, m = 50, 3
    parts = kl_decomposition(out.z, out.mu, out.logvar, dataset_size=n, estimator="mws")

    def logq(zi, j, dims):
        return sum(-0.5 * (math.log(2 * math.pi) + out.logvar[j, d].item()
                           + (zi[d].item() - out.mu[j, d].item()) ** 2 / math.exp(out.logvar[j, d].item()))
                   for d in dims)

    tc = 0.0
    for i in range(m):
        zi = out.z[i]
        log_qz = math.log(sum(math.exp(logq(zi, j, [0, 1])) for j in range(m)) / (n * m))
        log_marg = sum(math.log(sum(math.exp(logq(zi, j, [d])) for j in range(m)) / (n * m)) for d in (0, 1))
        tc += (log_qz - log_marg) / m
    assert parts["tc"].item() == pytest.approx(tc, rel=1e-5)
    one_dim = kl_decomposition(out.z[:, :1], out.mu[:, :1], out.logvar[:, :1], n)
    assert abs(one_dim["tc"].item()) < 1e-6              # a single latent has no total correlation


def test_mss_weights():
    lw = mss_log_weights(4, 100).exp()
    torch.testing.assert_close(lw.sum(1), torch.ones(4))
    torch.testing.assert_close(torch.diagonal(lw), torch.full((4,), 0.01))
    torch.testing.assert_close(lw[0, 1], torch.tensor(99 / 300))
    # when the batch is the whole dataset the stratified estimate is exact: log mean_j q(z_i|x_j)
    out, _ = tiny_out(b=4, d=2)
    exact = kl_decomposition(out.z, out.mu, out.logvar, dataset_size=4, estimator="mss")
    mws_full = kl_decomposition(out.z, out.mu, out.logvar, dataset_size=1, estimator="mws")  # log(N·M) = log 4
    for k in ("mi", "tc", "dwkl"):
        torch.testing.assert_close(exact[k], mws_full[k])


def test_beta_tcvae_loss_is_elbo_plus_beta_minus_one_tc():
    out, x = tiny_out(b=5, d=3)
    obj = get_objective("beta_tcvae")(beta=6.0, dataset_size=737_280)
    torch.manual_seed(1)
    terms = obj.loss(out, x, 0)
    rec, kl = rec_kl(out, x)
    torch.testing.assert_close(terms.loss, rec + kl + 5.0 * terms.logs["tc"])


# ----------------------------------------------------------------------------------- DIP-VAE
def test_dip_covariance_terms_by_hand():
    mu = torch.tensor([[1.0, 2.0], [-1.0, 0.0], [0.0, -2.0], [2.0, 4.0]])
    logvar = torch.log(torch.tensor([[0.5, 1.0], [1.5, 1.0], [1.0, 3.0], [1.0, 3.0]]))
    cov = torch.tensor(np.cov(mu.numpy().T, bias=True), dtype=torch.float32)
    torch.testing.assert_close(batch_covariance(mu), cov)
    off, diag = dip_terms(cov)
    torch.testing.assert_close(off, 2 * cov[0, 1] ** 2)
    torch.testing.assert_close(diag, (cov[0, 0] - 1) ** 2 + (cov[1, 1] - 1) ** 2)

    out = VAEOutput(mu, logvar, mu, torch.zeros(4, 1, 2, 2))
    x = torch.zeros(4, 1, 2, 2)
    rec, kl = rec_kl(out, x)
    t1 = get_objective("dip_vae_i")(lambda_od=2.0).loss(out, x, 0)      # λ_d = 10·λ_od = 20
    torch.testing.assert_close(t1.loss, rec + kl + 2.0 * off + 20.0 * diag)
    cov2 = cov + torch.diag(torch.tensor([1.0, 2.0]))                     # + E[diag σ²]
    off2, diag2 = dip_terms(cov2)
    t2 = get_objective("dip_vae_ii")(lambda_od=2.0).loss(out, x, 0)     # λ_d = λ_od = 2
    torch.testing.assert_close(t2.logs["dip_diag"], diag2)
    torch.testing.assert_close(t2.loss, rec + kl + 2.0 * off2 + 2.0 * diag2)


# ----------------------------------------------------------------------------------- L-VAE
def test_learnable_beta_loss_and_effective_beta_by_hand():
    out, x = tiny_out()
    obj = get_objective("learnable_beta_vae")(beta_init=4.0, sigma_reg=0.5)
    assert obj.loss(out, x, 0).logs["beta_effective"].item() == pytest.approx(4.0, rel=1e-5)
    k = obj.sigma_lr_scale
    with torch.no_grad():
        obj.theta0.fill_(0.5 / k)      # log σ₀ = 0.5
        obj.theta1.fill_(-0.25 / k)    # log σ₁ = −0.25
    terms = obj.loss(out, x, 0)
    rec, kl = rec_kl(out, x)
    reg = 1.0 - 0.5 + 0.5 * 1.5 ** 2
    torch.testing.assert_close(terms.loss, rec * math.exp(-1.0) + kl * math.exp(0.5) + reg)
    assert terms.logs["beta_effective"].item() == pytest.approx(math.exp(1.5), rel=1e-5)
    assert terms.logs["sigma0"].item() == pytest.approx(math.exp(0.5), rel=1e-5)


def test_learnable_beta_optimum_is_uncertainty_weighting():
    """With λ_reg = 0 and fixed terms, minimising over σ gives σ₀² = L_rec, σ₁² = KL, β = L_rec/KL."""
    obj = get_objective("learnable_beta_vae")(sigma_reg=0.0, sigma_lr_scale=1.0)
    rec, kl = torch.tensor(30.0), torch.tensor(5.0)
    opt = torch.optim.Adam(obj.parameters(), lr=0.05)
    for _ in range(1500):
        ls0, ls1 = obj.log_sigmas()
        loss = rec * torch.exp(-2 * ls0) + kl * torch.exp(-2 * ls1) + 2 * ls0 + 2 * ls1
        opt.zero_grad()
        loss.backward()
        opt.step()
    ls0, ls1 = obj.log_sigmas()
    assert math.exp(2 * ls0.item()) == pytest.approx(30.0, rel=1e-2)
    assert math.exp(2 * (ls0 - ls1).item()) == pytest.approx(6.0, rel=1e-2)


# ----------------------------------------------------------------------------------- adaptive β
def test_pairwise_mi_and_adaptive_betas_by_hand():
    cov = torch.tensor([[1.0, 0.6, 0.0], [0.6, 1.0, 0.0], [0.0, 0.0, 2.0]])
    mi = pairwise_gaussian_mi(cov)
    i01 = -0.5 * math.log(1 - 0.36)
    torch.testing.assert_close(mi, torch.tensor([[0, i01, 0], [i01, 0, 0], [0, 0, 0]]))
    betas, score = adaptive_betas(cov, beta=4.0, kappa=1.0, tau=0.2)
    e = math.tanh(i01 / 0.2)
    mean = 2 * e / 3
    torch.testing.assert_close(score, torch.tensor([e, e, 0.0]))
    torch.testing.assert_close(betas, 4.0 * torch.exp(torch.tensor([e - mean, e - mean, -mean])))
    assert betas[0] > 4.0 > betas[2]                                 # entangled up, clean down
    assert math.prod(betas.tolist()) == pytest.approx(4.0 ** 3, rel=1e-5)   # geometric mean stays β
    many = torch.eye(4) * 0.01 + 0.99                                # everything correlated: bounded
    b, _ = adaptive_betas(many, 4.0, 2.0, 0.1)
    assert torch.all(b >= 4.0 * math.exp(-2.0)) and torch.all(b <= 4.0 * math.exp(2.0))


def test_adaptive_beta_updates_only_in_training_and_after_warmup():
    obj = get_objective("adaptive_beta_vae")(latent_dim=3, beta=2.0, beta_warmup=3, cov_momentum=0.5, tau=0.1)
    # latents 0 and 1 move together, latent 2 is independent of both
    mu = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, 1.0], [2.0, 2.1, -1.0], [-2.0, -2.0, -1.0], [0.0, 0.0, 0.0]])
    out = VAEOutput(mu, torch.full_like(mu, -4.0), mu, torch.zeros(5, 1, 2, 2))
    x = torch.zeros(5, 1, 2, 2)
    obj.train()
    obj.loss(out, x, step=0)
    first = batch_covariance(mu) + torch.diag(torch.full((3,), math.exp(-4.0)))
    torch.testing.assert_close(obj.cov_ema, first)                     # the first batch sets it
    torch.testing.assert_close(obj.betas, torch.full((3,), 2.0))       # warmup: β_j = β
    obj.eval()
    obj.loss(VAEOutput(mu * 0, out.logvar, mu, out.logits), x, step=10)
    torch.testing.assert_close(obj.cov_ema, first)                     # validation does not update
    obj.train()
    terms = obj.loss(out, x, step=5)
    torch.testing.assert_close(obj.cov_ema, first)                     # same batch: EMA unchanged
    expected, _ = adaptive_betas(first, 2.0, 1.0, 0.1)
    torch.testing.assert_close(obj.betas, expected)
    assert obj.betas[0] > 2.0 and obj.betas[1] > 2.0 and obj.betas[2] < 2.0
    kl_dim = gaussian_kl(mu, out.logvar).mean(0)
    torch.testing.assert_close(terms.logs["weighted_kl"], (obj.betas * kl_dim).sum())
    torch.testing.assert_close(terms.loss, terms.logs["reconstruction"] + (obj.betas * kl_dim).sum())
    assert all(f"beta/{j}" in terms.logs for j in range(3))
