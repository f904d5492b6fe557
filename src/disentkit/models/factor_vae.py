"""FactorVAE (Kim & Mnih 2018, "Disentangling by Factorising", eq. 2–3).

Loss: reconstruction + KL + γ·TC(z), where the total correlation TC = KL(q(z) ‖ q̄(z)) of the
aggregate posterior q(z) against the product of its marginals q̄(z) is estimated with a
discriminator D trained to tell samples of q(z) (class 0, "real") from samples of q̄(z) (class 1,
drawn by permuting each latent dimension independently across the batch, Alg. 1):
TC ≈ E_q(z)[log D(z)/(1 − D(z))] = E[logit₀ − logit₁].

Optimization is manual (two optimizers): the VAE steps on its loss, then D steps on the
cross-entropy of real vs permuted codes (detached). D: MLP 6 × 1000, leaky ReLU 0.2, 2 logits
(paper App. A / disentanglement_lib), Adam lr 1e-4, betas (0.5, 0.9).

The permuted codes come from the same batch by default (as disentanglement_lib does); with
``--permutation second_batch`` each batch is split in two halves: the first trains the VAE, the
second is encoded and permuted for D, as in the paper's Alg. 1 (so ``--batch-size`` then counts both).

Fused ensembles (``train/ensemble.py``) run the same step with the members' parameters stacked: they
draw a step's random numbers per member in the order :meth:`FactorVAE.step_noise` lists (the order a
single run draws them) and hand them to :meth:`FactorVAE.loss` and :meth:`FactorVAE.adversary_loss`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import HParam, LossTerms, Objective, VAEOutput, register

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
    manual_optimization = True
    optimizer_hparams = ("disc_lr",)  # configure an optimizer, not the loss: shared by an ensemble's members

    def __init__(self, reconstruction: str = "bernoulli", latent_dim: int | None = None, **hp: Any) -> None:
        super().__init__(reconstruction, latent_dim=latent_dim, **hp)
        self.discriminator = discriminator(latent_dim or 10, self.disc_hidden, self.disc_layers)

    def tc_estimate(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(TC estimate, D's logits on z): mean over the batch of logit₀ − logit₁ (Kim & Mnih eq. 3)."""
        logits = self.discriminator(z)
        return (logits[:, 0] - logits[:, 1]).mean(), logits

    def loss(self, out: VAEOutput, x: torch.Tensor, step: int, noise: torch.Tensor | None = None) -> LossTerms:
        """rec + KL + γ·TC; ``noise`` (uniform, z's shape) permutes the codes of D's logged accuracy."""
        rec, kl, logs = self.base_terms(out, x)
        tc, logits_real = self.tc_estimate(out.z)
        loss = rec + kl + self.gamma * tc
        with torch.no_grad():
            logs.update(discriminator_logs(logits_real, self.discriminator(permute_dims(out.z, noise))))
        return LossTerms(loss, {"loss": loss, **logs, "tc": tc})

    def split_batch(self, batch: torch.Tensor, dim: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(images for the VAE, images whose codes D sees permuted, or None to permute the VAE's own)."""
        if self.permutation == "second_batch":
            x, x_other = batch.chunk(2, dim)
            return x, x_other
        return batch, None

    def adversary_loss(self, z_real: torch.Tensor, z_other: torch.Tensor,
                       noise: torch.Tensor | None = None) -> torch.Tensor:
        """D's loss on real codes ``z_real`` vs ``z_other`` permuted (by ``noise``, uniform, when given)."""
        z_perm = permute_dims(z_other, noise)
        return discriminator_loss(self.discriminator(z_real), self.discriminator(z_perm))

    def step_noise(self, batch_size: int) -> list[tuple[str, str, tuple[int, ...]]]:
        """The random draws of one training step as (name, normal|uniform, shape), in the order
        :meth:`manual_step` makes them: the VAE's reparameterization noise ``eps``, the permutation
        ``loss_noise`` of :meth:`loss`'s logs, the second half's ``eps_other`` (second_batch only), and
        the permutation ``adversary_noise`` of D's step."""
        d = int(self.latent_dim or 10)
        b1 = -(-batch_size // 2) if self.permutation == "second_batch" else batch_size
        draws = [("eps", "normal", (b1, d)), ("loss_noise", "uniform", (b1, d))]
        if self.permutation == "second_batch":
            b2 = batch_size - b1
            return draws + [("eps_other", "normal", (b2, d)), ("adversary_noise", "uniform", (b2, d))]
        return draws + [("adversary_noise", "uniform", (b1, d))]

    def vae_parameters(self):
        """The discriminator is trained by its own optimizer only, never by the VAE's."""
        return iter(())

    def extra_optimizers(self) -> list:
        # foreach: the elementwise kernels for all tensors at once (as the VAE's Adam on a CPU, train/fast.py)
        return [torch.optim.Adam(self.discriminator.parameters(), lr=self.disc_lr, betas=DISC_BETAS, foreach=True)]

    def manual_step(self, module: Any, batch: torch.Tensor) -> LossTerms:
        """VAE step on rec + KL + γ·TC, then one discriminator step on real vs permuted codes."""
        vae_opt, d_opt = module.optimizers()
        x, x_other = self.split_batch(batch)
        out = module.vae(x)
        terms = self.loss(out, x, module.vae_step)
        vae_opt.zero_grad()
        module.manual_backward(terms.loss)
        vae_opt.step()

        z_real = out.z.detach()
        if x_other is None:
            z_other = z_real
        else:
            with torch.no_grad():
                z_other = module.vae(x_other).z
        d_loss = self.adversary_loss(z_real, z_other)
        d_opt.zero_grad()  # also clears the gradient the VAE loss left on D
        module.manual_backward(d_loss)
        d_opt.step()
        terms.logs["disc_loss"] = d_loss.detach()
        return terms
