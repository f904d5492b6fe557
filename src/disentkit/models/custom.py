"""Your own encoder and decoder, trained by disentkit: the two-method VAE protocol.

Any ``nn.Module`` with these two methods can be trained with every objective (``fit(config, vae=net)``),
scored by every metric, reported, saved and loaded:

* ``encode(x) -> (mu, logvar)``: images (B, C, H, W) in [0, 1] to the mean and log-variance (B, D) each
  of a diagonal Gaussian q(z|x);
* ``decode(z) -> logits``: codes (B, D) to the logits (B, C, H, W) of p(x|z) (Bernoulli logits, or the
  pre-sigmoid means of ``--reconstruction gaussian``).

The prior is N(0, I) and z = μ + σ·ε is drawn by disentkit (its seeded noise), as for the built-in
architectures. Example::

    class MyVAE(nn.Module):
        def __init__(self, d=6):
            super().__init__()
            self.enc = nn.Sequential(nn.Flatten(), nn.Linear(64 * 64, 2 * d))
            self.dec = nn.Sequential(nn.Linear(d, 64 * 64), nn.Unflatten(1, (1, 64, 64)))
        def encode(self, x):
            return self.enc(x).chunk(2, dim=1)
        def decode(self, z):
            return self.dec(z)

    run = fit(TrainConfig(dataset="dsprites_procedural", latent_dim=6, out="runs/mine"), vae=MyVAE())
    model = disentkit.load(run, vae=MyVAE())     # weights from the run, into a fresh instance

A run records ``architecture: custom:<module>.<class>``; ``disentkit evaluate``/``report`` cannot rebuild
your class, so they say to load it from Python. The built-in :class:`GaussianVAE` follows the same protocol.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import DisentkitError
from .base import GaussianVAE

PREFIX = "custom:"


class CustomVAE(GaussianVAE):
    """A user's module behind :class:`GaussianVAE`'s interface (forward with the trainer's noise,
    ``encode_mean``); its weights are the module's, under ``net.``.

    Example:

        >>> import torch
        >>> from torch import nn
        >>> from disentkit.models import CustomVAE
        >>> class Linear(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.enc, self.dec = nn.Linear(64 * 64, 2 * 3), nn.Linear(3, 64 * 64)
        ...     def encode(self, x):
        ...         return self.enc(x.flatten(1)).chunk(2, dim=1)
        ...     def decode(self, z):
        ...         return self.dec(z).view(-1, 1, 64, 64)
        >>> vae = CustomVAE(Linear(), latent_dim=3)
        >>> out = vae(torch.rand(2, 1, 64, 64), eps=torch.zeros(2, 3))
        >>> out.z.shape, out.logits.shape, sorted(vae.state_dict())[0]
        (torch.Size([2, 3]), torch.Size([2, 1, 64, 64]), 'net.dec.bias')
    """

    def __init__(self, net: nn.Module, latent_dim: int | None = None) -> None:
        nn.Module.__init__(self)  # no built-in encoder/decoder: the user's module is the whole VAE
        self.net = net
        self.latent_dim = latent_dim  # the run's; None where only encoding matters (metrics)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.net.decode(z)


def architecture_name(net: nn.Module) -> str:
    """What a run's config records for a user's VAE: ``custom:<module>.<qualified class name>``."""
    cls = type(net)
    return f"{PREFIX}{cls.__module__}.{cls.__qualname__}"


def is_custom(architecture: str | None) -> bool:
    return bool(architecture) and str(architecture).startswith(PREFIX)


def follows_protocol(net: object) -> bool:
    """An ``nn.Module`` with callable ``encode`` and ``decode``."""
    return isinstance(net, nn.Module) and all(callable(getattr(net, m, None)) for m in ("encode", "decode"))


def as_vae(net: nn.Module | GaussianVAE, latent_dim: int | None = None) -> GaussianVAE:
    """The module the engine trains: a :class:`GaussianVAE` as it is, a protocol module wrapped."""
    if isinstance(net, GaussianVAE):
        return net
    missing = [m for m in ("encode", "decode") if not callable(getattr(net, m, None))]
    if not isinstance(net, nn.Module) or missing:
        raise DisentkitError(f"vae= must be an nn.Module with encode(x) -> (mu, logvar) and decode(z) -> logits "
                             f"(see disentkit.models.custom); {type(net).__name__} "
                             f"{'is not an nn.Module' if not isinstance(net, nn.Module) else 'has no ' + ' or '.join(missing)}")
    return CustomVAE(net, latent_dim)


@torch.no_grad()
def check_protocol(vae: GaussianVAE, image_shape: tuple[int, ...], latent_dim: int) -> None:
    """Run the protocol once on two blank images (on the VAE's device, in eval mode, restored after) and
    fail with one line naming what is wrong: not a (mu, logvar) pair, codes of the wrong width, or logits
    not shaped like the images."""
    name = type(getattr(vae, "net", vae)).__name__
    device = next((p.device for p in vae.parameters()), torch.device("cpu"))
    x = torch.zeros(2, *image_shape, device=device)
    was = vae.training
    vae.eval()
    try:
        out = vae.encode(x)
        if not (isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
            raise DisentkitError(f"{name}.encode must return (mu, logvar), two tensors (B, D); got {type(out).__name__}")
        mu, logvar = out
        if mu.shape != (2, latent_dim) or logvar.shape != mu.shape:
            raise DisentkitError(f"{name}.encode returned mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} for 2 "
                                 f"images, but the run has latent_dim={latent_dim}: both must be (2, {latent_dim}); "
                                 f"set latent_dim to your VAE's code size")
        logits = vae.decode(mu)
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != tuple(x.shape):
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise DisentkitError(f"{name}.decode must return logits shaped like the images {tuple(x.shape)}; got {got}")
    finally:
        vae.train(was)
