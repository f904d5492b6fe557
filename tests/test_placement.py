"""Where a dataset's images live while a run trains: ``FactorDataset.place(device, free_bytes)`` decides from
the bytes it needs on the device and the free memory, and calls the dataset's real ``materialize``/``to``.
The ``meta`` device stands in for a GPU (shapes only, no memory), with a fake free-memory budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from disentkit.data import DATASETS, ArrayFactorDataset, Factor, get_dataset
from disentkit.data.shapes3d_procedural import Shapes3DProcedural
from disentkit.testing import IdentityDataset

META = torch.device("meta")
GB = 1 << 30


def _array_dataset(n: int = 64) -> ArrayFactorDataset:
    """What every real dataset loads as (a memory-mapped uint8 cache): here a small in-memory array."""
    return ArrayFactorDataset("small", [Factor("a", tuple(range(n)))], np.zeros((n, 64, 64, 3), np.uint8))


def test_every_registered_dataset_has_a_placement_rule():
    procedural = {name for name, e in DATASETS.items() if e.procedural}
    assert procedural == {"dsprites_procedural", "shapes3d_procedural"}
    # every real dataset loads into an ArrayFactorDataset (data/cache.py: load_cache), covered below
    assert get_dataset("dsprites_procedural").placement_bytes() == 737_280 * 64 * 8            # bit-packed, 0.38 GB
    assert Shapes3DProcedural(cache_path=None).placement_bytes() == 480_000 * 64 * 64 * 3        # uint8, 5.9 GB
    assert _array_dataset().placement_bytes() == 64 * 64 * 64 * 3
    assert IdentityDataset().placement_bytes() == 0


@pytest.mark.parametrize("free_gb, placed", [(0.5, False), (0.8, True)])
def test_dsprites_procedural_is_rendered_onto_the_device_when_it_fits(free_gb, placed):
    ds = get_dataset("dsprites_procedural")
    assert ds.place(META, free_bytes=int(free_gb * GB)) is placed      # needs 0.35 GiB ≤ half the free memory
    assert (ds.packed is not None) is placed
    if placed:
        assert ds.packed.device.type == "meta" and tuple(ds.packed.shape) == (737_280, 64, 8)


@pytest.mark.parametrize("free_gb, placed", [(10, False), (12, True)])
def test_shapes3d_procedural_materializes_on_the_device_when_it_fits(monkeypatch, free_gb, placed):
    """5.9 GB of uint8 images: held on the device only with ≥ 11.8 GB free (the ray-cast colouring is
    replaced by zeros here; the placement path, its size and its call of materialize are the real ones)."""
    ds = Shapes3DProcedural(cache_path=None)
    monkeypatch.setattr(ds, "render_geometry_all_hues", lambda geo: torch.zeros(1000, 3, 64, 64, device="meta"))
    assert ds.place(META, free_bytes=int(free_gb * GB)) is placed
    assert (ds.images is not None) is placed
    if placed:
        assert ds.images.device.type == "meta" and tuple(ds.images.shape) == (480_000, 64, 64, 3)


def test_array_datasets_and_correlated_variants_move_when_they_fit():
    ds = _array_dataset()
    assert ds.place(META, free_bytes=ds.placement_bytes()) is False       # more than half the free memory
    assert ds.place(META, free_bytes=4 * ds.placement_bytes()) is True and ds.images.device.type == "meta"
    assert ds.placement_bytes() == 0                                      # already there
    corr = get_dataset("dsprites_procedural:corr(posX,posY,0.2)")
    assert corr.placement_bytes() == 737_280 * 64 * 8
    assert corr.place(META, free_bytes=GB) is True and corr.base.packed.device.type == "meta"


def test_nothing_moves_on_a_cpu():
    for ds in (get_dataset("dsprites_procedural"), _array_dataset()):
        assert ds.place(torch.device("cpu"), free_bytes=1 << 50) is False
    assert get_dataset("dsprites_procedural").packed is None
