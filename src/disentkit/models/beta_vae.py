"""β-VAE (Higgins et al. 2017, eq. 4): reconstruction + β·KL. β = 1 is the plain VAE."""

from __future__ import annotations

import torch

from .base import HParam, LossTerms, Objective, VAEOutput, register


@register
class BetaVAE(Objective):
    name = "beta_vae"
    paper = "Higgins et al. 2017, β-VAE: Learning Basic Visual Concepts with a Constrained Variational Framework"
    hparams = (HParam("beta", 1.0, "β-VAE: weight of the KL term (β = 1 is the plain VAE)", min=0.0),)

    def loss(self, out: VAEOutput, x: torch.Tensor, step: torch.Tensor) -> LossTerms:
        rec, kl, logs = self.base_terms(out, x)
        loss = rec + self.beta * kl
        return LossTerms(loss, {"loss": loss, **logs})
