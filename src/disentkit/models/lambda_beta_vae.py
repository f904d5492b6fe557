"""λβ-VAE (E2 in REFERENCE_EXPERIMENTS.md): β-VAE plus a pixel-space MSE term, trained by continuing
from a β-VAE checkpoint with a fresh Adam (``--init-from CKPT``).

Loss per batch: mean_b [ BCE(x_b) + β·KL(x_b) + λ·Σ_pixels (sigmoid(logits) − x)² ]. λ = 0 is the
continued-training control.
"""

from __future__ import annotations

import torch

from .base import HParam, LossTerms, Objective, VAEOutput, reconstruction_loss, register
from .beta_vae import BetaVAE


@register
class LambdaBetaVAE(Objective):
    name = "lambda_beta_vae"
    paper = "λβ-VAE (E2): β-VAE continued with an extra λ·MSE reconstruction term"
    hparams = (
        BetaVAE.hparams[0],  # the same --beta as β-VAE
        HParam("lam", 4.0, "λβ-VAE: weight λ of the MSE(sigmoid(logits), x) term (0 = continued-training control)",
               min=0.0),
    )

    def loss(self, out: VAEOutput, x: torch.Tensor, step: torch.Tensor) -> LossTerms:
        rec, kl, logs = self.base_terms(out, x)
        mse = reconstruction_loss(out.logits, x, "gaussian").mean()
        loss = rec + self.beta * kl + self.lam * mse
        return LossTerms(loss, {"loss": loss, **logs, "mse": mse, "lambda_term": self.lam * mse})
