"""Data path timings: rendering procedural dSprites, materializing it (bit-packed), loading the cache,
and gathering training batches — by index from the packed tensor, from a memory-mapped uint8 file,
and per sample as a ``Dataset.__getitem__`` + ``default_collate`` DataLoader would (the baseline).

    python benchmarks/bench_data.py            # CPU (and CUDA when present)
    python benchmarks/bench_data.py --full     # also render all 737,280 images (≈ 1 min on 1 CPU core)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from disentkit.data import ArrayFactorDataset, get_dataset  # noqa: E402
from disentkit.data.dsprites_procedural import unpack_bits  # noqa: E402

CACHE = ROOT / "runs" / "cache" / "dsprites_procedural_packed.npy"


def timeit(fn, repeats: int, number: int, device: torch.device) -> float:
    """Median seconds per call over ``repeats`` windows of ``number`` calls."""
    fn()
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(number):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append((time.perf_counter() - t) / number)
    return statistics.median(out)


def row(name: str, batch: int, sec: float, base: float | None) -> str:
    ratio = f"{base / sec:8.2f}x" if base else "       -"
    return f"{name:<40}{batch:>7}{sec * 1e3:>11.3f}{batch / sec:>14,.0f}{ratio:>10}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--full", action="store_true", help="time rendering the whole grid (else 1/16 of it)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else args.repeats
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"# bench_data: torch {torch.__version__}, CPU threads {args.threads}"
          + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))

    ds = get_dataset("dsprites_procedural")
    n = ds.num_images
    print(f"\n## materialize dsprites_procedural ({n:,} images, {n * 512 / 2**30:.2f} GiB bit-packed)")
    print(f"{'step':<40}{'device':>7}{'seconds':>11}{'images/s':>14}")
    for dev in devices:
        device = torch.device(dev)
        part = n if (args.full or device.type == "cuda") else n // (64 if args.quick else 16)
        idx = torch.arange(part, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for s in range(0, part, 4096):
            ds.render_factors(ds.index_to_factors(idx[s:s + 4096]))
        if device.type == "cuda":
            torch.cuda.synchronize()
        sec = (time.perf_counter() - t) * n / part
        note = "" if part == n else f" (x{n // part} of {part:,})"
        print(f"{'render full grid' + note:<40}{dev:>7}{sec:>11.2f}{n / sec:>14,.0f}")
    if CACHE.is_file():
        t = time.perf_counter()
        loaded = torch.from_numpy(np.load(CACHE))  # read fully (materialize() memory-maps it lazily)
        sec = time.perf_counter() - t
        print(f"{'load bit-packed cache (np.load)':<40}{'cpu':>7}{sec:>11.2f}{n / sec:>14,.0f}")
        ds.packed = loaded
    else:
        print(f"(no cache at {CACHE.relative_to(ROOT)}: run bench_train.py once, or pass --full to render it)")
        if args.full:
            ds.materialize("cpu", cache_path=CACHE)

    for dev in devices:
        device = torch.device(dev)
        packed = ds.packed if ds.packed is not None else None
        print(f"\n## batches, {dev}  (ms per batch, images/s; ratio over per-sample __getitem__ + collate)")
        print(f"{'path':<40}{'batch':>7}{'ms/batch':>11}{'images/s':>14}{'vs 1-by-1':>10}")
        g = torch.Generator(device=device).manual_seed(0)
        for b in (64, 256):
            def draw() -> torch.Tensor:
                return torch.randint(0, n, (b,), generator=g, device=device)

            base = None
            if packed is not None:
                host = packed.cpu()

                def per_sample() -> torch.Tensor:  # what a map-style Dataset + DataLoader does
                    items = [unpack_bits(host[int(i)]).unsqueeze(0).float() for i in torch.randint(0, n, (b,))]
                    return torch.utils.data.default_collate(items).to(device)

                base = timeit(per_sample, repeats, 3, device)
                print(row("per-sample __getitem__ + collate", b, base, base))
            sec = timeit(lambda: get_dataset("dsprites_procedural").images_at(draw()), repeats, 3, device)
            print(row("render on demand (images_at)", b, sec, base))
            if packed is not None:
                ds.to(device)
                sec = timeit(lambda: ds.images_at(draw()), repeats, 20, device)
                print(row("gather from bit-packed (images_at)", b, sec, base))
        if packed is not None and dev == "cpu":
            with tempfile.TemporaryDirectory() as tmp:
                m = 100_000
                path = Path(tmp) / "images.npy"
                np.save(path, unpack_bits(ds.packed[:m]).numpy())
                mm = np.load(path, mmap_mode="r")
                sub = ArrayFactorDataset("subset", _factors_of(m), mm, scale=1.0)
                ram = ArrayFactorDataset("subset", _factors_of(m), torch.from_numpy(np.array(mm)), scale=1.0)
                for b in (64, 256):
                    def idx() -> torch.Tensor:
                        return torch.randint(0, m, (b,))
                    sec_mm = timeit(lambda: sub.images_at(idx()), repeats, 10, device)
                    sec_ram = timeit(lambda: ram.images_at(idx()), repeats, 10, device)
                    print(row(f"uint8 memmap ({m // 1000}k images, page cache)", b, sec_mm, None))
                    print(row(f"uint8 tensor in RAM ({m // 1000}k images)", b, sec_ram, None))
        ds.to("cpu")


def _factors_of(m: int):
    from disentkit.data import Factor

    return [Factor("index", tuple(float(i) for i in range(m)))]


if __name__ == "__main__":
    main()
