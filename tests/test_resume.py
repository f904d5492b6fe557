"""Nothing is lost on a crash: a run killed with SIGKILL (in its own process) and continued with
``disentkit train --resume`` ends with final weights bit-identical to the same run uninterrupted (CPU),
for a β-VAE, an Ada-GVAE (pairs), a FactorVAE (two phases, two optimizers) and a 2-member fused ensemble;
its log is the uninterrupted run's log."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from disentkit.cli import main
from disentkit.train import TrainConfig, fit, resume
from disentkit.train.checkpoint import STATE_FILE, load_state

COMMON = ["--batch-size", "8", "--latent-dim", "3", "--threads", "1", "--log-every", "1", "--no-progress",
          "--checkpoint-every", "4", "--seed", "3", "--lr", "1e-3"]
CASES = {
    "beta_vae": ["--model", "beta_vae", "--beta", "4", "--steps", "40", "--split", "0.9,0.1,0", "--val-every", "6",
                 "--val-batches", "1"],
    "factor_vae": ["--model", "factor_vae", "--gamma", "10", "--disc-hidden", "16", "--disc-layers", "2",
                   "--permutation", "second_batch", "--steps", "30"],
    "ada_gvae": ["--model", "ada_gvae", "--k", "-1", "--steps", "40", "--split", "0.9,0.1,0", "--val-every", "6",
                 "--val-batches", "1"],      # pairs: the partners' generators resume too, within the split
    "ensemble": ["--model", "beta_vae", "--ensemble", "seed=0,1", "beta=1,4", "--ensemble-mode", "zip", "--steps", "30"],
}


def _train_process(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    return subprocess.Popen([sys.executable, "-m", "disentkit.cli", "train", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_after(proc: subprocess.Popen, ready, delay: float, timeout: float = 120) -> bool:
    """SIGKILL ``proc`` ``delay`` seconds after ``ready()`` holds; False if it finished first."""
    t0 = time.time()
    while not ready():
        if proc.poll() is not None or time.time() - t0 > timeout:
            return False
        time.sleep(0.01)
    time.sleep(delay)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def _weights(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    files = sorted(run.glob("*/model.safetensors")) or [run / "model.safetensors"]
    return {str(f.relative_to(run)): load_file(f) for f in files}


def _rows(run: Path) -> list[list[str]]:
    out = []
    for f in sorted(run.glob("*/csv/metrics.csv")) or [run / "csv" / "metrics.csv"]:
        with open(f, newline="") as fh:
            out += list(csv.reader(fh))
    return out


@pytest.mark.parametrize("case", ["beta_vae", pytest.param("ada_gvae", marks=pytest.mark.slow), pytest.param("factor_vae", marks=pytest.mark.slow),
                                  pytest.param("ensemble", marks=pytest.mark.slow)])
def test_kill_9_then_resume_gives_the_uninterrupted_weights(tmp_path, case):
    args = [*COMMON, *CASES[case]]
    ref = tmp_path / "ref"
    assert main(["train", *args, "--out", str(ref)]) == 0

    # killed mid-run, at a random moment after a checkpoint, then resumed (maybe killed again first)
    run = tmp_path / "run"
    state = run / STATE_FILE
    proc = _train_process([*args, "--out", str(run)])
    killed = _kill_after(proc, state.is_file, delay=random.uniform(0, 0.3))
    assert killed, f"the run finished before it could be killed: {proc.stderr.read() if proc.stderr else ''}"
    saved = load_state(state)["done"]
    assert 0 < saved < load_state(state)["total"]
    last = run / "last.safetensors" if case != "ensemble" else next(run.glob("m00-*/last.safetensors"))
    assert last.is_file() and not last.with_name("model.safetensors").exists()   # a killed run still evaluates
    assert main(["train", "--resume", str(run)]) == 0
    for name, want in _weights(ref).items():
        got = _weights(run)[name]
        assert sorted(got) == sorted(want)
        assert all(torch.equal(got[k], want[k]) for k in want), name
    assert _rows(run) == _rows(ref)            # the log after the kill is the uninterrupted one's


def test_killed_before_its_first_checkpoint_starts_again(tmp_path):
    args = [*COMMON, *CASES["beta_vae"], "--checkpoint-every", "1000"]
    ref = fit(TrainConfig.from_dict({"out": str(tmp_path / "ref"), **_as_dict(args)}))
    run = tmp_path / "run"
    proc = _train_process([*args, "--out", str(run)])
    assert _kill_after(proc, (run / "config.yaml").is_file, delay=0.05)
    assert not (run / STATE_FILE).exists()
    assert main(["train", *args, "--out", str(run)]) == 2      # it holds a run: not silently replaced
    resume(run)
    assert all(torch.equal(a, b) for a, b in zip(_weights(ref)["model.safetensors"].values(),
                                                 _weights(run)["model.safetensors"].values()))


def test_resume_extends_a_finished_run_and_refuses_other_changes(tmp_path, capsys):
    """A finished run continued to more steps equals the longer run trained at once; --resume accepts only
    how long and where a run trains."""
    base = {**_as_dict([*COMMON, *CASES["beta_vae"]]), "steps": 12}
    short = fit(TrainConfig.from_dict({**base, "out": str(tmp_path / "short")}))
    long = fit(TrainConfig.from_dict({**base, "steps": 24, "checkpoint_every": 4, "out": str(tmp_path / "long")}))
    assert main(["train", "--resume", str(short)]) == 2
    assert "already trained all 12 steps" in capsys.readouterr().err
    resume(short, steps=24)
    assert all(torch.equal(a, b) for a, b in zip(_weights(short)["model.safetensors"].values(),
                                                 _weights(long)["model.safetensors"].values()))
    assert main(["train", "--resume", str(short), "--lr", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "--resume continues the run as it was configured" in err and "--lr" in err
    assert len(err.strip().splitlines()) == 1


def test_an_old_run_without_training_state_is_not_retrained(tmp_path, capsys):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(Path(__file__).parent / "fixtures" / "run_v0", old)
    before = (old / "model.safetensors").read_bytes()
    assert main(["train", "--resume", str(old)]) == 2
    assert "cannot be continued" in capsys.readouterr().err
    assert (old / "model.safetensors").read_bytes() == before


def _as_dict(args: list[str]) -> dict:
    """CLI flags -> a config mapping (for runs made in this process)."""
    out, i = {}, 0
    while i < len(args):
        key = args[i][2:].replace("-", "_")
        if key in ("no_progress",):
            out["progress"] = False
            i += 1
            continue
        out[key] = args[i + 1]
        i += 2
    return out
