"""Correlation-aware per-latent adaptive β (new in disentkit; design in docs/methods.md).

β-VAE with one weight per latent, loss = reconstruction + Σ_j β_j·KL_j, where β_j rises for latents
that share information with others and falls for clean ones. Each training step (no gradient):

  C_t   = Cov_batch[μ(x)] + diag E_batch[σ²(x)]            covariance of q(z) on the batch
  Ĉ     ← m·Ĉ + (1 − m)·C_t                                 running estimate (Ĉ = C_1 at the start)
  ρ_jk  = Ĉ_jk / √(Ĉ_jj Ĉ_kk)                               correlation, clipped to |ρ| ≤ 0.999
  I_jk  = −½ log(1 − ρ_jk²)                                 pairwise TC (MI) of a Gaussian pair, nats
  e_j   = tanh(max_{k≠j} I_jk / τ) ∈ [0, 1)                 entanglement score of latent j
  β_j   = β · exp(κ·(e_j − mean_k e_k))                     after ``beta_warmup`` VAE updates; β before

So β_j ∈ [β·e^{−κ}, β·e^{κ}] and the geometric mean of the β_j stays β: the total pressure is β-VAE's,
redistributed. β_j, Ĉ and the step live in buffers (saved in checkpoints); β_j are constants to the
gradient. Using Cov(μ) + E[σ²] (DIP-VAE-II's matrix) rather than Cov(μ) keeps collapsed latents,
whose posterior is the prior, from looking correlated through noise in tiny means.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .base import HParam, LossTerms, Objective, VAEOutput, batch_covariance, gaussian_kl, register

RHO_MAX = 0.999


def pairwise_gaussian_mi(cov: torch.Tensor) -> torch.Tensor:
    """I_jk = −½ log(1 − ρ_jk²) for every pair (zero on the diagonal) of a covariance matrix (D, D)."""
    sd = torch.diagonal(cov).clamp_min(1e-8).sqrt()
    rho = (cov / (sd[:, None] * sd[None, :])).clamp(-RHO_MAX, RHO_MAX)
    mi = -0.5 * torch.log1p(-rho.square())
    return mi - torch.diag_embed(torch.diagonal(mi))


def posterior_covariance(out: VAEOutput) -> torch.Tensor:
    """(D, D) covariance of q(z) on the batch: Cov(μ) + diag E[σ²] (DIP-VAE-II's matrix)."""
    return batch_covariance(out.mu) + torch.diag(out.logvar.exp().mean(0))


@torch.no_grad()
def fold_covariance(objective: Objective, cov: torch.Tensor, step: torch.Tensor, new: Callable,
                    kept: torch.Tensor) -> torch.Tensor:
    """Ĉ ← m·Ĉ + (1 − m)·C in ``objective.cov_ema`` (m = its ``cov_momentum``, 0 at the first update) and the
    update counted; returns ``new`` once ``step`` ≥ ``beta_warmup``, else ``kept``. ``new`` is a function of Ĉ
    called after the fold. Tensor operations only (no ``int()`` of a device value): a captured step replays it."""
    m = (objective.updates > 0).double() * objective.cov_momentum  # in double, as a float would be
    objective.cov_ema.mul_(m).add_((1 - m) * cov.detach())
    objective.updates += 1
    value = new(objective.cov_ema)
    warm = torch.as_tensor(step, device=value.device) >= objective.beta_warmup
    return torch.where(warm, value, kept)


def adaptive_betas(cov: torch.Tensor, beta: float, kappa: float, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(β_j, e_j) from a covariance of q(z): β·exp(κ(e_j − ē)) with e_j = tanh(max_k I_jk / τ).

    The max over partners (rather than a sum) keeps the score independent of the latent count and
    undiluted by collapsed latents, which correlate with nothing."""
    score = torch.tanh(pairwise_gaussian_mi(cov).max(1).values / tau)
    return beta * torch.exp(kappa * (score - score.mean())), score


@register
class AdaptiveBetaVAE(Objective):
    name = "adaptive_beta_vae"
    paper = "disentkit (new): correlation-aware per-latent adaptive β; see docs/methods.md"
    hparams = (
        HParam("beta", 4.0, "adaptive β: geometric mean of the per-latent β_j", min=0.0),
        HParam("kappa", 1.0, "adaptive β: spread, β_j within β·e^{±κ}", min=0.0),
        HParam("tau", 0.1, "adaptive β: scale τ (nats) of a latent's largest pairwise MI; e_j = tanh(MI/τ)",
               min=1e-6),
        HParam("cov_momentum", 0.99, "adaptive β: EMA momentum of the latent covariance", min=0.0),
        HParam("beta_warmup", 200, "adaptive β: VAE updates with β_j = β before adapting", type=int, min=0),
    )

    def __init__(self, reconstruction: str = "bernoulli", latent_dim: int | None = None, **hp: Any) -> None:
        super().__init__(reconstruction, latent_dim=latent_dim, **hp)
        d = latent_dim or 10
        self.register_buffer("cov_ema", torch.eye(d))
        self.register_buffer("betas", torch.full((d,), float(self.beta)))
        self.register_buffer("entanglement", torch.zeros(d))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, out: VAEOutput, step: torch.Tensor) -> None:
        """Fold this batch's covariance of q(z) into the running estimate and recompute the β_j. Tensor
        operations only (no ``int()`` of a device value): a captured step replays it as it is."""
        def betas_of(cov_ema: torch.Tensor) -> torch.Tensor:
            betas, score = adaptive_betas(cov_ema, self.beta, self.kappa, self.tau)
            self.entanglement.copy_(score)
            return betas
        self.betas.copy_(fold_covariance(self, posterior_covariance(out), step, betas_of, self.betas))

    def loss(self, out: VAEOutput, x: torch.Tensor, step: torch.Tensor) -> LossTerms:
        rec, kl, logs = self.base_terms(out, x)
        if self.training:
            self.update(out, step)
        kl_dim = gaussian_kl(out.mu, out.logvar).mean(0)
        weighted = (self.betas * kl_dim).sum()
        loss = rec + weighted
        logs.update(weighted_kl=weighted, entanglement_mean=self.entanglement.mean().clone())
        logs.update({f"beta/{j}": b.clone() for j, b in enumerate(self.betas)})
        logs.update({f"entanglement/{j}": e.clone() for j, e in enumerate(self.entanglement)})
        return LossTerms(loss, {"loss": loss, **logs})
