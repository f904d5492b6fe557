"""Shared test fixtures. Tests run torch on one thread: on 2 cores, contended threads are far slower."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from disentkit.testing import IdentityDataset

torch.set_num_threads(1)
os.environ.setdefault("DISENTKIT_TEST", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` (real reference pixels); tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (reference pixels are only on the team's machines)")
    return SHARED_DATA


@pytest.fixture
def identity_dataset() -> IdentityDataset:
    return IdentityDataset()


@pytest.fixture
def tiny_run(tmp_path_factory) -> Path:
    """A β-VAE trained for a few steps once per session (shared by CLI/eval/report tests)."""
    from disentkit.train import TrainConfig, fit

    out = tmp_path_factory.mktemp("runs") / "tiny"
    fit(TrainConfig(steps=30, batch_size=16, out=str(out), log_every=10, threads=1, progress=False,
                    seed=3, val_fraction=0.001, val_every=15, val_batches=2, hparams={"beta": 4.0}))
    return out


def flatten_codes(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1)


np.seterr(all="raise")
