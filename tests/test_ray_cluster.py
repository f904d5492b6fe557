"""Joining a Ray cluster (token lookup, one-line refusals, per-node capacity) and run folders as bytes
(``sweep/transfer.py``): the parts of the cluster path that need no cluster."""

from __future__ import annotations

import socket
import sys

import pytest

from disentkit.errors import DisentkitError
from disentkit.sweep import ray_cluster as rc
from disentkit.sweep.transfer import pack, replace_folders, unpack


def test_token_is_looked_up_in_rays_order(tmp_path):
    home = tmp_path / "home"
    assert rc.token_source({"HOME": str(home)}) is None
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("abc\n")
    assert rc.token_source({"HOME": str(home)}) == f"the file {home / '.ray' / 'auth_token'}"
    mine = tmp_path / "tok"
    mine.write_text("def")
    assert rc.token_source({"HOME": str(home), "RAY_AUTH_TOKEN_PATH": str(mine)}) == f"the file {mine}"
    assert rc.token_source({"HOME": str(home), "RAY_AUTH_TOKEN_PATH": str(mine), "RAY_AUTH_TOKEN": "x"}) \
        == "the RAY_AUTH_TOKEN variable"
    (home / ".ray" / "auth_token").write_text("  \n")                 # an empty file is no token
    assert rc.token_source({"HOME": str(home)}) is None


def test_prepare_auth_turns_token_mode_on_for_an_address_when_a_token_exists(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "ray", raising=False)     # as in a fresh `disentkit sweep` process
    env = {"HOME": str(tmp_path), "RAY_AUTH_TOKEN": "secret"}
    assert rc.prepare_auth("10.0.0.1:6379", env) == "token authentication, token from the RAY_AUTH_TOKEN variable"
    assert env["RAY_AUTH_MODE"] == "token"
    env = {"HOME": str(tmp_path)}
    assert "no token authentication" in rc.prepare_auth("10.0.0.1:6379", env) and "RAY_AUTH_MODE" not in env
    env = {"HOME": str(tmp_path), "RAY_AUTH_TOKEN": "secret", "RAY_AUTH_MODE": "disabled"}
    assert rc.prepare_auth("10.0.0.1:6379", env) == "RAY_AUTH_MODE=disabled (yours)"   # the user's choice stands
    env = {"HOME": str(tmp_path), "RAY_AUTH_TOKEN": "secret"}
    assert "local cluster" in rc.prepare_auth(None, env) and "RAY_AUTH_MODE" not in env


def test_prepare_auth_refuses_when_ray_was_imported_first(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", object())
    with pytest.raises(DisentkitError, match="set RAY_AUTH_MODE=token in the environment before starting Python"):
        rc.prepare_auth("10.0.0.1:6379", {"HOME": str(tmp_path), "RAY_AUTH_TOKEN": "secret"})


def test_nothing_listening_is_one_line_at_once():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                   # a port that was free a moment ago
    with pytest.raises(DisentkitError, match=f"nothing answers at 127.0.0.1:{port}.*ray start --head --port {port}"):
        rc.check_reachable(f"127.0.0.1:{port}")
    with pytest.raises(DisentkitError, match="HOST:PORT"):
        rc.check_reachable("head:sixty")
    rc.check_reachable("auto")                  # Ray finds a local cluster itself


def test_refusals_name_the_cause_and_the_fix(monkeypatch):
    warn = ("Failed to connect to Ray cluster at 10.0.0.1:6379\n[W gcs_client.cc:210] Failed to get cluster ID "
            "from GCS server: Unauthenticated: RPC error: InvalidAuthToken: Authentication token is missing")
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    line = rc.explain_refusal("10.0.0.1:6379", warn, "no token authentication")
    assert "requires token authentication and no token was found" in line and "ray get-auth-token" in line
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert "but RAY_AUTH_MODE=disabled here: unset it" in rc.explain_refusal("h:1", warn, "")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "wrong")
    assert "refused the token from the RAY_AUTH_TOKEN variable" in rc.explain_refusal("h:1", warn, "")
    pytest.importorskip("ray")
    mismatch = ("Version mismatch: The cluster was started with:\n    Ray: 2.9.0\n    Python: 3.10.4\n"
                "This process on node 10.0.0.2 was started with:\n    Ray: 2.60.0\n    Python: 3.11.2\n")
    line = rc.explain_refusal("h:1", mismatch, "")
    assert "runs Ray 2.9.0, Python 3.10.4 but this driver Ray" in line and "\n" not in line
    assert rc.explain_refusal("h:1", "TimedOut: GCS\nmore", "x") == \
        "could not join the Ray cluster at h:1 (x): TimedOut: GCS"


def test_capacity_is_counted_per_node():
    nodes = [{"CPU": 3.0, "GPU": 0.0}, {"CPU": 1.0, "GPU": 0.0}]
    assert rc.slots_per_node(nodes, 2, 0) == [1, 0]       # 4 CPUs in all, but a 2-CPU run fits the first node only
    gpus = [{"CPU": 16.0, "GPU": 2.0}, {"CPU": 16.0, "GPU": 1.0}]
    assert rc.slots_per_node(gpus, 1, 0.25) == [8, 4]     # fractions pack onto each node's GPUs
    assert rc.slots_per_node(gpus, 1, 2) == [1, 0]        # a 2-GPU run (or ensemble) needs both on one node
    assert rc.slots_per_node(gpus, 0.5, 0.1) == [20, 10]  # CPUs no longer the limit
    text = rc.describe([{"id": "abcdef123", "address": "10.0.0.1", "head": True, "CPU": 2.0, "GPU": 1.0},
                        {"id": "123456abc", "address": "10.0.0.2", "head": False, "CPU": 1.0, "GPU": 0.0}])
    assert text == ("Ray cluster: 2 nodes, 3 CPUs, 1 GPUs (head 10.0.0.1 [abcdef]: 2 CPU, 1 GPU; "
                    "10.0.0.2 [123456]: 1 CPU)")


def test_run_folders_travel_as_bytes(tmp_path):
    src = tmp_path / "node"
    run = src / "runs" / "r1"
    (run / "csv").mkdir(parents=True)
    for name, data in [("model.safetensors", b"w"), ("DONE", b"{}"), ("csv/metrics.csv", b"step\n1\n"),
                       ("training_state.pt", b"s"), ("last.safetensors", b"l"), ("x.part", b"half")]:
        (run / name).write_bytes(data)
    everything = pack(src, ["runs/r1", "runs/absent"])
    assert set(everything) == {f"runs/r1/{n}" for n in ("model.safetensors", "DONE", "csv/metrics.csv",
                                                        "training_state.pt", "last.safetensors")}
    results = pack(src, ["runs/r1"], intermediate=False)
    assert set(results) == {"runs/r1/model.safetensors", "runs/r1/DONE", "runs/r1/csv/metrics.csv"}

    dst = tmp_path / "driver"
    (dst / "runs" / "r1").mkdir(parents=True)
    (dst / "runs" / "r1" / "stale.txt").write_text("from an earlier attempt")
    (dst / "runs" / "r2").mkdir()
    (dst / "runs" / "r2" / "keep").write_text("other run")
    replace_folders(dst, ["runs/r1"], results)
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file()) == \
        ["runs/r1/DONE", "runs/r1/csv/metrics.csv", "runs/r1/model.safetensors", "runs/r2/keep"]
    assert (dst / "runs" / "r1" / "csv" / "metrics.csv").read_bytes() == b"step\n1\n"
    with pytest.raises(ValueError, match="outside the sweep folder"):
        unpack(dst, {"runs/../../escape": b"x"})


def test_done_is_written_last(tmp_path, monkeypatch):
    from disentkit.sweep import transfer

    order: list[str] = []
    real = transfer._write
    monkeypatch.setattr(transfer, "_write", lambda p, d: (order.append(p.name), real(p, d)))
    unpack(tmp_path, {"runs/a/DONE": b"{}", "runs/a/metrics.json": b"{}", "runs/a/model.safetensors": b"w"})
    assert order[-1] == "DONE" and len(order) == 3


def test_a_job_moved_to_another_scratch_folder_continues_there(tmp_path):
    """A retry on another node unpacks the run under another root: its state and config.yaml follow it."""
    from disentkit.errors import DisentkitError as Err
    from disentkit.sweep.transfer import relocate
    from disentkit.train import TrainConfig, fit, load_checkpoint, resume

    old = tmp_path / "node1" / "job-1"
    fit(TrainConfig(steps=4, batch_size=8, latent_dim=4, threads=1, progress=False, out=str(old / "runs" / "r")))
    new = tmp_path / "node2" / "job-2"
    unpack(new, pack(old, ["runs/r"]))
    with pytest.raises(Err, match="belongs to other members"):
        resume(new / "runs" / "r", steps=6, progress=False)
    relocate(new, ["runs/r"])
    assert str(old) not in (new / "runs" / "r" / "config.yaml").read_text()
    resume(new / "runs" / "r", steps=6, progress=False)
    assert load_checkpoint(new / "runs" / "r").meta["step"] == "6"
