"""The non-finite guard: a run whose loss goes NaN/inf stops at once, keeps its last finite checkpoint as
its result, records what happened, and fails with one line; non-finite settings are refused up front."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

import disentkit
from disentkit.errors import TrainingDiverged
from disentkit.train import TrainConfig, fit
from disentkit.train.checkpoint import load_state, read_checkpoint
from disentkit.train.run import finished


class GoesNaN(nn.Module):
    """A linear VAE whose codes turn NaN from its ``at``-th training forward on (a diverging run, on cue)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.enc, self.dec = nn.Linear(64 * 64, 6), nn.Linear(3, 64 * 64)
        self.at, self.calls = at, 0

    def encode(self, x):
        mu, logvar = self.enc(x.flatten(1)).chunk(2, dim=1)
        if self.training:
            self.calls += 1
            if self.calls >= self.at:
                mu = mu * float("nan")
        return mu, logvar

    def decode(self, z):
        return self.dec(z).view(-1, 1, 64, 64)


def config(out, **kw) -> TrainConfig:
    base = dict(model="beta_vae", latent_dim=3, steps=40, batch_size=8, out=str(out), log_every=5,
                checkpoint_every=10, threads=1, progress=False, seed=1)
    return TrainConfig(**{**base, **kw})


def test_a_diverging_run_keeps_its_last_finite_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"diverged at step 25: loss, reconstruction, kl, elbo became NaN.*"
                                                r"last finite weights \(step 20\).*--lr"):
        fit(config(run), vae=GoesNaN(at=25))
    state, _, meta = read_checkpoint(run / "model.safetensors")
    assert meta["step"] == "20" and meta["diverged_at"] == "25"
    assert all(torch.isfinite(v).all() for v in state.values())
    record = json.loads((run / "diverged.json").read_text())
    assert record["step"] == 25 and record["kept_step"] == 20 and "elbo" in record["terms"]
    assert not (run / "last.safetensors").exists()
    assert load_state(run / "training_state.pt")["done"] == 20     # resumable from the last finite state
    assert finished(run) == 0
    model = disentkit.load(run, vae=GoesNaN(at=10**9))
    assert torch.isfinite(model.encode(torch.rand(2, 1, 64, 64))).all()
    assert "trained beta_vae" not in capsys.readouterr().out       # no "trained ..." for a failed run


def test_divergence_before_the_first_checkpoint_keeps_nothing_and_says_so(tmp_path):
    res = subprocess.run([sys.executable, "-m", "disentkit", "train", "--lr", "1000", "--steps", "40",
                          "--batch-size", "8", "--threads", "1", "--out", str(tmp_path / "run"), "--log-every", "5"],
                         capture_output=True, text=True)
    err = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "training diverged at step" in err and "no finite checkpoint was kept" in err and "--lr 1000" in err
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert "trained" not in res.stdout


@pytest.mark.parametrize("flag", [["--beta", "inf"], ["--beta", "nan"], ["--lr", "inf"], ["--lr", "nan"]])
def test_non_finite_settings_are_refused_before_anything_is_written(tmp_path, flag):
    res = subprocess.run([sys.executable, "-m", "disentkit", "train", *flag, "--steps", "5",
                          "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and flag[0] in res.stderr
    assert not (tmp_path / "run").exists()


def test_a_diverging_member_stops_alone_in_a_fused_ensemble(tmp_path):
    run = tmp_path / "ens"
    with pytest.raises(TrainingDiverged, match="diverged at step 1") as err:
        fit(config(run, latent_dim=4, steps=20, ensemble={"beta": [4.0, 1e39]}))
    folders = sorted(p for p in run.iterdir() if p.is_dir() and (p / "config.yaml").is_file())
    good, bad = folders            # m00-beta4, m01-beta1e+39 (inf in float32: the loss is inf at once)
    assert str(bad) in str(err.value) and str(good) not in str(err.value)
    assert (good / "model.safetensors").is_file() and not (good / "diverged.json").exists()
    assert (bad / "diverged.json").is_file() and not (bad / "model.safetensors").exists()
    assert load_state(run / "training_state.pt")["done"] == 20
