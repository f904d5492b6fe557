"""``disentkit datasets list | info | download | verify | import`` and the missing-dataset message."""

from __future__ import annotations

import hashlib


from disentkit.cli import main
from disentkit.testing import synthetic
from disentkit.data.registry import SOURCES, DatasetSource, RemoteFile


def test_list_shows_every_dataset_with_size_source_and_status(tmp_path, capsys):
    assert main(["datasets", "list", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in list(SOURCES) + ["dsprites_procedural", "shapes3d_procedural"]:
        assert name in out
    line = next(x for x in out.splitlines() if x.startswith("shapes3d "))
    assert "480,000" in line and "267.6 MB" in line and "missing" in line and "google-deepmind/3d-shapes" in line
    assert str(tmp_path) in out


def test_info_of_a_real_and_a_procedural_dataset(tmp_path, capsys):
    assert main(["datasets", "info", "smallnorb", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ylclab" in out and "sha256:5ffd6272" in out and "tensorflow/datasets" in out
    assert main(["datasets", "info", "dsprites_procedural:corr(posX,posY,0.4)"]) == 0
    assert '"sigma": 0.4' in capsys.readouterr().out


def test_missing_real_dataset_errors_say_how_to_get_it(tmp_path, capsys):
    assert main(["datasets", "verify", "celeba", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "datasets import celeba --from-file" in err and "quota page" in err
    assert main(["train", "--dataset", "mpi3d_real", "--steps", "1", "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 2
    assert "datasets download mpi3d_real" in capsys.readouterr().err
    assert main(["datasets", "download", "dsprites_procedural"]) == 2
    assert "procedural" in capsys.readouterr().err
    assert main(["datasets", "import", "shapes3d", "--data-root", str(tmp_path)]) == 2
    assert "--from-file" in capsys.readouterr().err


def test_import_then_verify_then_train(tmp_path, capsys, monkeypatch):
    sizes = (1, 3, 2, 2, 2, 2)
    src_file = synthetic.write_dsprites_npz(tmp_path / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz", sizes)
    sha = hashlib.sha256(src_file.read_bytes()).hexdigest()
    real = SOURCES["dsprites"]
    f = RemoteFile(real.files[0].filename, urls=real.files[0].urls, size=src_file.stat().st_size,
                   checksums=(f"sha256:{sha}",), source="test")
    monkeypatch.setitem(SOURCES, "dsprites", DatasetSource("dsprites", real.description, 48, real.image_shape,
                                                           real.homepage, real.license, (f,)))
    from disentkit.data import dsprites
    from disentkit.data.cache import CONVERTERS
    monkeypatch.setitem(CONVERTERS, "dsprites", lambda files, out, src: dsprites.convert(files, out, src, sizes=sizes))
    root = tmp_path / "root"
    assert main(["datasets", "import", "dsprites", "--from-file", str(src_file), "--data-root", str(root),
                 "--no-progress"]) == 0
    assert "ready: dsprites, 48 images" in capsys.readouterr().out
    assert main(["datasets", "verify", "dsprites", "--data-root", str(root)]) == 0
    assert f"sha256:{sha}" in capsys.readouterr().out
    monkeypatch.setenv("DISENTKIT_DATA", str(root))
    assert main(["train", "--dataset", "dsprites", "--steps", "2", "--batch-size", "4", "--out", str(tmp_path / "run"),
                 "--no-progress", "--threads", "1"]) == 0
    monkeypatch.delenv("DISENTKIT_DATA")                    # the same with the flag: train, evaluate, report
    run2 = tmp_path / "run2"
    assert main(["train", "--dataset", "dsprites", "--steps", "2", "--batch-size", "4", "--out", str(run2),
                 "--no-progress", "--threads", "1", "--data-root", str(root)]) == 0
    assert main(["evaluate", "--checkpoint", str(run2), "--metrics", "mig", "--set", "mig.num_train=40"]) == 0
    assert main(["evaluate", "--checkpoint", str(run2), "--metrics", "mig", "--set", "mig.num_train=40",
                 "--data-root", str(root)]) == 0
    assert main(["report", "--checkpoint", str(run2)]) == 0
    assert main(["train", "--dataset", "dsprites", "--steps", "2", "--out", str(tmp_path / "run3"),
                 "--data-root", str(tmp_path / "empty")]) == 2
    assert "not in" in capsys.readouterr().err
    bad = tmp_path / "other.npz"
    bad.write_bytes(b"<html><body>Quota exceeded</body></html>")
    assert main(["datasets", "import", "dsprites", "--from-file", str(bad), "--data-root", str(root)]) == 2
    assert "HTML page" in capsys.readouterr().err
