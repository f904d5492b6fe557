"""DCI-ES explicitness and size (Eastwood et al. 2023) on known representations of an IdentityDataset
(observations = factor classes), and the area/normalisation on hand-made loss–capacity curves.

Small samples (600 train, 300 test, 10 trees, the authors' 12 depths) keep the file fast; the measured values
are written next to their bounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from disentkit.testing import IdentityDataset
from sklearn.ensemble import RandomForestRegressor
from sklearn.metrics import r2_score

from disentkit.errors import DisentkitError
from disentkit.metrics import evaluate, resolve_metrics
from disentkit.metrics.dci_es import DEPTHS, dci_es, explicitness, probe_losses, size

DS = IdentityDataset((6, 6, 6))
Q = torch.as_tensor(np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0])
SMALL = dict(num_train=600, num_test=300, num_trees=10, n_jobs=1)


def identity(x):
    return x.flatten(1)


def rotation(x):
    return x.flatten(1).double() @ Q


def noise(x):  # fresh noise on every call, reproducible (seeded by the batch)
    return torch.randn(len(x), 3, generator=torch.Generator().manual_seed(int(x.sum()) + len(x)))


noise.deterministic = False


def duplicated(x):
    return torch.cat([x.flatten(1), x.flatten(1)], 1)


def constant_extra(x):
    return torch.cat([x.flatten(1), torch.zeros(len(x), 3)], 1)


@pytest.fixture(scope="module")
def ident():
    return dci_es(identity, DS, **SMALL)


# ----------------------------------------------------------------------------------- the curve's area
def test_linear_decline_is_zero_authors_and_half_rectangle():
    """capacities [1, 2, 3], losses [1, 0.5, 0]: ℓ* = 0, AULCC = ½(1 + 0.5) + ½(0.5 + 0) = 1;
    authors: E = 1 − 2·1/((3 − 1)·1) = 0; rectangle: E = 1 − 1/2 = 0.5."""
    out = explicitness([1, 2, 3], [1.0, 0.5, 0.0])
    assert out["aulcc"] == 1.0 and out["best_loss"] == 0.0 and out["explicitness"] == 0.0
    assert explicitness([1, 2, 3], [1.0, 0.5, 0.0], normalization="rectangle")["explicitness"] == 0.5


def test_curve_at_its_minimum_from_the_start_is_one():
    for losses in ([0.3, 0.3, 0.3], [0.2, 0.4, 0.9]):          # flat, and rising (running minimum: flat)
        out = explicitness([1, 4, 32], losses)
        assert out["aulcc"] == 0.0 and out["explicitness"] == 1.0 and out["curve"][-1] == losses[0]


def test_non_monotone_curve_uses_the_running_minimum():
    """losses [1, 0.2, 0.6, 0.0] on [1, 2, 3, 4] -> curve [1, 0.2, 0.2, 0]: AULCC = 0.6 + 0.2 + 0.1 = 0.9;
    E = 1 − 2·0.9/3 = 0.4; rectangle 1 − 0.9/3 = 0.7 = (0.4 + 1)/2."""
    out = explicitness([1, 2, 3, 4], [1.0, 0.2, 0.6, 0.0])
    assert out["curve"] == [1.0, 0.2, 0.2, 0.0]
    assert out["aulcc"] == pytest.approx(0.9) and out["explicitness"] == pytest.approx(0.4)
    rect = explicitness([1, 2, 3, 4], [1.0, 0.2, 0.6, 0.0], normalization="rectangle")["explicitness"]
    assert rect == pytest.approx(0.7) == (out["explicitness"] + 1) / 2


def test_slower_than_linear_is_negative_and_area_is_above_the_best_loss():
    assert explicitness([0, 1, 2], [1.0, 1.0, 0.0])["explicitness"] == pytest.approx(-0.5)   # AULCC 1.5
    # the same shape shifted up by 0.5 (ℓ* = 0.5): the area above ℓ* is the same, so is E
    assert explicitness([0, 1, 2], [1.5, 1.5, 0.5])["explicitness"] == pytest.approx(-0.5)


# ----------------------------------------------------------------------------------- known representations
def test_identity_is_informative_and_explicit(ident):
    # measured: informativeness 1.0, E 0.9894 (f0 curve 0.234, 0.024, then 0 from depth 3); rectangle 0.9947
    assert ident["informativeness"] == pytest.approx(1.0, abs=1e-9)
    assert 0.98 <= ident["dci_es"] == ident["explicitness"] <= 1.0
    assert set(ident["explicitness_per_factor"]) == {"f0", "f1", "f2"} and ident["capacities"] == DEPTHS
    assert all(len(v) == len(DEPTHS) for v in ident["loss_capacity"].values())
    assert ident["size"] == 1.0 and ident["size_active"] == 1.0 and ident["normalization"] == "authors"
    rect = dci_es(identity, DS, normalization="rectangle", **SMALL)
    assert rect["dci_es"] == pytest.approx((ident["dci_es"] + 1) / 2)
    assert rect["loss_capacity"] == ident["loss_capacity"]


def test_rotation_is_as_informative_but_less_explicit(ident):
    # measured: informativeness 0.9985, E 0.9812 (axis-aligned trees need depth ~8 to reach the lowest loss)
    rot = dci_es(rotation, DS, **SMALL)
    assert rot["informativeness"] >= 0.99
    assert rot["dci_es"] < ident["dci_es"] - 0.003 and rot["dci_es"] >= 0.95


def test_noise_is_uninformative_and_trivially_explicit():
    # measured: informativeness −0.012 (the best test R² is near depth 1, slightly below 0), E = 0.999993.
    # Under this definition the curve of noise is flat at its lowest loss (deeper forests only overfit), so
    # AULCC = 0 and E = 1: explicitness is measured above the representation's own best loss, and the
    # informativeness carries the rest.
    out = dci_es(noise, DS, **SMALL)
    assert -0.05 <= out["informativeness"] <= 0.05
    assert 0.999 <= out["dci_es"] <= 1.0
    assert all(min(v) > 0.95 for v in out["loss_capacity"].values())


def test_duplicated_latents_halve_the_size(ident):
    # measured: the same curves as the identity (the duplicated features tie and split identically), size 0.5
    out = dci_es(duplicated, DS, **SMALL)
    assert out["informativeness"] == pytest.approx(1.0, abs=1e-9)
    assert out["dci_es"] == pytest.approx(ident["dci_es"], abs=0.01)
    assert out["size"] == 0.5 and out["size_active"] == 0.5 and out["num_active_latents"] == 6


def test_constant_extra_latents_count_in_size_not_in_size_active(ident):
    out = dci_es(constant_extra, DS, **SMALL)
    assert out["size"] == 3 / 6 and out["size_active"] == 1.0 and out["num_active_latents"] == 3
    assert out["informativeness"] == pytest.approx(1.0, abs=1e-9)
    assert out["dci_es"] == pytest.approx(ident["dci_es"], abs=0.01)


def test_size_of_all_constant_codes_has_no_active_latents():
    assert size(np.zeros((10, 4)), 2) == {"size": 0.5, "size_active": None, "num_active_latents": 0}


# ----------------------------------------------------------------------------------- the probes
def test_reusing_a_forest_that_did_not_reach_its_depth_is_exact():
    """Identity codes: every tree is pure by depth 4, so the depth-8 forest is reused for 10 … 32; the losses
    equal fitting every depth on its own."""
    rng = np.random.default_rng(1)
    f, ft = rng.integers(0, 6, size=(600, 3)) * 1.0, rng.integers(0, 6, size=(300, 3)) * 1.0
    fast = probe_losses(f, f[:, 0], ft, ft[:, 0], DEPTHS, num_trees=10, seed=3)
    plain = [1 - r2_score(ft[:, 0], RandomForestRegressor(10, max_depth=d, random_state=3).fit(f, f[:, 0]).predict(ft))
             for d in DEPTHS]
    assert fast == plain
    deep = RandomForestRegressor(10, max_depth=32, random_state=3).fit(f, f[:, 0])
    assert max(t.get_depth() for t in deep.estimators_) < 8


def test_a_single_class_factor_is_predicted_exactly():
    x = np.random.default_rng(0).normal(size=(50, 2))
    assert probe_losses(x, np.zeros(50), x, np.zeros(50), [1, 2]) == [0.0, 0.0]


def test_same_seed_same_value_and_the_seed_reaches_the_forests():
    a, b = dci_es(rotation, DS, **SMALL), dci_es(rotation, DS, **SMALL)
    assert a["dci_es"] == b["dci_es"] and a["loss_capacity"] == b["loss_capacity"]
    assert dci_es(rotation, DS, seed=1, **SMALL)["loss_capacity"] != a["loss_capacity"]
    assert a["params"] == {"num_train": 600, "num_test": 300, "depths": DEPTHS, "num_trees": 10,
                           "normalization": "authors", "seed": 0}     # n_jobs is a runtime parameter


def test_evaluate_with_dci_gives_the_same_value_as_alone():
    small = {k: v for k, v in SMALL.items()}
    out = evaluate(rotation, DS, "dci,dci_es", params={"dci": {"num_train": 600, "num_test": 300, "n_estimators": 10},
                                                       "dci_es": small})
    assert set(out) == {"dci", "dci_es"}
    assert out["dci_es"]["dci_es"] == dci_es(rotation, DS, **SMALL)["dci_es"]


# ----------------------------------------------------------------------------------- settings
def test_bad_settings_are_one_line_errors():
    with pytest.raises(DisentkitError, match="normalization must be one of authors, rectangle, got 'area'"):
        dci_es(identity, DS, normalization="area", **SMALL)
    with pytest.raises(DisentkitError, match="depths must be at least two strictly increasing integers ≥ 1"):
        dci_es(identity, DS, depths=[4], **SMALL)
    with pytest.raises(DisentkitError, match="depths must be at least two strictly increasing integers ≥ 1"):
        dci_es(identity, DS, depths=[1, 4, 4], **SMALL)
    with pytest.raises(DisentkitError, match="num_trees must be an integer ≥ 2"):
        dci_es(identity, DS, num_train=600, num_test=300, num_trees=1)
    with pytest.raises(DisentkitError, match="normalization must be one of authors, rectangle"):
        explicitness([1, 2], [1.0, 0.0], normalization="area")


def test_extended_adds_it_and_all_stays_the_dlib_suite():
    assert "dci_es" in resolve_metrics("extended")
    assert "dci_es" not in resolve_metrics("all")
