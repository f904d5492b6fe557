"""AnnealedVAE (Burgess et al. 2018, "Understanding disentangling in β-VAE", eq. 8).

Loss: reconstruction + γ·|KL − C|, with the capacity C raised linearly from 0 to C_max over
``anneal_steps`` VAE updates: C = min(C_max, C_max · step / anneal_steps). Defaults γ = 1000,
anneal_steps = 100,000 (disentanglement_lib), C_max = 25 nats (Burgess et al.'s dSprites value).
"""

from __future__ import annotations

import torch

from .base import HParam, LossTerms, Objective, VAEOutput, register


def capacity(step: torch.Tensor | int, c_max, anneal_steps: int):
    """C at a given number of VAE updates: linear from 0 to c_max, then constant, as c_max · min(1,
    step / anneal_steps). With ``step`` a device tensor (training) it is tensor arithmetic only, no host
    copy or sync (a CUDA graph replays it); c_max may be a per-member tensor (fused ensembles)."""
    if anneal_steps <= 0:
        return c_max * torch.ones_like(step, dtype=torch.float32) if isinstance(step, torch.Tensor) else c_max * 1.0
    if isinstance(step, torch.Tensor):
        return c_max * (step / anneal_steps).clamp(max=1.0)
    return c_max * min(1.0, step / anneal_steps)


@register
class AnnealedVAE(Objective):
    name = "annealed_vae"
    paper = "Burgess et al. 2018, Understanding disentangling in β-VAE"
    hparams = (
        HParam("gamma", 1000.0, "AnnealedVAE: weight γ of |KL − C|", min=0.0),
        HParam("c_max", 25.0, "AnnealedVAE: final capacity C_max in nats", min=0.0),
        HParam("anneal_steps", 100_000, "AnnealedVAE: VAE updates over which C rises from 0 to C_max",
               type=int, min=0),
    )

    def loss(self, out: VAEOutput, x: torch.Tensor, step: torch.Tensor) -> LossTerms:
        rec, kl, logs = self.base_terms(out, x)
        c = capacity(torch.as_tensor(step, device=kl.device), self.c_max, self.anneal_steps)
        penalty = self.gamma * (kl - c).abs()
        loss = rec + penalty
        return LossTerms(loss, {"loss": loss, **logs, "capacity": c, "capacity_penalty": penalty})
