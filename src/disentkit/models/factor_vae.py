"""FactorVAE (Kim & Mnih 2018, "Disentangling by Factorising", eq. 2–3).

Loss: reconstruction + KL + γ·TC(z), where the total correlation TC = KL(q(z) ‖ q̄(z)) of the
aggregate posterior q(z) against the product of its marginals q̄(z) is estimated with a
discriminator D trained to tell samples of q(z) (class 0, "real") from samples of q̄(z) (class 1,
drawn by permuting each latent dimension independently across the batch, Alg. 1):
TC ≈ E_q(z)[log D(z)/(1 − D(z))] = E[logit₀ − logit₁].

A training step has two phases (two optimizers): the VAE steps on its loss, then D steps on the
cross-entropy of real vs permuted codes (detached). D: MLP 6 × 1000, leaky ReLU 0.2, 2 logits
(paper App. A / disentanglement_lib), Adam lr 1e-4, betas (0.5, 0.9).

The permuted codes come from the same batch by default (as disentanglement_lib does); with
``--permutation second_batch`` each batch is split in two halves: the first trains the VAE, the
second is encoded and permuted for D, as in the paper's Alg. 1 (so ``--batch-size`` then counts both).

Every random number of a step is declared by :meth:`FactorVAE.draws` and drawn by the trainer from each
member's own generator, so a fused ensemble member trains exactly as the same run alone.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import Draw, HParam, LossTerms, Objective, Phase, PhaseOut, VAEFn, VAEOutput, register

DISC_BETAS = (0.5, 0.9)


def permute_dims(z: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Samples of q̄(z): each column of ``z`` (B, D) shuffled by its own random permutation of the batch,
    the argsort of uniform ``noise`` of z's shape (drawn here with ``torch.rand`` when not given)."""
    u = torch.rand(z.shape, device=z.device) if noise is None else noise
    return z.gather(0, torch.argsort(u, dim=0))


def discriminator(latent_dim: int, hidden: int = 1000, layers: int = 6) -> nn.Sequential:
    """The TC discriminator: ``layers`` hidden layers of ``hidden`` units with leaky ReLU (0.2), 2 logits."""
    mods: list[nn.Module] = []
    width = latent_dim
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
        width = hidden
    mods.append(nn.Linear(width, 2))
    return nn.Sequential(*mods)


def discriminator_loss(logits_real: torch.Tensor, logits_perm: torch.Tensor) -> torch.Tensor:
    """½ CE(D(z), real) + ½ CE(D(z̄), permuted): class 0 for q(z), class 1 for q̄(z)."""
    real = torch.zeros(len(logits_real), dtype=torch.long, device=logits_real.device)
    perm = torch.ones(len(logits_perm), dtype=torch.long, device=logits_perm.device)
    return 0.5 * (F.cross_entropy(logits_real, real) + F.cross_entropy(logits_perm, perm))


def discriminator_logs(logits_real: torch.Tensor, logits_perm: torch.Tensor) -> dict[str, torch.Tensor]:
    """D(z_real), D(z_perm) (mean probability of "real") and D's accuracy over both sets."""
    p_real = torch.softmax(logits_real, 1)[:, 0]
    p_perm = torch.softmax(logits_perm, 1)[:, 0]
    correct = torch.cat([(logits_real.argmax(1) == 0), (logits_perm.argmax(1) == 1)]).float()
    return {"d_z_real": p_real.mean(), "d_z_perm": p_perm.mean(), "disc_accuracy": correct.mean()}


@register
class FactorVAE(Objective):
    name = "factor_vae"
    paper = "Kim & Mnih 2018, Disentangling by Factorising"
    hparams = (
        HParam("gamma", 10.0, "FactorVAE: weight γ of the TC term", min=0.0),
        HParam("permutation", "same_batch", "FactorVAE: where permuted codes come from (same_batch as "
               "disentanglement_lib; second_batch = the paper's, each batch split in halves)", type=str,
               choices=("same_batch", "second_batch")),
        HParam("disc_lr", 1e-4, "FactorVAE: discriminator Adam learning rate (betas 0.5, 0.9)", min=0.0),
        HParam("disc_hidden", 1000, "FactorVAE: discriminator width (the paper's 1000; smaller for quick tests)",
               type=int, min=1),
        HParam("disc_layers", 6, "FactorVAE: discriminator hidden layers (the paper's 6)", type=int, min=1),
    )
    phases = (Phase("vae", "vae_phase", params=()),
              Phase("discriminator", "discriminator_phase", trains_vae=False, params=("discriminator.",),
                    lr="disc_lr", betas=DISC_BETAS))

    def __init__(self, reconstruction: str = "bernoulli", latent_dim: int | None = None, **hp: Any) -> None:
        super().__init__(reconstruction, latent_dim=latent_dim, **hp)
        self.discriminator = discriminator(latent_dim or 10, self.disc_hidden, self.disc_layers)

    def tc_estimate(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(TC estimate, D's logits on z): mean over the batch of logit₀ − logit₁ (Kim & Mnih eq. 3)."""
        logits = self.discriminator(z)
        return (logits[:, 0] - logits[:, 1]).mean(), logits

    def loss(self, out: VAEOutput, x: torch.Tensor, step: torch.Tensor,
             noise: torch.Tensor | None = None) -> LossTerms:
        """rec + KL + γ·TC; ``noise`` (uniform, z's shape) permutes the codes of D's logged accuracy."""
        rec, kl, logs = self.base_terms(out, x)
        tc, logits_real = self.tc_estimate(out.z)
        loss = rec + kl + self.gamma * tc
        with torch.no_grad():
            logs.update(discriminator_logs(logits_real, self.discriminator(permute_dims(out.z, noise))))
        return LossTerms(loss, {"loss": loss, **logs, "tc": tc})

    def split_batch(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(images for the VAE, images whose codes D sees permuted, or None to permute the VAE's own)."""
        if self.permutation == "second_batch":
            x, x_other = batch.chunk(2, 0)
            return x, x_other
        return batch, None

    def adversary_loss(self, z_real: torch.Tensor, z_other: torch.Tensor,
                       noise: torch.Tensor | None = None) -> torch.Tensor:
        """D's loss on real codes ``z_real`` vs ``z_other`` permuted (by ``noise``, uniform, when given)."""
        z_perm = permute_dims(z_other, noise)
        return discriminator_loss(self.discriminator(z_real), self.discriminator(z_perm))

    def draws(self, batch_size: int) -> list[Draw]:
        """A step's random draws in the order it uses them: the VAE's reparameterization noise ``eps``, the
        permutation ``loss_noise`` of :meth:`loss`'s logs, the second half's ``eps_other`` (second_batch
        only), and the permutation ``adversary_noise`` of D's phase."""
        d = int(self.latent_dim or 10)
        b1 = -(-batch_size // 2) if self.permutation == "second_batch" else batch_size
        draws = [Draw("eps", "normal", (b1, d)), Draw("loss_noise", "uniform", (b1, d))]
        if self.permutation == "second_batch":
            b2 = batch_size - b1
            return draws + [Draw("eps_other", "normal", (b2, d)), Draw("adversary_noise", "uniform", (b2, d))]
        return draws + [Draw("adversary_noise", "uniform", (b1, d))]

    def vae_phase(self, vae: VAEFn, batch: torch.Tensor, noise: dict[str, torch.Tensor], step: torch.Tensor,
                  carry: dict[str, torch.Tensor]) -> PhaseOut:
        """The VAE's update on rec + KL + γ·TC; passes its codes on to D's phase."""
        x, _ = self.split_batch(batch)
        out = vae(x, noise["eps"])
        terms = self.loss(out, x, step, noise=noise["loss_noise"])
        return PhaseOut(terms.loss, terms.logs, {"z": out.z.detach()})

    def discriminator_phase(self, vae: VAEFn, batch: torch.Tensor, noise: dict[str, torch.Tensor],
                            step: torch.Tensor, carry: dict[str, torch.Tensor]) -> PhaseOut:
        """D's update on real vs permuted codes; the second half is encoded by the just-updated VAE."""
        _, x_other = self.split_batch(batch)
        z_real = carry["z"]
        if x_other is None:
            z_other = z_real
        else:
            with torch.no_grad():
                z_other = vae(x_other, noise["eps_other"]).z
        d_loss = self.adversary_loss(z_real, z_other, noise["adversary_noise"])
        return PhaseOut(d_loss, {"disc_loss": d_loss.detach()}, {})
