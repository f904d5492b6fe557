"""The Python API: ``disentkit.load`` and its Model, metrics on what users hold, your own factor data,
the torch Dataset view."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

import disentkit
from disentkit.data import ArrayFactorDataset, FactorDataset, get_dataset
from disentkit.data.arrays import LabelledFactorDataset
from disentkit.errors import DisentkitError
from disentkit.metrics import dci, evaluate, factor_vae_score, mig


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from disentkit.train import TrainConfig, fit

    out = tmp_path_factory.mktemp("api") / "run"
    return fit(TrainConfig(steps=20, batch_size=16, out=str(out), threads=1, progress=False, seed=5,
                           hparams={"beta": 4.0}))


@pytest.fixture(scope="module")
def dsprites():
    return get_dataset("dsprites_procedural")


def test_load_encode_decode_reconstruct_traverse(run, dsprites):
    model = disentkit.load(run)
    assert isinstance(model, disentkit.Model) and model.latent_dim == 10 and model.config["model"] == "beta_vae"
    x = dsprites.images_at(torch.arange(6))
    z = model.encode(x)
    mu, logvar = model.posterior(x)
    assert z.shape == (6, 10) and torch.equal(z, mu)
    assert torch.equal(model.encode(x, sample=True, seed=1), model.encode(x, sample=True, seed=1))
    assert not torch.equal(model.encode(x, sample=True, seed=1), z)
    assert torch.allclose(model.encode(x[0]), z[:1], atol=1e-6)  # one (C, H, W) image is a batch of one (other kernels)
    assert torch.equal(model.encode((x.numpy() * 255).astype(np.uint8)), model.encode(x))  # binary: 0/255 -> 0/1
    rec = model.reconstruct(x)
    assert rec.shape == x.shape and float(rec.min()) >= 0 and float(rec.max()) <= 1
    assert torch.equal(rec, model.decode(z))
    frames = model.traverse(x[0], steps=5, limit=2.0)
    assert frames.shape == (10, 5, 1, 64, 64)
    assert model.traverse(x[0], steps=5, latents=[3, 1]).shape == (2, 5, 1, 64, 64)
    assert torch.equal(model.traverse(x[0], steps=5, latents=[3])[0], frames[3])
    with pytest.raises(DisentkitError, match="codes must be"):
        model.decode(torch.zeros(2, 4))
    with pytest.raises(DisentkitError, match=r"\(N, C, H, W\)"):
        model.encode(torch.zeros(64, 64))


def test_save_round_trips(run, dsprites, tmp_path):
    model = disentkit.load(run)
    path = model.save(tmp_path / "copy")
    again = disentkit.load(tmp_path / "copy")
    assert path.name == "model.safetensors" and again.config == model.config
    x = dsprites.images_at(torch.arange(4))
    assert torch.equal(again.encode(x), model.encode(x))
    assert set(again.state) == set(model.state)  # the objective's tensors travel too


def test_metrics_take_the_model_its_vae_its_encoder_or_a_function(run, dsprites):
    model = disentkit.load(run)
    ref = mig(model.representation(), dsprites, num_train=500)["mig"]
    for what in (model, model.vae, model.vae.encoder, lambda im: model.encode(im)):
        assert mig(what, dsprites, num_train=500)["mig"] == ref
    model.vae.encoder.train()
    mig(model.vae.encoder, dsprites, num_train=200)
    assert model.vae.encoder.training  # the module's mode is restored after encoding
    with pytest.raises(DisentkitError, match="metrics need an encoder.*got int"):
        mig(42, dsprites)
    with pytest.raises(DisentkitError, match="one code per image"):
        mig(lambda im: torch.zeros(3, 2), dsprites, num_train=100)
    with pytest.raises(DisentkitError, match="non-finite codes"):
        mig(lambda im: torch.full((len(im), 2), float("nan")), dsprites, num_train=100)


def _subset(ds, n, seed=0):
    rng = np.random.default_rng(seed)
    idx = rng.choice(ds.num_images, n, replace=False)
    return idx, ds.images_at(torch.as_tensor(idx)), ds.index_to_factors(idx)


def test_from_arrays_complete_grid_equals_the_built_in_dataset(dsprites):
    grid = dsprites.index_to_factors(np.arange(dsprites.num_images))
    sel = np.flatnonzero((grid[:, 2] == 0) & (grid[:, 3] % 8 == 0) & (grid[:, 4] % 8 == 0))
    shuffled = np.random.default_rng(1).permutation(sel)
    x = dsprites.images_at(torch.as_tensor(shuffled))
    ds = FactorDataset.from_arrays(x, dsprites.factor_values_of(dsprites.index_to_factors(shuffled)),
                                   names=dsprites.factor_names)
    assert isinstance(ds, ArrayFactorDataset) and ds.factor_sizes == (3, 6, 1, 4, 4)
    assert ds.factor_names == dsprites.factor_names and ds.observation_shape == (1, 64, 64)
    assert ds.factors[1].values == tuple(float(v) for v in dsprites.factors[1].values)
    # grid order: image i of ds is the dSprites image with the same factor classes
    want = dsprites.index_to_factors(np.sort(sel))
    assert torch.equal(ds.images_at(torch.arange(ds.num_images)), dsprites.images_at(torch.as_tensor(np.sort(sel))))
    assert np.array_equal(ds.index_to_factors(np.arange(ds.num_images))[:, [0, 1]], want[:, [0, 1]])
    # interventions work on a grid
    model_fn = lambda im: im.flatten(1)[:, ::512]  # noqa: E731
    out = factor_vae_score(model_fn, ds, num_train=20, num_eval=10, num_variance_estimate=50)
    assert 0 <= out["factor_vae_score"] <= 1


def test_from_arrays_labelled_rows(dsprites):
    idx, x, y = _subset(dsprites, 3000)
    ds = FactorDataset.from_arrays((x[:, 0].numpy() * 255).astype(np.uint8), y, names=list(dsprites.factor_names))
    assert isinstance(ds, LabelledFactorDataset) and ds.num_images == 3000 and ds.scale == 1 / 255
    assert torch.equal(ds.images_at(torch.arange(5)), x[:5])
    assert np.array_equal(ds.factors_to_index(ds.index_to_factors(np.arange(50))), np.arange(50))
    f = ds.sample_factors(1000, np.random.default_rng(0))
    assert len(f) == 1000 and np.array_equal(ds.images_at(torch.as_tensor(ds.factors_to_index(f))).shape, (1000, 1, 64, 64))
    r = evaluate(lambda im: im.flatten(1)[:, ::256], ds, "mig,sap,dci",
                 params={"mig": {"num_train": 500}, "sap": {"num_train": 300, "num_test": 100},
                         "dci": {"num_train": 100, "num_test": 50, "n_estimators": 3}})
    assert set(r) == {"mig", "sap", "dci"}
    with pytest.raises(DisentkitError, match="not a complete factor grid.*factor_vae_score"):
        factor_vae_score(lambda im: im.flatten(1)[:, ::256], ds, num_train=20, num_eval=10, num_variance_estimate=50)


def test_from_arrays_layouts_and_bad_input():
    rng = np.random.default_rng(0)
    rgb = rng.random((6, 3, 8, 8)).astype(np.float32)  # (N, C, H, W) floats
    ds = FactorDataset.from_arrays(rgb, np.arange(6))
    assert ds.observation_shape == (3, 8, 8) and ds.factor_names == ("factor0",)
    assert torch.allclose(ds.images_at(torch.arange(6)), torch.from_numpy(rgb))
    nhwc = FactorDataset.from_arrays(rgb.transpose(0, 2, 3, 1), np.arange(6))
    assert torch.equal(nhwc.images_at(torch.arange(6)), ds.images_at(torch.arange(6)))
    for images, factors, kw, msg in [
        (rgb, np.arange(5), {}, "N = 6"),
        (rgb * 2, np.arange(6), {}, r"within \[0, 1\]"),
        (rgb, np.full(6, np.nan), {}, "finite"),
        (rgb, np.zeros((6, 2)), {"names": ["a"]}, "2 distinct factor names"),
        (np.zeros((6, 8)), np.arange(6), {}, "shape"),
        (rgb[:1], np.arange(1), {}, "at least 2"),
    ]:
        with pytest.raises(DisentkitError, match=msg):
            FactorDataset.from_arrays(images, factors, **kw)


def test_from_file_npz_and_h5(tmp_path, dsprites):
    idx, x, y = _subset(dsprites, 200)
    imgs = (x[:, 0].numpy() > 0.5).astype(np.uint8)
    np.savez(tmp_path / "mine.npz", images=imgs, factors=y, names=np.array(dsprites.factor_names))
    with h5py.File(tmp_path / "mine.h5", "w") as f:
        f["imgs"], f["latents_classes"] = imgs, y
    a, b = FactorDataset.from_file(tmp_path / "mine.npz"), FactorDataset.from_file(tmp_path / "mine.h5")
    assert a.name == "mine" and a.factor_names == dsprites.factor_names and b.factor_names[0] == "factor0"
    assert torch.equal(a.images_at(torch.arange(200)), x) and torch.equal(b.images_at(torch.arange(200)), x)
    np.savez(tmp_path / "bad.npz", pixels=imgs)
    with pytest.raises(DisentkitError, match="needs 'images'"):
        FactorDataset.from_file(tmp_path / "bad.npz")
    (tmp_path / "torn.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(DisentkitError, match="could not be read"):
        FactorDataset.from_file(tmp_path / "torn.npz")
    with pytest.raises(DisentkitError, match="no such file"):
        FactorDataset.from_file(tmp_path / "absent.npz")


def test_torch_dataset_view(dsprites):
    td = dsprites.torch_dataset()
    assert len(td) == dsprites.num_images
    image, factors = td[12345]
    assert torch.equal(image, dsprites.images_at(torch.tensor([12345]))[0])
    assert torch.equal(factors, torch.as_tensor(dsprites.index_to_factors(np.array([12345]))[0]))
    sub = dsprites.torch_dataset(indices=[5, 7, 9])
    loader = torch.utils.data.DataLoader(sub, batch_size=2)
    (xb, yb), (xc, _) = list(loader)
    assert xb.shape == (2, 1, 64, 64) and yb.shape == (2, 5) and xc.shape == (1, 1, 64, 64)
    assert torch.equal(xb, dsprites.images_at(torch.tensor([5, 7])))
    with pytest.raises(IndexError):
        sub[3]


def test_help_lists_the_api():
    doc = disentkit.__doc__
    assert "disentkit.load" in doc and "from_arrays" in doc and "torch_dataset" in doc
    assert {"load", "Model", "__version__"} <= set(dir(disentkit))
    for name in ("load", "Model"):
        assert getattr(disentkit, name).__doc__
