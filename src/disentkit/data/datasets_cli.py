"""The ``disentkit datasets`` subcommands: list, info, download, verify, import."""

from __future__ import annotations

import argparse
import json
import time

from ..errors import DisentkitError
from . import DATASETS, get_dataset
from .cache import cache_dir, data_root, load_cache, load_real, present_files, raw_dir, status
from .download import download_file, import_file, match_remote, verify_file
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
        print(json.dumps(get_dataset(name).describe(), indent=1))
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
    folder = raw_dir(src.name, root)
    for f in src.files:
        t0 = time.time()
        path = download_file(f, folder, progress=args.progress, dataset=args.name)
        print(f"ok {path} ({path.stat().st_size:,} bytes, verified, {time.time() - t0:.0f}s)")
    return _convert(src, root, args.progress)


def _convert(src, root, progress: bool) -> int:
    t0 = time.time()
    ds = load_real(src.name, root, progress=progress)
    print(f"ready: {src.name}, {ds.num_images:,} images {tuple(ds.observation_shape)} in {cache_dir(src.name, root)} "
          f"({time.time() - t0:.1f}s)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    src, root = _source(args.name), args.data_root
    have = present_files(src, root)
    if not have and status(src, root) == "missing":
        from .cache import how_to_get
        raise DisentkitError(how_to_get(src, root))
    problems = []
    for fname, path in have.items():
        try:
            sha = verify_file(path, src.file_named(fname), path.parent)  # type: ignore[arg-type]
            print(f"ok {fname} sha256:{sha}")
        except DisentkitError as e:
            problems.append(str(e))
            print(f"BAD {e}")
    cdir = cache_dir(src.name, root)
    if (cdir / "meta.json").is_file():
        try:
            ds = load_cache(cdir)
            if ds.num_images != src.num_images and not src.name.startswith("mpi3d"):
                raise DisentkitError(f"cache holds {ds.num_images:,} images, expected {src.num_images:,}")
            print(f"ok cache {cdir}: {ds.num_images:,} images {tuple(ds.observation_shape)}, "
                  f"factors {dict(zip(ds.factor_names, ds.factor_sizes)) if src.has_factors else 'none'}")
        except (DisentkitError, OSError, ValueError, KeyError) as e:
            problems.append(f"cache {cdir}: {e}")
            print(f"BAD cache {cdir}: {e} (delete the folder to convert again)")
    else:
        print(f"not converted yet: {cdir} (converted on first use)")
    if problems:
        raise DisentkitError(f"{len(problems)} problem(s) with {src.name}: " + " | ".join(problems))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    src, root = _source(args.name), args.data_root
    if not args.from_file:
        raise DisentkitError("`disentkit datasets import NAME` needs --from-file PATH")
    remote = match_remote(src, args.from_file)
    path = import_file(remote, args.from_file, raw_dir(src.name, root))
    print(f"ok {path} (verified)")
    if status(src, root) == "downloaded":
        return _convert(src, root, args.progress)
    missing = [f.filename for f in src.files if f.filename not in present_files(src, root)]
    print(f"still needed for {src.name}: {', '.join(missing)}")
    return 0


ACTIONS = {"list": cmd_list, "info": cmd_info, "download": cmd_download, "verify": cmd_verify,
           "import": cmd_import}


def run(args: argparse.Namespace) -> int:
    if args.action != "list" and not args.name:
        raise DisentkitError(f"`disentkit datasets {args.action}` needs a dataset NAME (see `disentkit datasets list`)")
    return ACTIONS[args.action](args)
