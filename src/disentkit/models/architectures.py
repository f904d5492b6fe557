"""Convolutional encoders and decoders for 64×64 images.

``locatello``: disentanglement_lib's ``conv_encoder`` / ``deconv_decoder`` (Locatello et al. 2019,
Table 1): conv 32 k4s2 → 32 k4s2 → 64 k2s2 → 64 k2s2 → FC 256 → (μ, log σ²); decoder FC 256 →
FC 1024 → 4×4×64 → deconv 64, 32, 32, C (k4s2). TensorFlow's "same" padding equals padding 1 for
k4s2 and 0 for k2s2 on these even sizes.

``burgess``: Burgess et al. 2018 (Understanding disentangling in β-VAE, App. A.1): four conv 32 k4s2,
FC 256, FC 256 → (μ, log σ²); mirrored decoder.

ReLUs work in place: no layer here needs its output kept apart from the ReLU's (convolution and
linear backward read their inputs), so this only saves memory traffic: 1.2× a CPU training step.

The layers are :class:`~disentkit.models.layers.Conv` and :class:`~disentkit.models.layers.Deconv`: PyTorch's,
with exact CPU shortcuts where oneDNN is slow (``layers.py``).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .layers import Conv, Deconv


class Encoder(nn.Module):
    """Conv trunk + MLP, ending in two heads: mean and log-variance of q(z|x)."""

    def __init__(self, conv: nn.Sequential, mlp: nn.Sequential, hidden: int, latent_dim: int) -> None:
        super().__init__()
        self.conv, self.mlp = conv, mlp
        self.mu = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.mlp(self.conv(x).flatten(1))
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    """MLP to a 4×4 feature map, then transposed convs up to 64×64 logits."""

    def __init__(self, mlp: nn.Sequential, map_shape: tuple[int, int, int], deconv: nn.Sequential) -> None:
        super().__init__()
        self.mlp, self.map_shape, self.deconv = mlp, map_shape, deconv

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.mlp(z).view(-1, *self.map_shape))


def _relu() -> nn.ReLU:
    return nn.ReLU(inplace=True)


def _convs(channels: list[int], kernels: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in, c_out, k in zip(channels[:-1], channels[1:], kernels):
        layers += [Conv(c_in, c_out, k, stride=2, padding=1 if k == 4 else 0), _relu()]
    return nn.Sequential(*layers)


def _deconvs(channels: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
        layers.append(Deconv(c_in, c_out, 4, stride=2, padding=1))
        if i < len(channels) - 2:
            layers.append(_relu())
    return nn.Sequential(*layers)


def locatello(channels: int, latent_dim: int) -> tuple[Encoder, Decoder]:
    enc = Encoder(_convs([channels, 32, 32, 64, 64], [4, 4, 2, 2]),
                  nn.Sequential(nn.Linear(64 * 4 * 4, 256), _relu()), 256, latent_dim)
    dec = Decoder(nn.Sequential(nn.Linear(latent_dim, 256), _relu(), nn.Linear(256, 1024), _relu()),
                  (64, 4, 4), _deconvs([64, 64, 32, 32, channels]))
    return enc, dec


def burgess(channels: int, latent_dim: int) -> tuple[Encoder, Decoder]:
    enc = Encoder(_convs([channels, 32, 32, 32, 32], [4, 4, 4, 4]),
                  nn.Sequential(nn.Linear(32 * 4 * 4, 256), _relu(), nn.Linear(256, 256), _relu()),
                  256, latent_dim)
    dec = Decoder(nn.Sequential(nn.Linear(latent_dim, 256), _relu(), nn.Linear(256, 256), _relu(),
                                nn.Linear(256, 32 * 4 * 4), _relu()),
                  (32, 4, 4), _deconvs([32, 32, 32, 32, channels]))
    return enc, dec


ARCHITECTURES: dict[str, Callable[[int, int], tuple[Encoder, Decoder]]] = {
    "locatello": locatello,
    "burgess": burgess,
}
