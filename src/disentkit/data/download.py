"""Verified downloads: mirrors in order, HTTP Range resume, ``*.part`` then rename, size + checksum checks.

A file reaches its final name only after its size and checksum match the registry; a wrong file (a
truncated transfer, an HTML error or quota page, other bytes) is deleted and reported with the
expected and actual values. Files without a published checksum are pinned once they have converted
(:mod:`disentkit.data.convert`): their sha256 is written to ``checksums.json`` beside them and checked
on every later verification.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from pathlib import Path
from typing import Iterable

from ..errors import DisentkitError
from .pins import PINS, read_pins
from .registry import DatasetSource, RemoteFile

CHUNK = 1 << 20
HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<?xml")


# ------------------------------------------------------------------------------------ checksums
def hash_file(path: str | Path, algorithms: Iterable[str] = ("sha256",)) -> dict[str, str]:
    """Hex digests of a file for each named algorithm, read once in 1 MiB chunks."""
    hashers = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            for h in hashers.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashers.items()}


def looks_like_html(path: str | Path) -> bool:
    """True when a file starts like a web page (a saved error, login or Google Drive quota page)."""
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    return any(head.startswith(m) for m in HTML_MARKERS) or b"<html" in head


def verify_file(path: str | Path, remote: RemoteFile, pins_folder: str | Path | None = None,
                dataset: str = "NAME") -> str:
    """Check ``path`` against ``remote``'s size and checksums; returns its sha256.

    Raises :class:`DisentkitError` naming the expected and actual values. A file with no published
    checksum is checked against the sha256 pinned in ``pins_folder/checksums.json`` when there is one.
    """
    path = Path(path)
    size = path.stat().st_size
    what = f"{path.name} ({path})"
    if looks_like_html(path):
        raise DisentkitError(
            f"{what} is an HTML page ({size:,} bytes), not the dataset file: the server sent an error, login or "
            f"quota page. {remote.manual or 'Download the file in a browser'}; then run "
            f"`disentkit datasets import {dataset} --from-file {remote.filename}`")
    if remote.size is not None and size != remote.size:
        raise DisentkitError(f"{what} has the wrong size: expected {remote.size:,} bytes, got {size:,} "
                             f"(truncated or a different file)")
    algos = sorted({c.split(":", 1)[0] for c in remote.checksums} | {"sha256"})
    digests = hash_file(path, algos)
    if remote.checksums:
        if not any(digests[c.split(":", 1)[0]] == c.split(":", 1)[1] for c in remote.checksums):
            got = ", ".join(f"{a}:{digests[a]}" for a in algos if any(c.startswith(a + ":") for c in remote.checksums))
            raise DisentkitError(f"{what} has the wrong checksum: expected {' or '.join(remote.checksums)}, "
                                 f"got {got}")
    elif pins_folder is not None:
        pinned = read_pins(pins_folder).get(remote.filename)
        if pinned and pinned != digests["sha256"]:
            raise DisentkitError(f"{what} has the wrong checksum: expected sha256:{pinned} (pinned when the "
                                 f"dataset converted, in {Path(pins_folder) / PINS}), got sha256:{digests['sha256']}; "
                                 f"if this file is the right one, run `disentkit datasets forget {dataset}` "
                                 f"and import it again")
    return digests["sha256"]


def accept_file(path: Path, remote: RemoteFile, folder: Path, dataset: str = "NAME",
                pins_folder: Path | None = None) -> Path:
    """Verify a complete ``*.part`` (or any) file and move it to ``folder/remote.filename``.

    Nothing is pinned here: a file without a published checksum is pinned once it has converted.
    """
    try:
        verify_file(path, remote, folder if pins_folder is None else pins_folder, dataset)
    except DisentkitError:
        path.unlink(missing_ok=True)   # never cache a bad file
        raise
    final = folder / remote.filename
    path.replace(final)
    return final


# ------------------------------------------------------------------------------------ download
def download_file(remote: RemoteFile, folder: str | Path, progress: bool = True, retries: int = 3,
                  timeout: float = 60.0, session=None, dataset: str = "NAME") -> Path:
    """Download ``remote`` into ``folder``, trying its mirrors in order; returns the verified file.

    A ``*.part`` file left by an interrupted transfer is resumed with an HTTP Range request; a
    connection dropped mid-file is resumed up to ``retries`` times per mirror.
    """
    import requests

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / remote.filename
    if final.is_file():
        verify_file(final, remote, folder, dataset)
        return final
    part = folder / (remote.filename + ".part")
    session = session or requests.Session()
    failures: list[str] = []
    for url in remote.urls:
        try:
            for attempt in range(retries + 1):
                try:
                    _fetch(session, url, part, remote, progress, timeout)
                    break
                except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                        requests.Timeout) as e:
                    if attempt == retries:
                        raise DisentkitError(f"connection failed {retries + 1} times: {type(e).__name__}") from None
            return accept_file(part, remote, folder, dataset)
        except DisentkitError as e:
            failures.append(f"{url}: {e}")
        except requests.RequestException as e:
            failures.append(f"{url}: {type(e).__name__}: {e}")
    raise DisentkitError(
        f"could not download {remote.filename} from any of {len(remote.urls)} mirror(s): " + " | ".join(failures)
        + f". {remote.manual + '. ' if remote.manual else ''}Download it yourself and run "
        f"`disentkit datasets import {dataset} --from-file {remote.filename}`")


def _fetch(session, url: str, part: Path, remote: RemoteFile, progress: bool, timeout: float) -> None:
    """One GET of ``url`` into ``part``, resuming from its current length with a Range header."""
    import requests

    have = part.stat().st_size if part.is_file() else 0
    if remote.size is not None and have >= remote.size:
        if have > remote.size:
            part.unlink()
            have = 0
        else:
            return
    headers = {"Range": f"bytes={have}-"} if have else {}
    with session.get(url, stream=True, timeout=timeout, headers=headers, allow_redirects=True) as r:
        if r.status_code == 416:          # range not satisfiable: the part already holds everything
            return
        if r.status_code >= 400:
            raise DisentkitError(f"HTTP {r.status_code} {r.reason}")
        ctype = r.headers.get("Content-Type", "")
        if "text/html" in ctype:
            raise DisentkitError(
                f"the server answered with an HTML page (Content-Type {ctype}), not the file. "
                f"{remote.manual or 'Download the file in a browser'}")
        mode = "ab" if r.status_code == 206 and have else "wb"
        start = have if mode == "ab" else 0
        length = r.headers.get("Content-Length")
        total = start + int(length) if length is not None else remote.size
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=remote.filename, leave=False)
        try:
            with open(part, mode) as f:
                for block in r.iter_content(1 << 16):
                    f.write(block)
                    if bar is not None:
                        bar.update(len(block))
        finally:
            if bar is not None:
                bar.close()
        got = part.stat().st_size
        if length is not None and got < start + int(length):
            raise requests.exceptions.ChunkedEncodingError(
                f"connection closed after {got:,} of {start + int(length):,} bytes")


def import_file(remote: RemoteFile, src: str | Path, folder: str | Path, pins_folder: str | Path | None = None,
                dataset: str = "NAME") -> Path:
    """Copy a user-supplied file into ``folder`` after verifying it (``*.part`` then rename).

    ``pins_folder`` (default ``folder``) holds the pins it is checked against; nothing is pinned here.
    """
    src, folder = Path(src), Path(folder)
    pins = folder if pins_folder is None else Path(pins_folder)
    if not src.is_file():
        raise DisentkitError(f"--from-file {src}: no such file")
    verify_file(src, remote, pins, dataset)   # refuse before copying gigabytes
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / (remote.filename + ".part")
    shutil.copyfile(src, part)
    return accept_file(part, remote, folder, dataset, pins)


def match_remote(source: DatasetSource, src: str | Path) -> RemoteFile:
    """The registry file a user-supplied path stands for: by file name, else the dataset's only file."""
    name = Path(src).name
    f = source.file_named(name)
    if f is not None:
        return f
    if len(source.files) == 1 and not source.alternatives:
        return source.files[0]
    names = ", ".join(x.filename for x in source.files + source.alternatives)
    raise DisentkitError(f"{name} is not a file of dataset '{source.name}'; expected one of: {names}")


# ------------------------------------------------------------------------------------ archives
def safe_members(tar: tarfile.TarFile, target: str | Path) -> list[tarfile.TarInfo]:
    """Every member of ``tar``, after checking none would land outside ``target``.

    Absolute paths, ``..`` components and links pointing out of the folder are refused with a
    :class:`DisentkitError` (the whole archive is refused, nothing is extracted).
    """
    root = Path(target).resolve()
    members = tar.getmembers()
    for m in members:
        dest = (root / m.name).resolve()
        bad = m.name.startswith(("/", "\\")) or not dest.is_relative_to(root)
        if m.issym() or m.islnk():
            link = (dest.parent / m.linkname).resolve() if m.issym() else (root / m.linkname).resolve()
            bad = bad or not link.is_relative_to(root)
        if m.isdev():
            bad = True
        if bad:
            raise DisentkitError(f"archive {tar.name} holds an unsafe path '{m.name}' that would escape "
                                 f"{root}; refusing to extract it")
    return members


def safe_extract(archive: str | Path, target: str | Path, select=None) -> list[Path]:
    """Extract a tar archive into ``target`` after :func:`safe_members`; ``select`` filters member names."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        members = [m for m in safe_members(tar, target) if select is None or select(m.name)]
        tar.extractall(target, members=members, filter="data") if hasattr(tarfile, "data_filter") \
            else tar.extractall(target, members=members)
    return [target / m.name for m in members if m.isfile()]
