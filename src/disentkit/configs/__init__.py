"""The configs that ship with disentkit, found by name: ``--config demo``, ``--config beta_vae``
(``models/``), ``disentkit sweep quick`` (``sweeps/``).

A path that exists is used as it is; otherwise the name (with or without ``.yaml``, and without a leading
``configs/``, so a clone's ``configs/demo.yaml`` works anywhere) is looked up in this folder.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DisentkitError

HERE = Path(__file__).resolve().parent


def bundled(folder: str = "") -> list[str]:
    """Names of the shipped configs (``folder``: ``""`` for all, ``"sweeps"``, ``"models"``)."""
    root = HERE / folder if folder else HERE
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def resolve_config(name: str | Path, folder: str = "") -> Path:
    """The YAML file ``name`` means: an existing path, else a shipped config (tried in ``folder``, then
    ``models/`` and the top level); a name that is neither is one clear error listing the choices."""
    p = Path(name)
    if p.is_file():
        return p
    stem = str(name).removeprefix("configs/").removeprefix("./configs/")
    stem = stem[:-5] if stem.endswith(".yaml") else stem
    for sub in dict.fromkeys([folder, "models", ""]):
        candidate = (HERE / sub / f"{stem}.yaml") if sub else HERE / f"{stem}.yaml"
        if candidate.is_file():
            return candidate
    what = "sweep config" if folder == "sweeps" else "config"
    raise DisentkitError(f"{what} '{name}' not found: not a file, and not one of disentkit's own "
                         f"({', '.join(bundled(folder))})")
