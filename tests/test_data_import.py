"""``datasets import`` / ``download`` pin only what converted; ``verify`` re-checks the cache; ``forget``.

Small files in the published formats (cars3d, chairs, MPI3D-complex have no published checksum) are
written here, with the datasets' grids shrunk so conversion takes a moment.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import hashlib
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from disentkit.cli import main
from disentkit.data import cars3d, get_dataset, mpi3d
from disentkit.data.cache import CONVERTERS, cache_dir, raw_dir, status
from disentkit.data.registry import SOURCES
from disentkit.errors import DisentkitError
from disentkit.testing import synthetic

CARS = (2, 4, 3)     # elevation, azimuth, object


def _small(monkeypatch, name: str, num_images: int, **kw) -> None:
    monkeypatch.setitem(SOURCES, name, dataclasses.replace(SOURCES[name], num_images=num_images, **kw))


@pytest.fixture
def small(monkeypatch):
    """cars3d 2x4x3, chairs 2 chairs x 3 views, MPI3D-complex 24 images on a 2·1·1·1·1·3·4 grid."""
    _small(monkeypatch, "cars3d", 24)
    monkeypatch.setitem(CONVERTERS, "cars3d", lambda files, out, src: cars3d.convert(files, out, src, sizes=CARS))
    _small(monkeypatch, "chairs", 6)
    monkeypatch.setattr(mpi3d, "GRIDS", {24: (2, 1, 1, 1, 1, 3, 4)})


def good_file(name: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if name == "cars3d":
        return synthetic.write_cars3d_tar(folder / "nips2015-analogy-data.tar.gz", n_obj=3, n_az=4, n_elev=2, side=16)
    if name == "chairs":
        return synthetic.write_chairs_tar(folder / "rendered_chairs.tar", 2, 3)
    return synthetic.write_mpi3d_npz(folder / "real3d_complicated_shapes_ordered.npz", 24)


def wrong_file(name: str, kind: str, folder: Path) -> Path:
    """``truncated``: the good file cut in half; ``grid``: a complete file of the wrong size of grid."""
    if kind == "truncated":
        good = good_file(name, folder / "full")
        path = folder / good.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        return path
    folder.mkdir(parents=True, exist_ok=True)
    if name == "cars3d":
        return synthetic.write_cars3d_tar(folder / "nips2015-analogy-data.tar.gz", n_obj=2, n_az=4, n_elev=2, side=16)
    if name == "chairs":
        return synthetic.write_chairs_tar(folder / "rendered_chairs.tar", 2, 2)
    return synthetic.write_mpi3d_npz(folder / "real3d_complicated_shapes_ordered.npz", 30)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_nothing_kept(root: Path, name: str, capsys) -> None:
    assert not (root / name).exists()          # no raw copy, pin, cache, cache.new(.part), extract.tmp, import.tmp
    assert status(SOURCES[name], root) == "missing"
    rc, out, _ = run(capsys, "datasets", "list", "--data-root", str(root))
    assert rc == 0 and "missing" in next(x for x in out.splitlines() if x.startswith(name + " "))


def assert_one_line_error(rc: int, err: str, *parts: str) -> None:
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    for p in parts:
        assert p in err, (p, err)


@pytest.mark.parametrize("name", ["cars3d", "chairs", "mpi3d_complex"])
@pytest.mark.parametrize("kind", ["truncated", "grid"])
def test_bad_import_keeps_nothing_then_the_real_file_imports(tmp_path, capsys, small, name, kind):
    root = tmp_path / "root"
    other = good_file("cars3d" if name != "cars3d" else "chairs", tmp_path / "other")     # a good neighbour
    other_name = "cars3d" if name != "cars3d" else "chairs"
    assert run(capsys, "datasets", "import", other_name, "--from-file", str(other), "--data-root", str(root),
               "--no-progress")[0] == 0
    before = snapshot(root / other_name)
    bad = wrong_file(name, kind, tmp_path / "bad")
    rc, out, err = run(capsys, "datasets", "import", name, "--from-file", str(bad), "--data-root", str(root),
                       "--no-progress")
    assert_one_line_error(rc, err, f"error: {bad} did not convert into {name}", "nothing was kept, cached or pinned",
                          f"datasets import {name} --from-file PATH --data-root {root}")
    assert "verified" not in out and "ok " not in out
    assert_nothing_kept(root, name, capsys)
    rc, _, err = run(capsys, "datasets", "verify", name, "--data-root", str(root))
    assert rc == 2 and "is not in" in err
    good = good_file(name, tmp_path / "good")
    rc, out, err = run(capsys, "datasets", "import", name, "--from-file", str(good), "--data-root", str(root),
                       "--no-progress")
    assert rc == 0, err
    n = 6 if name == "chairs" else 24
    assert "converted and pinned" in out and f"ready: {name}, {n} images" in out
    pins = json.loads((raw_dir(name, root) / "checksums.json").read_text())
    assert pins == {good.name: hashlib.sha256(good.read_bytes()).hexdigest()}
    rc, out, err = run(capsys, "datasets", "verify", name, "--data-root", str(root))
    assert rc == 0 and "(pinned)" in out and "checksums match" in out, err
    assert snapshot(root / other_name) == before                                # byte for byte
    assert sorted(p.name for p in (root / name).iterdir()) == ["cache", "raw"]


def test_cache_that_is_not_the_expected_grid_is_refused(tmp_path, capsys, small, monkeypatch):
    """The converter succeeds, but the cache is not what the loader expects (25 images): nothing is kept."""
    _small(monkeypatch, "cars3d", 25)
    good = good_file("cars3d", tmp_path)
    root = tmp_path / "root"
    rc, _, err = run(capsys, "datasets", "import", "cars3d", "--from-file", str(good), "--data-root", str(root))
    progress, err = err.split("\n", 1)          # with progress on, the conversion is announced first
    assert progress.startswith("converting cars3d into")
    assert_one_line_error(rc, err, str(good), "24 images on a grid (2, 4, 3); the loader expects 25")
    assert_nothing_kept(root, "cars3d", capsys)


def test_a_pin_left_by_an_old_import_is_cleared_by_forget(tmp_path, capsys, small):
    """The bug's aftermath: a truncated file pinned before converting; `forget` lets the real file in."""
    root = tmp_path / "root"
    bad = wrong_file("chairs", "truncated", tmp_path / "bad")
    raw = raw_dir("chairs", root)
    raw.mkdir(parents=True)
    (raw / bad.name).write_bytes(bad.read_bytes())
    sha = hashlib.sha256(bad.read_bytes()).hexdigest()
    (raw / "checksums.json").write_text(json.dumps({bad.name: sha}))
    rc, out, _ = run(capsys, "datasets", "verify", "chairs", "--data-root", str(root))
    assert rc == 0 and "not converted yet" in out and "is pinned but has not converted" in out
    good = good_file("chairs", tmp_path / "good")
    rc, _, err = run(capsys, "datasets", "import", "chairs", "--from-file", str(good), "--data-root", str(root))
    assert_one_line_error(rc, err, "wrong checksum", f"sha256:{sha}", "datasets forget chairs")
    rc, _, err = run(capsys, "train", "--dataset", "chairs", "--steps", "1", "--out", str(tmp_path / "r"),
                     "--data-root", str(root), "--no-progress")
    err = err.split("\n", 1)[1]                # after "converting chairs into ... (once) ..."
    assert_one_line_error(rc, err, f"{raw / bad.name} did not convert into chairs", f"Delete {raw / bad.name} (and "
                          f"clear its pin: `disentkit datasets forget chairs --data-root {root}`)")
    assert not cache_dir("chairs", root).exists()
    rc, out, _ = run(capsys, "datasets", "forget", "chairs", "--data-root", str(root))
    assert rc == 0 and f"forgot {bad.name} sha256:{sha}" in out and "still there, not converted" in out
    assert not (raw / "checksums.json").exists()
    rc, out, _ = run(capsys, "datasets", "forget", "chairs", "--data-root", str(root))
    assert rc == 0 and "nothing to forget" in out
    rc, out, err = run(capsys, "datasets", "import", "chairs", "--from-file", str(good), "--data-root", str(root),
                       "--no-progress")
    assert rc == 0 and "ready: chairs, 6 images" in out, err
    assert (raw / bad.name).read_bytes() == good.read_bytes()
    good_sha = hashlib.sha256(good.read_bytes()).hexdigest()
    assert json.loads((raw / "checksums.json").read_text()) == {good.name: good_sha}
    rc, out, _ = run(capsys, "datasets", "import", "chairs", "--from-file", str(good), "--data-root", str(root))
    assert rc == 0 and "already converted from this file" in out
    assert main(["datasets", "forget", "shapes3d", "--data-root", str(root)]) == 0
    assert "published checksums" in capsys.readouterr().out


def _flip(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[-1] ^= 0xFF
    p.write_bytes(bytes(b))


def _wrong_classes(p: Path) -> None:
    c = np.load(p)
    np.save(p, c[::-1].copy())


CORRUPTIONS = {
    "flipped pixel": ("images.npy", _flip, "images.npy changed since conversion"),
    "truncated images": ("images.npy", lambda p: p.write_bytes(p.read_bytes()[:-100]), "unreadable or truncated"),
    "extra bytes": ("images.npy", lambda p: p.write_bytes(p.read_bytes() + b"\0" * 64), "(incomplete)"),
    "wrong classes": ("classes.npy", _wrong_classes, "is not the factor grid (2, 1, 1, 1, 1, 3, 4)"),
    "bad meta": ("meta.json", lambda p: p.write_text(p.read_text()[:20]), "unreadable or truncated"),
    "other grid": ("meta.json", lambda p: p.write_text(p.read_text().replace('"num_images": 24', '"num_images": 25')),
                   "meta.json says 25"),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_verify_catches_a_corrupted_cache(tmp_path, capsys, small, kind):
    root = tmp_path / "root"
    good = good_file("mpi3d_complex", tmp_path)
    assert run(capsys, "datasets", "import", "mpi3d_complex", "--from-file", str(good), "--data-root", str(root),
               "--no-progress")[0] == 0
    fname, corrupt, message = CORRUPTIONS[kind]
    corrupt(cache_dir("mpi3d_complex", root) / fname)
    rc, out, err = run(capsys, "datasets", "verify", "mpi3d_complex", "--data-root", str(root))
    assert_one_line_error(rc, err, "1 problem(s) with mpi3d_complex", message, "delete that folder to convert again")
    assert "BAD cache" in out and "ok real3d_complicated_shapes_ordered.npz" in out


def test_verify_catches_a_raw_file_replaced_after_conversion(tmp_path, capsys, small):
    root = tmp_path / "root"
    good = good_file("mpi3d_complex", tmp_path)
    assert main(["datasets", "import", "mpi3d_complex", "--from-file", str(good), "--data-root", str(root),
                 "--no-progress"]) == 0
    assert main(["datasets", "forget", "mpi3d_complex", "--data-root", str(root)]) == 0
    raw = raw_dir("mpi3d_complex", root) / good.name
    synthetic.write_mpi3d_npz(raw, 24, compressed=True)            # same images, other bytes
    capsys.readouterr()
    rc, out, err = run(capsys, "datasets", "verify", "mpi3d_complex", "--data-root", str(root))
    assert_one_line_error(rc, err, "converted from real3d_complicated_shapes_ordered.npz sha256:", "is now sha256:")
    assert "(not pinned)" in out


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep stderr for disentkit's messages
        pass


@pytest.fixture
def http_dir(tmp_path):
    """A folder served on 127.0.0.1 (no internet)."""
    folder = tmp_path / "served"
    folder.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_that_does_not_convert_is_not_kept_or_pinned(tmp_path, capsys, small, monkeypatch, http_dir):
    served, url = http_dir
    f = dataclasses.replace(SOURCES["chairs"].files[0], urls=(f"{url}/rendered_chairs.tar",))
    _small(monkeypatch, "chairs", 6, files=(f,))
    root = tmp_path / "root"
    bad = wrong_file("chairs", "truncated", tmp_path / "bad")
    (served / bad.name).write_bytes(bad.read_bytes())
    rc, out, err = run(capsys, "datasets", "download", "chairs", "--data-root", str(root), "--no-progress")
    assert_one_line_error(rc, err, f"{raw_dir('chairs', root) / bad.name} did not convert into chairs",
                          "not a complete tar archive", "(no published checksum)", "nothing was cached or pinned",
                          "datasets download chairs --data-root")
    assert "pinned once it converts" in out
    assert not any(raw_dir("chairs", root).iterdir()) and not cache_dir("chairs", root).exists()
    assert status(SOURCES["chairs"], root) == "missing"
    good = good_file("chairs", served)
    rc, out, err = run(capsys, "datasets", "download", "chairs", "--data-root", str(root), "--no-progress")
    assert rc == 0 and "ready: chairs, 6 images" in out, err
    pins = json.loads((raw_dir("chairs", root) / "checksums.json").read_text())
    assert pins == {good.name: hashlib.sha256(good.read_bytes()).hexdigest()}


def test_loading_a_hand_placed_file_that_does_not_convert(tmp_path, small):
    raw = raw_dir("cars3d", tmp_path)
    bad = wrong_file("cars3d", "grid", raw)
    with pytest.raises(DisentkitError, match="found 2 car .mat files.*nothing was cached") as e:
        get_dataset("cars3d", data_root=str(tmp_path))
    assert "\n" not in str(e.value)
    assert sorted(p.name for p in (tmp_path / "cars3d").iterdir()) == ["raw"] and bad.is_file()
    assert not (raw / "checksums.json").exists()


def test_forget_is_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["datasets", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "forget NAME: clear the sha256 pinned" in out and "pinned by its sha256 once it has converted" in out


def test_a_full_disk_is_not_blamed_on_the_file(tmp_path, capsys, small, monkeypatch):
    """No space left while converting: the downloaded file is kept (unpinned), nothing is cached."""
    def full(files, out, src):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setitem(CONVERTERS, "chairs", full)
    raw = raw_dir("chairs", tmp_path)
    good = good_file("chairs", raw)
    rc, _, err = run(capsys, "datasets", "download", "chairs", "--data-root", str(tmp_path), "--no-progress")
    assert_one_line_error(rc, err, "no space left to convert chairs", "another --data-root")
    assert good.is_file() and not (raw / "checksums.json").exists()
    assert sorted(p.name for p in (tmp_path / "chairs").iterdir()) == ["raw"]
