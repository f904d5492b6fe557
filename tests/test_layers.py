"""models/layers.py: the CPU shortcuts compute what PyTorch's Conv2d / ConvTranspose2d compute."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from disentkit.models import GaussianVAE
from disentkit.models.layers import Conv, Deconv, _CpuConv, _CpuDeconv

FORMATS = [torch.contiguous_format, torch.channels_last]


def _grads(y, inputs, g):
    return torch.autograd.grad(y, inputs, g)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("c_in,c_out,size", [(32, 1, 16), (32, 3, 16), (16, 8, 8)])
def test_deconv_matches_conv_transpose2d(fmt, c_in, c_out, size):
    torch.manual_seed(0)
    layer = Deconv(c_in, c_out, 4, stride=2, padding=1).to(memory_format=fmt)
    h = torch.randn(5, c_in, size, size).contiguous(memory_format=fmt).requires_grad_()
    y = layer(h)
    assert type(y.grad_fn).__name__ == "_CpuDeconvBackward"  # the shortcut ran
    want = F.conv_transpose2d(h, layer.weight, layer.bias, stride=2, padding=1)
    assert y.shape == want.shape == (5, c_out, 2 * size, 2 * size)
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(want)
    for got, exp in zip(_grads(y, (h, layer.weight, layer.bias), g), _grads(want, (h, layer.weight, layer.bias), g)):
        torch.testing.assert_close(got, exp, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("c_in,kernel,padding", [(1, 4, 1), (1, 2, 0)])
def test_conv_matches_conv2d(fmt, c_in, kernel, padding):
    torch.manual_seed(0)
    layer = Conv(c_in, 8, kernel, stride=2, padding=padding).to(memory_format=fmt)
    x = torch.rand(5, c_in, 16, 16).contiguous(memory_format=fmt).requires_grad_()
    y = layer(x)
    assert type(y.grad_fn).__name__ == "_CpuConvBackward"
    want = F.conv2d(x, layer.weight, layer.bias, stride=2, padding=padding)
    torch.testing.assert_close(y, want)
    g = torch.randn_like(want)
    for got, exp in zip(_grads(y, (x, layer.weight, layer.bias), g), _grads(want, (x, layer.weight, layer.bias), g)):
        torch.testing.assert_close(got, exp, rtol=1e-5, atol=1e-4)


def test_functions_pass_gradcheck():
    """The hand-written backward passes (float64, finite differences)."""
    torch.manual_seed(0)
    d = {"dtype": torch.float64, "requires_grad": True}
    for c_out in (1, 2):
        h, w, b = torch.randn(2, 3, 3, 3, **d), torch.randn(3, c_out, 4, 4, **d), torch.randn(c_out, **d)
        assert torch.autograd.gradcheck(_CpuDeconv.apply, (h, w, b))
    x, w, b = torch.randn(2, 1, 6, 6, **d), torch.randn(4, 1, 4, 4, **d), torch.randn(4, **d)
    assert torch.autograd.gradcheck(lambda x, w, b: _CpuConv.apply(x, w, b, (2, 2), (1, 1)), (x, w, b))


def test_plain_layer_where_shortcuts_do_not_apply():
    """Only where the other route is known faster: more input channels, another geometry, float64, vmap."""
    assert Conv(3, 8, 4, stride=2, padding=1)(torch.rand(2, 3, 8, 8)).grad_fn.name() == "ConvolutionBackward0"
    assert Conv(1, 8, 4, stride=2, padding=1)(torch.rand(2, 1, 9, 9)).grad_fn.name() == "ConvolutionBackward0"
    odd = Deconv(4, 2, 3, stride=1, padding=1)
    assert odd(torch.rand(2, 4, 5, 5)).grad_fn.name() == "ConvolutionBackward0"
    double = Deconv(4, 1, 4, stride=2, padding=1).double()
    assert double(torch.rand(2, 4, 5, 5, dtype=torch.float64)).grad_fn.name() == "ConvolutionBackward0"
    layer = Deconv(4, 1, 4, stride=2, padding=1)
    h = torch.rand(3, 2, 4, 5, 5)
    batched = torch.func.vmap(layer)(h)  # an autograd.Function without a vmap rule would raise here
    torch.testing.assert_close(batched, torch.stack([layer(hi) for hi in h]))


def test_checkpoints_keep_their_names():
    """Same parameters under the same names as nn.Conv2d / nn.ConvTranspose2d: old checkpoints load."""
    vae = GaussianVAE("locatello", 1, 10)
    assert isinstance(vae.encoder.conv[0], nn.Conv2d) and isinstance(vae.decoder.deconv[-1], nn.ConvTranspose2d)
    plain = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),
                          nn.Conv2d(32, 64, 2, 2), nn.ReLU(), nn.Conv2d(64, 64, 2, 2), nn.ReLU())
    assert vae.encoder.conv.state_dict().keys() == plain.state_dict().keys()
    vae.encoder.conv.load_state_dict(plain.state_dict())
