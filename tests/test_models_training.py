"""Short training runs on dsprites_procedural: every objective trains, and its own term moves the
way it is meant to when its weight is raised.

Most runs start from ``entangled_start``: an untrained VAE whose encoder is rescaled (no training)
so that μ has unit variance per latent and latents 0–4 share one direction (strongly correlated),
with σ² = e⁻². A VAE trained from scratch spends its first few hundred steps with every latent
collapsed to the prior, where TC and covariance penalties have nothing to act on; this start puts
a few dozen steps in the regime the penalties are for. Runs are deterministic on CPU (fixed seed).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from disentkit.data import get_dataset
from disentkit.train import TrainConfig, fit, load_checkpoint
from disentkit.train.checkpoint import read_checkpoint, save_checkpoint
from disentkit.train.members import Single, build_objective

ENTANGLED = 5   # latents 0..4 start correlated


@pytest.fixture(scope="module")
def entangled_start(tmp_path_factory) -> Path:
    cfg = TrainConfig(latent_dim=10).to_dict()
    cfg.update(channels=1, num_images=737_280, hparams={"beta": 1.0})
    module = Single(cfg, torch.device("cpu"))
    x = get_dataset("dsprites_procedural").images_at(torch.randint(0, 737_280, (512,),
                                                                   generator=torch.Generator().manual_seed(0)))
    enc = module.vae.encoder
    with torch.no_grad():
        enc.mu.weight[:ENTANGLED] += 2.0 * enc.mu.weight[:1]
        mu, _ = enc(x)
        sd, mean = mu.std(0), mu.mean(0)
        enc.mu.weight.div_(sd[:, None])
        enc.mu.bias.sub_(mean).div_(sd)
        enc.logvar.weight.mul_(0.01)
        enc.logvar.bias.fill_(-2.0)
    path = tmp_path_factory.mktemp("start") / "entangled.safetensors"
    save_checkpoint(path, module.member_state(0), cfg)
    return path


def train(tmp_path: Path, model: str, hparams: dict, steps: int = 25, init_from: Path | None = None,
          lr: float = 1e-4, tag: str = "") -> tuple[Path, list[dict]]:
    """Train a short run; returns the run folder and its logged training rows (one per step)."""
    out = tmp_path / f"{model}{tag}"
    fit(TrainConfig(model=model, steps=steps, batch_size=16, lr=lr, seed=0, out=str(out), log_every=1,
                    threads=1, progress=False, init_from=str(init_from) if init_from else None,
                    hparams=hparams))
    with open(out / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    assert len(rows) == steps
    return out, rows


def late(rows: list[dict], key: str, n: int = 5) -> float:
    """Mean of a logged value over the last n steps."""
    return sum(float(r[key]) for r in rows[-n:]) / n


@pytest.mark.slow
def test_factor_vae_tc_estimate_falls_as_gamma_rises(tmp_path, entangled_start):
    small = dict(disc_hidden=128, disc_layers=2, disc_lr=5e-3)   # a small, fast discriminator for the test
    run0, low = train(tmp_path, "factor_vae", {"gamma": 0.0, **small}, steps=30, init_from=entangled_start, tag="0")
    _, high = train(tmp_path, "factor_vae", {"gamma": 50.0, **small}, steps=30, init_from=entangled_start, tag="50")
    print("factor_vae tc", late(low, "train/tc"), late(high, "train/tc"))
    # 30 steps are few for D to learn (tests/test_models_losses.py checks it converges to a known TC);
    # the VAE under γ = 50 already pushes D's estimate down and D(z_real) towards "permuted"
    assert late(high, "train/tc") < late(low, "train/tc") - 0.05
    assert late(high, "train/d_z_real") < late(low, "train/d_z_real")
    for key in ("train/disc_accuracy", "train/disc_loss"):
        assert key in low[-1]
    state, _, meta = read_checkpoint(run0 / "model.safetensors")
    assert any(k.startswith("objective.discriminator.") for k in state)   # D is saved with the model
    assert int(meta["step"]) == 30                                        # VAE updates, not optimizer steps


def test_annealed_vae_kl_tracks_capacity(tmp_path):
    _, rows = train(tmp_path, "annealed_vae", {"c_max": 5.0, "anneal_steps": 20}, steps=40, lr=1e-3)
    caps = [float(r["train/capacity"]) for r in rows]
    assert caps[0] == 0.0 and caps[10] == pytest.approx(2.5) and caps[-1] == 5.0   # C = min(C_max, C_max·t/T)
    print("annealed kl", [round(float(r["train/kl"]), 2) for r in rows[::5]])
    assert float(rows[0]["train/kl"]) < 0.5
    assert late(rows, "train/kl") == pytest.approx(5.0, abs=1.0)


def test_beta_tcvae_tc_falls_as_beta_rises(tmp_path, entangled_start):
    _, low = train(tmp_path, "beta_tcvae", {"beta": 1.0}, init_from=entangled_start, tag="1")
    _, high = train(tmp_path, "beta_tcvae", {"beta": 40.0}, init_from=entangled_start, tag="40")
    print("beta_tcvae tc", late(low, "train/tc"), late(high, "train/tc"))
    assert late(high, "train/tc") < late(low, "train/tc") - 0.5


@pytest.mark.slow
@pytest.mark.parametrize("model, factor", [("dip_vae_i", 10.0), ("dip_vae_ii", 1.0)])
def test_dip_vae_covariance_penalty_falls_as_lambda_rises(tmp_path, entangled_start, model, factor):
    """The penalty per unit λ_od, Σ_off C² + factor·Σ(C_ii − 1)², is what λ_od scales: it ends lower."""
    _, low = train(tmp_path, model, {"lambda_od": 0.0}, init_from=entangled_start, tag="0")
    _, high = train(tmp_path, model, {"lambda_od": 100.0}, init_from=entangled_start, tag="100")

    def penalty(rows):
        return late(rows, "train/dip_offdiag") + factor * late(rows, "train/dip_diag")
    print(model, penalty(low), penalty(high))
    assert penalty(high) < 0.9 * penalty(low)


def test_learnable_beta_moves_towards_uncertainty_weighting(tmp_path):
    _, rows = train(tmp_path, "learnable_beta_vae", {"beta_init": 1.0}, steps=20)
    betas = [float(r["train/beta_effective"]) for r in rows]
    s0 = [float(r["train/sigma0"]) for r in rows]
    print("lvae beta", betas[::5], "sigma0", s0[::5])
    assert betas[0] == pytest.approx(1.0, rel=0.05)
    # L_rec ≫ KL here, so σ₀² and β_eff = σ₀²/σ₁² both grow towards L_rec and L_rec/KL
    assert s0[-1] > s0[0] * 1.2 and betas[-1] > betas[0] * 1.2


def test_adaptive_beta_raises_beta_of_entangled_latents(tmp_path, entangled_start):
    hp = {"beta": 1.0, "kappa": 1.0, "tau": 0.1, "beta_warmup": 3, "cov_momentum": 0.9}
    run, rows = train(tmp_path, "adaptive_beta_vae", hp, init_from=entangled_start)
    betas = [float(rows[-1][f"train/beta/{j}"]) for j in range(10)]
    print("adaptive betas", [round(b, 3) for b in betas])
    assert all(float(rows[0][f"train/beta/{j}"]) == 1.0 for j in range(10))      # warmup
    assert min(betas[:ENTANGLED]) > max(betas[ENTANGLED:])                        # pressure where entangled
    assert all(math.exp(-1) - 1e-6 <= b <= math.exp(1) + 1e-6 for b in betas)    # bounded
    assert math.prod(betas) == pytest.approx(1.0, rel=1e-3)                       # geometric mean β
    state = load_checkpoint(run).state
    torch.testing.assert_close(state["objective.betas"], torch.tensor(betas), rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def beta_vae_run(tmp_path_factory) -> Path:
    """A β-VAE (β = 4) trained for a few steps: the checkpoint λβ-VAE continues from."""
    out = tmp_path_factory.mktemp("beta") / "beta_vae"
    fit(TrainConfig(steps=30, batch_size=16, lr=1e-3, out=str(out), threads=1, progress=False, seed=3,
                    log_every=10, hparams={"beta": 4.0}))
    return out


def test_lambda_beta_vae_resumes_from_beta_vae_weights(beta_vae_run, tmp_path):
    """--init-from loads the β-VAE's weights: with a learning rate too small to move them, the
    λβ-VAE's saved weights equal the β-VAE's (and differ from a fresh initialisation)."""
    source = load_checkpoint(beta_vae_run).vae.state_dict()
    run, _ = train(tmp_path, "lambda_beta_vae", {"beta": 4.0, "lam": 4.0}, steps=1, init_from=beta_vae_run,
                   lr=1e-12)
    resumed = load_checkpoint(run)
    assert resumed.config["init_from"] == str(beta_vae_run) and resumed.config["model"] == "lambda_beta_vae"
    for k, v in resumed.vae.state_dict().items():
        torch.testing.assert_close(v, source[k], rtol=0, atol=1e-8)
    fresh, _ = train(tmp_path, "lambda_beta_vae", {"lam": 4.0}, steps=1, lr=1e-12, tag="fresh")
    w = "encoder.mu.weight"
    assert not torch.allclose(load_checkpoint(fresh).vae.state_dict()[w], source[w])


def test_lambda_beta_vae_mse_falls_from_the_checkpoint(beta_vae_run, tmp_path):
    """Continuing a β-VAE with λ = 20 lowers its MSE term (Adam's steps barely depend on λ early on,
    since BCE and MSE gradients point the same way: E2's λ effects show over 50k steps, not here)."""
    _, low = train(tmp_path, "lambda_beta_vae", {"beta": 4.0, "lam": 0.0}, steps=15, init_from=beta_vae_run,
                   lr=1e-3, tag="0")
    _, high = train(tmp_path, "lambda_beta_vae", {"beta": 4.0, "lam": 20.0}, steps=15, init_from=beta_vae_run,
                    lr=1e-3, tag="20")
    print("lambda mse", float(high[0]["train/mse"]), late(low, "train/mse"), late(high, "train/mse"))
    assert float(low[0]["train/mse"]) == pytest.approx(float(high[0]["train/mse"]))   # same start
    assert late(high, "train/mse") < 0.9 * float(high[0]["train/mse"])
    assert late(high, "train/mse") <= 1.01 * late(low, "train/mse")


@pytest.mark.parametrize("split,subsample,expected", [(None, 0, 737_280), ((0.99, 0.01, 0.0), 0, 737_280 - 7_373),
                                                     ((0.8, 0.1, 0.1), 0, 737_280 - 2 * 73_728),
                                                     ((0.8, 0.1, 0.1), 200_000, 160_000)])
def test_beta_tcvae_n_is_the_number_of_training_images(split, subsample, expected):
    """β-TCVAE's estimators count the images q(z) is built from: held-out splits and the images outside
    --subsample are left out."""
    from disentkit.train.data import plan_indices

    assert plan_indices(737_280, split or (1.0, 0.0, 0.0), subsample).num_train == expected


def test_a_runs_n_reaches_its_objective(tmp_path):
    run = fit(TrainConfig(model="beta_tcvae", steps=1, batch_size=8, latent_dim=2, split=[0.8, 0.1, 0.1],
                          subsample=2000, out=str(tmp_path / "r"), threads=1, progress=False, val_batches=1))
    _, config, _ = read_checkpoint(run / "model.safetensors")
    assert config["num_train"] == 1600 and build_objective(config).dataset_size == 1600
