"""A real multi-node Ray cluster on this machine (a head and two more nodes, `ray start`, one CPU each, token
authentication on): a 6-run sweep joins it with ``--address 127.0.0.1:PORT``, its runs land on several
nodes and come back to the driver without a shared folder, and killing a worker node mid-run loses no run
(Ray retries it, from the checkpoint that had reached the driver). The cluster is torn down by the process
groups the test started."""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

CONFIG = """
name: cluster
defaults: {steps: 240, batch_size: 16, log_every: 10, threads: 1, lr: 1e-3, latent_dim: 4, checkpoint_every: 20}
seeds: [0, 1, 2]
datasets: [dsprites_procedural]
metrics: {mig: {num_train: 300}}
model: beta_vae
grid: {beta: [1, 4]}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _events(out: Path) -> list[dict]:
    p = out / "events.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.is_file() else []


class Cluster:
    """`ray start --block` processes, each in its own session (so a node dies with its process group)."""

    def __init__(self, env: dict[str, str], root: Path) -> None:
        self.env, self.root, self.nodes = env, root, []
        self.ray = Path(sys.executable).with_name("ray")

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        scratch = self.root / f"scratch-{name}"
        p = subprocess.Popen([str(self.ray), "start", *args, "--num-cpus", "1", "--block", "--disable-usage-stats",
                              "--node-ip-address", "127.0.0.1", "--temp-dir", str(self.root / f"t-{name}")],
                             env={**self.env, **(env or {}), "DISENTKIT_SCRATCH": str(scratch)}, start_new_session=True,
                             stdout=open(self.root / f"{name}.log", "w"), stderr=subprocess.STDOUT)
        self.nodes.append((name, p, scratch))
        return p

    def kill(self, p: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass

    def teardown(self) -> None:
        for _, p, _ in self.nodes:
            self.kill(p, signal.SIGTERM)
        deadline = time.time() + 15
        for _, p, _ in self.nodes:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
            self.kill(p)                       # whatever of the node's group is left
            p.wait()


@pytest.mark.slow
def test_sweep_on_a_three_node_cluster_with_token_auth_and_no_shared_folder(tmp_path):
    pytest.importorskip("ray")
    if not Path(sys.executable).with_name("ray").is_file():
        pytest.skip("the `ray` command is not installed beside this Python")
    root = Path(tempfile.mkdtemp(prefix="dk-ray-", dir="/tmp"))   # short: Ray's socket paths must fit 107 bytes
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(32))  # the head then turns token auth on
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    port = _free_port()
    cluster = Cluster(env, root)
    cfg, out = tmp_path / "cluster.yaml", tmp_path / "sweep"
    cfg.write_text(CONFIG)
    t0 = time.time()
    try:
        cluster.start("head", "--head", "--port", str(port), "--include-dashboard", "false")
        time.sleep(5)
        join = {"RAY_AUTH_MODE": "token"}        # `ray start --address` does not pick the token up by itself
        worker = cluster.start("w1", "--address", f"127.0.0.1:{port}", env=join)
        cluster.start("w2", "--address", f"127.0.0.1:{port}", env=join)
        time.sleep(8)
        assert all(p.poll() is None for _, p, _ in cluster.nodes), (root / "head.log").read_text()[-2000:]
        started = time.time() - t0
        wrong = {**env, "RAY_AUTH_TOKEN": "not-the-token"}
        refused = subprocess.run([sys.executable, "-m", "disentkit", "sweep", str(cfg), "--backend", "ray", "--address",
                                  f"127.0.0.1:{port}", "--out", str(tmp_path / "refused")], env=wrong,
                                 capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2 and refused.stdout == "", refused.stdout + refused.stderr
        assert refused.stderr.count("\n") == 1, refused.stderr
        assert "refused the token from the RAY_AUTH_TOKEN variable" in refused.stderr
        driver = subprocess.Popen([sys.executable, "-m", "disentkit", "sweep", str(cfg), "--backend", "ray",
                                   "--address", f"127.0.0.1:{port}", "--out", str(out), "--sync-state"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # kill node w1 once one of its runs has sent a checkpoint to the driver
        victim, killed_at = None, None
        while driver.poll() is None and victim is None and time.time() - t0 < 400:
            for e in _events(out):
                if e["event"] == "placed" and e["scratch"].startswith(str(root / "scratch-w1")):
                    if (out / "runs" / e["run"] / "training_state.pt").is_file():
                        victim = e["run"]
            time.sleep(0.5)
        if victim is None:
            driver.kill()
            pytest.fail("no run of node w1 reached a checkpoint:\n" + driver.communicate()[0][-3000:]
                        + json.dumps(_events(out))[-3000:])
        cluster.kill(worker)
        killed_at = time.time()
        text, _ = driver.communicate(timeout=600)
        wall = time.time() - t0
    finally:
        cluster.teardown()
        shutil.rmtree(root, ignore_errors=True)
    print(f"\ncluster up in {started:.1f} s; sweep + cluster {wall:.1f} s; node w1 killed at "
          f"{killed_at - t0:.1f} s during {victim}\n{text}")
    assert driver.returncode == 0, text
    assert "token authentication, token from the file" in text and "Ray cluster: 3 nodes, 3 CPUs" in text
    assert "InvalidAuthToken" not in text
    assert f"retrying {victim}" in text
    events = _events(out)
    nodes = {e["node"] for e in events if e["event"] in ("placed", "retry")}
    assert len(nodes) >= 2, "runs landed on one node only"
    retried = [e for e in events if e["event"] == "retry"]
    assert [e["run"] for e in retried] == [victim] and not retried[0]["scratch"].startswith(str(root / "scratch-w1"))
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert len(runs) == 6
    for rid in runs:
        folder = out / "runs" / rid
        for name in ("DONE", "model.safetensors", "metrics.json", "config.yaml", "csv/metrics.csv", "log.txt"):
            assert (folder / name).is_file(), f"{rid}: {name} missing on the driver"
        assert list((folder / "tb").glob("events.out.tfevents.*"))
        with open(folder / "csv" / "metrics.csv") as f:
            steps = [int(r["step"]) for r in csv.DictReader(f) if r.get("step")]
        assert steps[-1] == 239 and steps == sorted(set(steps)), f"{rid}: its log has gaps or repeats"
    assert "continuing" in (out / "runs" / victim / "log.txt").read_text(), "the retry started from scratch"
    table = (out / "results.md").read_text()     # the driver's table covers every run: 2 βs × 3 seeds
    assert sum("| 3/3 |" in row for row in table.splitlines()) == 2, table
    # the retried run continued from its checkpoint to the very weights it trains to uninterrupted (CPU)
    from safetensors.torch import load_file

    from disentkit.sweep.execute import execute_run
    from disentkit.sweep.grid import RunSpec

    spec = RunSpec.from_dict(json.loads((out / "runs" / victim / "run.json").read_text()))
    alone = tmp_path / "alone" / "runs" / victim
    execute_run(spec, alone, threads=1)
    got, want = load_file(out / "runs" / victim / "model.safetensors"), load_file(alone / "model.safetensors")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
