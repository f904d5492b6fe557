"""Runs written before the one-engine change (tests/fixtures/run_v0, by the Lightning Trainer path) still
evaluate, report, start other runs and reproduce from their config.yaml; the engine gives the weights that
path gave (to float tolerance: the fixture was made on another CPU than this may be)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from disentkit.cli import main
from disentkit.train import load_checkpoint

FIXTURE = Path(__file__).parent / "fixtures" / "run_v0"


@pytest.fixture
def old_run(tmp_path) -> Path:
    run = tmp_path / "run_v0"
    shutil.copytree(FIXTURE, run)
    return run


def test_an_old_run_evaluates_and_reports(old_run, capsys):
    before = json.loads((old_run / "metrics.json").read_text())
    assert main(["evaluate", "--checkpoint", str(old_run), "--metrics", "mig", "--set", "mig.num_train=1000",
                 "--threads", "1"]) == 0
    now = json.loads((old_run / "metrics.json").read_text())
    assert now["results"]["mig"]["mig"] == pytest.approx(before["results"]["mig"]["mig"], abs=0.01)
    assert main(["evaluate", "--checkpoint", str(old_run), "--metrics", "irs", "--set", "irs.num_train=1000",
                 "--threads", "1"]) == 0
    assert sorted(json.loads((old_run / "metrics.json").read_text())["results"]) == ["irs", "mig"]
    assert main(["report", "--checkpoint", str(old_run), "--steps", "3"]) == 0
    assert (old_run / "report.html").is_file() and (old_run / "traversals.gif").is_file()


def test_an_old_config_reproduces_and_an_old_checkpoint_starts_a_run(old_run, tmp_path):
    """Its config.yaml (with the dataset facts it recorded) is a valid --config; the engine trains it to the
    weights the Trainer path wrote; --init-from accepts the old checkpoint."""
    out = tmp_path / "again"
    assert main(["train", "--config", str(old_run / "config.yaml"), "--out", str(out), "--no-progress"]) == 0
    want, got = load_file(old_run / "model.safetensors"), load_file(out / "model.safetensors")
    assert sorted(got) == sorted(want)
    for k in want:
        # atol: the fixture was written on an AVX-512 EPYC; on an AVX2 one oneDNN's rounding leaves 2.8e-6
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=2e-5, msg=k)
    child = tmp_path / "child"
    assert main(["train", "--model", "lambda_beta_vae", "--init-from", str(old_run), "--latent-dim", "2",
                 "--steps", "1", "--batch-size", "4", "--lr", "1e-12", "--out", str(child), "--no-progress",
                 "--threads", "1"]) == 0
    start = load_checkpoint(old_run).vae.state_dict()
    for k, v in load_checkpoint(child).vae.state_dict().items():
        torch.testing.assert_close(v, start[k], rtol=0, atol=1e-8)
