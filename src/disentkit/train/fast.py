"""The fast training step: Adam choice, and the whole step (forward, backward, Adam) as one CUDA graph.

Launch overhead dominates a small conv VAE at batch 64 on a GPU (≈ 120 kernels a step, each a few
microseconds of work). :class:`CapturedStep` records forward + backward + a ``capturable`` Adam once
with ``torch.cuda.graph`` and replays it: one launch a step, no host sync. On a CPU the very same
step runs eagerly (``capture=False``), which is how the CPU tests cover this code.

``--compile`` (``torch.compile`` of the loss, forward and backward) is the other route; with mode
``reduce-overhead`` PyTorch itself captures CUDA graphs of the compiled forward/backward.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

LossFn = Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


def make_adam(params: list[torch.Tensor], lr: float, capturable: bool = False) -> torch.optim.Adam:
    """Adam(β₁ 0.9, β₂ 0.999, ε 1e-8), as disentanglement_lib. On CUDA the fused kernel (one launch for
    all tensors), or the capturable one when the step is captured in a CUDA graph. On a CPU the foreach
    one (2-core CPU, the Locatello β-VAE: 1.8 ms a step against 6.0 ms for the default per-tensor loop):
    the same elementwise kernels, so a member of a stacked ensemble gets its single run's numbers. The
    CPU fused kernel is faster still (0.5 ms) but rounds differently with a tensor's alignment, and
    stacked members then drift from their single runs (test_ensemble.py)."""
    on_cuda = bool(params) and params[0].is_cuda
    if on_cuda:
        kwargs: dict = dict(capturable=True, foreach=True) if capturable else dict(fused=True)
    else:
        kwargs = dict(foreach=True)
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, **kwargs)


def autocast_for(precision: str, device: torch.device, cache_enabled: bool = True):
    """The autocast context of a Lightning precision string (a no-op for full precision)."""
    if precision in ("bf16-mixed", "16-mixed"):
        dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
        return torch.autocast(device.type, dtype=dtype, cache_enabled=cache_enabled)
    return contextlib.nullcontext()


class CapturedStep:
    """One training step — ``loss_fn(x)``, backward, ``optimizer.step()`` — replayed from a CUDA graph.

    ``x`` is copied into a static input buffer; the returned loss and logs are static outputs that
    are overwritten by the next step (read them before, or clone). Warm-up steps (needed before
    capture) are undone: parameters and Adam's state are restored in place, so the first replay is
    the model's true first step. ``capture=False`` runs the same step eagerly (CPU, tests).
    """

    def __init__(self, loss_fn: LossFn, params: list[torch.Tensor], optimizer: torch.optim.Optimizer,
                 example: torch.Tensor, capture: bool | None = None, warmup: int = 3,
                 precision: str = "32-true") -> None:
        self.loss_fn, self.params, self.optimizer = loss_fn, list(params), optimizer
        self.capture = example.is_cuda if capture is None else capture
        self.precision = precision
        self.static_x = example.detach().clone()
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None
        if self.capture:
            self._capture(warmup)

    def _body(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.optimizer.zero_grad(set_to_none=False)
        # the autocast weight cache must be off under graph capture
        with autocast_for(self.precision, self.static_x.device, cache_enabled=not self.capture):
            loss, logs = self.loss_fn(self.static_x)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), {k: v.detach() for k, v in logs.items()}

    def _capture(self, warmup: int) -> None:
        snapshot = [p.detach().clone() for p in self.params]
        for p in self.params:  # gradients must exist (as zeros) before capture so their memory is static
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                self._body()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = self._body()
        # undo the warm-up: weights back to their initial values, Adam's moments and step counts to zero
        with torch.no_grad():
            for p, p0 in zip(self.params, snapshot):
                p.copy_(p0)
            for state in self.optimizer.state.values():
                for v in state.values():
                    if isinstance(v, torch.Tensor):
                        v.zero_()

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.static_x.copy_(x, non_blocking=True)
        if self.graph is not None:
            self.graph.replay()
            assert self.out is not None
            return self.out
        return self._body()
