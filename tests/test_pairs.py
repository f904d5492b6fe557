"""Weak supervision (Locatello et al. 2020): pairs that differ in exactly k factors (plain, correlated,
within a split), their batches' determinism and resume, the Ada threshold and averaging against hand
computations, a few training steps of ada_gvae / ada_ml_vae, and fused members equal to single runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from disentkit.data import get_dataset
from disentkit.data.pairs import changed_factors, partner_indices
from disentkit.models import VAEOutput, get_objective
from disentkit.models.ada_vae import average_posterior, pair_kl, shared_latents
from disentkit.train import TrainConfig, fit, load_checkpoint
from disentkit.train.data import Batches

BASE = dict(batch_size=8, latent_dim=4, log_every=1, threads=1, progress=False)


def differing(ds, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (ds.index_to_factors(a) != ds.index_to_factors(b)).sum(1)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_pairs_differ_in_exactly_k_factors(k):
    ds = get_dataset("dsprites_procedural")
    a, b = ds.sample_pairs(2000, k, torch.Generator().manual_seed(k))
    assert differing(ds, a, b).unique().tolist() == [k]
    changed = ds.index_to_factors(a) != ds.index_to_factors(b)
    share = changed.float().mean(0)                                      # each factor as often as the others
    assert torch.allclose(share, torch.full_like(share, k / 5), atol=0.04)


def test_k_random_is_uniform_over_one_to_f_minus_one():
    sizes = torch.tensor([1, 3, 6, 40, 32, 32])                          # dlib's dsprites: color has one value
    changed = changed_factors(sizes, 20_000, -1, torch.Generator().manual_seed(0))
    assert not changed[:, 0].any()                                       # a one-value factor never changes
    n = changed.sum(1)
    counts = torch.bincount(n, minlength=6).tolist()
    assert counts[0] == 0 and counts[5] == 0
    assert all(abs(c / 20_000 - 0.25) < 0.015 for c in counts[1:5])


def test_correlated_pairs_keep_the_correlation_and_the_k():
    ds = get_dataset("dsprites_procedural:corr(posX,posY,0.1)")
    a, b = ds.sample_pairs(20_000, 1, torch.Generator().manual_seed(1))
    assert differing(ds, a, b).unique().tolist() == [1]
    fa, fb = ds.index_to_factors(a).numpy(), ds.index_to_factors(b).numpy()
    first = np.corrcoef(fa[:, 3], fa[:, 4])[0, 1]
    second = np.corrcoef(fb[:, 3], fb[:, 4])[0, 1]
    assert first > 0.9 and second == pytest.approx(first, abs=0.03)
    a2, b2 = ds.sample_pairs(20_000, 2, torch.Generator().manual_seed(2))
    assert differing(ds, a2, b2).unique().tolist() == [2]


def test_partners_stay_in_the_allowed_images_or_are_the_image_itself():
    ds = get_dataset("dsprites_procedural")
    gen = torch.Generator().manual_seed(3)
    allowed = torch.rand(ds.num_images, generator=gen) < 0.3            # a small training split
    first = torch.nonzero(allowed)[:, 0][:4000]
    partners = partner_indices(ds, first, 2, torch.Generator().manual_seed(4), allowed)
    assert allowed[partners].all()
    d = differing(ds, first, partners)
    kept_self = d == 0
    assert set(d.unique().tolist()) <= {0, 2}
    assert kept_self.float().mean() == pytest.approx(0.7 ** 8, abs=0.01)   # eight tries, each allowed w.p. 0.3


def test_pair_batches_are_deterministic_and_resume_where_they_were():
    ds = get_dataset("dsprites_procedural")

    def batches():
        return Batches(ds, None, 16, [5], torch.device("cpu"), pairs_k=-1)
    one, two = batches(), batches()
    assert one.next().shape == (32, 1, 64, 64)
    two.next()
    state = two.state_dict()
    assert "pair_generators" in state
    ahead = two.next()
    fresh = batches()
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.next(), ahead, rtol=0, atol=0)
    torch.testing.assert_close(one.next(), ahead, rtol=0, atol=0)
    fused = Batches(ds, None, 16, [5, 6], torch.device("cpu"), pairs_k=1).next()
    assert fused.shape == (2, 32, 1, 64, 64)


def test_the_threshold_and_the_averages_on_two_known_posteriors():
    mu1, lv1 = torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, math.log(4.0)]])
    mu2, lv2 = torch.tensor([[0.1, 2.0, 0.0]]), torch.tensor([[0.0, 0.0, 0.0]])
    delta = pair_kl(mu1, lv1, mu2, lv2)
    # latent 0: 0.1² = 0.01; latent 1: 2² = 4; latent 2: 4/1 − 1 + 0 − log 4 = 3 − 1.386
    torch.testing.assert_close(delta, torch.tensor([[0.01, 4.0, 3.0 - math.log(4.0)]]))
    # τ = ½ (0.01 + 4) = 2.005: latents 0 and 2 are below it, shared
    assert shared_latents(delta).tolist() == [[True, False, True]]
    g_mu, g_lv = average_posterior(mu1, lv1, mu2, lv2, "gvae")
    torch.testing.assert_close(g_mu, torch.tensor([[0.05, 1.0, 0.0]]))
    torch.testing.assert_close(g_lv.exp(), torch.tensor([[1.0, 1.0, 2.5]]))       # ½ (4 + 1)
    m_mu, m_lv = average_posterior(torch.tensor([[1.0]]), torch.tensor([[math.log(4.0)]]),
                                   torch.tensor([[2.0]]), torch.tensor([[0.0]]), "mlvae")
    # product of experts: σ̄² = 2·4·1/(4 + 1) = 1.6; μ̄ = ½ (1/4 + 2/1)·1.6 = 1.8
    torch.testing.assert_close(m_lv.exp(), torch.tensor([[1.6]]))
    torch.testing.assert_close(m_mu, torch.tensor([[1.8]]))


class Known:
    """A VAE whose posteriors are fixed: the two of the test above, decoded to zeros."""

    def encode(self, x):
        return (torch.tensor([[0.0, 0.0, 0.0], [0.1, 2.0, 0.0]]),
                torch.tensor([[0.0, 0.0, math.log(4.0)], [0.0, 0.0, 0.0]]))

    def decode(self, z):
        return torch.zeros(len(z), 1, 2, 2)


@pytest.mark.parametrize("name, kind", [("ada_gvae", "gvae"), ("ada_ml_vae", "mlvae")])
def test_the_loss_uses_the_averaged_posterior_on_shared_latents_only(name, kind):
    obj = get_objective(name)(latent_dim=3, beta=2.0)
    assert {d.name: d.shape for d in obj.draws(1)} == {"eps": (2, 3)}
    x = torch.zeros(2, 1, 2, 2)
    out = obj.vae_phase(Known(), x, {"eps": torch.zeros(2, 3)}, torch.tensor(0), {})
    mu, lv = Known().encode(x)
    a_mu, a_lv = average_posterior(mu[:1], lv[:1], mu[1:], lv[1:], kind)
    shared = torch.tensor([True, False, True])
    mu_t = torch.where(shared, a_mu, mu)                     # both images take the average where shared
    lv_t = torch.where(shared, a_lv, lv)
    kl = 0.5 * (mu_t.square() + lv_t.exp() - 1 - lv_t).sum(1).mean()
    rec = torch.nn.functional.binary_cross_entropy_with_logits(torch.zeros(2, 1, 2, 2), x, reduction="sum") / 2
    assert out.logs["shared_latents"].item() == 2.0
    assert out.logs["kl"].item() == pytest.approx(kl.item(), rel=1e-6)
    assert out.loss.item() == pytest.approx((rec + 2.0 * kl).item(), rel=1e-6)


@pytest.mark.parametrize("name", ["ada_gvae", "ada_ml_vae"])
def test_a_few_training_steps_on_procedural_dsprites(tmp_path, name):
    run = fit(TrainConfig(model=name, steps=4, out=str(tmp_path / name), hparams={"k": 1}, **BASE))
    ck = load_checkpoint(run)
    assert ck.config["model"] == name and ck.config["hparams"]["k"] == 1
    assert all(torch.isfinite(v).all() for v in ck.state.values())
    assert "train/shared_latents" in (run / "csv" / "metrics.csv").read_text().splitlines()[0]


def test_training_on_a_split_scores_held_out_images_paired_with_themselves(tmp_path):
    run = fit(TrainConfig(model="ada_gvae", steps=4, out=str(tmp_path / "split"), split=(0.8, 0.1, 0.1),
                          subsample=4000,
                          val_every=2, val_batches=2, dataset="dsprites_procedural:corr(posX,posY,0.2)", **BASE))
    header, *rows = (run / "csv" / "metrics.csv").read_text().splitlines()
    assert "val/loss" in header and all(math.isfinite(float(v)) for v in rows[-1].split(",") if v)


def column(run, name: str) -> list[float]:
    import csv
    with open(run / "csv" / "metrics.csv") as f:
        return [float(r[name]) for r in csv.DictReader(f)]


@pytest.mark.parametrize("impl", ["loop", "vmap"])
def test_fused_ada_members_match_their_single_runs(tmp_path, impl):
    """Loop: the same weights. vmap: the same losses, but not the same weights. Its batched convolutions round
    differently, and at initialisation every δ_j is ≈ 1e-4, so a rounding difference can move a latent across
    the threshold (one pair's latent, 0.125 of the logged mean for 8 pairs)."""
    base = {**BASE, "steps": 3, "model": "ada_ml_vae"}
    ens = fit(TrainConfig(out=str(tmp_path / "ens"), ensemble=["seed=2,3", "beta=1,4"], ensemble_mode="zip",
                          ensemble_impl=impl, **base))
    members = sorted(p for p in ens.iterdir() if p.name.startswith("m0"))
    for member, (seed, beta) in zip(members, [(2, 1.0), (3, 4.0)]):
        single = fit(TrainConfig(out=str(tmp_path / f"s{seed}"), seed=seed, hparams={"beta": beta}, **base))
        assert column(member, "train/loss") == pytest.approx(column(single, "train/loss"), rel=1e-4)
        if impl == "vmap":
            got, want = column(member, "train/shared_latents"), column(single, "train/shared_latents")
            assert all(abs(g - w) <= 0.25 for g, w in zip(got, want))
            continue
        a, b = load_checkpoint(single), load_checkpoint(member)
        for k, v in a.state.items():
            torch.testing.assert_close(b.state[k], v, rtol=1e-3, atol=1e-5, msg=k)


class Reads(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts tensor values read back to Python (``int(t)``, ``t.item()``): a device sync on a GPU."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", ["dsprites_procedural", "dsprites_procedural:corr(posX,posY,0.2)"])
@pytest.mark.parametrize("k", [2, -1])
def test_drawing_partners_reads_nothing_back_from_the_device(name, k):
    """CUDA_SUSPECTS-style: a pair batch is drawn with device operations only (the movable-factor count
    comes from the host), so training's pairs cost no sync per step on a GPU."""
    ds = get_dataset(name)
    first = torch.randint(ds.num_images, (64,), generator=torch.Generator().manual_seed(0))
    allowed = torch.ones(ds.num_images, dtype=torch.bool)
    ds.index_to_factors(first), ds._index_tables(first.device)        # the cached tables, made outside
    with Reads() as reads:
        partner_indices(ds, first, k, torch.Generator().manual_seed(1))
        partner_indices(ds, first, k, torch.Generator().manual_seed(1), allowed)
    assert reads.count == 0
