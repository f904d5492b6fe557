"""L-VAE, learnable β (Ozcan, Kalkan & Yarman-Vural 2025, arXiv 2507.02619).

The weights of the two loss terms are learned with the network, as uncertainties σ₀ (reconstruction)
and σ₁ (KL), in the multi-task uncertainty-weighting form the paper builds on (Kendall et al. 2018):

  L = L_rec / σ₀² + KL / σ₁² + R(σ₀, σ₁),
  R = log σ₀² + log σ₁² + λ_reg · (log σ₀² − log σ₁²)²,

effective β = σ₀² / σ₁². The log terms stop σ → ∞ (without them both weights would vanish); the
λ_reg term is our stand-in for the paper's extra regularizer against drifting towards either loss:
it penalizes log β_eff², i.e. pulls β_eff towards 1 (λ_reg = 0 is plain uncertainty weighting, whose
optimum is σ₀² = L_rec, σ₁² = KL). We parameterize log σ = k·θ with θ trained by the VAE's Adam, so
that with Adam's ≈ lr-sized steps log σ moves k·lr per update (k = ``sigma_lr_scale``); without the
factor, σ would barely move at lr = 1e-4 in a short run. The paper pairs L-VAE with an MSE
reconstruction: pass ``--reconstruction gaussian`` for that (``--config learnable_beta_vae``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .base import HParam, LossTerms, Objective, VAEOutput, register


@register
class LearnableBetaVAE(Objective):
    name = "learnable_beta_vae"
    paper = "Ozcan, Kalkan & Yarman-Vural 2025, L-VAE: Variational Auto-Encoder with Learnable Beta (arXiv 2507.02619)"
    hparams = (
        HParam("beta_init", 1.0, "L-VAE: initial effective β = σ₀²/σ₁² (σ₀ starts at 1)", min=1e-6),
        HParam("sigma_reg", 1.0, "L-VAE: weight λ_reg of the (log σ₀² − log σ₁²)² regularizer", min=0.0),
        HParam("sigma_lr_scale", 100.0, "L-VAE: log σ = scale·θ, so log σ moves about scale·lr per step",
               min=1e-6),
    )

    def __init__(self, reconstruction: str = "bernoulli", **hp: Any) -> None:
        super().__init__(reconstruction, **hp)
        k = self.sigma_lr_scale
        self.theta0 = nn.Parameter(torch.zeros(()))                                   # log σ₀ = 0
        self.theta1 = nn.Parameter(torch.tensor(-0.5 * math.log(self.beta_init) / k))  # σ₀²/σ₁² = β_init

    def log_sigmas(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(log σ₀, log σ₁)."""
        return self.sigma_lr_scale * self.theta0, self.sigma_lr_scale * self.theta1

    def loss(self, out: VAEOutput, x: torch.Tensor, step: torch.Tensor) -> LossTerms:
        rec, kl, logs = self.base_terms(out, x)
        log_s0, log_s1 = self.log_sigmas()
        lv0, lv1 = 2 * log_s0, 2 * log_s1                                            # log σ²
        reg = lv0 + lv1 + self.sigma_reg * (lv0 - lv1).square()
        loss = rec * torch.exp(-lv0) + kl * torch.exp(-lv1) + reg
        logs.update(beta_effective=torch.exp(lv0 - lv1).detach(), sigma0=log_s0.exp().detach(),
                    sigma1=log_s1.exp().detach(), lvae_regularizer=reg.detach())
        return LossTerms(loss, {"loss": loss, **logs})
