"""The one training step: an objective's phases over the members, each with its own optimizer.

For every phase in order (:attr:`~disentkit.models.Objective.phases`): zero its optimizer's gradients, run
the phase's loss for every member under the run's autocast, back-propagate the members' summed loss, and
step its optimizer (through a gradient scaler with 16-mixed, updated once a step). The members' step
counter is a device tensor incremented in place, so a captured step (``--cuda-graphs``) reads its current
value on every replay. The same step serves single runs (M = 1) and fused ensembles.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

from .fast import CapturedStep, make_adam
from .guard import Guard
from .members import Members

Logs = dict[str, torch.Tensor]


def make_optimizers(members: Members, config: dict, capturable: bool = False) -> list[torch.optim.Optimizer]:
    """One Adam per phase: the run's ``lr`` and the phase's betas, or the learning rate its ``lr``
    hyperparameter names (the same for every member: fused members share the optimizer)."""
    out = []
    for i, phase in enumerate(type(members.objective).phases):
        lr = float(config["hparams"][phase.lr]) if phase.lr else float(config["lr"])
        out.append(make_adam(members.phase_parameters(i), lr, betas=phase.betas, capturable=capturable))
    return out


class Step:
    """``step(batch, noise) -> logs``: one update of every phase; logs are the step's tensors (scalars for
    one member, (M,) for several), read by the loop only when it writes them."""

    def __init__(self, members: Members, optimizers: list[torch.optim.Optimizer], precision: str = "32-true",
                 autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
                 cuda_graphs: bool = False) -> None:
        self.members, self.optimizers = members, optimizers
        self.phases = type(members.objective).phases
        self.device = members.device
        self.count = torch.zeros((), dtype=torch.long, device=self.device)   # VAE updates so far
        self.scaler = torch.amp.GradScaler(self.device.type) if precision == "16-mixed" else None
        self.cuda_graphs = cuda_graphs
        self._autocast = autocast or contextlib.nullcontext
        self._captured: CapturedStep | None = None
        self.guard = Guard(members.num, self.device)   # NaN/inf losses, recorded on the device

    def body(self, batch: torch.Tensor, noise: dict[str, torch.Tensor], set_to_none: bool = True) -> Logs:
        carry: dict[str, torch.Tensor] = {}
        logs: Logs = {}
        losses = []
        for phase, opt in zip(self.phases, self.optimizers):
            opt.zero_grad(set_to_none=set_to_none)
            with self._autocast():
                loss, phase_logs, carry = self.members.run_phase(phase, batch, noise, self.count, carry)
            total = loss.sum() if loss.dim() else loss
            losses.append(loss)
            if self.scaler is not None:
                self.scaler.scale(total).backward()
                self.scaler.step(opt)
            else:
                total.backward()
                opt.step()
            logs.update(phase_logs)
        if self.scaler is not None:
            self.scaler.update()
        self.guard.update(self.count, losses, logs)
        self.count += 1
        return logs

    def __call__(self, batch: torch.Tensor, noise: dict[str, torch.Tensor]) -> Logs:
        if not self.cuda_graphs:
            return self.body(batch, noise)
        if self._captured is None:
            params = [p for opt in self.optimizers for g in opt.param_groups for p in g["params"]]
            self._captured = CapturedStep(lambda x, n: self.body(x, n, set_to_none=False), batch, noise, params,
                                          self.optimizers, [self.count, *self.guard.buffers(),
                                                            *self.members.capture_buffers()])
        return self._captured(batch, noise)

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict:
        return {"count": int(self.count), "optimizers": [o.state_dict() for o in self.optimizers],
                "scaler": None if self.scaler is None else self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.count.fill_(int(state["count"]))
        for opt, s in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(s)
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


@torch.no_grad()
def held_out_losses(members: Members, batches, step: torch.Tensor, seeds: list[int]) -> list[dict[str, float]]:
    """Mean loss terms of every member over held-out batches (validation, test): the first phase's loss
    without an update, the objective in eval mode, member i's noise from a generator seeded with
    ``seeds[i]`` (the same noise at every validation, so that a lower loss means better weights)."""
    members.train(False)
    saved = members.generators
    members.generators = [torch.Generator(device=members.device).manual_seed(s) for s in seeds[:len(saved)]]
    phase = type(members.objective).phases[0]
    sums: dict[str, torch.Tensor] = {}
    count = 0
    pairs = type(members.objective).pairs
    try:
        for x in batches:
            n = len(x)
            noise = members.draw_noise(n)
            if pairs:      # an objective trained on pairs scores each held-out image paired with itself
                x = torch.cat([x, x])
            xb = x if members.num == 1 else x.expand(members.num, *x.shape)
            loss, logs, _ = members.run_phase(phase, xb, noise, step, {})
            for k, v in {**logs, "loss": loss}.items():
                sums[k] = sums.get(k, 0) + v.float() * n
            count += n
    finally:
        members.generators = saved
        members.train(True)
    means = {k: (v / max(1, count)).reshape(members.num).tolist() for k, v in sums.items()}
    return [{k: vals[i] for k, vals in means.items()} for i in range(members.num)]


def active_latents(logs: dict[str, float], threshold: float = 0.01) -> tuple[int, int]:
    """(latents whose batch KL exceeds ``threshold`` nats, all latents) from a step's ``kl_dim/*`` logs."""
    kl = [v for k, v in logs.items() if k.startswith("kl_dim/")]
    return sum(v > threshold for v in kl), len(kl)

