"""The fast training step: Adam choice, and the whole step (every phase's forward, backward and Adam) as
one CUDA graph.

Launch overhead dominates a small conv VAE at batch 64 on a GPU (≈ 120 kernels a step, each a few
microseconds of work). :class:`CapturedStep` records the step of ``train/step.py`` — all its phases, with
``capturable`` Adams — once with ``torch.cuda.graph`` and replays it: one launch a step, no host sync. The
batch and the step's random draws are made outside the graph and copied into its static inputs. On a CPU
the very same step runs eagerly (``capture=False``), which is how the CPU tests cover this code.

``--compile`` (``torch.compile`` of the loss, forward and backward) is the other route; with mode
``reduce-overhead`` PyTorch itself captures CUDA graphs of the compiled forward/backward.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

StepFn = Callable[[torch.Tensor, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def make_adam(params: list[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
              capturable: bool = False) -> torch.optim.Adam:
    """Adam(β₁ 0.9, β₂ 0.999, ε 1e-8) as disentanglement_lib, or the phase's own betas. On CUDA the fused
    kernel (one launch for all tensors), or the capturable one when the step is captured in a CUDA graph.
    On a CPU the foreach one (2-core CPU, the Locatello β-VAE: 1.8 ms a step against 6.0 ms for the default
    per-tensor loop):
    the same elementwise kernels, so a member of a stacked ensemble gets its single run's numbers. The
    CPU fused kernel is faster still (0.5 ms) but rounds differently with a tensor's alignment, and
    stacked members then drift from their single runs (test_ensemble.py)."""
    on_cuda = bool(params) and params[0].is_cuda
    if on_cuda:
        kwargs: dict = dict(capturable=True, foreach=True) if capturable else dict(fused=True)
    else:
        kwargs = dict(foreach=True)
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), eps=1e-8, **kwargs)


def autocast_for(precision: str, device: torch.device, cache_enabled: bool = True):
    """The autocast context of a Lightning precision string (a no-op for full precision)."""
    if precision in ("bf16-mixed", "16-mixed"):
        dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
        return torch.autocast(device.type, dtype=dtype, cache_enabled=cache_enabled)
    return contextlib.nullcontext()


class CapturedStep:
    """One training step ``step_fn(x, noise) -> logs`` (every phase's forward, backward and optimizer step)
    replayed from a CUDA graph.

    ``x`` and ``noise`` are copied into static input buffers; the returned logs are static outputs that are
    overwritten by the next step (read them before, or clone). Warm-up steps (needed before capture) are
    undone: parameters, ``buffers`` (the step counter, an objective's running state) and every optimizer's
    state are restored in place, so the first replay is the model's true first step. The step's random
    draws come in through ``noise``, so warm-up consumes no random numbers. ``capture=False`` runs the same
    step eagerly (CPU, tests).
    """

    def __init__(self, step_fn: StepFn, example: torch.Tensor, noise: dict[str, torch.Tensor],
                 params: list[torch.Tensor], optimizers: list[torch.optim.Optimizer],
                 buffers: list[torch.Tensor] = (), capture: bool | None = None, warmup: int = 3) -> None:
        self.step_fn, self.params, self.optimizers = step_fn, list(params), list(optimizers)
        self.buffers = list(buffers)
        self.capture = example.is_cuda if capture is None else capture
        self.static_x = example.detach().clone()
        self.static_noise = {k: v.detach().clone() for k, v in noise.items()}
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: dict[str, torch.Tensor] | None = None
        if self.capture:
            self._capture(warmup)

    def _body(self) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in self.step_fn(self.static_x, self.static_noise).items()}

    def warm_up(self, steps: int) -> None:
        """Run ``steps`` steps (allocating gradients and optimizer state), then undo them: parameters and
        buffers back to their values, every optimizer's moments and step counts to zero."""
        snapshot = [t.detach().clone() for t in self.params + self.buffers]
        for p in self.params:  # gradients must exist (as zeros) before capture so their memory is static
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        for _ in range(steps):
            self._body()
        with torch.no_grad():
            for t, t0 in zip(self.params + self.buffers, snapshot):
                t.copy_(t0)
            for opt in self.optimizers:
                for state in opt.state.values():
                    for v in state.values():
                        if isinstance(v, torch.Tensor):
                            v.zero_()

    def _capture(self, warmup: int) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self.warm_up(warmup)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):  # records without running: the state stays as warm_up left it
            self.out = self._body()

    def __call__(self, x: torch.Tensor, noise: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.static_x.copy_(x, non_blocking=True)
        for k, v in noise.items():
            self.static_noise[k].copy_(v, non_blocking=True)
        if self.graph is not None:
            self.graph.replay()
            assert self.out is not None
            return self.out
        return self._body()
