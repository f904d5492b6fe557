"""``disentkit sweep --ensemble M``: runs that differ only in seed and real-valued hyperparameters train
as one fused ensemble, chained stages included, and give what the same runs give trained one by one."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from disentkit.sweep import expand, run_sweep
from disentkit.sweep.runner import fusable_runs
from disentkit.train import TrainConfig, load_checkpoint
from disentkit.train.ensemble import fusable

CONFIG = {
    "name": "fused",
    "defaults": {"steps": 4, "batch_size": 8, "log_every": 1, "threads": 1, "lr": 1e-3, "latent_dim": 4,
                 "checkpoint_every": 0},
    "seeds": [0, 1],
    "metrics": {"mig": {"num_train": 300}},
    "stages": [
        {"name": "a", "model": "beta_vae", "grid": {"beta": [1, 8]}},
        {"name": "b", "model": "beta_vae", "init_from": "a", "steps": 2, "lr": 1e-4},
    ],
}


def _losses(folder):
    with open(folder / "csv" / "metrics.csv") as f:
        return [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


@pytest.mark.slow
def test_fused_sweep_matches_one_by_one(tmp_path):
    sweep = expand(CONFIG)
    lines: list[str] = []
    fused = run_sweep(sweep, tmp_path / "fused", workers=1, printer=lines.append, ensemble=8)
    assert fused.ok and fused.done == 8
    events = [json.loads(x) for x in (tmp_path / "fused" / "events.jsonl").read_text().splitlines()]
    starts = [e for e in events if e["event"] == "start"]
    assert len(starts) == 8 and all(e.get("fused") == 4 for e in starts)       # two jobs: stage a, then b
    assert len({e["pid"] for e in starts}) == 2
    assert "as one fused ensemble" in "\n".join(lines)

    single = run_sweep(sweep, tmp_path / "single", workers=1, printer=lambda s: None)
    assert single.ok and single.done == 8
    for r in sweep.runs:
        a, b = tmp_path / "single" / "runs" / r.run_id, tmp_path / "fused" / "runs" / r.run_id
        assert len(_losses(a)) == r.train["steps"]
        assert _losses(b) == pytest.approx(_losses(a), rel=1e-4)              # each member's own CSV log
        ca, cb = load_checkpoint(a), load_checkpoint(b)
        assert cb.config["seed"] == r.seed and cb.config["hparams"] == ca.config["hparams"]
        for k, v in ca.state.items():
            torch.testing.assert_close(cb.state[k], v, rtol=1e-3, atol=1e-5)
        ma = json.loads((a / "metrics.json").read_text())["results"]["mig"]["mig"]
        mb = json.loads((b / "metrics.json").read_text())["results"]["mig"]["mig"]
        assert mb == pytest.approx(ma, abs=0.05)


def test_what_can_be_fused():
    base = dict(out="-", model="beta_vae", steps=4, hparams={"beta": 1.0})
    assert fusable([TrainConfig(**base), TrainConfig(**{**base, "seed": 3, "hparams": {"beta": 8.0}})]) is None
    assert "differ" in fusable([TrainConfig(**base), TrainConfig(**{**base, "lr": 1e-3})])
    assert "differ" in fusable([TrainConfig(**base), TrainConfig(**{**base, "steps": 5})])
    val = {**base, "split": [0.8, 0.1, 0.1], "early_stopping_patience": 2}      # validation and early stopping fuse
    assert fusable([TrainConfig(**val), TrainConfig(**{**val, "seed": 1})]) is None
    fvae = dict(out="-", model="factor_vae", hparams={"gamma": 10.0, "disc_lr": 1e-4})
    assert fusable([TrainConfig(**fvae), TrainConfig(**{**fvae, "hparams": {"gamma": 40.0, "disc_lr": 1e-4}})]) is None
    assert "differ" in fusable([TrainConfig(**fvae), TrainConfig(**{**fvae, "hparams": {"gamma": 10.0, "disc_lr": 1e-3}})])
    assert "not supported" in fusable([TrainConfig(out="-", model="adaptive_beta_vae")])

    sweep = expand({**CONFIG, "stages": [{"name": "a", "model": "beta_vae", "grid": {"beta": [1, 8], "lr": [1e-3, 1e-4]}}]})
    runs = sweep.runs
    group = fusable_runs(runs[0], runs[1:], 8)
    assert len(group) == 4 and len({r.train["lr"] for r in group}) == 1       # β and seed differ; lr may not
    assert fusable_runs(runs[0], runs[1:], 2) == group[:2]
    assert fusable_runs(runs[0], runs[1:], 0) == [runs[0]]


@pytest.mark.slow
def test_fused_sweep_on_ray(tmp_path):
    """The Ray backend runs a fused group as one task and reports each member run."""
    pytest.importorskip("ray")
    sweep = expand({**CONFIG, "seeds": [0], "stages": CONFIG["stages"][:1]})
    res = run_sweep(sweep, tmp_path / "ray", backend="ray", workers=1, threads=1, printer=lambda s: None,
                    ray_init={"num_cpus": 1}, ensemble=4)
    assert res.ok and res.done == 2
    events = [json.loads(x) for x in (tmp_path / "ray" / "events.jsonl").read_text().splitlines()]
    assert [e.get("fused") for e in events if e["event"] == "start"] == [2, 2]
    for r in sweep.runs:
        folder = tmp_path / "ray" / "runs" / r.run_id
        assert (folder / "DONE").is_file() and len(_losses(folder)) == r.train["steps"]
