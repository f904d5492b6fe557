"""Training end to end: determinism, checkpoints with every hyperparameter, init-from, safety."""

import csv
import os
import pickle

import pytest
import torch
import yaml

from disentkit.errors import DisentkitError
from disentkit.train import TrainConfig, fit, load_checkpoint
from disentkit.train.checkpoint import read_checkpoint


def _losses(run):
    with open(run / "csv" / "metrics.csv") as f:
        return [(r["step"], r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


def test_same_seed_identical_losses(tmp_path):
    cfg = dict(steps=12, batch_size=8, log_every=3, threads=1, progress=False, seed=7, hparams={"beta": 2.0})
    a = fit(TrainConfig(out=str(tmp_path / "a"), **cfg))
    b = fit(TrainConfig(out=str(tmp_path / "b"), **cfg))
    c = fit(TrainConfig(out=str(tmp_path / "c"), **{**cfg, "seed": 8}))
    assert len(_losses(a)) == 4
    assert _losses(a) == _losses(b)
    assert _losses(a) != _losses(c)
    sa, sb = load_checkpoint(a).state, load_checkpoint(b).state
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoint_carries_every_hyperparameter(tiny_run):
    state, config, meta = read_checkpoint(tiny_run / "model.safetensors")
    for key in ("model", "dataset", "seed", "steps", "batch_size", "lr", "latent_dim", "architecture",
                "reconstruction", "hparams", "channels"):
        assert key in config
    assert config["hparams"] == {"beta": 4.0} and config["seed"] == 3
    assert (tiny_run / "best.safetensors").is_file()       # validation was on
    assert (tiny_run / "tb").is_dir() and any((tiny_run / "tb").iterdir())
    assert yaml.safe_load((tiny_run / "config.yaml").read_text())["hparams"] == {"beta": 4.0}
    logged = open(tiny_run / "csv" / "metrics.csv").readline()
    for name in ("train/reconstruction", "train/kl", "train/elbo", "train/kl_dim/0", "val/loss"):
        assert name in logged


def test_init_from_loads_the_weights(tiny_run, tmp_path):
    from disentkit.train.members import Single
    from disentkit.train.run import read_init_from

    ck = load_checkpoint(tiny_run)
    member = Single({**ck.config, "out": str(tmp_path)}, torch.device("cpu"), read_init_from(tiny_run, ck.config))
    for k, v in member.vae.state_dict().items():
        assert torch.equal(v, ck.vae.state_dict()[k])
    with pytest.raises(DisentkitError, match="latent_dim"):
        read_init_from(tiny_run, {**ck.config, "latent_dim": 4})


def test_refuses_to_overwrite_a_run(tiny_run):
    before = (tiny_run / "model.safetensors").read_bytes()
    with pytest.raises(DisentkitError, match="already holds a run"):
        fit(TrainConfig(out=str(tiny_run), steps=2, progress=False))
    assert (tiny_run / "model.safetensors").read_bytes() == before


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['EVIL_MARKER']}",))


def test_malicious_pickle_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    bad = tmp_path / "evil.ckpt"
    with open(bad, "wb") as f:
        pickle.dump({"config": {}, "state_dict": _Evil()}, f)
    with pytest.raises(DisentkitError, match="refused"):
        read_checkpoint(bad)
    assert not marker.exists()


def test_validation_errors_name_the_flag():
    with pytest.raises(DisentkitError, match="--beta must be ≥ 0"):
        TrainConfig(hparams={"beta": -1}).validate()
    with pytest.raises(DisentkitError, match="--latent-dim"):
        TrainConfig(latent_dim=0).validate()
    with pytest.raises(DisentkitError, match="unknown model 'nope'"):
        TrainConfig(model="nope").validate()
    with pytest.raises(DisentkitError, match="unknown dataset"):
        TrainConfig(dataset="nope").validate()
    with pytest.raises(DisentkitError, match="--betta .betta. is neither a `disentkit train` option nor a "
                                             "hyperparameter of any model; beta_vae takes: --beta"):
        TrainConfig.from_dict({"betta": 4}).validate()     # a YAML typo is not ignored
    with pytest.raises(DisentkitError, match="--gamma .gamma. is a hyperparameter of .*factor_vae.*, not of "
                                             "beta_vae; beta_vae takes: --beta"):
        TrainConfig.from_dict({"gamma": 4}).validate()     # nor another model's flag


def test_progress_bar_names_the_run_and_shows_the_loss(tmp_path, capsys):
    fit(TrainConfig(steps=6, batch_size=8, latent_dim=2, log_every=2, threads=1, out=str(tmp_path / "named-run")))
    captured = capsys.readouterr()
    assert "named-run" in captured.err and "6/6" in captured.err and "step/s" in captured.err
    assert "loss " in captured.err and "Traceback" not in captured.err
    assert "active latents" in captured.out.strip().splitlines()[-1]


def test_progress_bar_updates_sparsely_in_log_files():
    """On a terminal the bar refreshes every few steps; into a log file about 20 times a run."""
    from disentkit.train.session import progress_refresh_rate

    assert progress_refresh_rate(2000, 50, tty=True) == 25
    assert progress_refresh_rate(2000, 10, tty=True) == 10
    assert progress_refresh_rate(2000, 50, tty=False) == 100
    assert progress_refresh_rate(100, 50, tty=False) == 25
