"""Per-metric wall-clock times of the disentkit metrics suite at disentanglement_lib's defaults.

    PYTHONPATH=src python benchmarks/bench_metrics.py --checkpoint /tmp/run --threads 2 --repeats 3

Prints: encoder throughput (plain ``no_grad`` forward in 2048-image batches vs disentkit's
``representation_function``: channels_last, in-place ReLUs, 256-image chunks, inference_mode), then each metric run alone (its own sampling and encoding), then
the whole suite through ``evaluate`` (one shared encoding of the union of images). Without
``--checkpoint`` a randomly initialised Locatello encoder is used (and the table says so). Timings
on a shared machine are noisy: use ``--repeats`` and read the minimum.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from disentkit.data import get_dataset
from disentkit.metrics import METRICS, SPECS, CodeSource, representation_function, resolve_metrics
from disentkit.metrics.utils import run_metrics
from disentkit.models import GaussianVAE


def _time(fn, repeats: int) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def _fmt(times: list[float]) -> str:
    return f"{min(times):8.2f}s" + (f"  (median {statistics.median(times):.2f}s, n={len(times)})" if len(times) > 1 else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="trained run folder or .safetensors (default: random-init encoder)")
    ap.add_argument("--dataset", default="dsprites_procedural")
    ap.add_argument("--metrics", default="all")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (set explicitly)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--skip-suite", action="store_true", help="skip the shared whole-suite run")
    ap.add_argument("--set", action="append", default=[], metavar="METRIC.PARAM=VALUE", help="override a default")
    args = ap.parse_args()
    from disentkit.cli import parse_sets
    from disentkit.train.run import setup_process

    setup_process(args.threads)  # as `disentkit evaluate`: threads, and a heap that keeps freed memory

    params = parse_sets(args.set)
    if args.checkpoint:
        from disentkit.train import load_checkpoint

        vae, what = load_checkpoint(args.checkpoint).vae, f"trained checkpoint {args.checkpoint}"
    else:
        torch.manual_seed(0)
        vae, what = GaussianVAE("locatello", 1, 10).eval(), "random-init Locatello encoder"
    ds = get_dataset(args.dataset)
    names = resolve_metrics(args.metrics)
    print(f"# {what}; dataset {ds.name}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"overrides {params or 'none (dlib defaults)'}")

    # encoder throughput on 10,000 images (rendering excluded)
    x = ds.images_at(torch.as_tensor(ds.factors_to_index(ds.sample_factors(10_000, np.random.default_rng(0)))))
    t = time.perf_counter()
    ds.images_at(torch.as_tensor(ds.factors_to_index(ds.sample_factors(10_000, np.random.default_rng(1)))))
    print(f"render/gather 10k images:             {time.perf_counter() - t:8.2f}s")

    def plain():
        with torch.no_grad():
            return [vae.encoder(x[i:i + 2048])[0] for i in range(0, len(x), 2048)]

    enc = representation_function(vae, "mean")
    print(f"encode 10k, plain no_grad (bs 2048):  {_fmt(_time(plain, args.repeats)[0])}")
    print(f"encode 10k, representation_function:  "
          f"{_fmt(_time(lambda: [enc(x[i:i + 4096]) for i in range(0, len(x), 4096)], args.repeats)[0])}")

    print(f"\n{'metric (alone)':<20}{'time':>9}  {'images encoded':>15}  headline")
    for name in names:
        holder = {}

        def one():
            holder["src"] = CodeSource(enc, ds)
            return run_metrics([SPECS[name]], enc, ds, 0, {name: params.get(name, {})}, holder["src"])[name]

        times, out = _time(one, args.repeats)
        print(f"{name:<20}{_fmt(times)}  {holder['src'].num_encoded:>15,}  {out[name]:.4f}")

    if not args.skip_suite and len(names) > 1:
        holder = {}

        def suite():
            holder["src"] = CodeSource(enc, ds)
            return run_metrics([SPECS[n] for n in names], enc, ds, 0, params, holder["src"])

        times, _ = _time(suite, args.repeats)
        print(f"{'suite (shared)':<20}{_fmt(times)}  {holder['src'].num_encoded:>15,}")


if __name__ == "__main__":
    assert METRICS  # registry imported
    main()
