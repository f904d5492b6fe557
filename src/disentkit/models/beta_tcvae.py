"""β-TCVAE (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs", eq. 2 and §4.1).

The KL term, averaged over the data, splits into index-code MI + total correlation + dimension-wise
KL. With z_i ~ q(z|x_i) for a batch of M images out of N, and log q(z_i) estimated from the batch:

  MI   = E[log q(z|x) − log q(z)]
  TC   = E[log q(z) − Σ_d log q(z_d)]
  DWKL = E[Σ_d log q(z_d) − log p(z)]

so MI + TC + DWKL = E[log q(z|x) − log p(z)], the Monte-Carlo KL, for any estimate of q(z).
Minibatch-weighted sampling (MWS, default): log q(z_i) ≈ logsumexp_j log q(z_i|x_j) − log(N·M).
Minibatch-stratified sampling (MSS, App. C.2's idea): q(z_i) = (1/N) q(z_i|x_i) + (1/N) Σ_{n≠i} q(z_i|x_n),
the first term exact and the rest estimated from the M − 1 other batch members, i.e. weights 1/N on
the sample's own posterior and (N − 1)/(N(M − 1)) on each other one (unbiased for q(z_i)). Chen et
al.'s reference ``log_importance_weight_matrix`` fills columns 0 and 1 rather than the diagonal, so
we write the weights out as derived instead of copying it. The same estimator serves each q(z_d).

Loss (as disentanglement_lib): reconstruction + KL (closed form) + (β − 1)·TC; β = 1 is the VAE.
"""

from __future__ import annotations

import math

import torch

from .base import HParam, LossTerms, Objective, VAEOutput, log_density_matrix, log_normal_density, register


def mss_log_weights(batch_size: int, dataset_size: int, device: torch.device | None = None) -> torch.Tensor:
    """log w_ij (M, M) of minibatch-stratified sampling: 1/N on the diagonal, (N−1)/(N(M−1)) elsewhere.
    Each row sums to 1, so Σ_j w_ij q(z_i|x_j) is an unbiased estimate of q(z_i)."""
    m, n = batch_size, dataset_size
    w = torch.full((m, m), (n - 1) / (n * max(m - 1, 1)), device=device)
    w.fill_diagonal_(1.0 / n)
    return w.log()


def kl_decomposition(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int,
                     estimator: str = "mws") -> dict[str, torch.Tensor]:
    """Batch means of MI, TC and DWKL (and the MC KL they sum to) for samples z (M, D) of q(z|x)."""
    m = z.shape[0]
    log_qz_given_x = log_normal_density(z, mu, logvar).sum(1)
    log_pz = log_normal_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    mat = log_density_matrix(z, mu, logvar)                         # (M, M, D)
    if estimator == "mws":
        log_w = torch.full((m, m), -math.log(dataset_size * m), device=z.device)
    elif estimator == "mss":
        log_w = mss_log_weights(m, dataset_size, z.device)
    else:
        raise ValueError(f"unknown β-TCVAE estimator '{estimator}' (mws or mss)")
    log_qz = torch.logsumexp(mat.sum(2) + log_w, dim=1)
    log_prod_qzd = torch.logsumexp(mat + log_w[:, :, None], dim=1).sum(1)
    return {"mi": (log_qz_given_x - log_qz).mean(), "tc": (log_qz - log_prod_qzd).mean(),
            "dwkl": (log_prod_qzd - log_pz).mean(), "kl_mc": (log_qz_given_x - log_pz).mean()}


@register
class BetaTCVAE(Objective):
    name = "beta_tcvae"
    paper = "Chen et al. 2018, Isolating Sources of Disentanglement in Variational Autoencoders"
    hparams = (
        HParam("beta", 6.0, "β-TCVAE: weight of the TC term (the penalty is (β − 1)·TC)", min=0.0),
        HParam("estimator", "mws", "β-TCVAE: log q(z) estimator, mws (minibatch-weighted) or mss "
               "(minibatch-stratified)", type=str, choices=("mws", "mss")),
    )

    def loss(self, out: VAEOutput, x: torch.Tensor, step: torch.Tensor) -> LossTerms:
        rec, kl, logs = self.base_terms(out, x)
        if not self.dataset_size:
            raise ValueError("beta_tcvae needs dataset_size (the number of training images) for its estimator")
        parts = kl_decomposition(out.z, out.mu, out.logvar, self.dataset_size, self.estimator)
        penalty = (self.beta - 1) * parts["tc"]
        loss = rec + kl + penalty
        return LossTerms(loss, {"loss": loss, **logs, **parts, "tc_penalty": penalty})
