"""Converting verified raw files into the cache: checked first, then pinned, then moved into place.

The converter writes into ``<dataset>/cache.new``; the result is checked against what the loader
expects (:func:`~disentkit.data.cache_check.check_cache`); only then are files without a published
checksum pinned and the folder renamed to ``<dataset>/cache``. A conversion that fails leaves no
cache, no partial folder and no pin behind, and raises :class:`ConversionError`.
"""

from __future__ import annotations

import errno
import json
import shutil
import sys
import tarfile
import time
import zipfile
import zlib
from pathlib import Path

from ..errors import DisentkitError
from .cache import CONVERTERS, Converter, cache_dir, raw_dir
from .cache_check import cache_digests, check_cache
from .download import verify_file
from .pins import pin, read_pins
from .registry import DatasetSource


class ConversionError(DisentkitError):
    """Files that verified but did not convert (or converted into something the loader does not expect)."""

    def __init__(self, dataset: str, files: dict[str, Path], reason: str) -> None:
        self.dataset, self.files, self.reason = dataset, dict(files), reason
        super().__init__(f"{', '.join(str(p) for p in files.values())} did not convert into {dataset}: {reason}")


FORMAT_ERRORS = ((zipfile.BadZipFile, "not a complete zip (.npz) archive"),
                 (tarfile.TarError, "not a complete tar archive"),
                 (EOFError, "the data ends early"), (zlib.error, "corrupt compressed data"))


def one_line(e: BaseException) -> str:
    """An exception as one line: a :class:`DisentkitError`'s message, else what it means and ``(Type: message)``."""
    if isinstance(e, DisentkitError):
        text = str(e)
    else:
        what = next((w for t, w in FORMAT_ERRORS if isinstance(e, t)), "")
        text = f"{what} ({type(e).__name__}: {e})" if what else f"{type(e).__name__}: {e}"
    return " ".join(text.split()).rstrip(".")


def convert_files(source: DatasetSource, files: dict[str, Path], root: str | Path | None = None,
                  convert: Converter | None = None, progress: bool = True) -> Path:
    """Verify ``files`` (file name -> path), convert, check, pin; returns the cache folder now in place.

    Raises :class:`ConversionError` (nothing cached or pinned) when the converter fails or its
    output is not the grid the loader expects; a file failing its checksum raises as in
    :func:`~disentkit.data.download.verify_file`.
    """
    raw = raw_dir(source.name, root)
    shas = {f: verify_file(p, source.file_named(f), raw, source.name)  # type: ignore[arg-type]
            for f, p in files.items()}
    cdir = cache_dir(source.name, root)
    stage = cdir.with_name(cdir.name + ".new")
    convert = convert or CONVERTERS[source.name]
    clear_partial(stage)
    t0 = time.time()
    if progress:
        print(f"converting {source.name} into {cdir} (once) ...", file=sys.stderr)
    try:
        convert(files, stage, source)
        check_cache(source, stage)
        meta = json.loads((stage / "meta.json").read_text())
        meta["sources"] = {f: {"sha256": sha} for f, sha in shas.items()}
        meta["cache_sha256"] = cache_digests(stage)
        meta["conversion_seconds"] = round(time.time() - t0, 2)
        (stage / "meta.json").write_text(json.dumps(meta, indent=1))
    except BaseException as e:
        clear_partial(stage)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):   # not the files' fault: keep them
            raise DisentkitError(f"no space left to convert {source.name} into {cdir} (about "
                                 f"{source.cache_bytes / 1e9:.1f} GB needed): free some or choose another "
                                 f"--data-root; nothing was cached or pinned") from e
        if isinstance(e, Exception):       # user-supplied bytes: any other failure means "did not convert"
            raise ConversionError(source.name, files, one_line(e)) from e
        raise
    pins = read_pins(raw)
    for f, sha in shas.items():
        if not source.file_named(f).checksums and pins.get(f) != sha:  # type: ignore[union-attr]
            pin(raw, f, sha)
    shutil.rmtree(cdir, ignore_errors=True)
    stage.replace(cdir)
    return cdir


def clear_partial(stage: Path) -> None:
    """Remove a staging cache folder, its ``.part`` and a converter's ``extract.tmp`` next to it."""
    for p in (stage, stage.with_name(stage.name + ".part"), stage.parent / "extract.tmp"):
        shutil.rmtree(p, ignore_errors=True)
