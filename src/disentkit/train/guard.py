"""The non-finite guard: a NaN or infinite loss stops a member's training, without a host sync per step.

Every step, :meth:`Guard.update` folds the finiteness of the step's losses and logged terms into two device
tensors (the first step at which each member went non-finite, and which terms were non-finite then); the
loop reads them (:meth:`Guard.diverged`) only where it syncs anyway: when it writes logs, validates,
evaluates, draws images or checkpoints. A checkpoint is written only from finite weights
(:func:`finite_weights`), so the last one is the run's last good result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..files import write_atomic

DIVERGED_FILE = "diverged.json"
#: terms tracked by name (the losses first, then the logged terms except the per-latent ``kl_dim/*``)
MAX_TERMS = 32


@dataclass
class Divergence:
    """What went non-finite: the member, the step (1-based, as logged), and the terms that were NaN/inf."""

    member: int
    step: int
    terms: list[str]


class Guard:
    """Per-member record of the first non-finite step; updated on the device inside the training step
    (and inside a captured CUDA graph: every update is in place on static buffers)."""

    def __init__(self, num_members: int, device: torch.device) -> None:
        self.first = torch.full((num_members,), -1, dtype=torch.long, device=device)
        self.terms = torch.zeros((num_members, MAX_TERMS), dtype=torch.bool, device=device)
        self.names: list[str] = []
        self.num = num_members

    def buffers(self) -> list[torch.Tensor]:
        return [self.first, self.terms]

    @torch.no_grad()
    def update(self, count: torch.Tensor, losses: list[torch.Tensor], logs: dict[str, torch.Tensor]) -> None:
        """Record step ``count`` (the updates before this one) for members whose losses or terms are not finite."""
        terms = {f"loss/{i}" if len(losses) > 1 else "loss": v for i, v in enumerate(losses)}
        terms.update((k, v) for k, v in logs.items() if not k.startswith("kl_dim/") and k not in terms)
        named = list(terms.items())[:MAX_TERMS]
        self.names = [k for k, _ in named]
        values = torch.stack([v.detach().float().reshape(self.num) for _, v in named], 1)   # (M, T)
        bad_terms = ~torch.isfinite(values)
        new = bad_terms.any(1) & (self.first < 0)
        self.first.copy_(torch.where(new, count, self.first))
        self.terms[:, :len(named)].copy_(torch.where(new[:, None], bad_terms, self.terms[:, :len(named)]))

    def diverged(self, skip: set[int] = frozenset()) -> list[Divergence]:
        """Members (not in ``skip``) that went non-finite, read from the device (one sync)."""
        first, terms = self.first.tolist(), self.terms.tolist()
        out = []
        for m in range(self.num):
            if first[m] >= 0 and m not in skip:
                out.append(Divergence(m, first[m] + 1, [n for n, bad in zip(self.names, terms[m]) if bad]))
        return out

    def state_dict(self) -> dict:
        return {"first": self.first.cpu(), "terms": self.terms.cpu()}

    def load_state_dict(self, state: dict | None) -> None:
        if state:
            self.first.copy_(state["first"])
            self.terms.copy_(state["terms"])


@torch.no_grad()
def finite_weights(state: dict[str, torch.Tensor]) -> bool:
    """Whether every floating tensor of a checkpoint's state is finite (one sync)."""
    flags = [torch.isfinite(v).all() for v in state.values() if v.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


def likely_cause(config: dict, div: Divergence) -> str:
    """A hint naming the settings that most often make a VAE diverge."""
    hp = config.get("hparams", {})
    big = {k: v for k, v in hp.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 100}
    hint = f"the learning rate (--lr {config.get('lr')})"
    if big:
        hint += " or " + ", ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in big.items())
    return f"likely cause: {hint} is too large; lower it (disentanglement_lib trains with --lr 1e-4)"


def keep_last_good(out: Path, div: Divergence, config: dict, detected_at: int, checkpoint_every: int) -> str:
    """A diverged member's folder: its last finite periodic checkpoint becomes its ``model.safetensors``
    (marked ``diverged_at``), ``diverged.json`` says what happened; returns the one-line message."""
    from .checkpoint import read_checkpoint, save_checkpoint

    last, kept = out / "last.safetensors", None
    if last.is_file():
        state, saved, meta = read_checkpoint(last)
        kept = int(json.loads(meta.get("step", "0")))
        save_checkpoint(out / "model.safetensors", state, saved, step=kept, diverged_at=div.step)
        last.unlink()
    what = ", ".join(div.terms) or "the loss"
    result = (f"its last finite weights (step {kept}) are kept in model.safetensors" if kept is not None else
              f"no finite checkpoint was kept (the first was due at step {checkpoint_every})")
    message = (f"{out}: training diverged at step {div.step}: {what} became NaN or infinite; {result}; "
               f"{likely_cause(config, div)}")
    record = {"step": div.step, "terms": div.terms, "detected_at": detected_at, "kept_step": kept,
              "message": message}
    write_atomic(out / DIVERGED_FILE, json.dumps(record, indent=1))
    return message
