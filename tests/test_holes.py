"""Held-out combinations (Montero et al. 2021): the holes() spec and its three kinds, counts against brute
force, one-line errors, training that never sees a held-out image (plain, pairs, epochs, correlated), and
the recombination metric."""

from __future__ import annotations

import inspect
import json
import math

import numpy as np
import pytest
import torch

from disentkit.cli import main
from disentkit.data import get_dataset
from disentkit.data.holes import Holes
from disentkit.errors import DisentkitError
from disentkit.metrics import recombination
from disentkit.models import GaussianVAE
from disentkit.train import TrainConfig, fit
from disentkit.train.data import Batches, plan_indices

DS = "dsprites_procedural"


def brute_force(ds, rule) -> np.ndarray:
    """Indices of the images whose factor *values* satisfy ``rule(values)`` (loops over the value table)."""
    values = ds.factor_values_of(ds.index_to_factors(np.arange(ds.num_images)))
    return np.flatnonzero(rule(values))


@pytest.mark.parametrize("spec, kind, rule", [
    ("holes(shape=heart & scale>=0.8)", "recombination-to-range",
     lambda v: (v[:, 0] == 3.0) & (v[:, 1] >= 0.8 - 1e-9)),
    ("holes(extrapolation)", "extrapolation", lambda v: v[:, 3] > 0.5),
    ("holes(recombination_to_range)", "recombination-to-range", lambda v: (v[:, 0] == 1.0) & (v[:, 3] > 0.5)),
    ("holes(recombination_to_element)", "recombination-to-element",
     lambda v: (v[:, 0] == 2.0) & (v[:, 1] > 0.6 + 1e-9) & (v[:, 2] > 2.0944) & (v[:, 2] < 4.1888)
     & (v[:, 3] > 0.66) & (v[:, 4] > 0.66)),
    ("holes(orientation<=1 & shape!=square)", "recombination-to-range", lambda v: (v[:, 2] <= 1) & (v[:, 0] != 1.0)),
])
def test_the_hole_is_exactly_the_images_its_conditions_name(spec, kind, rule):
    ds = get_dataset(f"{DS}:{spec}")
    want = brute_force(ds, rule)
    assert isinstance(ds, Holes) and ds.kind == kind
    assert np.array_equal(ds.held_out_images(), want)
    assert np.array_equal(ds.training_images(), np.setdiff1d(np.arange(ds.num_images), want))
    assert ds.describe()["holes"]["held_out_images"] == len(want)


def test_extrapolation_removes_values_and_recombination_keeps_every_value():
    ext = get_dataset(f"{DS}:holes(extrapolation)")
    seen = ext.index_to_factors(ext.training_images())
    assert seen[:, 3].max() == 15                                 # posX > 0.5 never trained on
    for spec in ("recombination_to_range", "recombination_to_element"):
        ds = get_dataset(f"{DS}:holes({spec})")
        seen = ds.index_to_factors(ds.training_images())
        assert [len(np.unique(seen[:, i])) for i in range(5)] == list(ds.factor_sizes)   # each value is seen


@pytest.mark.parametrize("spec, message", [
    ("holes(colour=red)", r"has no factor 'colour'; its factors are shape, scale"),
    ("holes(shape>heart)", r"shape is categorical \(square, ellipse, heart\); compare it with = or !="),
    ("holes(scale=big)", r"scale=big: the value must be a number"),
    ("holes(shape=circle)", r"the value must be one of square, ellipse, heart or a number"),
    ("holes(scale>=5)", r"holds out no image"),
    ("holes(scale>=0)", r"holds out every image"),
    ("holes(scale~0.5)", r"cannot read 'scale~0.5'"),
    ("holes()", r"name the held-out combinations"),
])
def test_bad_specs_are_one_line_errors(spec, message):
    with pytest.raises(DisentkitError, match=message):
        get_dataset(f"{DS}:{spec}")


def test_variants_stack_in_either_order_and_holes_cut_the_correlated_draws():
    a = get_dataset(f"{DS}:corr(posX,posY,0.1):holes(posX>0.5 & posY<0.5)")
    b = get_dataset(f"{DS}:holes(posX>0.5 & posY<0.5):corr(posX,posY,0.1)")
    assert a.name == b.name == f"{DS}:corr(posX,posY,0.1):holes(posX>0.5 & posY<0.5)"
    idx = a.sample_training_indices(20_000, torch.Generator().manual_seed(0))
    assert not np.isin(idx.numpy(), a.held_out_images()).any()
    f = a.index_to_factors(idx).numpy()
    assert np.corrcoef(f[:, 3], f[:, 4])[0, 1] > 0.9              # still correlated outside the hole


@pytest.mark.parametrize("pairs_k, epochs", [(None, False), (None, True), (1, False), (-1, False)])
def test_batches_never_draw_a_held_out_image(pairs_k, epochs):
    ds = get_dataset(f"{DS}:holes(shape=square & posX>0.5)")
    hole = torch.zeros(ds.num_images, dtype=torch.bool)
    hole[torch.as_tensor(ds.held_out_images())] = True
    plan = plan_indices(ds.num_images, (0.9, 0.1, 0.0), 0, 0, ds.training_images())
    assert not hole[plan.train].any() and not hole[plan.val].any()
    batches = Batches(ds, plan.train, 256, [1], torch.device("cpu"), epochs=epochs, pairs_k=pairs_k)
    seen = torch.cat([batches.next_indices()[0] for _ in range(200)])
    assert not hole[seen].any()
    if pairs_k is not None:
        for _ in range(50):   # partners too: the second half of each pair batch
            idx = batches.next_indices()
            from disentkit.data.pairs import partner_indices
            partners = partner_indices(ds, idx[0], pairs_k, batches.pair_gens[0], batches.allowed)
            assert not hole[partners].any()


@pytest.mark.parametrize("ensemble", [None, pytest.param(["seed=0,1"], marks=pytest.mark.slow)])
def test_training_never_gathers_a_held_out_image(tmp_path, monkeypatch, ensemble):
    ds_name = f"{DS}:corr(posX,posY,0.2):holes(recombination_to_range)"
    hole = set(get_dataset(ds_name).held_out_images().tolist())
    gathered: list[int] = []
    real = Holes._gather

    def recording(self, index):     # every gather except TensorBoard's pictures (no gradient step; held-out
        if not any(f.function == "log_images" for f in inspect.stack()[1:8]):   # images may show there)
            gathered.extend(index.flatten().tolist())
        return real(self, index)
    monkeypatch.setattr(Holes, "_gather", recording)
    fit(TrainConfig(model="ada_gvae", dataset=ds_name, steps=30, batch_size=16, latent_dim=3, split=(0.9, 0.05, 0.05),
                    subsample=3000, val_every=10, val_batches=2, log_every=5, threads=1, progress=False,
                    image_every=1000, ensemble=ensemble, out=str(tmp_path / "run")))
    assert len(gathered) >= 30 * 32 * (2 if ensemble else 1) and not hole.intersection(gathered)


def test_recombination_scores_held_out_against_seen(tmp_path):
    ds = get_dataset(f"{DS}:holes(shape=square & posX>0.5)")
    torch.manual_seed(0)
    vae = GaussianVAE(latent_dim=3).eval()
    r = recombination(vae, ds, num_images=300, seed=4)
    assert r["kind"] == "recombination-to-range" and r["held_out_images"] == 122880
    # by hand: the same draws (seed 4: held-out first, then seen), the mean code decoded, BCE summed per image
    rng = np.random.default_rng(4)
    for side, pool in (("held_out", ds.held_out_images()), ("seen", ds.training_images())):
        idx = pool[rng.integers(0, len(pool), size=300)]
        x = ds.images_at(idx)
        with torch.no_grad():
            logits = vae.decode(vae.encode(x)[0])
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum").item() / 300
        assert r[f"bce_{side}"] == pytest.approx(bce, rel=1e-4)
        assert set(r[f"mig_per_factor_{side}"]) == ({"scale", "orientation", "posX", "posY"} if side == "held_out"
                                                   else {"shape", "scale", "orientation", "posX", "posY"})
    assert r["recombination"] == pytest.approx(r["bce_held_out"] - r["bce_seen"])
    assert math.isfinite(r["mig_held_out"]) and r["bce_ratio"] > 0


def test_recombination_needs_holes_and_a_decoder():
    with pytest.raises(DisentkitError, match="needs a dataset with held-out combinations; 'dsprites_procedural'"):
        recombination(GaussianVAE(latent_dim=3), get_dataset(DS), num_images=10)
    with pytest.raises(DisentkitError, match="reconstructs images: score a trained model"):
        recombination(lambda x: x.flatten(1)[:, :3], get_dataset(f"{DS}:holes(extrapolation)"), num_images=10)


def test_evaluate_all_and_recombination_on_a_run_with_holes(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", "beta_vae", "--dataset", f"{DS}:holes(extrapolation)", "--steps", "3",
                 "--batch-size", "8", "--latent-dim", "3", "--threads", "1", "--no-progress", "--out", str(run)]) == 0
    assert main(["evaluate", "--checkpoint", str(run), "--metrics", "mig,recombination", "--threads", "1",
                 "--set", "mig.num_train=500", "--set", "recombination.num_images=200"]) == 0
    assert "bce_held_out" in capsys.readouterr().out
    record = json.loads((run / "metrics.json").read_text())
    assert record["results"]["recombination"]["holes"] == "posX>0.5"
    assert main(["evaluate", "--checkpoint", str(run), "--metrics", "recombination", "--dataset", DS,
                 "--out", str(tmp_path / "plain.json")]) == 2
    assert "needs a dataset with held-out combinations" in capsys.readouterr().err


def test_a_sweep_skips_recombination_where_there_are_no_holes_and_says_so(tmp_path):
    from disentkit.evaluate import evaluate_checkpoint

    run = fit(TrainConfig(model="beta_vae", steps=2, batch_size=8, latent_dim=3, threads=1, progress=False,
                          out=str(tmp_path / "plain")))
    record, _ = evaluate_checkpoint(run, ["mig", "recombination"], params={"mig": {"num_train": 300}},
                                    only_applicable=True)
    assert list(record["results"]) == ["mig"]
    assert record["skipped"] == {"recombination": "does not apply to dsprites_procedural"}
