"""A run that fails does not stop the others: its reason is shown, its chained children are skipped,
and a restart retries only what is not done."""

import json

from disentkit.sweep import expand, run_sweep
from disentkit.sweep.aggregate import aggregate

CONFIG = {
    "name": "failing",
    "defaults": {"steps": 2, "batch_size": 8, "log_every": 1, "threads": 1, "latent_dim": 4, "checkpoint_every": 0},
    "seeds": [0],
    "metrics": {"mig": {"num_train": 300}},
    "stages": [
        {"name": "a", "model": "beta_vae", "grid": {"beta": [2]}},
        # latent_dim 3 cannot start from a 4-latent checkpoint: found only when that run starts
        {"name": "b", "model": "beta_vae", "init_from": "a", "grid": {"latent_dim": [4, 3]}},
        {"name": "c", "model": "beta_vae", "init_from": "b"},
    ],
}


def test_failure_is_reported_and_the_rest_goes_on(tmp_path):
    sweep = expand(CONFIG)
    lines: list[str] = []
    res = run_sweep(sweep, tmp_path / "s", workers=2, printer=lines.append)
    bad = [r for r in sweep.runs if r.stage == "b" and r.train["latent_dim"] == 3][0]
    orphan = [r for r in sweep.runs if r.parent == bad.run_id][0]
    assert not res.ok and res.done == 3 and set(res.failed) == {bad.run_id, orphan.run_id}
    assert "latent_dim" in res.failed[bad.run_id]                       # the exception's own message
    assert "parent run" in res.failed[orphan.run_id]
    text = "\n".join(lines)
    assert f"FAILED {bad.run_id}" in text and "1 failed" in text and "ETA" in text
    assert "Traceback" in (tmp_path / "s" / "runs" / bad.run_id / "error.txt").read_text()
    assert not (tmp_path / "s" / "runs" / bad.run_id / "DONE").exists()

    again = run_sweep(sweep, tmp_path / "s", workers=2, printer=lines.append)   # retries the failed only
    assert again.skipped == 3 and again.done == 0 and set(again.failed) == set(res.failed)
    events = [json.loads(x) for x in (tmp_path / "s" / "events.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "done" for e in events) == 3

    paths = aggregate(tmp_path / "s")
    md = paths["markdown"].read_text()
    assert "3/5 runs done" in md and "| 0/1 |" in md                     # the failed configuration: no values


def test_a_killed_sweep_continues_a_partly_trained_run(tmp_path):
    """SIGKILL while a run trains, after its first checkpoint: the restarted sweep continues that run from
    its training state (not from scratch) and ends with the weights of the run trained uninterrupted."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import torch
    import yaml
    from safetensors.torch import load_file

    from disentkit.cli import main

    cfg = tmp_path / "long.yaml"
    cfg.write_text(yaml.safe_dump({"name": "long", "defaults": {"steps": 40, "batch_size": 8, "log_every": 1,
                                                                "latent_dim": 3, "checkpoint_every": 4},
                                   "seeds": [0], "metrics": {"mig": {"num_train": 300}},
                                   "stages": [{"name": "a", "model": "beta_vae", "grid": {"beta": [4]}}]}))
    src = str(Path(__file__).resolve().parents[1] / "src")
    out, ref = tmp_path / "out", tmp_path / "ref"
    proc = subprocess.Popen([sys.executable, "-m", "disentkit", "sweep", str(cfg), "--out", str(out), "--threads", "1"],
                            env={**os.environ, "PYTHONPATH": src}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not list(out.glob("runs/*/training_state.pt")):
        assert proc.poll() is None and time.time() - t0 < 120, "the sweep ended before its run checkpointed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (run,) = list((out / "runs").iterdir())
    assert not (run / "DONE").exists()
    again = subprocess.run([sys.executable, "-m", "disentkit", "sweep", str(cfg), "--out", str(out), "--threads", "1"],
                           env={**os.environ, "PYTHONPATH": src}, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "continuing" in (run / "log.txt").read_text()
    assert main(["sweep", str(cfg), "--out", str(ref), "--threads", "1"]) == 0
    a, b = load_file(run / "model.safetensors"), load_file(ref / "runs" / run.name / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((run / "metrics.json").read_text())["results"] == \
        json.loads((ref / "runs" / run.name / "metrics.json").read_text())["results"]


def test_a_diverging_run_is_failed_with_its_reason_and_the_others_finish(tmp_path):
    """lr = 1000 diverges: that run fails with the guard's one line (step, term, likely cause); its
    folder keeps diverged.json; the sane run beside it finishes and is scored."""
    config = {**CONFIG, "defaults": {**CONFIG["defaults"], "steps": 30, "log_every": 5},
              "stages": [{"name": "a", "model": "beta_vae", "grid": {"lr": [1e-4, 1000.0]}}]}
    sweep = expand(config)
    res = run_sweep(sweep, tmp_path / "s", workers=1, printer=lambda s: None)
    wild = next(r for r in sweep.runs if r.train["lr"] == 1000.0)
    assert res.done == 1 and set(res.failed) == {wild.run_id}
    assert "training diverged at step" in res.failed[wild.run_id] and "--lr 1000" in res.failed[wild.run_id]
    assert (tmp_path / "s" / "runs" / wild.run_id / "diverged.json").is_file()


def test_a_diverging_member_of_a_fused_sweep_fails_alone(tmp_path):
    """β = 1e39 overflows float32: that member stops alone; the other member of the same fused ensemble
    finishes, is scored and marked done."""
    config = {**CONFIG, "defaults": {**CONFIG["defaults"], "steps": 20, "log_every": 5},
              "stages": [{"name": "a", "model": "beta_vae", "grid": {"beta": [2.0, 1e39]}}]}
    sweep = expand(config)
    lines: list[str] = []
    res = run_sweep(sweep, tmp_path / "s", workers=1, printer=lines.append, ensemble=2)
    wild = next(r for r in sweep.runs if r.hparams["beta"] == 1e39)
    assert "as one fused ensemble" in "\n".join(lines)
    assert res.done == 1 and set(res.failed) == {wild.run_id}, res.failed
    assert "training diverged at step" in res.failed[wild.run_id]
    sane = next(r for r in sweep.runs if r.run_id != wild.run_id)
    assert (tmp_path / "s" / "runs" / sane.run_id / "DONE").is_file()


def test_a_run_killed_between_done_and_its_log_line_is_recorded_once_on_restart(tmp_path):
    """A sweep killed after a run wrote DONE but before its ``done`` line reached events.jsonl (seen in the kill
    test of test_sweep_e2e): the next start records it, marked ``recovered``, and does not train it again."""
    sweep = expand({**CONFIG, "stages": CONFIG["stages"][:1]})
    out = tmp_path / "s"
    assert run_sweep(sweep, out, workers=1, printer=lambda s: None).done == 1
    log = out / "events.jsonl"
    rid = sweep.runs[0].run_id
    kept = [x for x in log.read_text().splitlines() if json.loads(x)["event"] != "done"]
    log.write_text("\n".join(kept + ['{"torn line']) + "\n")  # and a torn line, as a kill can leave
    for _ in range(2):  # the second start finds the recovered line and adds nothing
        again = run_sweep(sweep, out, workers=1, printer=lambda s: None)
        assert again.skipped == 1 and again.done == 0
        lines = [x for x in log.read_text().splitlines() if x != '{"torn line']
        done = [e for e in map(json.loads, lines) if e["event"] == "done"]
        assert [(e["run"], e.get("recovered")) for e in done] == [(rid, True)]


def test_local_runs_are_forked_unless_ray_is_loaded(monkeypatch):
    """Forking a process that has loaded Ray (gRPC threads) can crash the child at start: spawn there."""
    import sys

    from disentkit.sweep.backends import LocalBackend, start_method

    monkeypatch.delitem(sys.modules, "ray", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert start_method() == "fork" and LocalBackend(1).ctx.get_start_method() == "fork"
    monkeypatch.setitem(sys.modules, "ray", object())
    assert start_method() == "spawn" and LocalBackend(1).ctx.get_start_method() == "spawn"
