"""Fused ensembles: member i trains exactly as model i alone; members are ordinary checkpoints."""

import csv

import pytest
import torch

from disentkit.errors import DisentkitError
from disentkit.train import TrainConfig, fit, load_checkpoint
from disentkit.train.ensemble import expand_members
from disentkit.train.members import Stacked, StackedVAE

BASE = dict(steps=6, batch_size=8, log_every=1, threads=1, progress=False, latent_dim=4)


def _column(path, name):
    with open(path) as f:
        return [float(r[name]) for r in csv.DictReader(f) if r.get(name)]


@pytest.mark.parametrize("impl", ["vmap", "loop"])
def test_members_match_single_runs(tmp_path, impl):
    """Same seed and β: the same losses at every step and the same final weights (float tolerance)."""
    ens = fit(TrainConfig(out=str(tmp_path / "ens"), ensemble=["seed=3,5", "beta=1,8"], ensemble_mode="zip",
                          ensemble_impl=impl, **BASE))
    members = sorted(p for p in ens.iterdir() if p.name.startswith("m0"))
    assert [p.name for p in members] == ["m00-seed3-beta1", "m01-seed5-beta8"]
    for i, (seed, beta) in enumerate([(3, 1.0), (5, 8.0)]):
        single = fit(TrainConfig(out=str(tmp_path / f"single{i}"), seed=seed, hparams={"beta": beta}, **BASE))
        want = _column(single / "csv" / "metrics.csv", "train/loss")
        got = _column(members[i] / "csv" / "metrics.csv", "train/loss")
        assert len(want) == BASE["steps"] and len(got) == len(want)
        assert got == pytest.approx(want, rel=1e-4)
        with open(single / "csv" / "metrics.csv") as f, open(members[i] / "csv" / "metrics.csv") as g:
            assert f.readline() == g.readline()      # the same columns as the single run, kl_dim/* included
        a, b = load_checkpoint(single), load_checkpoint(members[i])
        assert b.config["seed"] == seed and b.config["hparams"] == {"beta": beta}
        for k, v in a.state.items():
            torch.testing.assert_close(b.state[k], v, rtol=1e-3, atol=1e-5)


def test_member_checkpoints_load_and_evaluate(tmp_path):
    from disentkit.cli import main

    ens = fit(TrainConfig(out=str(tmp_path / "e"), ensemble="seed=0 beta=2,4", **{**BASE, "steps": 2}))
    member = ens / "m01-seed0-beta4"
    ck = load_checkpoint(member)
    assert ck.config["hparams"]["beta"] == 4.0 and ck.config["ensemble"] is None
    assert main(["evaluate", "--checkpoint", str(member), "--metrics", "mig", "--set", "mig.num_train=1000",
                 "--threads", "1"]) == 0
    assert (member / "metrics.json").is_file()
    assert (ens / "ensemble.yaml").is_file()


def test_one_adam_equals_independent_adams():
    """One Adam over stacked parameters takes each member's step exactly as its own Adam would."""
    from disentkit.models import GaussianVAE

    torch.manual_seed(0)
    vaes = [GaussianVAE(latent_dim=3) for _ in range(3)]
    stack = StackedVAE(vaes)
    opt = torch.optim.Adam(stack.parameters(), lr=1e-2)
    singles = [torch.optim.Adam(v.parameters(), lr=1e-2) for v in vaes]
    for _ in range(3):
        grads = {n: torch.randn_like(p) for n, p in stack.params().items()}
        for n, p in stack.params().items():
            p.grad = grads[n].clone()
        opt.step()
        for i, (v, o) in enumerate(zip(vaes, singles)):
            for n, p in v.named_parameters():
                p.grad = grads[n][i].clone()
            o.step()
    for i, v in enumerate(vaes):
        for k, p in v.state_dict().items():
            assert torch.equal(stack.member_state(i)[k], p), k


def test_stacked_forward_matches_each_vae():
    from torch.func import vmap

    from disentkit.models import GaussianVAE

    torch.manual_seed(1)
    vaes = [GaussianVAE(latent_dim=3) for _ in range(2)]
    stack = StackedVAE(vaes)
    x, eps = torch.rand(2, 4, 1, 64, 64), torch.randn(2, 4, 3)
    def fwd(params, xi, ei):
        out = stack.member_forward(params, xi, ei)
        return out.mu, out.logits

    mus, logits = vmap(fwd)(stack.params(), x, eps)
    for i, v in enumerate(vaes):
        mu, logvar = v.encoder(x[i])
        torch.testing.assert_close(mus[i], mu, rtol=1e-4, atol=1e-5)
        z = mu + torch.exp(0.5 * logvar) * eps[i]
        torch.testing.assert_close(logits[i], v.decoder(z), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(stack.encode_mean(x)[1], vaes[1].encode_mean(x[1]), rtol=1e-4, atol=1e-5)


def test_grid_expansion_and_errors(tmp_path):
    cfg = TrainConfig(out=str(tmp_path / "g"), ensemble=["seed=0,1", "beta=1,4,8"])
    members = expand_members(cfg)
    assert len(members) == 6 and {(m.seed, m.hparams["beta"]) for m in members} == {
        (s, b) for s in (0, 1) for b in (1.0, 4.0, 8.0)}
    assert all(m.out.startswith(str(tmp_path / "g") + "/m0") for m in members)
    with pytest.raises(DisentkitError, match="not a per-member option"):
        expand_members(TrainConfig(ensemble=["lr=1,2"]))
    with pytest.raises(DisentkitError, match="same length"):
        expand_members(TrainConfig(ensemble=["seed=0,1", "beta=1,4,8"], ensemble_mode="zip"))
    with pytest.raises(DisentkitError, match="--beta must be ≥ 0"):
        expand_members(TrainConfig(ensemble=["beta=1,-1"]))
    with pytest.raises(DisentkitError, match="NAME=V1"):
        expand_members(TrainConfig(ensemble=["beta"]))


def test_shared_rng_trains_and_differs_per_member():
    cfgs = [{**TrainConfig(seed=s, latent_dim=2).validate().to_dict(), "channels": 1, "out": f"x/m{s:02d}"}
            for s in (0, 1)]
    members = Stacked(cfgs, torch.device("cpu"), rng="shared")
    noise = members.draw_noise(5)
    assert noise["eps"].shape == (2, 5, 2) and not torch.equal(noise["eps"][0], noise["eps"][1])
    phase = members.objective.phases[0]
    loss, logs, _ = members.run_phase(phase, torch.rand(2, 5, 1, 64, 64), noise, torch.tensor(0), {})
    assert loss.shape == (2,) and {"loss", "reconstruction", "kl", "elbo", "kl_dim/1"} <= set(logs)


def test_cli_ensemble(tmp_path, capsys):
    from disentkit.cli import main

    out = tmp_path / "cli"
    args = ["train", "--ensemble", "seed=0,1", "beta=2", "--steps", "2", "--batch-size", "4", "--latent-dim", "2",
            "--out", str(out), "--threads", "1", "--no-progress", "--log-every", "1"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("m0")) == ["m00-seed0-beta2", "m01-seed1-beta2"]
    assert (out / "m01-seed1-beta2" / "model.safetensors").is_file()
    assert main(args) == 2 and "already holds a run" in capsys.readouterr().err
    assert main(["train", "--ensemble", "lr=1,2", "--out", str(tmp_path / "x")]) == 2
    assert "not a per-member option" in capsys.readouterr().err


@pytest.mark.parametrize("model,hp,impl", [("learnable_beta_vae", "beta_init", "loop"), ("beta_tcvae", "beta", "loop"),
                                           ("annealed_vae", "c_max", "vmap"), ("dip_vae_i", "lambda_od", "loop"),
                                           ("dip_vae_ii", "lambda_od", "vmap"), ("lambda_beta_vae", "lam", "loop")])
def test_objective_weights_and_dataset_size_members_match_single_runs(tmp_path, model, hp, impl):
    """Every objective that fuses (β-VAE and FactorVAE: their own tests): L-VAE's own weights are stacked and
    trained in the VAE's phase; β-TCVAE gets N as a single run; AnnealedVAE's capacity is a per-member tensor
    under vmap (the CUDA default); DIP-VAE's and λβ-VAE's weights are per-member tensors."""
    base = {**BASE, "steps": 3, "model": model}
    if model == "annealed_vae":
        base["hparams"] = {"anneal_steps": 2, "gamma": 10.0}
    ens = fit(TrainConfig(out=str(tmp_path / "ens"), ensemble=["seed=2,3", f"{hp}=0.5,4"], ensemble_mode="zip",
                          ensemble_impl=impl, **base))
    members = sorted(p for p in ens.iterdir() if p.name.startswith("m0"))
    for i, (seed, value) in enumerate([(2, 0.5), (3, 4.0)]):
        single = fit(TrainConfig(out=str(tmp_path / f"s{i}"), seed=seed,
                                 **{**base, "hparams": {**base.get("hparams", {}), hp: value}}))
        a, b = load_checkpoint(single), load_checkpoint(members[i])
        assert sorted(b.state) == sorted(a.state)
        for k, v in a.state.items():
            torch.testing.assert_close(b.state[k], v, rtol=1e-3, atol=1e-5, msg=k)
    if model == "learnable_beta_vae":
        assert not torch.equal(*(load_checkpoint(m).state["objective.theta1"] for m in members))
