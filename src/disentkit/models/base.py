"""What every objective shares: the Gaussian VAE, reconstruction likelihoods, the KL, and the
:class:`Objective` base class with its declared hyperparameters.

An objective file (``beta_vae.py``, ``factor_vae.py``, …) subclasses :class:`Objective`, declares its
hyperparameters as :class:`HParam` entries, and implements :meth:`Objective.loss`. Registration is
one decorator, :func:`register`. An objective never drives the trainer: it declares its update
*phases* (:class:`Phase`: which weights, which optimizer, which loss) and the random *draws* a step
needs (:class:`Draw`), and ``train/step.py`` runs them over one or many members.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry
from .architectures import ARCHITECTURES


@dataclass
class VAEOutput:
    """One forward pass: posterior parameters, the sample, and the decoder's logits.

    Example:

        >>> import torch
        >>> from disentkit.models import GaussianVAE
        >>> out = GaussianVAE(latent_dim=4)(torch.zeros(2, 1, 64, 64), eps=torch.zeros(2, 4))
        >>> out.mu.shape, out.logits.shape, bool((out.z == out.mu).all())
        (torch.Size([2, 4]), torch.Size([2, 1, 64, 64]), True)
    """

    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    logits: torch.Tensor


class GaussianVAE(nn.Module):
    """Encoder q(z|x) = N(μ, diag σ²), decoder p(x|z) emitting logits, standard normal prior.

    Example:

        >>> import torch
        >>> from disentkit.models import GaussianVAE
        >>> vae = GaussianVAE("locatello", channels=1, latent_dim=10)   # disentanglement_lib's conv net
        >>> mu, logvar = vae.encode(torch.rand(8, 1, 64, 64))
        >>> mu.shape, vae.decode(mu).shape
        (torch.Size([8, 10]), torch.Size([8, 1, 64, 64]))
    """

    def __init__(self, architecture: str = "locatello", channels: int = 1, latent_dim: int = 10) -> None:
        super().__init__()
        self.encoder, self.decoder = ARCHITECTURES[architecture](channels, latent_dim)
        self.latent_dim = latent_dim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior's mean and log-variance (B, D) each: the first method of the VAE protocol
        (``models/custom.py``); everything outside the engine encodes through it."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's logits (B, C, H, W) of codes (B, D): the protocol's second method."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> VAEOutput:
        """Encode, sample z = μ + σ·ε (``eps`` given by the trainer, else drawn here), decode."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar) if eps is None else mu + torch.exp(0.5 * logvar) * eps
        return VAEOutput(mu, logvar, z, self.decode(z))

    @torch.no_grad()
    def encode_mean(self, x: torch.Tensor) -> torch.Tensor:
        """The mean representation μ(x), as the metrics use by default."""
        return self.encode(x)[0]


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = μ + σ·ε, ε ~ N(0, I) (Kingma & Welling 2014, eq. 10)."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) per sample and latent, shape (B, D): ½(μ² + σ² − log σ² − 1)."""
    return 0.5 * (mu.square() + logvar.exp() - logvar - 1)


def reconstruction_loss(logits: torch.Tensor, x: torch.Tensor, kind: str = "bernoulli") -> torch.Tensor:
    """Negative log-likelihood summed over pixels, one value per sample (B,).

    ``bernoulli``: sigmoid cross-entropy (disentanglement_lib's default). ``gaussian``: squared error
    of sigmoid(logits), i.e. a unit-variance Gaussian up to a constant (dlib's ``l2_loss``).
    """
    if kind == "bernoulli":
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    if kind == "gaussian":
        return (torch.sigmoid(logits) - x).square().flatten(1).sum(1)
    raise ValueError(f"unknown reconstruction loss '{kind}'")


def log_normal_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(z; μ, σ²), broadcasting (used by the TC estimators)."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).square() * torch.exp(-logvar))


def log_density_matrix(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log q(z_i,d | x_j) for every pair of batch members, shape (B, B, D): row i is the sample,
    column j the posterior it is scored under (the minibatch estimators of Chen et al. 2018, §C.1)."""
    return log_normal_density(z[:, None, :], mu[None, :, :], logvar[None, :, :])


def batch_covariance(x: torch.Tensor) -> torch.Tensor:
    """Covariance (D, D) of a batch (B, D), normalised by B: E[x xᵀ] − E[x] E[x]ᵀ (as disentanglement_lib)."""
    centred = x - x.mean(0, keepdim=True)
    return centred.T @ centred / x.shape[0]


@dataclass(frozen=True)
class HParam:
    """A hyperparameter an objective declares: it becomes a CLI flag and a config key.

    Example:

        >>> from disentkit.models import HParam
        >>> p = HParam("gamma", 10.0, "weight of the total-correlation penalty", min=0.0)
        >>> p.flag, p.type(p.default)
        ('--gamma', 10.0)
    """

    name: str
    default: Any
    help: str
    type: type = float
    min: float | None = None     # inclusive lower bound, checked before training
    choices: tuple = ()
    refused: tuple = ()          # values inside the range that mean nothing (Ada-VAE's k = 0)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass
class LossTerms:
    """An objective's loss plus every term it logs (scalar tensors: never ``.item()`` here).

    Example:

        >>> import torch
        >>> from disentkit.models import LossTerms
        >>> rec, kl = torch.tensor(30.0), torch.tensor(2.0)
        >>> terms = LossTerms(rec + 4 * kl, {"reconstruction": rec, "kl": kl})
        >>> float(terms.loss), sorted(terms.logs)
        (38.0, ['kl', 'reconstruction'])
    """

    loss: torch.Tensor
    logs: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Phase:
    """One update of a training step: ``method`` of the objective computes a loss, whose gradient one
    optimizer applies to the weights this phase trains.

    ``trains_vae``: the VAE's weights; ``params``: prefixes of the objective's own parameter names (None:
    every one that no other phase claims, e.g. L-VAE's learnable σ's). The optimizer is Adam with ``betas``
    and the run's ``--lr``, or the hyperparameter named by ``lr`` (FactorVAE's ``disc_lr``).

    Example:

        >>> from disentkit.models import get_objective
        >>> vae_phase, disc_phase = get_objective("factor_vae").phases
        >>> disc_phase.name, disc_phase.trains_vae, disc_phase.params, disc_phase.lr
        ('discriminator', False, ('discriminator.',), 'disc_lr')
    """

    name: str = "vae"
    method: str = "vae_phase"
    trains_vae: bool = True
    params: tuple[str, ...] | None = None
    lr: str | None = None
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass(frozen=True)
class Draw:
    """A random tensor a training step needs: ``kind`` normal or uniform, of ``shape`` (per member).
    The trainer draws them in the listed order from each member's own generator.

    Example:

        >>> from disentkit.models import get_objective
        >>> [d.name for d in get_objective("factor_vae")(latent_dim=10).draws(64)]
        ['eps', 'loss_noise', 'adversary_noise']
    """

    name: str
    kind: str
    shape: tuple[int, ...]


class PhaseOut(NamedTuple):
    """What a phase returns: its loss (scalar), the values it logs, and tensors for later phases.

    Example:

        >>> import torch
        >>> from disentkit.models import GaussianVAE, get_objective
        >>> objective, vae = get_objective("beta_vae")(latent_dim=4, beta=4.0), GaussianVAE(latent_dim=4)
        >>> out = objective.vae_phase(vae, torch.rand(8, 1, 64, 64).round(), {"eps": torch.randn(8, 4)},
        ...                           torch.tensor(0), {})
        >>> out.loss.ndim, sorted(out.logs)[:3], out.carry
        (0, ['elbo', 'kl', 'kl_dim/0'], {})
    """

    loss: torch.Tensor
    logs: dict[str, torch.Tensor]
    carry: dict[str, torch.Tensor]


VAEFn = Callable[[torch.Tensor, torch.Tensor], VAEOutput]


class Objective(nn.Module):
    """Base class of a training objective; subclasses set the class variables and :meth:`loss`.

    Example (β-VAE's objective, Higgins et al. 2017, eq. 4; ``@register`` would make it ``--model my_vae``):

        >>> import torch
        >>> from disentkit.models import GaussianVAE, HParam, LossTerms, Objective
        >>> class MyVAE(Objective):
        ...     name = "my_vae"
        ...     hparams = (HParam("beta", 4.0, "weight of the KL", min=0.0),)
        ...     def loss(self, out, x, step):
        ...         rec, kl, logs = self.base_terms(out, x)
        ...         return LossTerms(rec + self.beta * kl, logs)
        >>> vae, objective = GaussianVAE(latent_dim=4), MyVAE(latent_dim=4, beta=2.0)
        >>> x = torch.rand(8, 1, 64, 64).round()
        >>> terms = objective.loss(vae(x, torch.zeros(8, 4)), x, torch.tensor(0))
        >>> objective.beta, terms.loss.ndim
        (2.0, 0)
    """

    name: ClassVar[str]
    paper: ClassVar[str] = ""
    hparams: ClassVar[tuple[HParam, ...]] = ()
    #: True: trains on pairs of images (2B a step: B first images, then partners that differ in ``k``
    #: factors; Ada-GVAE); the engine draws them (:mod:`disentkit.data.pairs`)
    pairs: ClassVar[bool] = False

    def __init__(self, reconstruction: str = "bernoulli", latent_dim: int | None = None,
                 dataset_size: int | None = None, **hp: Any) -> None:
        super().__init__()
        self.reconstruction = reconstruction
        self.latent_dim = latent_dim        # known at training; objectives with per-latent state need it
        self.dataset_size = dataset_size    # number of training images (β-TCVAE's estimators need N)
        for p in self.hparams:
            setattr(self, p.name, p.type(hp.get(p.name, p.default)))

    def base_terms(self, out: VAEOutput, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Reconstruction (batch mean), KL (batch mean of the sum over latents) and their logs."""
        rec = reconstruction_loss(out.logits, x, self.reconstruction).mean()
        kl_dim = gaussian_kl(out.mu, out.logvar).mean(0)
        kl = kl_dim.sum()
        logs = {"reconstruction": rec, "kl": kl, "elbo": -(rec + kl)}
        logs.update({f"kl_dim/{i}": k for i, k in enumerate(kl_dim)})
        return rec, kl, logs

    def loss(self, out: VAEOutput, x: torch.Tensor, step: torch.Tensor) -> LossTerms:
        """The objective's loss of one forward pass. ``step`` (VAE updates so far) is a 0-dim tensor on
        the device: read it with tensor operations only, never ``int(step)``, so that a captured step
        (CUDA graph, ``torch.compile``) sees its current value."""
        raise NotImplementedError

    #: the updates of one training step, in order (default: the VAE and the objective's own weights
    #: minimising :meth:`loss`)
    phases: ClassVar[tuple[Phase, ...]] = (Phase(),)

    def draws(self, batch_size: int) -> list[Draw]:
        """The random draws of one training step (default: the reparameterization noise ``eps``)."""
        return [Draw("eps", "normal", (batch_size, int(self.latent_dim or 10)))]

    def vae_phase(self, vae: VAEFn, x: torch.Tensor, noise: dict[str, torch.Tensor], step: torch.Tensor,
                  carry: dict[str, torch.Tensor]) -> PhaseOut:
        """The default phase: the VAE's forward with the step's noise, then :meth:`loss`. Validation runs
        the first phase without an update, the objective in eval mode."""
        terms = self.loss(vae(x, noise["eps"]), x, step)
        return PhaseOut(terms.loss, terms.logs, {})


OBJECTIVES: Registry[type[Objective]] = Registry("model", "(see `disentkit models`)")


def register(cls: type[Objective]) -> type[Objective]:
    """Class decorator: make an objective trainable as ``--model cls.name``.

    Example (every objective file does this; a second class under a taken name is an error):

        >>> from disentkit.models import OBJECTIVES, register
        >>> from disentkit.models.beta_vae import BetaVAE
        >>> OBJECTIVES["beta_vae"] is BetaVAE
        True
        >>> @register
        ... class MyVAE(BetaVAE):
        ...     name = "my_vae"      # doctest: +SKIP
    """
    return OBJECTIVES.register(cls)
