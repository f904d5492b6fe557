"""Hausdorff Factorized Support (Roth et al., ICLR 2023, "Disentanglement of Correlated Factors via
Hausdorff Factorized Support", §3 and eq. 6), added to β-VAE (``hfs_vae``) and to β-TCVAE (``hfs_tcvae``).

Instead of asking the aggregate posterior to factorize (independence), HFS asks only its *support* to
factorize: every combination of values that latents z_i and z_j take separately should also occur
together. On a batch of posterior means μ_1..μ_B and a pair of latents (i, j), the joint support is
S_ij = {(μ_c,i, μ_c,j)}_c and the factorized one S_i × S_j = {(μ_a,i, μ_b,j)}_{a,b}. Since S_ij ⊆ S_i × S_j,
their Hausdorff distance is one-sided:

  d_H(i, j) = max_{a,b} min_c [(μ_a,i − μ_c,i)² + (μ_b,j − μ_c,j)²]

(squared Euclidean distances; the full B² factorized support; the "hard" Hausdorff distance, the
authors' code's defaults). The penalty sums d_H over ``num_latent_pairs`` pairs drawn afresh each step
without replacement from the D(D−1)/2 (all of them when there are fewer):

  hfs_vae:   L = reconstruction + β·KL + γ·Σ_(i,j) d_H(i, j)
  hfs_tcvae: L = reconstruction + KL + (β − 1)·TC + γ·Σ_(i,j) d_H(i, j)

Defaults follow the authors' code (β = 1, γ = 1, 25 pairs); their README trains "HFS" alone with β = 0,
γ = 300. Not implemented: their optional scale regularizer (weight δ = 0 by default there) and the soft
or sampled Hausdorff approximations.
"""

from __future__ import annotations

import torch

from .base import Draw, HParam, LossTerms, Objective, PhaseOut, VAEOutput, register
from .beta_tcvae import BetaTCVAE


def latent_pairs(latent_dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Every pair i < j of latents, (D(D−1)/2, 2), in lexicographic order; made on the device (no copy from
    the host, so a captured step can make it)."""
    return torch.triu_indices(latent_dim, latent_dim, offset=1, device=device).T


def hausdorff_support_distance(z: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """d_H(i, j) for each row (i, j) of ``pairs`` (P, 2) on codes ``z`` (B, D): the largest squared
    distance from a point of the factorized support S_i × S_j to its nearest point of the joint support
    S_ij. Shape (P,); zero exactly when every combination (μ_a,i, μ_b,j) occurs in the batch.

    Example (two latents; a factorized support vs. the diagonal, where (0, 1) and (1, 0) are missing):

        >>> import torch
        >>> from disentkit.models.hfs_vae import hausdorff_support_distance
        >>> pairs = torch.tensor([[0, 1]])
        >>> grid = torch.tensor([[0., 0.], [0., 1.], [1., 0.], [1., 1.]])
        >>> diagonal = torch.tensor([[0., 0.], [1., 1.]])
        >>> hausdorff_support_distance(grid, pairs).tolist(), hausdorff_support_distance(diagonal, pairs).tolist()
        ([0.0], [1.0])
    """
    zi, zj = z[:, pairs[:, 0]], z[:, pairs[:, 1]]                 # (B, P): values of each pair's latents
    di = (zi[:, None, :] - zi[None, :, :]).square()               # (a, c, P): (μ_a,i − μ_c,i)²
    dj = (zj[:, None, :] - zj[None, :, :]).square()               # (b, c, P)
    dist = di[:, None, :, :] + dj[None, :, :, :]                  # (a, b, c, P)
    return dist.amin(2).flatten(0, 1).amax(0)


class HFSPenalty:
    """The pair draw and penalty shared by both HFS objectives (a mixin of :class:`Objective`)."""

    def pair_count(self) -> int:
        total = int(self.latent_dim or 10) * (int(self.latent_dim or 10) - 1) // 2
        return min(int(self.num_latent_pairs), total)

    def draws(self, batch_size: int) -> list[Draw]:
        """ε, and one uniform number per latent pair: the step's pairs are those with the largest."""
        d = int(self.latent_dim or 10)
        return super().draws(batch_size) + [Draw("pair_noise", "uniform", (d * (d - 1) // 2,))]

    def hfs(self, mu: torch.Tensor, pair_noise: torch.Tensor) -> torch.Tensor:
        """Σ d_H over this step's pairs (a fresh draw without replacement each step)."""
        pairs = latent_pairs(mu.shape[1], mu.device)
        chosen = pairs[torch.topk(pair_noise, self.pair_count()).indices]
        return hausdorff_support_distance(mu, chosen).sum()

    def vae_phase(self, vae, x: torch.Tensor, noise: dict[str, torch.Tensor], step: torch.Tensor,
                  carry: dict[str, torch.Tensor]) -> PhaseOut:
        out = vae(x, noise["eps"])
        terms = self.loss(out, x, step)
        hfs = self.hfs(out.mu, noise["pair_noise"])
        loss = terms.loss + self.gamma * hfs
        return PhaseOut(loss, {**terms.logs, "loss": loss, "hfs": hfs}, {})


HFS_HPARAMS = (
    HParam("gamma", 1.0, "HFS: weight of the Hausdorff factorized-support penalty", min=0.0),
    HParam("num_latent_pairs", 25, "HFS: latent pairs drawn each step for the penalty (capped at D(D−1)/2)",
           type=int, min=1),
)


@register
class HFSVAE(HFSPenalty, Objective):
    name = "hfs_vae"
    paper = "Roth et al. 2023, Disentanglement of Correlated Factors via Hausdorff Factorized Support"
    hparams = (HParam("beta", 1.0, "HFS β-VAE: weight of the KL term (0: the HFS penalty alone)", min=0.0),
               *HFS_HPARAMS)

    def loss(self, out: VAEOutput, x: torch.Tensor, step: torch.Tensor) -> LossTerms:
        """β-VAE's part; the HFS penalty is added in :meth:`vae_phase` (it needs the step's pair draw)."""
        rec, kl, logs = self.base_terms(out, x)
        loss = rec + self.beta * kl
        return LossTerms(loss, {"loss": loss, **logs})


@register
class HFSTCVAE(HFSPenalty, BetaTCVAE):
    name = "hfs_tcvae"
    paper = "Roth et al. 2023 (HFS) on Chen et al. 2018 (β-TCVAE)"
    hparams = (*BetaTCVAE.hparams, *HFS_HPARAMS)
