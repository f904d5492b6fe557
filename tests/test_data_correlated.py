"""Correlated-factor variants (Träuble et al. 2021): training draws are correlated, metric draws uniform."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from disentkit.testing import IdentityDataset

from disentkit.data import get_dataset
from disentkit.data.correlated import CorrelatedFactors, pair_joint, parse_variant
from disentkit.errors import DisentkitError
from disentkit.train.data import Batches


def joint_correlation(joint: np.ndarray) -> float:
    """Pearson correlation of the pair's classes under ``joint``."""
    i = np.arange(joint.shape[0])[:, None]
    j = np.arange(joint.shape[1])[None, :]
    mi, mj = (joint * i).sum(), (joint * j).sum()
    cov = (joint * (i - mi) * (j - mj)).sum()
    return float(cov / math.sqrt((joint * (i - mi) ** 2).sum() * (joint * (j - mj) ** 2).sum()))


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def test_named_variant_samples_the_requested_correlation():
    ds = get_dataset("dsprites_procedural:corr(posX,posY,0.2)")
    assert isinstance(ds, CorrelatedFactors) and ds.name == "dsprites_procedural:corr(posX,posY,0.2)"
    expected = joint_correlation(pair_joint(32, 32, 0.2))
    assert 0.7 < expected < 0.85
    gen = torch.Generator().manual_seed(0)
    f = ds.index_to_factors(ds.sample_training_indices(40_000, gen)).numpy()
    assert corr(f[:, 3], f[:, 4]) == pytest.approx(expected, abs=0.015)
    assert abs(corr(f[:, 0], f[:, 3])) < 0.02 and abs(corr(f[:, 2], f[:, 4])) < 0.02   # others independent
    u = ds.sample_factors(40_000, np.random.default_rng(0))       # what metrics use: uniform
    assert abs(corr(u[:, 3], u[:, 4])) < 0.02
    g = ds.sample_correlated_factors(40_000, np.random.default_rng(1))
    assert corr(g[:, 3], g[:, 4]) == pytest.approx(expected, abs=0.015)


@pytest.mark.parametrize("sigma,strong", [(0.1, True), (0.4, False), (math.inf, None)])
def test_strength_parameter(sigma, strong):
    rho = joint_correlation(pair_joint(10, 10, sigma))
    if strong is None:
        assert rho == pytest.approx(0.0, abs=1e-12)
    else:
        assert (rho > 0.9) == strong and rho > 0.3


def test_training_batches_follow_the_correlated_joint_with_and_without_a_split():
    base = IdentityDataset((10, 10, 10, 10, 10))
    ds = CorrelatedFactors(base, "f1", "f3", 0.2)
    expected = joint_correlation(ds.joint)
    for indices in (None, torch.from_numpy(np.random.default_rng(0).permutation(base.num_images)[:60_000])):
        batches = iter(Batches(ds, indices, 500, [3], torch.device("cpu")))
        f = torch.cat([next(batches) for _ in range(40)]).view(-1, 5).long().numpy()
        assert corr(f[:, 1], f[:, 3]) == pytest.approx(expected, abs=0.03)
        assert abs(corr(f[:, 0], f[:, 2])) < 0.05
        if indices is not None:       # draws stay inside the training split
            idx = base.factors_to_index(f)
            assert np.isin(idx, indices.numpy()).all()
    # the uniform default of the hook keeps the earlier RandomBatches draws exactly
    plain = Batches(base, None, 8, [5], torch.device("cpu")).next()
    gen = torch.Generator().manual_seed(5)
    assert torch.equal(plain, base.images_at(torch.randint(0, base.num_images, (8,), generator=gen)))


def test_bad_variants_are_clear_errors():
    with pytest.raises(DisentkitError, match="has no factor 'posZ'"):
        get_dataset("dsprites_procedural:corr(posX,posZ,0.2)")
    with pytest.raises(DisentkitError, match="unknown dataset variant"):
        get_dataset("dsprites_procedural:shuffle(3)")
    with pytest.raises(DisentkitError, match="strength"):
        get_dataset("dsprites_procedural:corr(posX,posY,-1)")
    assert parse_variant("corr(a, b, off)") == ("a", "b", math.inf)


def test_training_accepts_a_correlated_variant(tmp_path):
    from disentkit.train import TrainConfig, fit

    out = fit(TrainConfig(dataset="dsprites_procedural:corr(posX,posY,0.2)", steps=2, batch_size=8,
                          out=str(tmp_path / "run"), threads=1, progress=False, log_every=1))
    assert "corr(posX,posY,0.2)" in (out / "config.yaml").read_text()
