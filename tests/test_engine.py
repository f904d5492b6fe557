"""The one engine's promises: an objective with an optimizer of its own is one file (its phases and draws,
no edit in train/), trains alone and fused; a metric is one file too; nothing on the training path is a
LightningModule or a Trainer."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from disentkit.models import OBJECTIVES, Draw, HParam, LossTerms, Objective, Phase, PhaseOut
from disentkit.train import TrainConfig, fit, load_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src" / "disentkit"


class CodeCritic(Objective):
    """A made-up adversarial objective: the VAE is penalised by a critic that tries to tell its codes from
    prior samples (an adversarial-autoencoder-like term), the critic trained in a phase of its own with its
    own learning rate, and a random draw of its own (the prior samples)."""

    name = "code_critic_test"
    hparams = (HParam("weight", 1.0, "critic penalty weight", min=0.0),
               HParam("critic_lr", 1e-3, "critic Adam lr", min=0.0))
    phases = (Phase("vae", "vae_phase", params=()),
              Phase("critic", "critic_phase", trains_vae=False, params=("critic.",), lr="critic_lr",
                    betas=(0.5, 0.9)))

    def __init__(self, reconstruction="bernoulli", latent_dim=None, **hp) -> None:
        super().__init__(reconstruction, latent_dim=latent_dim, **hp)
        self.critic = nn.Sequential(nn.Linear(latent_dim or 10, 8), nn.ReLU(), nn.Linear(8, 1))

    def draws(self, batch_size):
        return [*super().draws(batch_size), Draw("prior", "normal", (batch_size, int(self.latent_dim or 10)))]

    def loss(self, out, x, step) -> LossTerms:
        rec, kl, logs = self.base_terms(out, x)
        fool = nn.functional.softplus(-self.critic(out.z)).mean()
        loss = rec + kl + self.weight * fool
        return LossTerms(loss, {"loss": loss, **logs, "fool": fool})

    def vae_phase(self, vae, x, noise, step, carry):
        out = vae(x, noise["eps"])
        terms = self.loss(out, x, step)
        return PhaseOut(terms.loss, terms.logs, {"z": out.z.detach()})

    def critic_phase(self, vae, x, noise, step, carry):
        real, fake = self.critic(noise["prior"]), self.critic(carry["z"])
        d = nn.functional.softplus(-real).mean() + nn.functional.softplus(fake).mean()
        return PhaseOut(d, {"critic_loss": d.detach()}, {})


@pytest.fixture
def critic_objective():
    OBJECTIVES.register(CodeCritic)
    yield CodeCritic
    OBJECTIVES.unregister(CodeCritic.name)


def test_a_new_adversarial_objective_needs_no_edit_in_train(tmp_path, critic_objective):
    base = dict(model="code_critic_test", steps=4, batch_size=8, latent_dim=3, threads=1, progress=False,
                log_every=1, lr=1e-3)
    ens = fit(TrainConfig(out=str(tmp_path / "e"), ensemble=["seed=0,1", "weight=0.5,2"], ensemble_mode="zip",
                          **base))
    for i, (seed, weight) in enumerate(((0, 0.5), (1, 2.0))):
        single = fit(TrainConfig(out=str(tmp_path / f"s{i}"), seed=seed, hparams={"weight": weight}, **base))
        a, b = load_checkpoint(single).state, load_checkpoint(ens / f"m0{i}-seed{seed}-weight{weight:g}").state
        assert any(k.startswith("objective.critic.") for k in a)
        for k, v in a.items():
            torch.testing.assert_close(b[k], v, rtol=1e-4, atol=1e-6, msg=k)
    start = load_checkpoint(single).state
    assert not torch.equal(start["objective.critic.0.weight"],
                           load_checkpoint(ens / "m00-seed0-weight0.5").state["objective.critic.0.weight"])
    header = (tmp_path / "s0" / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "train/critic_loss" in header and "train/fool" in header


def test_a_new_metric_is_one_registration():
    from disentkit.metrics import METRICS, MetricSpec, evaluate, resolve_metrics
    from disentkit.testing import IdentityDataset

    spec = MetricSpec("mean_code_test", lambda ds, rng, num_train, **_: {"train": ds.sample_factors(num_train, rng)},
                      lambda codes, factors, dataset, **_: {"mean_code_test": float(np.mean(codes["train"]))},
                      {"num_train": 100})
    METRICS.register(spec)
    try:
        assert "mean_code_test" in resolve_metrics("all")
        res = evaluate(lambda x: x.flatten(1), IdentityDataset(), "mean_code_test")
        assert 0 < res["mean_code_test"]["mean_code_test"] < 10
    finally:
        METRICS.unregister("mean_code_test")


def test_no_trainer_and_no_private_lightning_api_on_the_training_path():
    found = subprocess.run(["grep", "-rn", r"_logger_connector\|fit_loop\|LightningModule\|L\.Trainer\|"
                            r"lightning.pytorch", str(SRC)], capture_output=True, text=True).stdout
    assert found == ""


def test_conv_impl_torch_uses_pytorchs_layers_and_trains_alike(tmp_path):
    from disentkit.models.layers import Conv, Deconv
    from disentkit.train.members import build_vae

    cfg = TrainConfig(latent_dim=3).validate().to_dict()
    layers = [m for m in build_vae({**cfg, "conv_impl": "torch"}).modules() if isinstance(m, (Conv, Deconv))]
    assert layers and not any(m.shortcuts for m in layers)
    assert all(m.shortcuts for m in build_vae(cfg).modules() if isinstance(m, (Conv, Deconv)))
    base = dict(steps=3, batch_size=8, latent_dim=3, threads=1, progress=False)
    a = load_checkpoint(fit(TrainConfig(out=str(tmp_path / "a"), **base))).state
    b = load_checkpoint(fit(TrainConfig(out=str(tmp_path / "b"), conv_impl="torch", **base))).state
    assert load_checkpoint(tmp_path / "b").config["conv_impl"] == "torch"
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-5)


def test_metrics_during_training_use_monitoring_sizes(monkeypatch, tmp_path):
    """``--eval-every`` scores on 2,000 points (a fifth of dlib's; DCI 1,000), FactorVAE/BetaVAE on 200 votes; what the
    user gives in ``eval_params`` wins; a metric without those parameters keeps its own."""
    from disentkit import metrics
    from disentkit.metrics import monitoring_params

    p = monitoring_params(["mig", "dci", "factor_vae_score"], {"mig": {"num_train": 10_000, "num_bins": 10}})
    assert p["mig"] == {"num_train": 10_000, "num_bins": 10}
    assert p["dci"] == {"num_train": 1000, "num_test": 500}  # its probes, not its encoding, cost
    assert p["factor_vae_score"] == {"num_train": 200, "num_eval": 100, "num_variance_estimate": 2000}
    seen = []
    real = metrics.evaluate
    monkeypatch.setattr(metrics, "evaluate", lambda *a, **k: seen.append(k["params"]) or real(*a, **k))
    fit(TrainConfig(steps=2, batch_size=8, latent_dim=3, out=str(tmp_path / "r"), threads=1, progress=False,
                    eval_every=2, eval_metrics="mig,sap"))
    assert seen == [{"mig": {"num_train": 2000}, "sap": {"num_train": 2000, "num_test": 1000}}]


@pytest.mark.parametrize("params, says", [({"dci": {"num_train": 100}}, "not among --eval-metrics"),
                                          ({"mig": {"num_tests": 100}}, "no parameter(s) num_tests")])
def test_eval_params_are_checked_before_training(tmp_path, params, says):
    """A misspelt metric or parameter in ``eval_params`` fails at start, not after the first N steps."""
    from disentkit.errors import DisentkitError

    with pytest.raises(DisentkitError, match=says.replace("(", r"\(").replace(")", r"\)")):
        fit(TrainConfig(steps=2, batch_size=8, latent_dim=3, out=str(tmp_path / "r"), threads=1, progress=False,
                        eval_every=2, eval_metrics="mig", eval_params=params))
    assert not (tmp_path / "r" / "model.safetensors").exists()
