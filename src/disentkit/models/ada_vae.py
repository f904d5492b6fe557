"""Ada-GVAE and Ada-ML-VAE (Locatello et al., ICML 2020, "Weakly-Supervised Disentanglement Without
Compromises", §4, eq. 4–6): β-VAEs trained on pairs of images that share all but k factors, without
being told k or which factors changed.

For a pair (x₁, x₂) with posteriors q(z|x₁) = N(μ₁, σ₁²) and q(z|x₂) = N(μ₂, σ₂²), per latent j:

  δ_j = σ₁²/σ₂² + (μ₂ − μ₁)²/σ₂² − 1 + log σ₂² − log σ₁²     (2·KL(q₁,j ‖ q₂,j), as disentanglement_lib)
  τ   = ½ (min_j δ_j + max_j δ_j)                          (the adaptive threshold, eq. 6)

Latents with δ_j < τ are taken as shared: both images use the average posterior there (the others keep
their own). The average (eq. 5): Ada-GVAE ("group VAE", Hosoya 2019) takes μ̄ = ½(μ₁ + μ₂),
σ̄² = ½(σ₁² + σ₂²); Ada-ML-VAE (Bouchacourt et al. 2018's product of experts) σ̄² = 2σ₁²σ₂²/(σ₁² + σ₂²),
μ̄ = ½(μ₁/σ₁² + μ₂/σ₂²)·σ̄². Each image is decoded from a sample of its (partly averaged) posterior q̃:

  L = ½ [rec(x₁) + rec(x₂)] + β · ½ [KL(q̃₁ ‖ p) + KL(q̃₂ ‖ p)]

The engine feeds these objectives 2B images per step, B first images and then their partners
(:mod:`disentkit.data.pairs`, ``--k``); a held-out image is scored paired with itself (all δ_j = 0:
every latent shared, the β-VAE loss). When every δ_j of a pair is equal, all its latents count as shared.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from .base import Draw, HParam, LossTerms, Objective, PhaseOut, VAEOutput, register


def pair_kl(mu1: torch.Tensor, logvar1: torch.Tensor, mu2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """δ (B, D): twice the KL divergence of the second posterior from the first, per latent."""
    return (logvar1 - logvar2).exp() + (mu2 - mu1).square() / logvar2.exp() - 1 + logvar2 - logvar1


def shared_latents(delta: torch.Tensor) -> torch.Tensor:
    """Bool (B, D): the latents below each pair's threshold ½(min δ + max δ), taken as shared.

    Example (the first two latents barely move between the images, the third does):

        >>> import torch
        >>> from disentkit.models.ada_vae import shared_latents
        >>> shared_latents(torch.tensor([[0.1, 0.3, 5.0], [1.0, 1.0, 1.0]])).tolist()
        [[True, True, False], [True, True, True]]
    """
    lo, hi = delta.amin(1, keepdim=True), delta.amax(1, keepdim=True)
    return (delta < 0.5 * (lo + hi)) | (hi == lo)


def average_posterior(mu1: torch.Tensor, logvar1: torch.Tensor, mu2: torch.Tensor, logvar2: torch.Tensor,
                      kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ̄, log σ̄²) of two posteriors: ``gvae`` the mean of their parameters, ``mlvae`` the product of experts."""
    v1, v2 = logvar1.exp(), logvar2.exp()
    if kind == "gvae":
        return 0.5 * (mu1 + mu2), (0.5 * (v1 + v2)).log()
    var = 2 * v1 * v2 / (v1 + v2)
    return 0.5 * (mu1 / v1 + mu2 / v2) * var, var.log()


class AdaVAE(Objective):
    """What both Ada objectives share: pairs in, the adaptive threshold, averaging, two reconstructions."""

    pairs: ClassVar[bool] = True
    average: ClassVar[str] = "gvae"
    hparams = (
        HParam("beta", 1.0, "Ada-VAE: weight of the KL term", min=0.0),
        HParam("k", -1, "Ada-VAE: factors that differ within a training pair (-1: 1..F-1 at random per pair)",
               type=int, min=-1, refused=(0,)),
    )

    def draws(self, batch_size: int) -> list[Draw]:
        """ε for both images of each of the ``batch_size`` pairs."""
        return [Draw("eps", "normal", (2 * batch_size, int(self.latent_dim or 10)))]

    def loss(self, out: VAEOutput, x: torch.Tensor, step: torch.Tensor) -> LossTerms:
        """β-VAE's loss of one forward pass (the pair logic is in :meth:`vae_phase`)."""
        rec, kl, logs = self.base_terms(out, x)
        return LossTerms(rec + self.beta * kl, {"loss": rec + self.beta * kl, **logs})

    def vae_phase(self, vae, x: torch.Tensor, noise: dict[str, torch.Tensor], step: torch.Tensor,
                  carry: dict[str, torch.Tensor]) -> PhaseOut:
        b = x.shape[0] // 2
        mu, logvar = vae.encode(x)
        mu1, mu2, lv1, lv2 = mu[:b], mu[b:], logvar[:b], logvar[b:]
        shared = shared_latents(pair_kl(mu1, lv1, mu2, lv2))
        avg_mu, avg_lv = average_posterior(mu1, lv1, mu2, lv2, self.average)
        mu_t = torch.cat([torch.where(shared, avg_mu, mu1), torch.where(shared, avg_mu, mu2)])
        lv_t = torch.cat([torch.where(shared, avg_lv, lv1), torch.where(shared, avg_lv, lv2)])
        z = mu_t + torch.exp(0.5 * lv_t) * noise["eps"]
        out = VAEOutput(mu_t, lv_t, z, vae.decode(z))
        rec, kl, logs = self.base_terms(out, x)       # batch means over both images: ½(rec₁ + rec₂), ½(KL₁ + KL₂)
        loss = rec + self.beta * kl
        logs.update({"loss": loss, "shared_latents": shared.float().sum(1).mean()})
        return PhaseOut(loss, logs, {})


@register
class AdaGVAE(AdaVAE):
    name = "ada_gvae"
    paper = "Locatello et al. 2020, Weakly-Supervised Disentanglement Without Compromises (Ada-GVAE)"
    average = "gvae"


@register
class AdaMLVAE(AdaVAE):
    name = "ada_ml_vae"
    paper = "Locatello et al. 2020, Weakly-Supervised Disentanglement Without Compromises (Ada-ML-VAE)"
    average = "mlvae"

