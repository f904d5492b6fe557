"""Models: encoder/decoder architectures and one objective per file, registered by name."""

from __future__ import annotations

from ..errors import DisentkitError
from . import beta_vae  # noqa: F401  (registers its objective)
from . import (adaptive_beta_vae, annealed_vae, beta_tcvae, dip_vae, factor_vae,  # noqa: F401
               lambda_beta_vae, learnable_beta_vae)
from .architectures import ARCHITECTURES
from .base import OBJECTIVES, GaussianVAE, HParam, LossTerms, Objective, VAEOutput, register


def get_objective(name: str) -> type[Objective]:
    if name not in OBJECTIVES:
        raise DisentkitError(f"unknown model '{name}'; choose one of: {', '.join(sorted(OBJECTIVES))}")
    return OBJECTIVES[name]


def all_hparams() -> dict[str, tuple[HParam, list[str]]]:
    """Every declared hyperparameter, with the models that use it (one CLI flag each)."""
    out: dict[str, tuple[HParam, list[str]]] = {}
    for name, cls in OBJECTIVES.items():
        for p in cls.hparams:
            out.setdefault(p.name, (p, []))[1].append(name)
    return out


__all__ = ["ARCHITECTURES", "OBJECTIVES", "GaussianVAE", "HParam", "LossTerms", "Objective", "VAEOutput",
           "all_hparams", "get_objective", "register"]
