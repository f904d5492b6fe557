"""Fused FactorVAE ensembles: member i (its VAE and its stacked discriminator) trains exactly as the same
FactorVAE trained alone, for both stacking implementations and both permutation modes."""

import csv

import pytest
import torch

from disentkit.errors import DisentkitError
from disentkit.train import TrainConfig, fit, load_checkpoint
from disentkit.train.ensemble import expand_members
from disentkit.train.members import Stacked

BASE = dict(model="factor_vae", steps=5, batch_size=16, log_every=1, threads=1, progress=False, latent_dim=4)
SMALL_D = dict(disc_hidden=32, disc_layers=2)
GRID = [(0, 10.0), (0, 40.0), (1, 10.0), (1, 40.0)]  # product order of seed=0,1 gamma=10,40
LOGGED = ("loss", "reconstruction", "kl", "tc", "disc_loss", "disc_accuracy")


def _column(path, name):
    with open(path) as f:
        return [float(r[name]) for r in csv.DictReader(f) if r.get(name)]


@pytest.fixture(scope="module")
def single_runs(tmp_path_factory):
    """The four grid points trained alone, once per permutation mode (shared by both implementations)."""
    cache = {}

    def get(permutation):
        if permutation not in cache:
            root = tmp_path_factory.mktemp(f"single-{permutation}")
            cache[permutation] = [fit(TrainConfig(out=str(root / f"s{i}"), seed=seed,
                                                  hparams={**SMALL_D, "permutation": permutation, "gamma": gamma},
                                                  **BASE))
                                  for i, (seed, gamma) in enumerate(GRID)]
        return cache[permutation]

    return get


@pytest.mark.parametrize("permutation", ["same_batch", "second_batch"])
@pytest.mark.parametrize("impl", ["loop", "vmap"])
def test_members_match_single_factor_vae_runs(tmp_path, single_runs, impl, permutation):
    """2 seeds × 2 γ: every logged loss (VAE and discriminator) at every step, and the final VAE and
    discriminator weights, equal those of the single runs (float tolerance)."""
    ens = fit(TrainConfig(out=str(tmp_path / "ens"), ensemble=["seed=0,1", "gamma=10,40"], ensemble_impl=impl,
                          hparams={**SMALL_D, "permutation": permutation}, **BASE))
    members = sorted(p for p in ens.iterdir() if p.name.startswith("m0"))
    assert [p.name for p in members] == ["m00-seed0-gamma10", "m01-seed0-gamma40",
                                         "m02-seed1-gamma10", "m03-seed1-gamma40"]
    for i, (single, (seed, gamma)) in enumerate(zip(single_runs(permutation), GRID)):
        for name in LOGGED:
            want = _column(single / "csv" / "metrics.csv", f"train/{name}")
            got = _column(members[i] / "csv" / "metrics.csv", f"train/{name}")
            assert len(want) == BASE["steps"] and len(got) == len(want), name
            assert got == pytest.approx(want, rel=1e-4, abs=1e-5), name
        a, b = load_checkpoint(single), load_checkpoint(members[i])
        assert b.config["seed"] == seed and b.config["hparams"]["gamma"] == gamma
        assert b.config["hparams"]["permutation"] == permutation
        assert b.meta["step"] == a.meta["step"] == str(BASE["steps"])  # VAE updates, not optimizer steps
        assert sorted(b.state) == sorted(a.state)
        assert any(k.startswith("objective.discriminator.") for k in b.state)
        for k, v in a.state.items():
            torch.testing.assert_close(b.state[k], v, rtol=1e-3, atol=1e-5, msg=k)
    # the discriminators differ between members (own seed, own codes), as the VAEs do
    d0, d2 = (load_checkpoint(members[j]).state["objective.discriminator.0.weight"] for j in (0, 2))
    assert not torch.equal(d0, d2)


def test_cli_factor_vae_ensemble_evaluate_report_and_init_from(tmp_path, capsys):
    """The issue's command line; members are ordinary checkpoints for evaluate/report; --init-from
    starts every member's VAE from a checkpoint, exactly as a single run with --init-from does."""
    from disentkit.cli import main

    start = fit(TrainConfig(out=str(tmp_path / "start"), steps=2, batch_size=8, latent_dim=3, threads=1,
                            progress=False, log_every=1))
    common = ["--model", "factor_vae", "--disc-hidden", "32", "--disc-layers", "2", "--steps", "3",
              "--batch-size", "8", "--latent-dim", "3", "--threads", "1", "--no-progress", "--log-every", "1",
              "--init-from", str(start)]
    out = tmp_path / "ens"
    assert main(["train", "--ensemble", "seed=0,1", "gamma=10,40", "--out", str(out), *common]) == 0
    member = out / "m03-seed1-gamma40"
    assert main(["evaluate", "--checkpoint", str(member), "--metrics", "mig", "--set", "mig.num_train=1000",
                 "--threads", "1"]) == 0
    assert (member / "metrics.json").is_file()
    assert main(["report", "--checkpoint", str(member), "--steps", "3"]) == 0
    assert (member / "report.html").is_file()

    single = tmp_path / "single"
    assert main(["train", "--seed", "1", "--gamma", "40", "--out", str(single), *common]) == 0
    a, b = load_checkpoint(single), load_checkpoint(member)
    for k, v in a.state.items():
        torch.testing.assert_close(b.state[k], v, rtol=1e-3, atol=1e-5, msg=k)
    assert _column(member / "csv" / "metrics.csv", "train/disc_loss") == pytest.approx(
        _column(single / "csv" / "metrics.csv", "train/disc_loss"), rel=1e-4)


def _module(model, ensemble, rng="member", **hp):
    cfg = TrainConfig(model=model, latent_dim=2, ensemble=ensemble, hparams=hp)
    return Stacked([{**m.to_dict(), "channels": 1} for m in expand_members(cfg)], torch.device("cpu"), rng=rng)


def test_shared_settings_and_unsupported_objectives_are_clear_errors():
    module = _module("factor_vae", ["seed=0,1"], **SMALL_D)
    assert [ph.name for ph in module.objective.phases] == ["vae", "discriminator"]
    assert module.objectives.params()["discriminator.0.weight"].shape == (2, 32, 2)
    with pytest.raises(DisentkitError, match="disc_lr=... must be the same for all members"):
        _module("factor_vae", ["disc_lr=1e-4,1e-3"], **SMALL_D)
    with pytest.raises(DisentkitError, match="disc_hidden=... must be the same"):
        _module("factor_vae", ["disc_hidden=16,32"])
    with pytest.raises(DisentkitError, match="not support the adaptive_beta_vae objective yet: it keeps buffers"):
        _module("adaptive_beta_vae", ["seed=0,1"])


def test_shared_rng_draws_every_member_its_own_noise():
    module = _module("factor_vae", ["seed=0,1"], rng="shared", **SMALL_D, permutation="second_batch")
    noise = module.draw_noise(5)
    assert {k: tuple(v.shape) for k, v in noise.items()} == {
        "eps": (2, 3, 2), "loss_noise": (2, 3, 2), "eps_other": (2, 2, 2), "adversary_noise": (2, 2, 2)}
    assert not torch.equal(noise["eps"][0], noise["eps"][1])
