"""Sweeps whose runs execute in node-local scratch and come back through Ray (no shared filesystem), on a
private local Ray instance: the same results as the local backend, chained stages and fused ensembles
included. The multi-node cluster test is tests/test_ray_multinode.py."""

from __future__ import annotations

import json

import pytest

from disentkit.sweep import expand, run_sweep

CONFIG = {
    "name": "transfer",
    "defaults": {"steps": 6, "batch_size": 8, "log_every": 1, "threads": 1, "lr": 1e-3, "latent_dim": 4,
                 "checkpoint_every": 2},
    "seeds": [0, 1],
    "metrics": {"mig": {"num_train": 300}},
    "stages": [
        {"name": "a", "model": "beta_vae", "grid": {"beta": [4]}},
        {"name": "b", "model": "beta_vae", "init_from": "a", "steps": 2},
    ],
}


def _mig(folder):
    return json.loads((folder / "metrics.json").read_text())["results"]["mig"]


@pytest.mark.slow
def test_results_come_back_through_ray_and_equal_the_local_backend(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    scratch = tmp_path / "scratch"
    monkeypatch.setenv("DISENTKIT_SCRATCH", str(scratch))        # the Ray workers inherit it
    sweep = expand(CONFIG)
    lines: list[str] = []
    res = run_sweep(sweep, tmp_path / "ray", backend="ray", workers=1, threads=1, printer=lines.append,
                    ray_init={"num_cpus": 1}, shared_fs=False, sync_state=True)
    assert res.ok and res.done == 4
    assert any("results come back through Ray" in x and "training state at every checkpoint" in x for x in lines)
    from disentkit.sweep.backends import start_method

    assert start_method() == "spawn"  # Ray is loaded in this process now: no fork (its gRPC threads)
    local = run_sweep(sweep, tmp_path / "local", workers=1, threads=1, printer=lambda s: None)
    assert local.ok, local.failed
    events = [json.loads(x) for x in (tmp_path / "ray" / "events.jsonl").read_text().splitlines()]
    placed = {e["run"]: e for e in events if e["event"] == "placed"}
    done = {e["run"] for e in events if e["event"] == "done"}
    for r in sweep.runs:
        folder = tmp_path / "ray" / "runs" / r.run_id
        for name in ("DONE", "model.safetensors", "metrics.json", "config.yaml", "run.json", "log.txt",
                     "csv/metrics.csv", "training_state.pt"):
            assert (folder / name).is_file(), f"{r.run_id}: {name} did not come back"
        assert list((folder / "tb").glob("events.out.tfevents.*"))
        assert placed[r.run_id]["scratch"].startswith(str(scratch)) and r.run_id in done
        a, b = _mig(folder), _mig(tmp_path / "local" / "runs" / r.run_id)
        assert a["mig"] == b["mig"] and a["mi_matrix"] == b["mi_matrix"]   # same seed, same CPU: same weights
    assert not any(scratch.rglob("*.safetensors")), "the scratch copies are removed after each job"


@pytest.mark.slow
def test_fused_ensembles_come_back_without_their_training_state(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("DISENTKIT_SCRATCH", str(tmp_path / "scratch"))
    sweep = expand({**CONFIG, "stages": CONFIG["stages"][:1]})
    res = run_sweep(sweep, tmp_path / "ray", backend="ray", workers=1, threads=1, printer=lambda s: None,
                    ray_init={"num_cpus": 1}, shared_fs=False, ensemble=2)
    assert res.ok and res.done == 2
    (group,) = (tmp_path / "ray" / "ensembles").iterdir()
    assert (group / "log.txt").is_file() and not (group / "training_state.pt").exists()
    for r in sweep.runs:
        folder = tmp_path / "ray" / "runs" / r.run_id
        assert (folder / "DONE").is_file() and not (folder / "training_state.pt").exists()
        assert "fused ensemble" in (folder / "log.txt").read_text()


@pytest.mark.slow
def test_gpu_shares_are_counted_per_node_and_an_ensemble_is_one_task(tmp_path, monkeypatch):
    """Ray counts GPUs it is told of (none here: the runs train on the CPU); 0.5 GPU a run and one CPU each on
    a 2-CPU, 1-GPU node is 2 jobs at a time, and a fused ensemble takes one job's share on one node."""
    pytest.importorskip("ray")
    monkeypatch.setenv("DISENTKIT_SCRATCH", str(tmp_path / "scratch"))
    sweep = expand({**CONFIG, "seeds": [0, 1, 2, 3], "stages": CONFIG["stages"][:1]})
    lines: list[str] = []
    res = run_sweep(sweep, tmp_path / "ray", backend="ray", workers=0, threads=1, printer=lines.append,
                    gpus_per_run=0.5, ray_init={"num_cpus": 2, "num_gpus": 1}, shared_fs=False, ensemble=2)
    assert res.ok and res.done == 4
    assert any(x.startswith("Ray cluster: 1 node, 2 CPUs, 1 GPUs") for x in lines), lines
    assert any(x.startswith("2 runs at a time (1 CPU, 0.5 GPU each)") for x in lines), lines
    events = [json.loads(x) for x in (tmp_path / "ray" / "events.jsonl").read_text().splitlines()]
    assert [e.get("fused") for e in events if e["event"] == "start"] == [2, 2, 2, 2]
    with pytest.raises(Exception, match="no node of the Ray cluster fits one run of --cpus-per-run 4"):
        run_sweep(sweep, tmp_path / "too-big", backend="ray", threads=1, printer=lambda s: None,
                  cpus_per_run=4, ray_init={"num_cpus": 2})
