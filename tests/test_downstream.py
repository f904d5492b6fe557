"""Downstream-task scores (dlib's downstream_task) on known representations: the identity and a rotation are
read off by a linear probe (its accuracy does not depend on the basis), noise is at chance, and accuracy
grows with the number of labelled codes; the keys follow dlib's; the GBT predictor agrees."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from disentkit.testing import IdentityDataset

from disentkit.errors import DisentkitError
from disentkit.metrics import downstream_task, resolve_metrics

DS = IdentityDataset((4, 4, 4))
Q = torch.as_tensor(np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0])
SMALL = dict(num_train=[10, 300], num_test=300)


def identity(x):
    return x.flatten(1)


def rotation(x):
    return x.flatten(1).double() @ Q


def noise(x):
    return torch.randn(len(x), 3, generator=torch.Generator().manual_seed(int(x.sum()) + len(x)))


noise.deterministic = False


@pytest.mark.parametrize("encoder, low, high", [(identity, 0.99, 1.0), (rotation, 0.97, 1.0), (noise, 0.15, 0.35)])
def test_known_representations(encoder, low, high):
    out = downstream_task(encoder, DS, **SMALL)
    assert low <= out["300:mean_test_accuracy"] <= high, out["300:mean_test_accuracy"]
    assert out["downstream_task"] == out["300:mean_test_accuracy"]
    assert out["300:min_test_accuracy"] <= out["300:mean_test_accuracy"]
    assert set(out["300:test_accuracy"]) == {"f0", "f1", "f2"}


def test_more_labels_help_and_keys_follow_dlib():
    out = downstream_task(rotation, DS, num_train=[10, 30, 300], num_test=300)
    assert out["10:mean_test_accuracy"] <= out["300:mean_test_accuracy"]
    for size in (10, 30, 300):
        assert {f"{size}:{w}_{s}_accuracy" for w in ("mean", "min") for s in ("train", "test")} <= set(out)
    assert out["params"] == {"num_train": [10, 30, 300], "num_test": 300, "predictor": "logistic_regression_cv",
                             "seed": 0}


def test_gradient_boosting_predictor_reads_the_identity():
    out = downstream_task(identity, DS, num_train=[200], num_test=200, predictor="gradient_boosting")
    assert out["predictor"] == "gradient_boosting" and out["downstream_task"] == 1.0


def test_bad_settings_are_one_line_errors():
    with pytest.raises(DisentkitError, match="predictor must be one of logistic_regression_cv, gradient_boosting"):
        downstream_task(identity, DS, num_train=[20], num_test=20, predictor="svm")
    with pytest.raises(DisentkitError, match="num_train must be an integer ≥ 2 \\(or a list of them\\)"):
        downstream_task(identity, DS, num_train=[0, 10], num_test=20)


def test_extended_adds_it_and_all_stays_the_dlib_suite():
    assert "downstream_task" not in resolve_metrics("all")
    extended = resolve_metrics("extended")
    assert set(extended) - set(resolve_metrics("all")) == {"downstream_task", "infomec", "dci_es", "chen_mig"}
    assert [m for m in extended if m in resolve_metrics("all")] == resolve_metrics("all")
