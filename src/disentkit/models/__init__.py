"""Models: encoder/decoder architectures and one objective per file, each registering itself by name;
``custom.py``: the two-method protocol (``encode``, ``decode``) by which your own VAE trains.

``ARCHITECTURES`` maps a name to its encoder/decoder builder, ``OBJECTIVES`` a ``--model`` name to its class:

Example:

    >>> from disentkit.models import ARCHITECTURES, OBJECTIVES
    >>> sorted(ARCHITECTURES)
    ['burgess', 'locatello']
    >>> "beta_tcvae" in OBJECTIVES and OBJECTIVES["factor_vae"].name
    'factor_vae'
"""

from __future__ import annotations

from ..registry import import_all
from .architectures import ARCHITECTURES
from .base import OBJECTIVES, Draw, GaussianVAE, HParam, LossTerms, Objective, Phase, PhaseOut, VAEOutput, register
from .custom import CustomVAE

import_all(__name__, __path__, skip=lambda name: name in ("architectures", "base", "custom", "layers"))


def get_objective(name: str) -> type[Objective]:
    """The objective class registered as ``name`` (an unknown name is a one-line error naming the choices).

    Example:

        >>> from disentkit.models import get_objective
        >>> cls = get_objective("beta_vae")
        >>> cls.hparams[0].name, cls.hparams[0].default
        ('beta', 1.0)
    """
    return OBJECTIVES[name]


def all_hparams() -> dict[str, tuple[HParam, list[str]]]:
    """Every declared hyperparameter, with the models that use it (one CLI flag each).

    Example:

        >>> from disentkit.models import all_hparams
        >>> param, models = all_hparams()["beta"]
        >>> param.flag, "beta_tcvae" in models
        ('--beta', True)
    """
    out: dict[str, tuple[HParam, list[str]]] = {}
    for name, cls in OBJECTIVES.items():
        for p in cls.hparams:
            out.setdefault(p.name, (p, []))[1].append(name)
    return out


__all__ = ["ARCHITECTURES", "OBJECTIVES", "CustomVAE", "Draw", "GaussianVAE", "HParam", "LossTerms", "Objective", "Phase",
           "PhaseOut", "VAEOutput", "all_hparams", "get_objective", "register"]
