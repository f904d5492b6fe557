"""CPU encoder throughput: memory layout and chunk size, on an idle machine and with both cores busy.

    PYTHONPATH=src python benchmarks/bench_encode.py --threads 2
    PYTHONPATH=src python benchmarks/bench_encode.py --checkpoint runs/demo --chunks 128,256,1024,4096

Encodes 10,000 dSprites-sized images (1×64×64) with the Locatello encoder under ``inference_mode``:
a plain forward in 2,048-image batches, then channels_last with in-place ReLUs (what
``representation_function`` does on a CPU) at each chunk size, then ``representation_function``
itself (``CPU_CHUNK``). "busy" starts one single-threaded float32 matmul loop per core in other
processes, as a sweep's other workers would. Each figure is the minimum of ``--repeats`` after a
warm-up; the CPU model is printed with them. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing as mp
import os
import time

import torch

from disentkit.metrics.utils import CPU_CHUNK, representation_function
from disentkit.models import GaussianVAE
from machine import cpu_label  # noqa: E402  (benchmarks/machine.py, beside this script)


def _burn(stop) -> None:
    """One core's worth of float32 matmuls until ``stop`` is set (the "busy" condition)."""
    torch.set_num_threads(1)
    a = torch.randn(512, 512)
    while not stop.is_set():
        a = torch.tanh(a @ a)


def _variants(vae: torch.nn.Module, chunks: list[int]) -> dict:
    plain = copy.deepcopy(vae.encoder).eval()
    fast = copy.deepcopy(vae.encoder).eval().to(memory_format=torch.channels_last)
    for m in fast.modules():
        if isinstance(m, torch.nn.ReLU):
            m.inplace = True

    def batched(enc, size, layout):
        def run(x):
            return torch.cat([enc(x[i:i + size].contiguous(memory_format=layout))[0] for i in range(0, len(x), size)])
        return run

    out = {"plain forward, batches of 2048": batched(plain, 2048, torch.contiguous_format)}
    for c in chunks:
        out[f"channels_last + in-place ReLU, chunks of {c}"] = batched(fast, c, torch.channels_last)
    rep = representation_function(vae)
    out[f"representation_function (CPU_CHUNK = {CPU_CHUNK})"] = lambda x: rep(x)
    return out


def _measure(fns: dict, x: torch.Tensor, repeats: int) -> dict:
    res = {}
    for name, fn in fns.items():
        with torch.inference_mode():
            fn(x[:2048])
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                fn(x)
                times.append(time.perf_counter() - t)
        res[name] = min(times)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="trained run folder (default: a randomly initialised encoder; same FLOPs)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--chunks", default="128,256,512,1024,4096")
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--default-heap", action="store_true",
                    help="leave glibc's malloc as it is (default: keep freed memory, as `disentkit evaluate` does)")
    args = ap.parse_args()
    if args.default_heap:
        torch.set_num_threads(args.threads)
    else:
        from disentkit.train.run import setup_process
        setup_process(args.threads)  # as `disentkit evaluate`: threads, and a heap that keeps freed memory
    torch.manual_seed(0)
    if args.checkpoint:
        from disentkit.train import load_checkpoint
        vae = load_checkpoint(args.checkpoint).vae
    else:
        vae = GaussianVAE(latent_dim=10, channels=1)
    x = torch.rand(args.images, 1, 64, 64)
    fns = _variants(vae, [int(c) for c in args.chunks.split(",")])
    idle = _measure(fns, x, args.repeats)
    stop = mp.Event()
    burners = [mp.Process(target=_burn, args=(stop,), daemon=True) for _ in range(os.cpu_count() or 2)]
    for p in burners:
        p.start()
    time.sleep(1.0)
    try:
        busy = _measure(fns, x, args.repeats)
    finally:
        stop.set()
        for p in burners:
            p.join()
    print(f"{cpu_label()}; {args.threads} torch threads; {args.images:,} images of 1x64x64, min of {args.repeats}; "
          f"busy = {len(burners)} single-threaded matmul processes; "
          f"heap: {'glibc default' if args.default_heap else 'kept (as disentkit evaluate)'}")
    print(f"{'variant':<52}{'idle':>9}{'busy':>9}{'idle img/s':>12}")
    for name in fns:
        print(f"{name:<52}{idle[name]:>8.2f}s{busy[name]:>8.2f}s{args.images / idle[name]:>12,.0f}")


if __name__ == "__main__":
    main()
