"""Conversion and load times of the dataset caches; prints a table (run: python benchmarks/datasets_bench.py).

Measures, on this machine, one thread:
  * dsprites_procedural: render the full grid to its bit-packed cache, then load the cache;
  * shapes3d_procedural: ray-cast the 480 geometries (the only expensive step), then colour all
    480,000 images (discarded chunk by chunk: the full uint8 set is 5.9 GB), then load the geometry cache;
  * a synthetic dSprites-format .npz of real size (737,280 images, latin1-pickled metadata, deflated
    like the release): write it, convert it into the memory-mapped cache, open the cache, gather batches.
Pass --skip-real-size to leave out the last (it writes ~3 GB to --workdir).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def timed(label: str, rows: list, fn):
    t0 = time.perf_counter()
    out = fn()
    rows.append((label, time.perf_counter() - t0))
    print(f"{label:<62}{rows[-1][1]:>9.2f} s   (peak RSS {rss_gb():.2f} GB)", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--skip-real-size", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="disentkit-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list = []
    from disentkit.data.dsprites_procedural import DSpritesProcedural
    from disentkit.data.shapes3d_procedural import Shapes3DProcedural

    # -------------------------------------------------------------- dsprites_procedural
    cache = work / "dsprites_procedural.npy"
    timed("dsprites_procedural: render 737,280 images -> cache", rows,
          lambda: DSpritesProcedural().materialize(cache_path=cache))
    ds = timed("dsprites_procedural: load cache", rows, lambda: DSpritesProcedural().materialize(cache_path=cache))
    g = torch.Generator().manual_seed(0)
    timed("dsprites_procedural: 1000 batches of 64 from the cache", rows,
          lambda: [ds.images_at(torch.randint(0, ds.num_images, (64,), generator=g)) for _ in range(1000)])

    # -------------------------------------------------------------- shapes3d_procedural
    geo = work / "shapes3d_geometry.npz"
    s3 = Shapes3DProcedural(cache_path=geo)
    timed("shapes3d_procedural: ray-cast 480 geometries (2x2 supersampled)", rows, s3.geometry)

    def colour_all() -> None:
        for geo in range(480):                     # what materialize() does, without keeping 5.9 GB
            s3.render_geometry_all_hues(geo).mul_(255).round_().to(torch.uint8)
    timed("shapes3d_procedural: colour all 480,000 images (uint8)", rows, colour_all)
    s3b = Shapes3DProcedural(cache_path=geo)
    timed("shapes3d_procedural: load geometry cache", rows, s3b.geometry)
    timed("shapes3d_procedural: 1000 batches of 64 (coloured on demand)", rows,
          lambda: [s3b.images_at(torch.randint(0, s3b.num_images, (64,), generator=g)) for _ in range(1000)])

    # -------------------------------------------------------------- real-size dSprites npz
    if not args.skip_real_size:
        from disentkit.data import dsprites
        from disentkit.testing import synthetic
        from disentkit.data.cache import load_cache
        from disentkit.data.registry import SOURCES

        render = DSpritesProcedural()
        npz = work / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"

        def images(index: np.ndarray) -> np.ndarray:
            f = render.index_to_factors(torch.from_numpy(index))
            return render.render_factors(f).numpy().astype(np.uint8)
        timed("dSprites-format npz, real size: write (deflated)", rows,
              lambda: synthetic.write_dsprites_npz(npz, images=images))
        print(f"  file size {npz.stat().st_size / 1e6:.1f} MB")
        out = work / "dsprites" / "cache"
        timed("dSprites-format npz, real size: convert -> memmap cache", rows,
              lambda: dsprites.convert({npz.name: npz}, out, SOURCES["dsprites"]))
        real = timed("dSprites-format npz, real size: open cache (memmap)", rows, lambda: load_cache(out))
        timed("dSprites-format npz, real size: 1000 batches of 64 (memmap)", rows,
              lambda: [real.images_at(torch.randint(0, real.num_images, (64,), generator=g)) for _ in range(1000)])
        same = torch.equal(real.images_at(torch.arange(0, 737_280, 997)), ds.images_at(torch.arange(0, 737_280, 997)))
        print(f"  converted images equal the procedural renders: {same}")
    print("\n| step | seconds |\n|---|---|")
    for label, sec in rows:
        print(f"| {label} | {sec:.2f} |")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
