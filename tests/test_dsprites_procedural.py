"""The procedural dSprites: factor grid, index order, bit packing, and calibration to real frames."""

import json
import math

import numpy as np
import pytest
import torch

from disentkit.data import get_dataset
from disentkit.data.dsprites_procedural import DSpritesProcedural, pack_bits, render, unpack_bits


def test_factor_grid_matches_dsprites():
    ds = get_dataset("dsprites_procedural")
    assert ds.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert ds.factor_sizes == (3, 6, 40, 32, 32)
    assert ds.num_images == 737_280
    np.testing.assert_allclose(ds.factors[1].values, np.linspace(0.5, 1, 6))
    np.testing.assert_allclose(ds.factors[2].values, np.linspace(0, 2 * math.pi, 40))
    np.testing.assert_allclose(ds.factors[3].values, np.linspace(0, 1, 32))


def test_index_order_posy_fastest_and_roundtrip():
    ds = DSpritesProcedural()
    f = ds.index_to_factors(np.array([0, 1, 32, 32 * 32, 737_279]))
    np.testing.assert_array_equal(f[1], [0, 0, 0, 0, 1])   # posY varies fastest
    np.testing.assert_array_equal(f[2], [0, 0, 0, 1, 0])
    np.testing.assert_array_equal(f[3], [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(f[4], [2, 5, 39, 31, 31])
    idx = torch.randint(0, ds.num_images, (500,))
    assert torch.equal(ds.factors_to_index(ds.index_to_factors(idx)), idx)
    rng = np.random.default_rng(0)
    fac = ds.sample_factors(100, rng)
    np.testing.assert_array_equal(ds.index_to_factors(ds.factors_to_index(fac)), fac)


def test_moving_posx_moves_along_columns():
    ds = DSpritesProcedural()
    left = ds.sample_observations_from_factors(np.array([[0, 0, 0, 0, 16]]))[0, 0]
    right = ds.sample_observations_from_factors(np.array([[0, 0, 0, 31, 16]]))[0, 0]
    col = lambda im: (im.sum(0) * torch.arange(64)).sum() / im.sum()
    row = lambda im: (im.sum(1) * torch.arange(64)).sum() / im.sum()
    assert col(right) - col(left) > 25 and abs(row(right) - row(left)) < 1


def test_bit_packing_roundtrip_and_materialized_equals_rendered():
    imgs = torch.rand(7, 64, 64) > 0.5
    assert torch.equal(unpack_bits(pack_bits(imgs)).bool(), imgs)
    ds = DSpritesProcedural()
    idx = torch.randint(0, ds.num_images, (64,))
    rendered = ds.images_at(idx)
    ds.packed = torch.zeros(ds.num_images, 64, 8, dtype=torch.uint8)
    ds.packed[idx] = pack_bits(rendered[:, 0].bool())
    assert torch.equal(ds.images_at(idx), rendered)
    assert rendered.shape == (64, 1, 64, 64) and rendered.dtype == torch.float32


def test_observations_are_binary_and_shape_inside_canvas():
    ds = DSpritesProcedural()
    corners = np.array([[s, 5, 7, x, y] for s in range(3) for x in (0, 31) for y in (0, 31)])
    imgs = ds.sample_observations_from_factors(corners)
    assert set(imgs.unique().tolist()) <= {0.0, 1.0}
    assert (imgs[..., 0, :].sum() + imgs[..., -1, :].sum() + imgs[..., :, 0].sum() + imgs[..., :, -1].sum()) == 0


def _frames(shared_data):
    frames = np.load(shared_data / "dsprites_gif_frames.npy") > 0
    labels = json.loads((shared_data / "dsprites_gif_frame_labels.json").read_text())
    return frames, labels


def _best_fit(frame, shapes, scales, thetas, positions):
    """Smallest pixel mismatch of ``frame`` over every combination of the candidate values."""
    grid = torch.cartesian_prod(torch.tensor(shapes, dtype=torch.float32), torch.tensor(scales, dtype=torch.float32),
                                torch.tensor(thetas, dtype=torch.float32), torch.arange(len(positions)).float())
    pos = torch.tensor(positions, dtype=torch.float32)[grid[:, 3].long()]
    imgs = render(grid[:, 0].long(), grid[:, 1], grid[:, 2], pos[:, 0] / 31, pos[:, 1] / 31)
    mism = (imgs.numpy() != frame).sum((1, 2))
    return int(grid[mism.argmin(), 0]), int(mism.min())


def test_calibration_against_real_frames(shared_data):
    """Squares/ellipses within 6 mismatching pixels of the real frames, hearts median ≤ 20.

    The frame labels were fitted, not published: orientation is ambiguous for the symmetric shapes,
    and a run of frames has wrong labels (frames 69-74, labelled squares, are hearts one scale step
    larger and three rows lower). So each frame is matched against every shape and grid orientation
    at its labelled scale and position; where that fit is still poor, position (around the pixel
    centroid) and scale are fitted too. A frame is judged as the shape that fits it best."""
    frames, labels = _frames(shared_data)
    thetas = np.linspace(0, 2 * math.pi, 40).tolist()
    scales = np.linspace(0.5, 1, 6).tolist()
    best = {0: [], 1: [], 2: []}
    for lab, frame in zip(labels, frames):
        th = thetas + [lab["orientation"]]
        k, m = _best_fit(frame, [0, 1, 2], [lab["scale"]], th, [(lab["posX_index"], lab["posY_index"])])
        if m > 6 and k != 2:
            rows, cols = np.nonzero(frame)
            cx = int(round(((cols.mean() + 0.5) / 64 - 0.25) / 0.5 * 31))
            cy = int(round(((rows.mean() + 0.5) / 64 - 0.25) / 0.5 * 31))
            near = [(x, y) for x in range(cx - 1, cx + 2) for y in range(cy - 2, cy + 3) if 0 <= x < 32 and 0 <= y < 32]
            k, m = _best_fit(frame, [0, 1, 2], scales, th, near)
        best[k].append(m)
    assert len(best[0]) >= 60 and len(best[1]) >= 60 and len(best[2]) >= 60, {k: len(v) for k, v in best.items()}
    assert max(best[0]) <= 6, best[0]
    assert max(best[1]) <= 6, best[1]
    assert np.median(best[2]) <= 20


@pytest.mark.slow
def test_full_grid_mean_pixel():
    """Mean pixel over all 737,280 images: 0.043 ± 0.002 (the real file's statistic)."""
    ds = DSpritesProcedural().materialize()
    total = sum(float(unpack_bits(ds.packed[s:s + 65536]).sum(dtype=torch.float64))
                for s in range(0, ds.num_images, 65536))
    assert abs(total / (ds.num_images * 4096) - 0.043) <= 0.002
