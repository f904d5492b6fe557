"""Procedural 3D Shapes: factor grid, colours, layout, and a comparison with real notebook panels."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch

from disentkit.data import get_dataset
from disentkit.data.shapes3d_procedural import SKY, Shapes3DProcedural, best_matches, hue_rgb


@pytest.fixture(scope="module")
def ds() -> Shapes3DProcedural:
    d = Shapes3DProcedural(supersample=1, cache_path=None)
    d.geometry()          # ray-cast the 480 geometries once for the module (1x sampling: faster)
    return d


def img_u8(ds, factors) -> np.ndarray:
    x = ds.render_factors(torch.as_tensor(factors))
    return (x * 255).round().byte().permute(0, 2, 3, 1).numpy().astype(int)


def test_factor_grid_matches_the_real_file():
    d = get_dataset("shapes3d_procedural")
    assert d.factor_names == ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    assert d.factor_sizes == (10, 10, 10, 8, 4, 15) and d.num_images == 480_000
    assert d.factors[3].values[0] == 0.75 and d.factors[3].values[-1] == 1.25
    assert d.factors[5].values[0] == -30.0 and d.factors[5].values[7] == 0.0
    assert d.factors[4].labels == ("cube", "cylinder", "sphere", "capsule")
    assert d.observation_shape == (3, 64, 64)


def test_colours_sky_walls_floor(ds):
    for fh, wh in ((0, 3), (6, 9), (2, 5)):
        img = img_u8(ds, [[fh, wh, 8, 0, 0, 7]])[0]          # small cube, camera straight on
        assert np.abs(img[2, 32] - np.array(SKY) * 255).max() <= 1                       # sky ≈ (153, 226, 249)
        wall = np.round(np.array(hue_rgb(ds.factors[1].values[wh])) * 255)
        assert np.abs(img[30, 3] - wall).max() <= 1                                      # HSV(h, 1, 1)
        h, s, v = colorsys.rgb_to_hsv(*(img[30, 3] / 255))
        assert s > 0.99 and v > 0.99
        floor = np.round(np.array(hue_rgb(ds.factors[0].values[fh])) * 255)
        assert np.abs(img[62, 3] - floor).max() <= 1


def test_wall_floor_boundary_near_row_42(ds):
    for o in (0, 7, 14):
        img = img_u8(ds, [[0, 5, 2, 0, 2, o]])[0]
        floor = np.array(hue_rgb(0.0)) * 255
        col = 32 + (-20 if o != 14 else 20)          # away from the object and side walls
        rows = [r for r in range(64) if np.abs(img[r, col] - floor).max() < 30]
        assert 40 <= min(rows) <= 45, (o, min(rows))


def test_geometry_is_shared_and_object_changes_with_shape(ds):
    a = img_u8(ds, [[1, 2, 3, 4, s, 7] for s in range(4)])
    assert all(np.abs(a[0] - a[s]).sum() > 1000 for s in (1, 2, 3))
    b = img_u8(ds, [[1, 2, 3, 4, 2, o] for o in (0, 14)])
    assert np.abs(b[0] - b[1]).sum() > 1000                    # orientation moves the camera
    big, small = img_u8(ds, [[1, 2, 3, 7, 2, 7], [1, 2, 3, 0, 2, 7]])
    obj = np.array(hue_rgb(0.3)) * 255
    area = [int((np.abs(x - obj).max(-1) < 100).sum()) for x in (big, small)]
    assert area[0] > 1.5 * area[1]
    idx = torch.tensor([0, 12345, 479_999])
    assert torch.allclose(ds.images_at(idx), ds.render_factors(ds.index_to_factors(idx)))
    g = 123                                      # one geometry under all 1000 hue combinations, broadcast
    rows = torch.arange(1000) * 480 + g
    assert torch.allclose(ds.render_geometry_all_hues(g), ds.render_factors(ds.index_to_factors(rows)), atol=1e-6)


@pytest.mark.slow
def test_close_to_the_real_notebook_panels(ds, shared_data):
    """Best match over the grid for each of 25 real panels: colours, layout and look agree."""
    panels = np.load(shared_data / "shapes3d_notebook_panels.npy").astype(np.float32) / 255
    _, errs = best_matches(ds, panels)
    sky_agree = []
    for p in panels:
        sky_real = np.abs(p - np.array(SKY)).max(-1) < 0.06
        sky_agree.append(sky_real[:14].mean())
    assert np.median(errs) < 20 / 255, np.array(errs) * 255      # mean abs error per channel, 0-255 scale
    assert np.mean(sky_agree) > 0.95                               # sky fills the top rows in both
