"""The ``disentkit datasets`` subcommands: list, info, download, verify, import, forget."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from ..errors import DisentkitError
from . import DATASETS, get_dataset
from .cache import cache_dir, complete, data_root, how_to_get, load_real, present_files, raw_dir, status, writable_root
from .cache_check import check_cache
from .convert import ConversionError, convert_files
from .download import download_file, hash_file, import_file, match_remote, verify_file
from .pins import PINS, pin, read_pins, unpin
from .registry import SOURCES


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def _source(name: str):
    base = name.split(":", 1)[0]
    if base not in SOURCES:
        if base in DATASETS:
            raise DisentkitError(f"'{base}' is procedural: nothing to download, verify or import")
        raise DisentkitError(f"unknown dataset '{base}'; see `disentkit datasets list`")
    return SOURCES[base]


def cmd_list(args: argparse.Namespace) -> int:
    root = args.data_root
    print(f"data root: {data_root(root)}")
    print(f"{'name':<22}{'images':>11}  {'kind':<11}{'download':>10}{'cache':>10}  {'status':<11}source")
    for name, e in sorted(DATASETS.items()):
        if e.procedural:
            n = get_dataset(name).num_images
            print(f"{name:<22}{n:>11,}  {'procedural':<11}{'-':>10}{'-':>10}  {'built-in':<11}disentkit")
            continue
        src = SOURCES[name]
        print(f"{name:<22}{src.num_images:>11,}  {'file':<11}{_size(src.download_bytes):>10}"
              f"{_size(src.cache_bytes):>10}  {status(src, root):<11}{src.homepage}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    name, root = args.name, args.data_root
    base = name.split(":", 1)[0]
    if base in DATASETS and DATASETS[base].procedural:
        ds = get_dataset(name)
        # the values holes(...) conditions compare against: labels, or the range of a numeric factor
        values = {f.name: list(f.labels) if f.labels else f"{f.values[0]:g} .. {f.values[-1]:g} ({f.size} values)"
                  for f in ds.factors}
        print(json.dumps({**ds.describe(), "factor_values": values}, indent=1))
        return 0
    src = _source(name)
    info: dict = {"name": src.name, "description": src.description, "num_images": src.num_images,
                  "image_shape": list(src.image_shape), "has_factors": src.has_factors, "homepage": src.homepage,
                  "license": src.license, "status": status(src, root), "raw_dir": str(raw_dir(src.name, root)),
                  "cache_dir": str(cache_dir(src.name, root)), "cache_bytes": src.cache_bytes,
                  "files": [{"filename": f.filename, "urls": list(f.urls), "size": f.size, "checksums": list(f.checksums),
                             "source": f.source, **({"note": f.manual} if f.manual else {})} for f in src.files],
                  }
    if src.alternatives:
        info["alternatives"] = [{"filename": f.filename, "urls": list(f.urls), "size": f.size,
                                 "checksums": list(f.checksums), "source": f.source} for f in src.alternatives]
    if info["status"] == "converted":
        info["dataset"] = get_dataset(name, data_root=root).describe()
    print(json.dumps(info, indent=1))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    src, root = _source(args.name), args.data_root
    writable_root(root)
    folder = raw_dir(src.name, root)
    for f in src.files:
        t0 = time.time()
        path = download_file(f, folder, progress=args.progress, dataset=args.name)
        print(f"ok {path} ({path.stat().st_size:,} bytes, {_checked(f)}, {time.time() - t0:.0f}s)")
    if status(src, root) != "converted":
        have = present_files(src, root)
        try:
            convert_files(src, have, root, progress=args.progress)
        except ConversionError as e:
            unproven = {n: p for n, p in have.items() if not src.file_named(n).checksums}  # type: ignore[union-attr]
            for p in unproven.values():
                p.unlink(missing_ok=True)
            unpin(folder, unproven)
            gone = f"deleted {', '.join(map(str, unproven.values()))} (no published checksum); " if unproven else ""
            raise DisentkitError(
                f"{', '.join(map(str, have.values()))} did not convert into {src.name}: {e.reason}; {gone}"
                f"nothing was cached or pinned. Run `disentkit datasets download {src.name}{_flag(root)}` again, or download "
                f"{src.files[0].urls[0]} yourself and run `disentkit datasets import {src.name} --from-file PATH"
                f"{_flag(root)}`") from None
    return _ready(src, root)


def _flag(root) -> str:
    return f" --data-root {root}" if root else ""


def _checked(f) -> str:
    return "verified" if f.checksums else "no published checksum: pinned once it converts"


def _ready(src, root) -> int:
    t0 = time.time()
    ds = load_real(src.name, root)
    print(f"ready: {src.name}, {ds.num_images:,} images {tuple(ds.observation_shape)} in {cache_dir(src.name, root)} "
          f"({time.time() - t0:.1f}s)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    src, root = _source(args.name), args.data_root
    have = present_files(src, root)
    if not have and status(src, root) == "missing":
        raise DisentkitError(how_to_get(src, root))
    problems, shas = [], {}
    pins = read_pins(raw_dir(src.name, root))
    for fname, path in have.items():
        try:
            shas[fname] = verify_file(path, src.file_named(fname), path.parent, src.name)  # type: ignore[arg-type]
            how = "" if src.file_named(fname).checksums else " (pinned)" if fname in pins else " (not pinned)"
            print(f"ok {fname} sha256:{shas[fname]}{how}")
        except DisentkitError as e:
            problems.append(str(e))
            print(f"BAD {e}")
    cdir = cache_dir(src.name, root)
    if (cdir / "meta.json").is_file():
        try:
            print(f"ok cache {cdir}: {check_cache(src, cdir, shas, deep=True)}")
        except DisentkitError as e:
            problems.append(f"cache {cdir}: {e}; delete that folder to convert again")
            print(f"BAD cache {cdir}: {e} (delete the folder to convert again)")
    else:
        print(f"not converted yet: {cdir} (converted on first use)")
        for fname in sorted(set(pins) & set(shas)):
            print(f"note: {fname} is pinned but has not converted (pins written before conversion by older disentkit "
                  f"may be of a broken file): convert it with `disentkit datasets download {src.name}{_flag(root)}`, "
                  f"or clear the pin with `disentkit datasets forget {src.name}{_flag(root)}`")
    if problems:
        raise DisentkitError(f"{len(problems)} problem(s) with {src.name}: " + " | ".join(problems))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    src, root = _source(args.name), args.data_root
    if not args.from_file:
        raise DisentkitError("`disentkit datasets import NAME` needs --from-file PATH")
    writable_root(root)
    remote = match_remote(src, args.from_file)
    folder = raw_dir(src.name, root)
    stage = folder.with_name("import.tmp")
    shutil.rmtree(stage, ignore_errors=True)
    try:
        staged = import_file(remote, args.from_file, stage, folder, src.name)
        return _place(src, remote, staged, args)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if stage.parent.is_dir() and not any(stage.parent.iterdir()):
            stage.parent.rmdir()       # a failed first import leaves no empty dataset folder


def _place(src, remote, staged: Path, args: argparse.Namespace) -> int:
    """Convert with the staged import (or keep it when other files are still missing), then move it in place."""
    root, folder = args.data_root, raw_dir(src.name, args.data_root)
    final = folder / remote.filename
    have = {**present_files(src, root), remote.filename: staged}
    if not complete(src, have):
        _move(staged, final)
        print(f"ok {final} ({_checked(remote)})")
        missing = [f.filename for f in src.files if f.filename not in have]
        print(f"still needed for {src.name}: {', '.join(missing)}")
        return 0
    if status(src, root) == "converted" and (sha := _converted_from(src, root, remote.filename, staged)):
        _move(staged, final)
        if not remote.checksums:
            pin(folder, remote.filename, sha)
        print(f"ok {final} (already converted from this file)")
        return _ready(src, root)
    try:
        convert_files(src, have, root, progress=args.progress)
    except ConversionError as e:
        raise DisentkitError(
            f"{args.from_file} did not convert into {src.name}: {e.reason}; nothing was kept, cached or pinned. "
            f"Check that it is the complete published file ({remote.filename} from {remote.urls[0]}), then run "
            f"`disentkit datasets import {src.name} --from-file PATH{_flag(root)}` again") from None
    _move(staged, final)
    print(f"ok {final} (verified{'' if remote.checksums else ', converted and pinned'})")
    return _ready(src, root)


def _move(staged: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    staged.replace(final)


def _converted_from(src, root, filename: str, path: Path) -> str | None:
    """``path``'s sha256 when the cache in place was converted from a file with that checksum, else None."""
    meta = json.loads((cache_dir(src.name, root) / "meta.json").read_text())
    recorded = meta.get("sources", {}).get(filename, {}).get("sha256")
    return recorded if recorded is not None and recorded == hash_file(path)["sha256"] else None


def cmd_forget(args: argparse.Namespace) -> int:
    src, root = _source(args.name), args.data_root
    folder = raw_dir(src.name, root)
    removed = unpin(folder, [f.filename for f in src.files + src.alternatives])
    if not removed:
        why = " (its files have published checksums)" if all(f.checksums for f in src.files) else ""
        print(f"nothing to forget: no checksum of {src.name} is pinned in {folder / PINS}{why}")
        return 0
    for fname, sha in removed.items():
        print(f"forgot {fname} sha256:{sha} (was pinned in {folder / PINS})")
    left = present_files(src, root)
    if left and status(src, root) != "converted":
        print(f"{', '.join(map(str, left.values()))} still there, not converted: `disentkit datasets import "
              f"{src.name} --from-file PATH{_flag(root)}` replaces it")
    print(f"the next import or download of {src.name} is pinned once it converts")
    return 0


ACTIONS = {"list": cmd_list, "info": cmd_info, "download": cmd_download, "verify": cmd_verify,
           "import": cmd_import, "forget": cmd_forget}


def run(args: argparse.Namespace) -> int:
    if args.action != "list" and not args.name:
        raise DisentkitError(f"`disentkit datasets {args.action}` needs a dataset NAME (see `disentkit datasets list`)")
    return ACTIONS[args.action](args)
