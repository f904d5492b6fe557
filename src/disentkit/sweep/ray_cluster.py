"""Joining a Ray cluster: its token authentication, one clear line when it refuses, and its nodes' resources.

Ray 2.x clusters started with ``ray start --head`` use token authentication when a token exists on the head
(``~/.ray/auth_token``, which any earlier local ``ray.init()`` writes). A driver that names the head's address
must then set ``RAY_AUTH_MODE=token`` *before Ray is imported* and hold the same token, which Ray looks up in
``RAY_AUTH_TOKEN``, then the file ``RAY_AUTH_TOKEN_PATH``, then ``~/.ray/auth_token``
(https://docs.ray.io/en/latest/ray-security/token-auth.html). :func:`prepare_auth` does that for
``--address HOST:PORT`` when a token is found (a cluster without authentication accepts it too).
"""

from __future__ import annotations

import os
import re
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..errors import DisentkitError

MODE = "RAY_AUTH_MODE"


def token_source(env: dict[str, str] | None = None) -> str | None:
    """Where Ray will read its token from, in Ray's order of lookup: ``RAY_AUTH_TOKEN``, the file named by
    ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``; None when there is none."""
    env = os.environ if env is None else env
    if env.get("RAY_AUTH_TOKEN", "").strip():
        return "the RAY_AUTH_TOKEN variable"
    for path in (env.get("RAY_AUTH_TOKEN_PATH"), str(Path(env.get("HOME", str(Path.home()))) / ".ray" / "auth_token")):
        if path and Path(path).is_file() and Path(path).read_text().strip():
            return f"the file {path}"
    return None


def prepare_auth(address: str | None, env: dict[str, str] | None = None) -> str:
    """Set ``RAY_AUTH_MODE=token`` for joining ``address`` when a token is available and the mode is unset
    (Ray reads the mode once, when it is first imported); returns the line saying what authentication is used."""
    env = os.environ if env is None else env
    source = token_source(env)
    mode = env.get(MODE)
    if mode is not None:
        how = f"{MODE}={mode} (yours)"
        return how + (f", token from {source}" if mode.lower() == "token" and source else "")
    if not address or address == "auto":
        return "token authentication as Ray decides for a local cluster"
    if source is None:
        return "no token authentication (no token in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)"
    if "ray" in sys.modules:
        raise DisentkitError(f"Ray was imported before the sweep could set {MODE}=token for --address {address}: "
                             f"set {MODE}=token in the environment before starting Python")
    env[MODE] = "token"
    return f"token authentication, token from {source}"


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail at once, in one line, when nothing listens at ``HOST:PORT`` (Ray itself retries for a minute)."""
    if not address or address == "auto" or address.startswith("ray://") or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise DisentkitError(f"--address expects HOST:PORT (e.g. 10.0.0.1:6379) or auto, got '{address}'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise DisentkitError(f"nothing answers at {address} ({e.strerror or e}): start the head with "
                             f"`ray start --head --port {port}` there, or pass the address `ray status` shows "
                             "on the head") from None


def explain_refusal(address: str, message: str, auth: str) -> str:
    """One line naming why a cluster refused this driver, and what to do, from Ray's error and log text."""
    low = message.lower()
    if "invalidauthtoken" in low or "unauthenticated" in low or "authentication token" in low:
        mode = os.environ.get(MODE, "").lower()
        if mode and mode != "token":
            return (f"the Ray cluster at {address} requires token authentication but {MODE}={mode} here: unset it "
                    "(the sweep then uses the token in RAY_AUTH_TOKEN or ~/.ray/auth_token) or set it to token")
        if mode == "token" and token_source():
            return (f"the Ray cluster at {address} refused the token from {token_source()}: use the head's token "
                    "(`ray get-auth-token` on the head) in RAY_AUTH_TOKEN or ~/.ray/auth_token")
        return (f"the Ray cluster at {address} requires token authentication and no token was found: copy the "
                "head's token (`ray get-auth-token` on the head) into RAY_AUTH_TOKEN or ~/.ray/auth_token")
    if "version mismatch" in low:
        import ray

        theirs = re.search(r"started with:\s*Ray: (\S+)\s*Python: (\S+)", message)
        cluster = f"Ray {theirs[1]}, Python {theirs[2]}" if theirs else "other versions"
        return (f"the Ray cluster at {address} runs {cluster} but this driver Ray {ray.__version__}, Python "
                f"{sys.version.split()[0]}: install the cluster's Ray and Python here, or start it with these")
    first = next((ln.strip() for ln in message.splitlines() if ln.strip()), "no message")
    return f"could not join the Ray cluster at {address} ({auth}): {first}"


def join(ray: Any, address: str, auth: str, kwargs: dict[str, Any]) -> None:
    """``ray.init(address=...)`` with Ray's own console warnings held back; a refusal becomes one line."""
    from .execute import redirect_output

    with tempfile.NamedTemporaryFile("r", suffix=".log", prefix="disentkit-ray-join-") as log:
        try:
            with redirect_output(Path(log.name)):
                ray.init(address=address, **kwargs)
        except Exception as e:  # noqa: BLE001 - every refusal is explained in one line
            text = f"{e}\n{Path(log.name).read_text(errors='replace')}"
            raise DisentkitError(explain_refusal(address, text, auth)) from None


def alive_nodes(ray: Any) -> list[dict[str, Any]]:
    """The cluster's live nodes: id, address, whether it is the head, and its CPUs and GPUs."""
    out = []
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        res = n.get("Resources", {})
        out.append({"id": n["NodeID"], "address": n.get("NodeManagerAddress", "?"),
                    "head": "node:__internal_head__" in res,
                    "CPU": float(res.get("CPU", 0)), "GPU": float(res.get("GPU", 0))})
    return out


def describe(nodes: list[dict[str, Any]]) -> str:
    """'Ray cluster: 3 nodes, 3 CPUs, 0 GPUs (head 10.0.0.1: 1 CPU; 10.0.0.2: 1 CPU, 1 GPU; …)'."""
    parts = [f"{'head ' if n['head'] else ''}{n['address']} [{n['id'][:6]}]: {n['CPU']:g} CPU"
             + (f", {n['GPU']:g} GPU" if n["GPU"] else "") for n in nodes]
    return (f"Ray cluster: {len(nodes)} node{'s' * (len(nodes) != 1)}, {sum(n['CPU'] for n in nodes):g} CPUs, "
            f"{sum(n['GPU'] for n in nodes):g} GPUs ({'; '.join(parts)})")


def slots_per_node(nodes: list[dict[str, Any]], cpus_per_run: float, gpus_per_run: float) -> list[int]:
    """How many runs (or fused ensembles: one task each, so never split across nodes) fit on each node at
    once; a task's CPUs and GPUs must all come from one node, so capacity is counted per node."""
    def fit(have: float, need: float) -> int:
        return int(have / need + 1e-9) if need > 0 else 10 ** 6
    return [min(fit(n["CPU"], cpus_per_run), fit(n["GPU"], gpus_per_run)) for n in nodes]
