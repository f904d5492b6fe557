"""Each real-dataset loader against small files written in the exact published formats."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from disentkit.data import cars3d, celeba, chairs, dsprites, get_dataset, mpi3d, shapes3d, smallnorb
from disentkit.testing import synthetic
from disentkit.data.cache import cache_dir, data_root, load_cache, load_real, raw_dir
from disentkit.data.formats import iter_npz_array, read_norb_matrix, write_norb_matrix
from disentkit.data.registry import SOURCES, DatasetSource, RemoteFile
from disentkit.errors import DisentkitError


def _ordered(ds) -> torch.Tensor:
    return ds.images_at(torch.arange(ds.num_images))


def test_registry_holds_published_facts():
    s3 = SOURCES["shapes3d"].files[0]
    assert s3.size == 267_573_662 and s3.checksums == (
        "sha256:0a0f6ed98baff276a50f3a081a7434d788da63cb135a98189b2a5b5769be1785",)
    assert SOURCES["dsprites"].files[0].checksums == ("md5:7da33b31b13a06f4b04a70402ce90c2e",)
    h5 = SOURCES["dsprites"].alternatives[0]
    assert h5.size == 28_024_106 and h5.checksums[0].endswith("729fa22e884c9c500e1f17415d580746b4c5894fbbb780a1319bbcfa39a745bb")
    celeb = SOURCES["celeba"].files[0]
    assert celeb.size == 1_443_490_838 and "md5:00d2c5bc6d35e252742224ab0c1e8fcb" in celeb.checksums
    assert [s.num_images for s in (SOURCES["mpi3d_toy"], SOURCES["mpi3d_complex"])] == [1_036_800, 460_800]
    assert len(SOURCES["smallnorb"].files) == 6 and SOURCES["chairs"].num_images == 1393 * 62
    for src in SOURCES.values():
        for f in src.files + src.alternatives:
            assert f.urls and f.source, f.filename


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("DISENTKIT_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "flag") == tmp_path / "flag"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv("DISENTKIT_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root() == tmp_path / "xdg" / "disentkit"


def test_dsprites_npz_latin1_pickle(tmp_path):
    sizes = (1, 2, 2, 3, 2, 2)
    p = synthetic.write_dsprites_npz(tmp_path / "d.npz", sizes)
    with pytest.raises(UnicodeError):            # the py2 pickle really needs encoding='latin1'
        np.load(p, allow_pickle=True)["metadata"]
    out = dsprites.convert({p.name: p}, tmp_path / "cache", SOURCES["dsprites"], sizes=sizes)
    ds = load_cache(out)
    assert ds.factor_names == ("shape", "scale", "orientation", "posX", "posY")   # constant color dropped
    assert ds.factor_sizes == (2, 2, 3, 2, 2) and ds.scale == 1.0
    assert ds.factors[2].values[-1] == pytest.approx(2 * np.pi)
    bits = (_ordered(ds)[:, 0, 0, :] > 0.5).long()
    assert torch.equal((bits * (2 ** torch.arange(63, -1, -1))).sum(1), torch.arange(ds.num_images))
    assert isinstance(ds.images, np.memmap) and ds.images.dtype == np.uint8
    classes = np.load(out / "classes.npy")
    assert np.array_equal(classes, ds.index_to_factors(np.arange(ds.num_images)))
    meta = json.loads((out / "meta.json").read_text())
    assert [f["size"] for f in meta["factors"]] == [2, 2, 3, 2, 2]


def test_dsprites_real_grid_is_the_default(tmp_path):
    p = synthetic.write_dsprites_npz(tmp_path / "d.npz", (1, 2, 2, 3, 2, 2))
    with pytest.raises(DisentkitError, match="is not the expected"):
        dsprites.convert({p.name: p}, tmp_path / "cache", SOURCES["dsprites"])
    assert dsprites.SIZES == (1, 3, 6, 40, 32, 32)


def test_dsprites_hdf5_variant(tmp_path):
    sizes = (1, 3, 2, 2, 2, 2)
    p = synthetic.write_dsprites_hdf5(tmp_path / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5", sizes)
    ds = load_cache(dsprites.convert({p.name: p}, tmp_path / "cache", SOURCES["dsprites"], sizes=sizes))
    assert ds.factor_sizes == (3, 2, 2, 2, 2) and ds.factors[0].labels == ("square", "ellipse", "heart")
    bits = (_ordered(ds)[:, 0, 0, :] > 0.5).long()
    assert torch.equal((bits * (2 ** torch.arange(63, -1, -1))).sum(1), torch.arange(ds.num_images))


def test_shapes3d_h5_keys_and_classes_from_index(tmp_path):
    sizes = (2, 2, 3, 2, 4, 3)
    p = synthetic.write_shapes3d_h5(tmp_path / "3dshapes.h5", sizes)
    ds = load_cache(shapes3d.convert({p.name: p}, tmp_path / "cache", SOURCES["shapes3d"], sizes=sizes))
    assert ds.factor_names == shapes3d.NAMES and ds.observation_shape == (3, 64, 64)
    assert ds.factors[4].labels == ("cube", "cylinder", "sphere", "capsule")
    assert ds.factors[5].values == (-30.0, 0.0, 30.0)
    imgs = (ds.images_at(torch.arange(ds.num_images)) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    assert np.array_equal(synthetic.decode_rgb_index(imgs), np.arange(ds.num_images))
    assert shapes3d.SIZES == (10, 10, 10, 8, 4, 15)


def test_shapes3d_rejects_labels_out_of_grid_order(tmp_path):
    import h5py

    sizes = (2, 2, 2, 2, 4, 3)
    p = synthetic.write_shapes3d_h5(tmp_path / "3dshapes.h5", sizes)
    with h5py.File(p, "r+") as f:
        f["labels"][:] = f["labels"][()][np.random.default_rng(0).permutation(len(f["labels"]))]
    with pytest.raises(DisentkitError, match="grid order"):
        shapes3d.convert({p.name: p}, tmp_path / "cache", SOURCES["shapes3d"], sizes=sizes)


@pytest.mark.parametrize("compressed", [False, True])
def test_mpi3d_grid_inferred_from_image_count(tmp_path, compressed):
    p = synthetic.write_mpi3d_npz(tmp_path / "mpi3d_toy.npz", 2 * 3 * 4, compressed=compressed)
    grids = {24: (2, 1, 1, 1, 1, 3, 4), 48: (2, 2, 1, 1, 1, 3, 4)}
    ds = load_cache(mpi3d.convert({p.name: p}, tmp_path / "cache", SOURCES["mpi3d_toy"], grids=grids, chunk=5))
    assert ds.factor_sizes == (2, 1, 1, 1, 1, 3, 4) and ds.factor_names[-1] == "vertical_axis"
    imgs = (_ordered(ds) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    assert np.array_equal(synthetic.decode_rgb_index(imgs), np.arange(24))
    p2 = synthetic.write_mpi3d_npz(tmp_path / "mpi3d_real.npz", 30)
    with pytest.raises(DisentkitError, match="match no published MPI3D grid"):
        mpi3d.convert({p2.name: p2}, tmp_path / "c2", SOURCES["mpi3d_real"], grids=grids)
    assert mpi3d.GRIDS == {1_036_800: (6, 6, 2, 3, 3, 40, 40), 460_800: (4, 4, 2, 3, 3, 40, 40)}


def test_npz_streaming_reads_blocks(tmp_path):
    p = synthetic.write_mpi3d_npz(tmp_path / "m.npz", 10)
    blocks = list(iter_npz_array(p, "images", 4))
    assert [b.shape[0] for _, b in blocks] == [4, 4, 2]
    with pytest.raises(DisentkitError, match="no array 'imgs'"):
        list(iter_npz_array(p, "imgs"))


def test_norb_binary_matrix_header(tmp_path):
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    write_norb_matrix(tmp_path / "m.mat.gz", a)
    raw = __import__("gzip").open(tmp_path / "m.mat.gz").read()
    assert np.frombuffer(raw[:8], "<i4").tolist() == [0x1E3D4C54, 3]
    assert np.array_equal(read_norb_matrix(tmp_path / "m.mat.gz"), a)
    write_norb_matrix(tmp_path / "v.mat", np.arange(5, dtype=np.int32))        # 1-D: dims padded to 3
    assert np.frombuffer((tmp_path / "v.mat").read_bytes()[:20], "<i4").tolist() == [0x1E3D4C54, 1, 5, 1, 1]
    assert np.array_equal(read_norb_matrix(tmp_path / "v.mat"), np.arange(5))
    (tmp_path / "bad.mat").write_bytes(b"\x00" * 40)
    with pytest.raises(DisentkitError, match="not a NORB"):
        read_norb_matrix(tmp_path / "bad.mat")


def test_smallnorb_joins_splits_and_resizes(tmp_path):
    sizes = (2, 2, 2, 3, 2)        # category, instance, elevation, azimuth, lighting
    files = synthetic.write_smallnorb(tmp_path / "raw", sizes, side=96)
    ds = load_cache(smallnorb.convert(files, tmp_path / "cache", SOURCES["smallnorb"], sizes=sizes))
    assert ds.factor_names == smallnorb.NAMES and ds.observation_shape == (1, 64, 64)
    assert ds.factors[3].values == (0.0, 20.0, 40.0)
    levels = (_ordered(ds)[:, 0] * 255).round()
    assert torch.equal(levels[:, 32, 32], torch.arange(ds.num_images, dtype=torch.float32))
    assert (levels == levels[:, :1, :1]).all()      # constant images stay constant through the resize
    assert smallnorb.SIZES == (5, 10, 9, 18, 6)


def test_cars3d_tarball_layout(tmp_path):
    p = synthetic.write_cars3d_tar(tmp_path / "nips2015-analogy-data.tar.gz", n_obj=3, n_az=4, n_elev=2, side=16)
    ds = load_cache(cars3d.convert({p.name: p}, tmp_path / "ds" / "cache", SOURCES["cars3d"], sizes=(2, 4, 3)))
    assert ds.factor_names == ("elevation", "azimuth", "object") and ds.factor_sizes == (2, 4, 3)
    px = (_ordered(ds)[:, :, 10, 10] * 255).round().long()          # colour = (object, azimuth, elevation)
    f = torch.as_tensor(ds.index_to_factors(np.arange(ds.num_images)))
    assert torch.equal(px, torch.stack([f[:, 2], f[:, 1], f[:, 0]], 1))
    assert not (tmp_path / "ds" / "extract.tmp").exists()
    assert cars3d.SIZES == (4, 24, 183)


def test_celeba_and_chairs_have_no_factors(tmp_path):
    from disentkit.metrics.utils import generate_batch_factor_code

    z = synthetic.write_celeba_zip(tmp_path / "img_align_celeba.zip", 5)
    ds = load_cache(celeba.convert({z.name: z}, tmp_path / "c1", SOURCES["celeba"], expected=5))
    assert ds.has_factors is False and ds.num_images == 5 and ds.observation_shape == (3, 64, 64)
    t = synthetic.write_chairs_tar(tmp_path / "rendered_chairs.tar", 2, 3)
    ds2 = load_cache(chairs.convert({t.name: t}, tmp_path / "ch" / "cache", SOURCES["chairs"], expected=6))
    assert ds2.has_factors is False and ds2.num_images == 6
    x = ds2.sample_observations_from_factors(ds2.sample_factors(4, np.random.default_rng(0)))
    assert x.shape == (4, 3, 64, 64)
    with pytest.raises(DisentkitError, match="no ground-truth factors"):
        generate_batch_factor_code(lambda x: x.flatten(1), ds2, 10, np.random.default_rng(0))
    with pytest.raises(DisentkitError, match="expected 7"):
        chairs.convert({t.name: t}, tmp_path / "ch2" / "cache", SOURCES["chairs"], expected=7)


def _register_test_file(monkeypatch, name: str, path, **kw):
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    src = SOURCES[name]
    f = RemoteFile(src.files[0].filename, urls=("http://127.0.0.1:9/none",), size=path.stat().st_size,
                   checksums=(f"sha256:{sha}",), source="test")
    monkeypatch.setitem(SOURCES, name, DatasetSource(src.name, src.description, src.num_images, src.image_shape,
                                                     src.homepage, src.license, (f,), **kw))


def test_missing_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(DisentkitError) as e:
        get_dataset("shapes3d", data_root=str(tmp_path))
    msg = str(e.value)
    assert "disentkit datasets download shapes3d" in msg and "datasets import shapes3d --from-file" in msg
    assert str(tmp_path) in msg


def test_end_to_end_verified_conversion_then_memmap_load(tmp_path, monkeypatch):
    raw = raw_dir("mpi3d_toy", tmp_path)
    raw.mkdir(parents=True)
    p = synthetic.write_mpi3d_npz(raw / "mpi3d_toy.npz", 24)
    _register_test_file(monkeypatch, "mpi3d_toy", p)
    monkeypatch.setattr(mpi3d, "GRIDS", {24: (2, 1, 1, 1, 1, 3, 4)})
    conv = lambda files, out, src: mpi3d.convert(files, out, src, grids={24: (2, 1, 1, 1, 1, 3, 4)})  # noqa: E731
    ds = load_real("mpi3d_toy", tmp_path, convert=conv, progress=False)
    assert isinstance(ds.images, np.memmap) and ds.num_images == 24
    meta = json.loads((cache_dir("mpi3d_toy", tmp_path) / "meta.json").read_text())
    assert meta["sources"]["mpi3d_toy.npz"]["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
    again = get_dataset("mpi3d_toy", data_root=str(tmp_path))             # cached: no conversion
    assert torch.equal(again.images_at(torch.arange(24)), ds.images_at(torch.arange(24)))
    gpu_flag = load_real("mpi3d_toy", tmp_path, device="cpu")             # the device flag holds a tensor
    assert isinstance(gpu_flag.images, torch.Tensor)
    # a corrupted raw file is refused at conversion, and nothing is cached
    p.write_bytes(p.read_bytes()[:-10] + b"0123456789")
    import shutil
    shutil.rmtree(cache_dir("mpi3d_toy", tmp_path))
    with pytest.raises(DisentkitError, match="wrong checksum"):
        load_real("mpi3d_toy", tmp_path, convert=conv, progress=False)
    assert not cache_dir("mpi3d_toy", tmp_path).exists()
