"""Pairwise adaptive β (ours): β_jk from the measured dependence of each latent pair, the loss's per-pair
correction against a hand computation, the warm-up, and a few training steps on a correlated dataset."""

from __future__ import annotations

import math

import pytest
import torch

from disentkit.models import VAEOutput, get_objective
from disentkit.models.pairwise_adaptive_vae import pair_betas, posterior_covariance
from disentkit.train import TrainConfig, fit, load_checkpoint


def test_pair_betas_relax_only_dependent_pairs():
    cov = torch.tensor([[1.0, 0.3, 0.0], [0.3, 1.0, 0.0], [0.0, 0.0, 2.0]])
    betas, dep = pair_betas(cov, beta=4.0, kappa=0.5, tau=0.1)
    mi = -0.5 * math.log(1 - 0.09)                                    # ρ = 0.3 → I = 0.0472 nats
    e = math.tanh(mi / 0.1)
    assert dep[0, 1].item() == pytest.approx(e, rel=1e-5) and dep[1, 0].item() == pytest.approx(e, rel=1e-5)
    assert betas[0, 1].item() == pytest.approx(4.0 * math.exp(-0.5 * e), rel=1e-5)
    assert betas[0, 2].item() == betas[1, 2].item() == 4.0            # independent pairs keep β
    assert torch.all(betas > 4.0 * math.exp(-0.5)) and torch.all(betas <= 4.0)


def known_out() -> tuple[VAEOutput, torch.Tensor]:
    mu = torch.tensor([[1.0, 0.9, 0.0], [-1.0, -1.1, 0.5], [0.5, 0.4, -0.5], [-0.5, -0.2, 0.0]])
    logvar = torch.full((4, 3), -2.0)
    return VAEOutput(mu, logvar, mu, torch.zeros(4, 1, 2, 2)), torch.zeros(4, 1, 2, 2)


def test_the_loss_moves_each_pair_from_beta_to_its_own_weight():
    obj = get_objective("pairwise_adaptive_vae")(latent_dim=3, beta=4.0, beta_warmup=0)
    obj.train(False)                                                   # keep the buffers as set here
    obj.pair_beta.copy_(torch.tensor([[4.0, 1.5, 4.0], [1.5, 4.0, 3.0], [4.0, 3.0, 4.0]]))
    out, x = known_out()
    terms = obj.loss(out, x, torch.tensor(0))
    cov = torch.cov(out.mu.T, correction=0) + torch.diag(out.logvar.exp().mean(0))
    torch.testing.assert_close(posterior_covariance(out), cov)
    rho = cov / torch.sqrt(torch.outer(cov.diagonal(), cov.diagonal()))
    mi = lambda j, k: -0.5 * math.log(1 - rho[j, k].item() ** 2)     # noqa: E731
    correction = (1.5 - 4.0) * mi(0, 1) + (3.0 - 4.0) * mi(1, 2)
    beta_vae = get_objective("beta_vae")(beta=4.0).loss(out, x, torch.tensor(0)).loss
    assert terms.logs["pair_correction"].item() == pytest.approx(correction, rel=1e-5)
    assert terms.loss.item() == pytest.approx(beta_vae.item() + correction, rel=1e-6)
    assert terms.logs["pair_beta_min"].item() == 1.5


def test_betas_stay_at_beta_during_the_warm_up_then_follow_the_running_covariance():
    obj = get_objective("pairwise_adaptive_vae")(latent_dim=3, beta=2.0, beta_warmup=2, cov_momentum=0.5)
    out, x = known_out()
    obj.loss(out, x, torch.tensor(0))
    assert torch.all(obj.pair_beta == 2.0)
    torch.testing.assert_close(obj.cov_ema, posterior_covariance(out))   # Ĉ = C_1 at the first update
    obj.loss(out, x, torch.tensor(2))
    want, _ = pair_betas(obj.cov_ema, 2.0, 1.0, 0.1)
    torch.testing.assert_close(obj.pair_beta, want)
    assert obj.pair_beta[0, 1] < 2.0 * math.exp(-0.9)                  # latents 0 and 1 are correlated


def test_a_few_training_steps_on_correlated_procedural_dsprites(tmp_path):
    run = fit(TrainConfig(model="pairwise_adaptive_vae", steps=4, out=str(tmp_path / "p"), batch_size=8,
                          latent_dim=4, log_every=1, threads=1, progress=False,
                          dataset="dsprites_procedural:corr(posX,posY,0.2)", hparams={"beta_warmup": 2}))
    ck = load_checkpoint(run)
    assert ck.config["model"] == "pairwise_adaptive_vae"
    assert ck.state["objective.pair_beta"].shape == (4, 4) and torch.isfinite(ck.state["objective.pair_beta"]).all()
    assert "train/pair_correction" in (run / "csv" / "metrics.csv").read_text().splitlines()[0]
