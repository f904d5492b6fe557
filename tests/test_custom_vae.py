"""A user's own encoder/decoder (the two-method protocol of ``disentkit.models.custom``): trained by the
engine, saved, loaded into a fresh instance, scored, resumed exactly; wrong modules fail in one line
before anything is written."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import disentkit
from disentkit.errors import DisentkitError
from disentkit.metrics import mig
from disentkit.data import get_dataset
from disentkit.train import TrainConfig, fit, resume


class TinyVAE(nn.Module):
    """A linear VAE for 64×64 single-channel images."""

    def __init__(self, latent_dim: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(64 * 64, 2 * latent_dim))
        self.dec = nn.Sequential(nn.Linear(latent_dim, 64 * 64), nn.Unflatten(1, (1, 64, 64)))

    def encode(self, x):
        return self.enc(x).chunk(2, dim=1)

    def decode(self, z):
        return self.dec(z)


def config(out, **kw) -> TrainConfig:
    base = dict(model="beta_vae", hparams={"beta": 2.0}, latent_dim=3, steps=12, batch_size=8, out=str(out),
                log_every=4, threads=1, progress=False, seed=5)
    return TrainConfig(**{**base, **kw})


def test_fit_trains_saves_loads_and_scores_a_user_vae(tmp_path):
    net = TinyVAE()
    before = net.enc[1].weight.detach().clone()
    run = fit(config(tmp_path / "mine"), vae=net)
    assert not torch.equal(before, net.enc[1].weight)          # trained in place
    assert "architecture: custom:" in (run / "config.yaml").read_text()
    model = disentkit.load(run, vae=TinyVAE(seed=9))             # other initial weights: the run's are loaded
    x = torch.rand(4, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.encode(x), net.encode(x)[0])
    assert model.reconstruct(x).shape == x.shape and model.latent_dim == 3
    ds = get_dataset("dsprites_procedural")
    assert mig(model, ds, num_train=200)["mig"] == pytest.approx(mig(net, ds, num_train=200)["mig"])
    assert model.save(tmp_path / "copy.safetensors").is_file()
    assert torch.allclose(disentkit.load(tmp_path / "copy.safetensors", vae=TinyVAE()).encode(x), model.encode(x))


def test_resume_of_a_user_vae_equals_the_uninterrupted_run(tmp_path):
    whole = fit(config(tmp_path / "whole"), vae=TinyVAE())
    half = fit(config(tmp_path / "half", steps=6, checkpoint_every=6), vae=TinyVAE())
    resume(half, vae=TinyVAE(seed=7), steps=12)
    a, b = disentkit.load(whole, vae=TinyVAE()), disentkit.load(half, vae=TinyVAE())
    for (name, p), q in zip(a.vae.state_dict().items(), b.vae.state_dict().values()):
        assert torch.equal(p, q), name


def test_a_user_vae_run_needs_its_class_to_load(tmp_path):
    run = fit(config(tmp_path / "mine", steps=2), vae=TinyVAE())
    with pytest.raises(DisentkitError, match=r"disentkit.load\(run, vae=TinyVAE\(\.\.\.\)\)"):
        disentkit.load(run)
    with pytest.raises(DisentkitError, match="user-supplied VAE"):
        resume(run, steps=4)
    res = subprocess.run([sys.executable, "-m", "disentkit", "evaluate", "--checkpoint", str(run), "--metrics", "mig"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "vae=TinyVAE(...)" in res.stderr and len(res.stderr.strip().splitlines()) == 1


class NoTuple(TinyVAE):
    def encode(self, x):
        return self.enc(x)


class WrongDecode(TinyVAE):
    def decode(self, z):
        return self.dec(z)[:, :, :32]


@pytest.mark.parametrize("net, message", [
    (NoTuple(), "must return \\(mu, logvar\\)"),
    (TinyVAE(latent_dim=4), "latent_dim=3"),
    (WrongDecode(), "shaped like the images"),
    (nn.Linear(2, 2), "has no encode or decode"),
])
def test_a_module_off_the_protocol_fails_before_anything_is_written(tmp_path, net, message):
    with pytest.raises(DisentkitError, match=message):
        fit(config(tmp_path / "bad"), vae=net)
    assert not (tmp_path / "bad").exists()


def test_a_user_vae_does_not_go_into_a_fused_ensemble(tmp_path):
    with pytest.raises(DisentkitError, match="fused ensemble"):
        fit(config(tmp_path / "ens", ensemble={"seed": [1, 2]}), vae=TinyVAE())


def test_evaluate_checkpoint_scores_a_user_vae_against_the_instance_as_passed(tmp_path):
    from disentkit.evaluate import evaluate_checkpoint

    run = fit(config(tmp_path / "mine"), vae=TinyVAE())
    record, path = evaluate_checkpoint(run, "mig", params={"mig": {"num_train": 300}}, baseline=True,
                                       vae=TinyVAE())
    assert path == run / "metrics.json" and set(record["results"]) == set(record["untrained"]) == {"mig"}
    assert record["results"]["mig"]["mig"] != record["untrained"]["mig"]["mig"]


def test_the_report_of_a_user_vae_run_draws_through_its_instance(tmp_path):
    from disentkit.viz import write_report

    run = fit(config(tmp_path / "mine", steps=2), vae=TinyVAE())
    with pytest.raises(DisentkitError, match="user-supplied VAE"):
        write_report(run, steps=3)
    page = write_report(run, steps=3, vae=TinyVAE(seed=3))
    assert page.is_file() and (run / "traversals.gif").is_file() and "custom:" in page.read_text()
