"""Training: one engine for single runs and fused ensembles (``step``, ``members``, ``loop``), its
configuration, run folders with resumable state, and safe checkpoints.

``TrainConfig`` is imported eagerly (the CLI builds its flags from it); the rest on first use, so that
``disentkit --help`` and ``import disentkit.train.config`` do not pay for importing Lightning.
"""

from __future__ import annotations

from typing import Any

from .config import TrainConfig

_LAZY = {"fit": "run", "resume": "run", "Checkpoint": "checkpoint", "load_checkpoint": "checkpoint",
         "save_checkpoint": "checkpoint"}

__all__ = ["Checkpoint", "TrainConfig", "fit", "load_checkpoint", "resume", "save_checkpoint"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy names too, so that ``help(disentkit.train)`` and tab completion list them."""
    return sorted(list(globals()) + list(_LAZY))
