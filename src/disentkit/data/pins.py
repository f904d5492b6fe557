"""Pinned checksums of files that have no published one: ``<raw>/checksums.json`` (file name -> sha256).

A file is pinned only once it has converted and the cache passed its checks (see
:mod:`disentkit.data.convert`); ``disentkit datasets forget NAME`` clears the pins of a dataset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

PINS = "checksums.json"


def read_pins(folder: str | Path) -> dict[str, str]:
    """The pins in ``folder/checksums.json`` (empty when there is no such file)."""
    p = Path(folder) / PINS
    return json.loads(p.read_text()) if p.is_file() else {}


def pin(folder: str | Path, filename: str, sha256: str) -> None:
    """Record ``sha256`` as the checksum of ``filename`` (written to a temporary file, then renamed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pins = read_pins(folder)
    pins[filename] = sha256
    _write(folder, pins)


def unpin(folder: str | Path, filenames: Iterable[str]) -> dict[str, str]:
    """Remove the pins of ``filenames``; returns the removed ones. An emptied ``checksums.json`` is deleted."""
    folder = Path(folder)
    pins = read_pins(folder)
    removed = {f: pins.pop(f) for f in list(filenames) if f in pins}
    if removed:
        _write(folder, pins)
    return removed


def _write(folder: Path, pins: dict[str, str]) -> None:
    if not pins:
        (folder / PINS).unlink(missing_ok=True)
        return
    tmp = folder / (PINS + ".tmp")
    tmp.write_text(json.dumps(pins, indent=1, sort_keys=True))
    tmp.replace(folder / PINS)
