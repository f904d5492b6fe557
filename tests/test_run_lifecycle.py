"""Run folders with a lifecycle: one training per folder (a lock), ``finished.json`` written last, and
``evaluate``/``report`` refusing an unfinished run unless ``--allow-partial``; ``--overwrite`` leaves no file
of the old run to be read as the new one's; a check that fails leaves no empty folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from disentkit.errors import DisentkitError
from disentkit.train import TrainConfig, fit
from disentkit.train.status import FINISHED_FILE, LOCK_FILE, is_locked, run_status

CLI = [sys.executable, "-m", "disentkit"]


def config(out, **kw) -> TrainConfig:
    base = dict(model="beta_vae", latent_dim=3, steps=40, batch_size=8, out=str(out), log_every=5,
                checkpoint_every=10, threads=1, progress=False, seed=1)
    return TrainConfig(**{**base, **kw})


def interrupted(out: Path, at: int = 25) -> Path:
    """A run stopped at step ``at`` as a kill would leave it (its last checkpoint and state at step 20)."""
    def stop(step, logs):
        if step + 1 == at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(config(out), callbacks=[stop])
    return out


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True)


def test_a_finished_run_is_marked_and_scores(tmp_path):
    run = fit(config(tmp_path / "run", steps=5))
    assert json.loads((run / FINISHED_FILE).read_text())["steps"] == 5 and not (run / LOCK_FILE).exists()
    assert run_status(run).finished
    (run / FINISHED_FILE).unlink()          # a folder written before the marker: its training state decides
    assert run_status(run).finished
    res = cli("evaluate", "--checkpoint", str(run), "--metrics", "mig", "--set", "mig.num_train=200")
    assert res.returncode == 0, res.stderr


def test_an_interrupted_run_is_not_scored_unless_asked(tmp_path):
    run = interrupted(tmp_path / "run")
    assert (run / "last.safetensors").is_file() and not (run / FINISHED_FILE).exists()
    for command in ("evaluate", "report"):
        res = cli(command, "--checkpoint", str(run))
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
        assert "stopped after 20 of 40 steps" in res.stderr and "--allow-partial" in res.stderr
        assert f"disentkit train --resume {run}" in res.stderr
    assert not (run / "metrics.json").exists()
    res = cli("evaluate", "--checkpoint", str(run), "--metrics", "mig", "--set", "mig.num_train=200",
              "--allow-partial", "--json")
    assert res.returncode == 0, res.stderr
    partial = json.loads((run / "metrics.json").read_text())["partial"]
    assert partial["step"] == 20 and "20 of 40" in partial["why"]


def test_a_diverged_run_is_not_scored_unless_asked(tmp_path):
    from test_divergence import GoesNaN

    from disentkit.errors import TrainingDiverged

    with pytest.raises(TrainingDiverged):
        fit(config(tmp_path / "run"), vae=GoesNaN(at=25))
    status = run_status(tmp_path / "run")
    assert not status.finished and "diverged at step 25" in status.why and status.step == 20


def test_overwrite_leaves_nothing_of_the_old_run(tmp_path):
    old = fit(config(tmp_path / "run", steps=10, val_fraction=0.01, val_every=5, val_batches=1))
    assert (old / "best.safetensors").is_file()
    (old / "notes.txt").write_text("mine")   # not disentkit's: kept
    new = fit(config(tmp_path / "run", steps=5, overwrite=True))
    assert not (new / "best.safetensors").exists() and (new / "notes.txt").read_text() == "mine"
    assert json.loads((new / FINISHED_FILE).read_text())["steps"] == 5


def test_a_second_training_of_a_folder_is_refused_while_the_first_runs(tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen([*CLI, "train", "--steps", "100000", "--batch-size", "8", "--threads", "1",
                              "--out", str(run), "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not (run / "config.yaml").is_file() and time.time() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert is_locked(run), first.stderr.read().decode() if first.poll() is not None else "not locked"
        before = {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.is_file()}
        res = cli("train", "--steps", "5", "--out", str(run), "--overwrite")
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
        assert f"is being trained by process {first.pid}" in res.stderr
        assert (run / "config.yaml").stat().st_mtime_ns == before["config.yaml"]
        res = cli("evaluate", "--checkpoint", str(run))
        assert res.returncode == 2 and "is training now" in res.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert not is_locked(run)            # the lock died with its process; the stale file is harmless
    fit(config(run, steps=3, overwrite=True))


def test_a_failed_check_leaves_no_folder(tmp_path):
    with pytest.raises(DisentkitError):
        fit(config(tmp_path / "run", dataset="dsprites", data_root=str(tmp_path / "no-data")))
    assert not (tmp_path / "run").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(DisentkitError, match="is a file, not a folder"):
        fit(config(tmp_path / "file"))
    assert (tmp_path / "file").read_text() == "x"
