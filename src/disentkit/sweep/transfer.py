"""Run folders as bytes, for clusters without a shared filesystem: what a node needs to run a job travels to it
with the task, and the finished folders travel back through Ray's object store to the driver's sweep folder.

Paths are relative to the sweep folder (``runs/<id>/metrics.json``, ``ensembles/<id>+3/log.txt``), so a node
runs the job in a scratch copy of the sweep's layout and never sees the driver's paths.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import yaml

from ..train.checkpoint import STATE_FILE, load_state, save_state
from .folders import DONE

Files = dict[str, bytes]
SCRATCH_ENV = "DISENTKIT_SCRATCH"
INTERMEDIATE = {STATE_FILE, "last.safetensors"}   # what a run needs to continue, not a result


def scratch_root() -> Path:
    """Where a node runs jobs: ``$DISENTKIT_SCRATCH``, else ``disentkit-scratch`` in the node's temp dir."""
    return Path(os.environ.get(SCRATCH_ENV) or Path(tempfile.gettempdir()) / "disentkit-scratch")


def pack(root: Path, folders: list[str], intermediate: bool = True) -> Files:
    """Every file under ``root/<folder>`` for each folder, keyed by its path relative to ``root``; without
    ``intermediate``, the training state and ``last.safetensors`` are left out (half-written ``.part`` files
    always are)."""
    files: Files = {}
    for rel in folders:
        base = root / rel
        for path in sorted(base.rglob("*")) if base.is_dir() else []:
            if path.is_file() and not path.name.endswith(".part") and (intermediate or path.name not in INTERMEDIATE):
                try:
                    files[path.relative_to(root).as_posix()] = path.read_bytes()
                except FileNotFoundError:   # replaced or removed by the run while it was read
                    continue
    return files


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def unpack(root: Path, files: Files) -> None:
    """Write ``files`` under ``root`` (each atomically, ``DONE`` last, so a run never looks done half-written)."""
    for rel in sorted(files, key=lambda r: Path(r).name == DONE):
        target = (root / rel).resolve()
        if root.resolve() not in target.parents:
            raise ValueError(f"a transferred file points outside the sweep folder: {rel}")
        _write(target, files[rel])


def replace_folders(root: Path, folders: list[str], files: Files) -> None:
    """Make each ``root/<folder>`` hold exactly its files from ``files`` (a finished job's folders replace
    what its earlier attempts or state copies left): written beside it, then swapped in."""
    for rel in folders:
        mine = {k: v for k, v in files.items() if k.startswith(rel.rstrip("/") + "/")}
        target = root / rel
        incoming = target.with_name(target.name + ".incoming")
        shutil.rmtree(incoming, ignore_errors=True)
        unpack(root, {str(Path(rel).with_name(incoming.name) / Path(k).relative_to(rel)): v for k, v in mine.items()})
        old = target.with_name(target.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        incoming.mkdir(parents=True, exist_ok=True)
        incoming.rename(target)
        shutil.rmtree(old, ignore_errors=True)


def relocate(root: Path, folders: list[str]) -> None:
    """Continue a job under another scratch folder than the one its state was saved in (a retry, another
    node): point the training state's member folders and each ``config.yaml``'s paths (``out``, a parent's
    ``init_from``) at ``root``; paths are ``<old root>/runs/<id>`` there, ``<root>/runs/<id>`` here."""
    for rel in folders:
        folder = root / rel
        if (folder / STATE_FILE).is_file():
            state = load_state(folder / STATE_FILE)
            members = [str(root / Path(m).parent.name / Path(m).name) for m in state["members"]]
            if members != state["members"]:
                save_state(folder / STATE_FILE, {**state, "members": members})
        cfg = folder / "config.yaml"
        out = (yaml.safe_load(cfg.read_text()) or {}).get("out") if cfg.is_file() else None
        if out and Path(out).parent.parent != root:
            cfg.write_text(cfg.read_text().replace(str(Path(out).parent.parent), str(root)))
