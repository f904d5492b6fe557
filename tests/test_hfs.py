"""HFS (Roth et al. 2023): the Hausdorff distance between the joint and the factorized support of latent
pairs against hand computations, the per-step pair draw, the two objectives' losses, a few training
steps on dsprites_procedural, and fused ensembles equal to single runs."""

from __future__ import annotations

import itertools

import pytest
import torch

from disentkit.models import VAEOutput, get_objective
from disentkit.models.hfs_vae import hausdorff_support_distance, latent_pairs
from disentkit.train import TrainConfig, fit, load_checkpoint

BASE = dict(batch_size=8, latent_dim=4, log_every=1, threads=1, progress=False)


def brute_force(z: torch.Tensor, i: int, j: int) -> float:
    """max over (a, b) of min over c of the squared distance, by loops."""
    pts = [(float(z[c, i]), float(z[c, j])) for c in range(len(z))]
    return max(min((z[a, i].item() - p) ** 2 + (z[b, j].item() - q) ** 2 for p, q in pts)
               for a in range(len(z)) for b in range(len(z)))


def test_a_factorized_support_is_at_distance_zero_and_a_diagonal_is_not():
    pairs = torch.tensor([[0, 1]])
    grid = torch.tensor([[x, y] for x in (0.0, 1.0, 2.0) for y in (0.0, 3.0)])     # S_0 × S_1 itself
    assert hausdorff_support_distance(grid, pairs).item() == 0.0
    diagonal = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    # (0, 2) and (2, 0) are missing: their nearest joint point is (1, 1), at squared distance 1 + 1
    assert hausdorff_support_distance(diagonal, pairs).item() == pytest.approx(2.0)
    # one point off the grid: the product point (0, 3) is 3² from (0, 0), 1 + 2² = 5 from (1, 1)
    sparse = torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, 3.0]])
    assert hausdorff_support_distance(sparse, pairs).item() == pytest.approx(brute_force(sparse, 0, 1))


def test_the_distance_equals_loops_on_random_codes_for_every_pair():
    z = torch.randn(7, 4, generator=torch.Generator().manual_seed(1))
    pairs = latent_pairs(4)
    assert pairs.tolist() == [list(p) for p in itertools.combinations(range(4), 2)]
    got = hausdorff_support_distance(z, pairs)
    for (i, j), d in zip(pairs.tolist(), got.tolist()):
        assert d == pytest.approx(brute_force(z, i, j), rel=1e-5)


def test_the_penalty_pulls_a_correlated_batch_towards_a_factorized_one():
    z = torch.tensor([[0.0, 0.0], [1.0, 1.0]], requires_grad=True)
    hausdorff_support_distance(z, torch.tensor([[0, 1]])).sum().backward()
    assert z.grad.abs().sum() > 0


def out_of(mu: torch.Tensor) -> tuple[VAEOutput, torch.Tensor]:
    b, d = mu.shape
    x = torch.zeros(b, 1, 2, 2)
    return VAEOutput(mu, torch.zeros(b, d), mu, torch.zeros(b, 1, 2, 2)), x


@pytest.mark.parametrize("name", ["hfs_vae", "hfs_tcvae"])
def test_the_loss_adds_gamma_times_the_distance_over_the_drawn_pairs(name):
    mu = torch.randn(6, 5, generator=torch.Generator().manual_seed(2))
    obj = get_objective(name)(latent_dim=5, dataset_size=100, gamma=3.0, num_latent_pairs=4)
    noise = torch.rand(10, generator=torch.Generator().manual_seed(3))
    draws = {d.name: d.shape for d in obj.draws(6)}
    assert draws == {"eps": (6, 5), "pair_noise": (10,)}
    chosen = latent_pairs(5)[noise.topk(4).indices]
    assert len({tuple(p) for p in chosen.tolist()}) == 4                     # without replacement
    out, x = out_of(mu)
    phase = obj.vae_phase(lambda x_, eps: out, x, {"eps": torch.zeros(6, 5), "pair_noise": noise}, torch.tensor(0), {})
    base = obj.loss(out, x, torch.tensor(0)).loss
    hfs = hausdorff_support_distance(mu, chosen).sum()
    assert phase.logs["hfs"].item() == pytest.approx(hfs.item())
    assert phase.loss.item() == pytest.approx((base + 3.0 * hfs).item(), rel=1e-6)


def test_with_fewer_pairs_than_asked_every_pair_counts():
    obj = get_objective("hfs_vae")(latent_dim=3, num_latent_pairs=25)
    mu = torch.randn(5, 3, generator=torch.Generator().manual_seed(4))
    assert obj.hfs(mu, torch.rand(3)).item() == pytest.approx(hausdorff_support_distance(mu, latent_pairs(3)).sum().item())


@pytest.mark.parametrize("name", ["hfs_vae", "hfs_tcvae"])
def test_a_few_training_steps_on_procedural_dsprites(tmp_path, name):
    run = fit(TrainConfig(model=name, steps=4, out=str(tmp_path / name), hparams={"gamma": 10.0}, **BASE))
    ck = load_checkpoint(run)
    assert ck.config["model"] == name and all(torch.isfinite(v).all() for v in ck.state.values())
    assert "train/hfs" in (run / "csv" / "metrics.csv").read_text().splitlines()[0]


@pytest.mark.parametrize("impl", ["loop", "vmap"])
def test_fused_hfs_members_match_their_single_runs(tmp_path, impl):
    base = {**BASE, "steps": 3, "model": "hfs_vae"}
    ens = fit(TrainConfig(out=str(tmp_path / "ens"), ensemble=["seed=2,3", "gamma=1,30"], ensemble_mode="zip",
                          ensemble_impl=impl, **base))
    members = sorted(p for p in ens.iterdir() if p.name.startswith("m0"))
    for member, (seed, gamma) in zip(members, [(2, 1.0), (3, 30.0)]):
        single = fit(TrainConfig(out=str(tmp_path / f"s{seed}"), seed=seed, hparams={"gamma": gamma}, **base))
        a, b = load_checkpoint(single), load_checkpoint(member)
        for k, v in a.state.items():
            torch.testing.assert_close(b.state[k], v, rtol=1e-3, atol=1e-5, msg=k)
