"""DIP-VAE-I and DIP-VAE-II (Kumar et al. 2018, "Variational Inference of Disentangled Latent
Concepts from Unlabeled Observations", eq. 6–7).

Both add to the ELBO a penalty pushing a covariance matrix C of the aggregate posterior towards I:
λ_od·Σ_{i≠j} C_ij² + λ_d·Σ_i (C_ii − 1)².
DIP-VAE-I:  C = Cov_p(x)[μ(x)] (covariance of the posterior means over the batch).
DIP-VAE-II: C = Cov_p(x)[μ(x)] + E_p(x)[diag σ²(x)] (covariance of q(z) itself).
λ_d = λ_d_factor·λ_od with λ_d_factor = 10 (I) and 1 (II), disentanglement_lib's defaults.
"""

from __future__ import annotations

import torch

from .base import HParam, LossTerms, Objective, VAEOutput, batch_covariance, register


def dip_terms(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ_{i≠j} C_ij², Σ_i (C_ii − 1)²) of a covariance matrix C."""
    diag = torch.diagonal(cov)
    off = cov - torch.diag_embed(diag)
    return off.square().sum(), (diag - 1).square().sum()


class _DIPVAE(Objective):
    """The shared loss; subclasses say which covariance is penalized."""

    def covariance(self, out: VAEOutput) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, out: VAEOutput, x: torch.Tensor, step: torch.Tensor) -> LossTerms:
        rec, kl, logs = self.base_terms(out, x)
        off, diag = dip_terms(self.covariance(out))
        penalty = self.lambda_od * off + self.lambda_d_factor * self.lambda_od * diag
        loss = rec + kl + penalty
        return LossTerms(loss, {"loss": loss, **logs, "dip_offdiag": off, "dip_diag": diag,
                                "dip_penalty": penalty})


@register
class DIPVAEI(_DIPVAE):
    name = "dip_vae_i"
    paper = "Kumar et al. 2018, Variational Inference of Disentangled Latent Concepts from Unlabeled Observations"
    hparams = (
        HParam("lambda_od", 10.0, "DIP-VAE: weight λ_od of the off-diagonal covariance penalty", min=0.0),
        HParam("lambda_d_factor", 10.0, "DIP-VAE: λ_d = factor·λ_od, weight of the diagonal penalty "
               "(10 for DIP-VAE-I, 1 for DIP-VAE-II)", min=0.0),
    )

    def covariance(self, out: VAEOutput) -> torch.Tensor:
        return batch_covariance(out.mu)


@register
class DIPVAEII(_DIPVAE):
    name = "dip_vae_ii"
    paper = DIPVAEI.paper
    hparams = (DIPVAEI.hparams[0],
               HParam("lambda_d_factor", 1.0, DIPVAEI.hparams[1].help, min=0.0))

    def covariance(self, out: VAEOutput) -> torch.Tensor:
        return batch_covariance(out.mu) + torch.diag(out.logvar.exp().mean(0))
