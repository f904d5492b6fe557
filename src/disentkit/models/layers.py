"""Convolution layers: PyTorch's ``Conv2d`` / ``ConvTranspose2d`` with exact shortcuts on a CPU.

For the stride-2 layers of the conv VAEs oneDNN (PyTorch's CPU convolutions) has slow spots, measured on
the 2-core AVX2 machine (``docs/speed.md``). Each shortcut computes the same function by another route, so
results differ only in float rounding, and checkpoints are unchanged (same parameters, same names). On
CUDA, under ``vmap`` (stacked ensembles), ``torch.compile`` or autocast, these are the plain layers;
``set_conv_impl(model, "torch")`` (``--conv-impl torch``) makes them the plain layers everywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


CONV_IMPLS = ("auto", "torch")


def set_conv_impl(model: nn.Module, impl: str) -> nn.Module:
    """``auto``: the exact CPU shortcuts where they apply (default); ``torch``: PyTorch's own layers only.
    Results of the two differ in float rounding only (training amplifies it); returns ``model``."""
    if impl not in CONV_IMPLS:
        raise ValueError(f"conv impl must be one of {', '.join(CONV_IMPLS)}, got {impl!r}")
    for m in model.modules():
        if isinstance(m, (Conv, Deconv)):
            m.shortcuts = impl == "auto"
    return model


def _shortcuts_apply(layer: nn.Conv2d | nn.ConvTranspose2d, x: torch.Tensor) -> bool:
    """A float32 CPU tensor outside vmap/grad transforms, torch.compile and autocast; a layer with a bias."""
    return (getattr(layer, "shortcuts", True) and x.device.type == "cpu" and x.dim() == 4 and layer.bias is not None and layer.groups == 1
            and layer.dilation == (1, 1) and x.dtype == layer.weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()
            and not _inside_functorch(x))


def _inside_functorch(x: torch.Tensor) -> bool:
    """Whether ``x`` is a vmap/grad-transform tensor (an autograd.Function without a vmap rule fails there);
    True, to be safe, if this PyTorch cannot say."""
    try:
        return bool(torch._C._functorch.is_functorch_wrapped_tensor(x))
    except AttributeError:
        return True


class Conv(nn.Conv2d):
    """An encoder's convolution. On a CPU, a layer with one input channel (the first, binary images) takes
    its weight gradient from the transposed-convolution form of the same sum, which oneDNN computes several
    times faster there (β-VAE step at batch 64: see ``docs/speed.md``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 1 and self._tiles(x) and _shortcuts_apply(self, x):
            return _CpuConv.apply(x, self.weight, self.bias, self.stride, self.padding)
        return super().forward(x)

    def _tiles(self, x: torch.Tensor) -> bool:
        """Zero padding given as numbers, and windows that end exactly at the padded edge (then the
        transposed convolution of the output has the input's size)."""
        return (self.padding_mode == "zeros" and isinstance(self.padding, tuple)
                and all((n + 2 * p - k) % s == 0 for n, p, k, s in
                        zip(x.shape[2:], self.padding, self.kernel_size, self.stride)))


class _CpuConv(torch.autograd.Function):
    """conv2d(x, w, b) whose weight gradient is computed as a transposed convolution's (see :class:`Conv`)."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding):
        ctx.save_for_backward(x, w)
        ctx.geometry = (list(stride), list(padding), [1, 1])
        return F.conv2d(x, w, b, stride, padding)

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        return (*_swapped_backward(grad, x, w, ctx.geometry, False, ctx.needs_input_grad[:3]), None, None)


class Deconv(nn.ConvTranspose2d):
    """A decoder's transposed convolution (k4 s2 p1): an ``nn.ConvTranspose2d`` with two CPU shortcuts.

    On a CPU (2-core AVX2, β-VAE at batch 64) oneDNN is slow at two parts of these layers, and each has an
    exact rewrite (:class:`_CpuDeconv`):

    - the forward to one output channel (the last layer, binary images) runs at ≈ 5 GFLOP/s; as one matmul
      (B·H·W × C_in) @ (C_in × 16) and a col2im that sums the 16 taps, it is 2–3× faster;
    - the weight gradient is a stride-2 convolution's weight gradient with the two activations' roles
      swapped, which oneDNN computes faster (32→32 at batch 64: 20 → 15 ms for the layer's backward; 108 →
      60 ms at batch 256); the same numbers, bit for bit here.

    Results differ from the plain layer only in float rounding (≈ 1e-6). Everywhere else (CUDA, ``vmap``
    ensembles, ``torch.compile``, autocast, another geometry) this is the plain layer.
    """

    def forward(self, h: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if (output_size is None and self.kernel_size == (4, 4) and self.stride == (2, 2) and self.padding == (1, 1)
                and self.output_padding == (0, 0) and _shortcuts_apply(self, h)):
            return _CpuDeconv.apply(h, self.weight, self.bias)
        return super().forward(h, output_size)


class _CpuDeconv(torch.autograd.Function):
    """conv_transpose2d(h, w, b, stride 2, padding 1) with a 4×4 kernel, and its gradients (see :class:`Deconv`)."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(h, w)
        n, c_in, rows, cols = h.shape
        c_out = w.shape[1]
        if c_out > 1:
            return F.conv_transpose2d(h, w, b, stride=2, padding=1)
        taps = h.permute(0, 2, 3, 1).reshape(-1, c_in) @ w.reshape(c_in, -1)  # (n·rows·cols, 16); free on channels_last
        return _col2im_k4s2p1(taps, n, rows, cols, c_out) + b.view(1, -1, 1, 1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h, w = ctx.saved_tensors
        geometry = ([2, 2], [1, 1], [1, 1])  # stride, padding, dilation
        if w.shape[1] == 1:  # oneDNN's own backward is the faster one here
            return torch.ops.aten.convolution_backward(grad, h, w, [1], *geometry, True, [0, 0], 1,
                                                       list(ctx.needs_input_grad))
        return _swapped_backward(grad, h, w, geometry, True, ctx.needs_input_grad)


def _swapped_backward(grad: torch.Tensor, inp: torch.Tensor, w: torch.Tensor, geometry: tuple, transposed: bool,
                      needs: tuple[bool, ...]) -> tuple[torch.Tensor | None, ...]:
    """Gradients of a (transposed) convolution's input, weight and bias, the weight's taken as the other layer
    type's weight gradient with the activations' roles swapped. For a convolution, dL/dw[o, i, ky, kx] =
    Σ grad[o, y, x]·inp[i, s·y+ky−p, s·x+kx−p], which is also the weight gradient of conv_transpose2d(grad, ·)
    whose output gradient is ``inp``; for a transposed convolution the same holds the other way round."""
    need_in, need_w, need_b = needs
    gi = gw = gb = None
    if need_in:
        gi = torch.ops.aten.convolution_backward(grad, inp, w, None, *geometry, transposed, [0, 0], 1,
                                                 [True, False, False])[0]
    if need_w:
        gw = torch.ops.aten.convolution_backward(inp, grad, w, None, *geometry, not transposed, [0, 0], 1,
                                                 [False, True, False])[1]
    if need_b:
        gb = grad.sum((0, 2, 3))
    return gi, gw, gb


def _col2im_k4s2p1(taps: torch.Tensor, n: int, rows: int, cols: int, c_out: int) -> torch.Tensor:
    """Sum the 4×4 taps of every input pixel into the (2·rows × 2·cols) output of a stride-2, padding-1
    transposed convolution. Input pixel i meets padded output row 2i + ky; with ky = 2a + p that is row
    2(i + a) + p, so each of the four (a, b) offsets is one strided add into a (rows+1, 2, cols+1, 2) grid."""
    t = taps.view(n, rows, cols, c_out, 2, 2, 2, 2)  # (i, j, c, a, p, b, q): ky = 2a + p, kx = 2b + q
    out = taps.new_zeros(n, c_out, rows + 1, 2, cols + 1, 2)
    for a in (0, 1):
        for b in (0, 1):
            out[:, :, a:a + rows, :, b:b + cols, :] += t[:, :, :, :, a, :, b, :].permute(0, 3, 1, 4, 2, 5)
    return out.view(n, c_out, 2 * rows + 2, 2 * cols + 2)[:, :, 1:-1, 1:-1]


