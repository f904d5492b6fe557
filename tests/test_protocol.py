"""E1's protocol: --epochs, --split (disjoint, fixed indices), --subsample, validation with early stopping
and the test losses of the best checkpoint; for ensembles too."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from disentkit.train import TrainConfig, fit, load_checkpoint
from disentkit.train.checkpoint import read_checkpoint
from disentkit.train.data import Batches, plan_indices


def test_split_indices_are_disjoint_complete_and_fixed():
    a = plan_indices(10_000, (0.8, 0.1, 0.1), data_seed=0)
    train, val, test = (set(x.tolist()) for x in (a.train, a.val, a.test))
    assert len(val) == len(test) == 1000 and len(train) == 8000
    assert not (train & val or train & test or val & test) and train | val | test == set(range(10_000))
    b = plan_indices(10_000, (0.8, 0.1, 0.1), data_seed=0)
    assert all(torch.equal(x, y) for x, y in ((a.train, b.train), (a.val, b.val), (a.test, b.test)))
    c = plan_indices(10_000, (0.8, 0.1, 0.1), data_seed=1)
    assert not torch.equal(a.val, c.val)
    assert plan_indices(10_000, (1.0, 0.0, 0.0)).train is None          # no split: every image, no index tensor


def test_subsample_is_a_fixed_subset_split_inside_itself():
    s = plan_indices(737_280, (0.8, 0.1, 0.1), subsample=20_000, data_seed=5)
    pool = set(torch.cat([s.train, s.val, s.test]).tolist())
    assert len(pool) == 20_000 and s.num_train == 16_000 and max(pool) < 737_280
    again = plan_indices(737_280, (0.8, 0.1, 0.1), subsample=20_000, data_seed=5)
    assert torch.equal(s.test, again.test)
    only = plan_indices(737_280, (1.0, 0.0, 0.0), subsample=500, data_seed=5)
    assert only.num_train == 500 and only.val is None and torch.equal(only.train, only.train.sort().values)


def test_epochs_visit_every_training_image_once_per_epoch(identity_dataset):
    idx = torch.arange(0, 1000, 3)                      # 334 training images
    b = Batches(identity_dataset, idx, 32, [0], torch.device("cpu"), epochs=True)
    assert b.steps_per_epoch == 10
    seen = torch.cat([b.next_indices().flatten() for _ in range(10)])
    assert len(set(seen.tolist())) == 320 and set(seen.tolist()) <= set(idx.tolist())
    state = b.state_dict()
    nxt = [b.next_indices() for _ in range(15)]           # into the next epoch: a new shuffle
    b2 = Batches(identity_dataset, idx, 32, [0], torch.device("cpu"), epochs=True)
    b2.load_state_dict(state)
    assert all(torch.equal(x, b2.next_indices()) for x in nxt)


def _rows(run, key):
    with open(run / "csv" / "metrics.csv") as f:
        return [(int(r["step"]), float(r[key])) for r in csv.DictReader(f) if r.get(key)]


def test_early_stopping_stops_at_the_expected_epoch(tmp_path, capsys):
    """lr 1e-30 leaves the weights as they are, and validation draws the same noise each time: the
    validation loss never improves after the first epoch, so patience 2 stops training after epoch 3."""
    run = fit(TrainConfig(steps=1, epochs=20, batch_size=16, subsample=256, split=[0.75, 0.125, 0.125], lr=1e-30,
                          early_stopping_patience=2, latent_dim=2, out=str(tmp_path / "r"), threads=1, progress=False,
                          log_every=1))
    per_epoch = 192 // 16
    _, _, meta = read_checkpoint(run / "model.safetensors")
    assert int(meta["step"]) == 3 * per_epoch and json.loads(meta["stopped_early"]) is True
    _, _, best = read_checkpoint(run / "best.safetensors")
    assert int(best["step"]) == per_epoch                                 # the first validation stays best
    val = _rows(run, "val/loss")
    assert [s for s, _ in val] == [per_epoch - 1, 2 * per_epoch - 1, 3 * per_epoch - 1]
    assert len({v for _, v in val}) == 1
    assert max(s for s, _ in _rows(run, "train/loss")) == 3 * per_epoch - 1
    assert sorted({int(r) for r in _column(run, "epoch")}) == [0, 1, 2]
    test = json.loads((run / "test_losses.json").read_text())
    assert test["checkpoint"] == "best.safetensors" and test["num_images"] == 32 and test["test"]["loss"] > 0
    out = capsys.readouterr().out.strip().splitlines()[-1]            # the run's last line
    assert f"stopped early at step {3 * per_epoch}" in out and "active latents (KL > 0.01 nats)" in out
    assert f"test loss {test['test']['loss']:.2f}" in out and f"disentkit evaluate --checkpoint {run}" in out


def _column(run, key):
    with open(run / "csv" / "metrics.csv") as f:
        return [r[key] for r in csv.DictReader(f) if r.get(key)]


def test_validation_keeps_the_best_checkpoint_and_improves(tmp_path):
    run = fit(TrainConfig(steps=30, batch_size=16, lr=1e-3, split=[0.8, 0.1, 0.1], subsample=2000, val_every=10,
                          val_batches=2, latent_dim=2, out=str(tmp_path / "r"), threads=1, progress=False,
                          log_every=5))
    val = _rows(run, "val/loss")
    assert [s for s, _ in val] == [9, 19, 29] and val[-1][1] < val[0][1]
    best = min(val, key=lambda sv: sv[1])
    _, _, meta = read_checkpoint(run / "best.safetensors")
    assert int(meta["step"]) == best[0] + 1 and float(meta["val_loss"]) == pytest.approx(best[1])
    assert load_checkpoint(run).path.name == "best.safetensors"          # evaluate picks the best


@pytest.mark.slow
def test_ensemble_members_follow_the_protocol_as_their_single_runs(tmp_path):
    """--epochs, --split, --subsample and early stopping in a fused ensemble: member i keeps the checkpoints,
    validation losses and test losses of the single run of its seed."""
    common = dict(steps=1, epochs=6, batch_size=16, subsample=320, split=[0.75, 0.125, 0.125], lr=2e-3,
                  early_stopping_patience=1, latent_dim=2, threads=1, progress=False, log_every=1)
    ens = fit(TrainConfig(out=str(tmp_path / "e"), ensemble=["seed=0,1"], hparams={"beta": 4.0}, **common))
    for i, seed in enumerate((0, 1)):
        single = fit(TrainConfig(out=str(tmp_path / f"s{seed}"), seed=seed, hparams={"beta": 4.0}, **common))
        member = ens / f"m0{i}-seed{seed}"
        want, got = _rows(single, "val/loss"), _rows(member, "val/loss")
        assert [s for s, _ in got] == [s for s, _ in want]
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-4)
        for name in ("best.safetensors", "model.safetensors"):
            a, b = read_checkpoint(single / name), read_checkpoint(member / name)
            assert a[2]["step"] == b[2]["step"], name
            for k, v in a[0].items():
                torch.testing.assert_close(b[0][k], v, rtol=1e-3, atol=1e-5)
        ta, tb = (json.loads((r / "test_losses.json").read_text())["test"]["loss"] for r in (single, member))
        assert tb == pytest.approx(ta, rel=1e-4)
    assert np.isfinite(json.loads((ens / "m00-seed0" / "test_losses.json").read_text())["test"]["loss"])
