"""Pairwise adaptive β (new in disentkit; design and equations in docs/methods.md): the β-VAE's pressure
on the dependence between two latents, set per pair of latents from the dependence measured between them.

β-VAE's KL holds a total-correlation part, the pressure that makes latents independent (Chen et al. 2018).
When two factors are correlated (Träuble et al. 2021), a representation that keeps them in separate latents
has dependent latents, and that pressure pushes it to rotate them into shared ones. Here each pair (j, k)
gets its own weight β_jk on a differentiable Gaussian estimate of its dependence on the batch:

  C_t    = Cov_batch[μ(x)] + diag E_batch[σ²(x)]                covariance of q(z) on the batch
  I_jk   = −½ log(1 − ρ_jk²),  ρ from C_t (|ρ| ≤ 0.999)           pairwise MI of a Gaussian pair, nats
  L      = L_rec + β·KL + Σ_{j<k} (β_jk − β) · I_jk               the pair's weight moves from β to β_jk

and, with no gradient, from the running covariance Ĉ (as ``adaptive_beta_vae``) and its Î_jk:

  e_jk   = tanh(Î_jk / τ) ∈ [0, 1)                               measured dependence of the pair
  β_jk   = β · exp(−κ·e_jk)                                       after ``beta_warmup`` VAE updates; β before

So β_jk ∈ (β·e^{−κ}, β]: a pair whose dependence persists under β's pressure (likely a real correlation of
factors) is let keep it, independent pairs keep β-VAE's pressure, and the weight on a pair never becomes
negative. This goes the other way from the per-latent version (which raises β for entangled latents); which
one helps is what ``configs/sweeps/correlated.yaml`` measures.
"""

from __future__ import annotations

from typing import Any

import torch

from .adaptive_beta_vae import fold_covariance, pairwise_gaussian_mi, posterior_covariance
from .base import HParam, LossTerms, Objective, VAEOutput, register


def pair_betas(cov: torch.Tensor, beta: float, kappa: float, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(β_jk, e_jk), both (D, D), from a covariance of q(z): β·exp(−κ·tanh(I_jk / τ)); β on the diagonal.

    Example (latents 0 and 1 correlated at ρ = 0.8, latent 2 independent):

        >>> import torch
        >>> from disentkit.models.pairwise_adaptive_vae import pair_betas
        >>> cov = torch.tensor([[1.0, 0.8, 0.0], [0.8, 1.0, 0.0], [0.0, 0.0, 1.0]])
        >>> betas, dep = pair_betas(cov, beta=4.0, kappa=1.0, tau=0.1)
        >>> [round(v, 3) for v in betas[0].tolist()], [round(v, 3) for v in dep[0].tolist()]
        ([4.0, 1.472, 4.0], [0.0, 1.0, 0.0])
    """
    dep = torch.tanh(pairwise_gaussian_mi(cov) / tau)
    return beta * torch.exp(-kappa * dep), dep


@register
class PairwiseAdaptiveVAE(Objective):
    name = "pairwise_adaptive_vae"
    paper = "disentkit (new): pairwise adaptive β, per pair of latents; see docs/methods.md"
    hparams = (
        HParam("beta", 4.0, "pairwise adaptive β: β of the KL, and of every independent pair", min=0.0),
        HParam("kappa", 1.0, "pairwise adaptive β: relaxation, β_jk within (β·e^{−κ}, β]", min=0.0),
        HParam("tau", 0.1, "pairwise adaptive β: scale τ (nats) of a pair's MI; e_jk = tanh(MI/τ)", min=1e-6),
        HParam("cov_momentum", 0.99, "pairwise adaptive β: EMA momentum of the latent covariance", min=0.0),
        HParam("beta_warmup", 200, "pairwise adaptive β: VAE updates with β_jk = β before adapting", type=int,
               min=0),
    )

    def __init__(self, reconstruction: str = "bernoulli", latent_dim: int | None = None, **hp: Any) -> None:
        super().__init__(reconstruction, latent_dim=latent_dim, **hp)
        d = latent_dim or 10
        self.register_buffer("cov_ema", torch.eye(d))
        self.register_buffer("pair_beta", torch.full((d, d), float(self.beta)))
        self.register_buffer("dependence", torch.zeros(d, d))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        # the pairs j < k as a 0/1 mask (a product, not boolean indexing: no device sync)
        self.register_buffer("upper", torch.ones(d, d).triu(1), persistent=False)
        self.num_pairs = max(1, d * (d - 1) // 2)

    @torch.no_grad()
    def update(self, cov: torch.Tensor, step: torch.Tensor) -> None:
        """Fold this batch's covariance into Ĉ and recompute the β_jk (tensor operations only, as
        ``adaptive_beta_vae``: a captured step replays it as it is)."""
        def betas_of(cov_ema: torch.Tensor) -> torch.Tensor:
            betas, dep = pair_betas(cov_ema, self.beta, self.kappa, self.tau)
            self.dependence.copy_(dep)
            return betas
        self.pair_beta.copy_(fold_covariance(self, cov, step, betas_of, self.pair_beta))

    def loss(self, out: VAEOutput, x: torch.Tensor, step: torch.Tensor) -> LossTerms:
        rec, kl, logs = self.base_terms(out, x)
        cov = posterior_covariance(out)
        if self.training:
            self.update(cov, step)
        mi = pairwise_gaussian_mi(cov) * self.upper              # the batch's I_jk, j < k, differentiable
        correction = ((self.pair_beta - self.beta) * mi).sum()
        loss = rec + self.beta * kl + correction
        pair_beta = torch.where(self.upper > 0, self.pair_beta, torch.full_like(self.pair_beta, float("inf")))
        logs.update(pair_correction=correction, pair_mi=mi.sum(), pair_beta_min=pair_beta.amin(),
                    pair_beta_mean=(self.pair_beta * self.upper).sum() / self.num_pairs,
                    pair_dependence_max=(self.dependence * self.upper).amax())
        return LossTerms(loss, {"loss": loss, **logs})
