"""Loss math against hand computations, and the architectures' shapes."""

import math

import torch

from disentkit.models import GaussianVAE, VAEOutput, get_objective
from disentkit.models.base import gaussian_kl, reconstruction_loss


def test_gaussian_kl_by_hand():
    mu = torch.tensor([[0.0, 1.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)]])
    # dim 0: N(0,1) vs N(0,1) -> 0; dim 1: 0.5 * (1 + 4 - ln 4 - 1)
    expected = torch.tensor([[0.0, 0.5 * (1 + 4 - math.log(4) - 1)]])
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected)


def test_bernoulli_loss_by_hand():
    logits = torch.tensor([[[[0.0, 2.0]]]])
    x = torch.tensor([[[[1.0, 0.0]]]])
    # -log sigmoid(0) - log(1 - sigmoid(2)) = ln 2 + ln(1 + e^2)
    expected = math.log(2) + math.log(1 + math.exp(2))
    torch.testing.assert_close(reconstruction_loss(logits, x), torch.tensor([expected]))
    sq = (1 / (1 + math.exp(0)) - 1) ** 2 + (1 / (1 + math.exp(-2))) ** 2
    torch.testing.assert_close(reconstruction_loss(logits, x, "gaussian"), torch.tensor([sq]))


def test_beta_vae_loss_is_rec_plus_beta_kl_mean_over_batch():
    torch.manual_seed(0)
    b, d = 3, 4
    out = VAEOutput(mu=torch.randn(b, d), logvar=torch.randn(b, d) * 0.1, z=torch.randn(b, d),
                    logits=torch.randn(b, 1, 2, 2))
    x = (torch.rand(b, 1, 2, 2) > 0.5).float()
    terms = get_objective("beta_vae")(beta=4.0).loss(out, x, 0)
    p = torch.sigmoid(out.logits)
    rec = -(x * p.log() + (1 - x) * (1 - p).log()).sum((1, 2, 3)).mean()
    kl = (0.5 * (out.mu ** 2 + out.logvar.exp() - out.logvar - 1)).sum(1).mean()
    torch.testing.assert_close(terms.loss, rec + 4.0 * kl)
    torch.testing.assert_close(terms.logs["reconstruction"], rec)
    torch.testing.assert_close(terms.logs["kl"], kl)
    torch.testing.assert_close(terms.logs["elbo"], -(rec + kl))
    torch.testing.assert_close(sum(terms.logs[f"kl_dim/{i}"] for i in range(d)), kl)


def test_architectures_shapes():
    for arch in ("locatello", "burgess"):
        for c in (1, 3):
            vae = GaussianVAE(arch, c, 7)
            out = vae(torch.rand(2, c, 64, 64))
            assert out.mu.shape == (2, 7) and out.logvar.shape == (2, 7)
            assert out.logits.shape == (2, c, 64, 64)


def test_locatello_layers_follow_the_study():
    vae = GaussianVAE("locatello", 1, 10)
    convs = [m for m in vae.encoder.conv if isinstance(m, torch.nn.Conv2d)]
    assert [(m.out_channels, m.kernel_size[0], m.stride[0]) for m in convs] == [(32, 4, 2), (32, 4, 2), (64, 2, 2), (64, 2, 2)]
    assert vae.encoder.mlp[0].out_features == 256
    dec = [m for m in vae.decoder.deconv if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(m.out_channels, m.kernel_size[0], m.stride[0]) for m in dec] == [(64, 4, 2), (32, 4, 2), (32, 4, 2), (1, 4, 2)]
    assert [m.out_features for m in vae.decoder.mlp if isinstance(m, torch.nn.Linear)] == [256, 1024]
