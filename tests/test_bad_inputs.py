"""The reliability battery: bad inputs to every command give exit status 2, one line on stderr naming the
value and the fix, no traceback, and leave a neighbouring run and dataset cache byte-for-byte unchanged.

Each case runs ``disentkit.cli.main`` in this process (a traceback would fail the test as an exception);
``test_the_entry_point_gives_one_line`` checks a few through the installed command. The fault tests:
a kill -9 in the middle of a checkpoint write is here; a divergence keeping the last finite checkpoint is
``tests/test_divergence.py``, two trainings of one folder ``tests/test_run_lifecycle.py``, kill -9 at a
random moment then resume ``tests/test_resume.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import disentkit
from disentkit.cli import main
from disentkit.data import mpi3d
from disentkit.data.registry import SOURCES
from disentkit.testing import synthetic
from disentkit.train import TrainConfig, fit
from disentkit.train.checkpoint import read_checkpoint

SRC = str(Path(disentkit.__file__).resolve().parents[1])


@dataclass
class World:
    paths: dict[str, str]       # what a case's argv may name: {good}, {base}, {root}, {text}, ...
    watched: list[Path]         # the neighbours that must not change


def digest(folders: list[Path]) -> dict[str, str]:
    """Every file and folder under ``folders``: sha256 for files, 'dir' for folders."""
    out = {}
    for top in folders:
        for p in sorted(top.rglob("*")):
            out[str(p)] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def write_ckpt(path: Path, state: dict, config, **meta) -> str:
    """A safetensors file with disentkit's format marker and the given (possibly broken) metadata."""
    metadata = {"format": "disentkit-checkpoint-v1", "config": config if isinstance(config, str) else json.dumps(config)}
    metadata.update(meta)
    save_file(state, str(path), metadata=metadata)
    return str(path)


def _closed_port() -> int:
    """A loopback port nothing listens on (free a moment ago)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    base = tmp_path_factory.mktemp("battery")
    runs = base / "runs"
    good = runs / "good"
    fit(TrainConfig(steps=4, batch_size=8, latent_dim=4, out=str(good), log_every=2, threads=1, progress=False))
    # a dataset cache: a small MPI3D-complex in its published format, imported into a data root
    root = base / "data"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mpi3d, "GRIDS", {24: (2, 1, 1, 1, 1, 3, 4)})
        mp.setitem(SOURCES, "mpi3d_complex", dataclasses.replace(SOURCES["mpi3d_complex"], num_images=24))
        (base / "dl").mkdir()
        npz = synthetic.write_mpi3d_npz(base / "dl" / "real3d_complicated_shapes_ordered.npz", 24)
        assert main(["datasets", "import", "mpi3d_complex", "--from-file", str(npz), "--data-root", str(root),
                     "--no-progress"]) == 0
    files = base / "files"
    files.mkdir()
    (files / "text.txt").write_text("not a checkpoint\n")
    (files / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    configs = {
        "invalid": "model: [beta_vae\n", "list": "- steps\n- 3\n", "steps_word": "steps: three\n",
        "lr_list": "lr: [0.1, 0.2]\n", "out_map": "out: {a: 1}\n", "dataset_int": "dataset: 12\n",
        "seed_neg": "seed: -1\n", "typo": "stpes: 10\n", "hparams_int": "hparams: 5\n",
        "python_tag": "model: !!python/object/apply:os.system ['echo hacked']\n", "steps_float": "steps: 3.7\n",
        "beta_str": "beta: lots\n",
    }
    for name, text in configs.items():   # short runs, should a bad value ever be accepted
        safe = "" if name in ("invalid", "list") or "steps" in text else "steps: 2\nbatch_size: 8\n"
        (files / f"{name}.yaml").write_text(safe + text)
    state = load_file(str(good / "model.safetensors"))
    _, cfg, _ = read_checkpoint(good / "model.safetensors")
    ck = {
        "ck_nojson": write_ckpt(files / "nojson.safetensors", state, "{not json"),
        "ck_list": write_ckpt(files / "list.safetensors", state, "[1, 2]"),
        "ck_arch": write_ckpt(files / "arch.safetensors", state, {**cfg, "architecture": "resnet9000"}),
        "ck_dim": write_ckpt(files / "dim.safetensors", state, {**cfg, "latent_dim": 1_000_000_000}),
        "ck_dim5": write_ckpt(files / "dim5.safetensors", state, {**cfg, "latent_dim": 5}),
        "ck_channels": write_ckpt(files / "channels.safetensors", state, {**cfg, "channels": "three"}),
        "ck_nomodel": write_ckpt(files / "nomodel.safetensors", state, {k: v for k, v in cfg.items() if k != "model"}),
    }
    save_file(state, str(files / "plain.safetensors"))                      # no disentkit metadata
    raw = (good / "model.safetensors").read_bytes()
    (files / "torn.safetensors").write_bytes(raw[: len(raw) // 2])
    torch.save({"config": cfg, "state_dict": {}, "evil": os.system}, files / "evil.ckpt")  # would run code
    # a killed run (last.safetensors only) and a diverged run next to the good one
    partial = runs / "partial"
    shutil.copytree(good, partial)
    (partial / "model.safetensors").rename(partial / "last.safetensors")
    (partial / "finished.json").unlink()
    (runs / "burgess").mkdir()
    fit(TrainConfig(steps=2, batch_size=8, latent_dim=4, architecture="burgess", out=str(runs / "burgess" / "r"),
                    threads=1, progress=False))
    sweep = base / "sweep.yaml"
    sweep.write_text(textwrap.dedent("""\
        name: bad
        defaults: {steps: 2, batch_size: 8}
        seeds: [0]
        datasets: [dsprites_procedural]
        metrics: {mig: {num_train: 100}}
        stages:
          - {name: a, model: beta_vae, grid: {beta: [-1]}}
        """))
    sweep_model = base / "sweep_model.yaml"
    sweep_model.write_text(sweep.read_text().replace("model: beta_vae", "model: nope_vae"))
    paths = {"base": str(base), "good": str(good), "root": str(root), "files": str(files),
             "partial": str(partial), "new": str(runs / "new"), "burgess": str(runs / "burgess" / "r"),
             "sweep": str(sweep), "sweep_model": str(sweep_model), "port": str(_closed_port()), **ck}
    return World(paths, [runs, root])


T = ["train", "--steps", "2", "--batch-size", "8", "--threads", "1", "--no-progress", "--out", "{new}"]
C = ["train", "--threads", "1", "--no-progress", "--out", "{new}", "--config"]
E = ["evaluate", "--metrics", "mig", "--checkpoint"]

#: (id, argv, what the one line must say). {new} must not exist afterwards; the watched folders are unchanged.
CASES = [
    # train: flags
    ("model", T + ["--model", "nope"], r"unknown model 'nope'.*beta_vae"),
    ("dataset", T + ["--dataset", "nope"], r"unknown dataset 'nope'"),
    ("beta-negative", T + ["--beta=-1"], r"--beta must be ≥ 0.*-1"),
    ("beta-nan", T + ["--beta", "nan"], r"--beta.*(finite|number).*nan"),
    ("beta-inf", T + ["--beta", "inf"], r"--beta.*(finite|number).*inf"),
    ("lr-zero", T + ["--lr", "0"], r"--lr must be a positive finite number, got 0"),
    ("lr-nan", T + ["--lr", "nan"], r"--lr.*(finite|number).*nan"),
    ("lr-negative", T + ["--lr=-1e-3"], r"--lr must be a positive"),
    ("seed-negative", T + ["--seed=-1"], r"--seed must be in 0\.\.4294967295.*-1"),
    ("seed-too-big", T + ["--seed", "4294967296"], r"--seed must be in 0\.\.4294967295"),
    ("seed-word", T + ["--seed", "abc"], r"--seed.*(integer|invalid).*abc"),
    ("data-seed", T + ["--data-seed=-3"], r"--data-seed must be in 0\.\."),
    ("latent-zero", T + ["--latent-dim", "0"], r"--latent-dim must be in 1\.\.4096, got 0"),
    ("latent-huge", T + ["--latent-dim", "1000000000"], r"--latent-dim must be in 1\.\.4096"),
    ("batch-zero", T + ["--batch-size", "0"], r"--batch-size must be in 1\.\."),
    ("batch-huge", T + ["--batch-size", "100000000"], r"--batch-size must be in 1\.\.65536"),
    ("steps-zero", T + ["--steps", "0"], r"--steps must be positive"),
    ("steps-fraction", T + ["--steps", "3.7"], r"--steps.*integer.*3\.7"),
    ("epochs-negative", T + ["--epochs=-1"], r"--epochs must be ≥ 0"),
    ("log-every-zero", T + ["--log-every", "0"], r"--log-every must be positive"),
    ("checkpoint-every", T + ["--checkpoint-every=-5"], r"--checkpoint-every.*≥ 0"),
    ("threads-negative", T + ["--threads=-4"], r"--threads must be ≥ 0.*-4"),
    ("precision", T + ["--precision", "8-bit"], r"--precision must be one of 32-true"),
    ("split-sum", T + ["--split", "0.5,0.6,0.1"], r"--split needs three fractions"),
    ("val-fraction", T + ["--val-fraction", "1.5"], r"--val-fraction must be in \[0, 1\)"),
    ("patience-no-split", T + ["--early-stopping-patience", "3"], r"needs a validation split"),
    ("hparam-of-other-model", T + ["--model", "beta_vae", "--gamma", "10"], r"gamma.*beta_vae takes"),
    ("out-is-file", T + ["--out", "{files}/text.txt"], r"is a file, not a folder"),
    ("out-empty", T + ["--out", ""], r"--out must name a run folder"),
    ("out-exists", T + ["--out", "{good}"], r"already holds a run.*--overwrite"),
    ("init-from-missing", T + ["--init-from", "{files}/missing.safetensors"], r"checkpoint not found"),
    ("init-from-other-arch", T + ["--init-from", "{burgess}"], r"architecture='burgess'.*match them"),
    ("init-from-text", T + ["--init-from", "{files}/text.txt"], r"not a readable safetensors checkpoint"),
    ("real-dataset-absent", T + ["--dataset", "mpi3d_real", "--data-root", "{root}"],
     r"mpi3d_real.*not in .*datasets download mpi3d_real"),
    ("data-root-file", T + ["--dataset", "mpi3d_real", "--data-root", "{files}/text.txt"],
     r"--data-root .* is a file, not a folder"),
    ("ensemble-words", T + ["--ensemble", "seed=a,b"], r"seed.*integer.*'a'"),
    ("ensemble-unknown", T + ["--ensemble", "bogus=1,2"], r"bogus"),
    ("compile-and-graphs", T + ["--cuda-graphs", "--compile", "default"], r"exclude each other"),
    ("device-cuda", T + ["--device", "cuda:7"], r"cuda"),
    ("subsample-negative", T + ["--subsample=-1"], r"--subsample must be ≥ 0"),
    ("resume-nothing", ["train", "--resume", "{base}/runs/none", "--no-progress"], r"no config\.yaml there"),
    ("unknown-flag", T + ["--bta", "4"], r"unrecognized arguments: --bta"),
    # configs
    ("config-missing", C + ["{files}/missing.yaml"], r"config '.*missing\.yaml' not found"),
    ("config-binary", C + ["{files}/binary.yaml"], r"not a text file"),
    ("config-invalid", C + ["{files}/invalid.yaml"], r"not valid YAML at line"),
    ("config-list", C + ["{files}/list.yaml"], r"must hold a mapping"),
    ("config-steps-word", C + ["{files}/steps_word.yaml"], r"--steps \(steps\) expects an integer"),
    ("config-steps-float", C + ["{files}/steps_float.yaml"], r"--steps \(steps\) expects an integer"),
    ("config-lr-list", C + ["{files}/lr_list.yaml"], r"--lr \(lr\) expects a number"),
    ("config-out-map", ["train", "--threads", "1", "--no-progress", "--config", "{files}/out_map.yaml"], r"--out \(out\) expects a string"),
    ("config-dataset-int", C + ["{files}/dataset_int.yaml"], r"unknown dataset '12'"),
    ("config-seed-negative", C + ["{files}/seed_neg.yaml"], r"--seed must be in 0\.\."),
    ("config-typo", C + ["{files}/typo.yaml"], r"stpes.*beta_vae takes"),
    ("config-hparams-int", C + ["{files}/hparams_int.yaml"], r"hparams must be a mapping"),
    ("config-python-tag", C + ["{files}/python_tag.yaml"], r"not valid YAML"),
    ("config-beta-word", C + ["{files}/beta_str.yaml"], r"beta.*lots"),
    # evaluate and checkpoints
    ("eval-missing", E + ["{base}/runs/none.safetensors"], r"checkpoint not found"),
    ("eval-empty-folder", E + ["{files}"], r"no checkpoint in"),
    ("eval-text", E + ["{files}/text.txt"], r"not a readable safetensors checkpoint"),
    ("eval-torn", E + ["{files}/torn.safetensors"], r"not a readable safetensors checkpoint"),
    ("eval-plain-safetensors", E + ["{files}/plain.safetensors"], r"not a disentkit checkpoint"),
    ("eval-meta-not-json", E + ["{ck_nojson}"], r"'config' metadata is not a JSON mapping"),
    ("eval-meta-list", E + ["{ck_list}"], r"'config' metadata is not a JSON mapping"),
    ("eval-meta-arch", E + ["{ck_arch}"], r"unknown architecture 'resnet9000'"),
    ("eval-meta-latent-huge", E + ["{ck_dim}"], r"latent_dim 1000000000 \(an integer in 1\.\.4096"),
    ("eval-meta-latent-mismatch", E + ["{ck_dim5}"], r"weights do not match.*for latent_dim 5"),
    ("eval-meta-channels", E + ["{ck_channels}"], r"channels 'three'"),
    ("eval-meta-no-model", E + ["{ck_nomodel}"], r"no model name"),
    ("eval-pickle-code", E + ["{files}/evil.ckpt"], r"refused to load"),
    ("eval-unknown-metric", E + ["{good}", "--metrics", "bogus"], r"unknown metric 'bogus'"),
    ("eval-unfinished", E + ["{partial}"], r"intermediate checkpoint.*not a finished run.*--allow-partial"),
    ("eval-dataset", E + ["{good}", "--dataset", "nope"], r"unknown dataset 'nope'"),
    ("eval-no-checkpoint-flag", ["evaluate"], r"required: --checkpoint"),
    ("eval-seed", E + ["{good}", "--seed=-1"], r"--seed.*-1"),
    ("eval-threads", E + ["{good}", "--threads=-2"], r"--threads.*-2"),
    ("eval-set", E + ["{good}", "--set", "mig.num_train=lots"], r"num_train.*lots"),
    ("eval-set-unknown", E + ["{good}", "--set", "mig.bogus=3"], r"bogus"),
    ("eval-out-folder", E + ["{good}", "--out", "{files}"], r"files.*(folder|directory)"),
    # report
    ("report-missing", ["report", "--checkpoint", "{base}/runs/none"], r"not found"),
    ("report-nothing", ["report"], r"needs --checkpoint RUN"),
    ("report-unfinished", ["report", "--checkpoint", "{partial}"], r"not a finished run.*--allow-partial"),
    ("report-not-a-sweep", ["report", "--sweep", "{files}"], r"(sweep|runs)"),
    ("report-text", ["report", "--checkpoint", "{files}/text.txt"], r"not a readable safetensors checkpoint"),
    # sweeps
    ("sweep-unknown", ["sweep", "nope", "--out", "{new}"], r"nope"),
    ("sweep-beta-negative", ["sweep", "{sweep}", "--out", "{new}"], r"--beta must be ≥ 0"),
    ("sweep-model", ["sweep", "{sweep_model}", "--out", "{new}"], r"unknown model\(s\) nope_vae"),
    ("sweep-workers", ["sweep", "quick", "--steps", "2", "--workers", "0", "--out", "{new}"], r"--workers must be ≥ 1"),
    ("sweep-seeds", ["sweep", "quick", "--steps", "2", "--seeds", "a,b", "--out", "{new}"], r"--seeds expects.*a,b"),
    ("sweep-threads", ["sweep", "quick", "--steps", "2", "--threads=-1", "--out", "{new}"], r"--threads must be ≥ 0"),
    ("sweep-steps", ["sweep", "quick", "--steps", "0", "--out", "{new}"], r"--steps must be positive"),
    ("sweep-address-local", ["sweep", "quick", "--steps", "2", "--address", "10.0.0.1:6379", "--out", "{new}"],
     r"--address, --shared-fs and --sync-state are for --backend ray"),
    ("sweep-sync-local", ["sweep", "quick", "--steps", "2", "--backend", "ray", "--sync-state", "--out", "{new}"],
     r"--sync-state is for a Ray cluster \(--address\)"),
    ("sweep-address-silent", ["sweep", "quick", "--steps", "2", "--backend", "ray", "--address", "127.0.0.1:{port}",
                              "--out", "{new}"], r"nothing answers at 127\.0\.0\.1:\d+.*ray start --head --port"),
    ("aggregate-not-a-sweep", ["aggregate", "{files}"], r"(sweep|runs)"),
    # datasets
    ("datasets-info-unknown", ["datasets", "info", "nope"], r"unknown dataset 'nope'"),
    ("datasets-download-no-name", ["datasets", "download"], r"needs a dataset NAME"),
    ("datasets-import-no-file", ["datasets", "import", "dsprites", "--data-root", "{root}"], r"needs --from-file"),
    ("datasets-import-missing", ["datasets", "import", "dsprites", "--from-file", "{files}/none.npz",
                                 "--data-root", "{root}"], r"none\.npz"),
    ("datasets-import-wrong", ["datasets", "import", "dsprites", "--from-file", "{files}/text.txt",
                               "--data-root", "{root}"], r"text\.txt is not a file of dataset 'dsprites'"),
    ("datasets-verify-absent", ["datasets", "verify", "shapes3d", "--data-root", "{root}"], r"shapes3d"),
    ("datasets-list-root-file", ["datasets", "list", "--data-root", "{files}/text.txt"], r"is a file, not a folder"),
    ("datasets-download-root-file", ["datasets", "download", "dsprites", "--data-root", "{files}/text.txt/x"],
     r"not a writable folder"),
    ("datasets-bad-action", ["datasets", "destroy", "dsprites"], r"invalid choice: 'destroy'"),
]


def call(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:                 # argparse's errors
        return int(e.code or 0)


@pytest.mark.parametrize("argv, expect", [pytest.param(a, e, id=i) for i, a, e in CASES])
def test_a_bad_input_is_one_line_and_exit_2(world, argv, expect, capsys):
    argv = [a.format(**world.paths) for a in argv]
    before = digest(world.watched)
    rc = call(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == 2, f"exit {rc}; stderr: {err}; stdout: {out[-300:]}"
    assert len(lines) == 1, err
    assert "Traceback" not in err and re.search(expect, lines[0]), lines[0]
    assert digest(world.watched) == before
    assert not Path(world.paths["new"]).exists()


def test_the_battery_has_sixty_cases_in_every_group():
    groups = {"train": 0, "config": 0, "eval": 0, "report": 0, "sweep": 0, "datasets": 0}
    for i, argv, _ in CASES:
        key = next(k for k in ("config", "eval", "report", "sweep", "aggregate", "datasets") if i.startswith(k)) \
            if any(i.startswith(k) for k in ("config", "eval", "report", "sweep", "aggregate", "datasets")) else "train"
        groups["sweep" if key == "aggregate" else key] += 1
    assert len(CASES) >= 60 and min(groups.values()) >= 5, groups


def test_a_read_only_data_root_is_named(tmp_path, capsys):
    if os.access("/proc/sys", os.W_OK):
        pytest.skip("no read-only folder on this machine")
    rc = call(["datasets", "download", "dsprites", "--data-root", "/proc/sys/disentkit"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "/proc/sys is not a writable folder" in err[0]


def test_an_unwritable_out_is_named(capsys):
    if os.access("/proc/sys", os.W_OK):
        pytest.skip("no read-only folder on this machine")
    rc = call(["train", "--steps", "2", "--no-progress", "--out", "/proc/sys/disentkit-run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "cannot write the run folder /proc/sys/disentkit-run" in err[0]


@pytest.mark.parametrize("argv", [["train", "--seed", "-1", "--out", "X"], ["evaluate", "--checkpoint", "X"],
                                  ["train", "--config", "X"]])
def test_the_entry_point_gives_one_line(tmp_path, argv):
    argv = [str(tmp_path / "none") if a == "X" else a for a in argv]
    res = subprocess.run([sys.executable, "-m", "disentkit", *argv], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": SRC})
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_an_environment_data_root_that_is_a_file_is_named(world, monkeypatch, capsys):
    monkeypatch.setenv("DISENTKIT_DATA", world.paths["files"] + "/text.txt")
    rc = call(["datasets", "list"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "$DISENTKIT_DATA" in err[0] and "is a file" in err[0]


# ---------------------------------------------------------------------- faults
KILL_IN_WRITE = """
import sys, time, safetensors.torch as st
real, calls = st.save_file, []
def torn(tensors, filename, metadata=None):
    calls.append(filename)
    real(tensors, filename, metadata=metadata)
    if len(calls) == 3:                       # the second checkpoint (last + model placeholder order aside)
        data = open(filename, "rb").read()
        open(filename, "wb").write(data[: len(data) // 2])
        open(sys.argv[2], "w").write(filename)
        time.sleep(120)
st.save_file = torn
import disentkit.train.checkpoint as ck
ck.save_file = torn
from disentkit.train import TrainConfig, fit
fit(TrainConfig(steps=40, batch_size=8, latent_dim=4, checkpoint_every=10, log_every=5, threads=1,
                progress=False, out=sys.argv[1]))
"""


def test_kill_9_in_the_middle_of_a_checkpoint_write_keeps_the_previous_one(tmp_path):
    run, ready = tmp_path / "run", tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", KILL_IN_WRITE, str(run), str(ready)],
                            env={**os.environ, "PYTHONPATH": SRC}, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not ready.exists() and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.05)
    assert ready.exists(), proc.stderr.read() if proc.poll() is not None else "no torn write"
    proc.kill()
    proc.wait()
    torn = Path(ready.read_text())
    assert torn.name.endswith(".part") and torn.exists()          # the write never reached its rename
    model = disentkit.load(run / "last.safetensors")              # the previous checkpoint loads
    assert model.config["steps"] == 40 and torch.isfinite(model.encode(torch.zeros(1, 1, 64, 64))).all()
    res = subprocess.run([sys.executable, "-m", "disentkit", "train", "--resume", str(run), "--no-progress"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": SRC})
    assert res.returncode == 0, res.stderr
    assert (run / "finished.json").is_file() and not torn.exists()
