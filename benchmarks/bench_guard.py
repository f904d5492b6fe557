"""The non-finite guard's cost on a training step: the same ``fit()`` with the guard as shipped and with
its per-step record (``Guard.update``: a stack, an ``isfinite`` and two ``where`` on the device) made a
no-op, rounds interleaved, in one process. Goal: within noise (ratio ≥ 0.98).

    python benchmarks/bench_guard.py                      # beta_vae, batch 64, 2 threads, 3 rounds
    python benchmarks/bench_guard.py --model factor_vae --rounds 5
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def cpu_model() -> str:
    out = subprocess.run("lscpu", capture_output=True, text=True).stdout
    return next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")


def steps_per_second(model: str, steps: int, warmup: int, threads: int, device: str) -> float:
    """Steps/s of ``fit()`` after ``warmup`` steps, timed by a callback."""
    from disentkit.train import TrainConfig, fit

    marks: dict[int, float] = {}

    def mark(step, logs) -> None:
        if step in (warmup, steps - 1):      # the callback's step counts from 0
            if device.startswith("cuda"):
                import torch
                torch.cuda.synchronize()
            marks[step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        fit(TrainConfig(model=model, steps=steps, batch_size=64, threads=threads, progress=False, device=device,
                        log_every=50, checkpoint_every=steps, out=f"{tmp}/run"), callbacks=[mark])
    return (steps - 1 - warmup) / (marks[steps - 1] - marks[warmup])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="beta_vae")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import torch

    from disentkit.train import guard
    from disentkit.train.run import setup_process

    setup_process(args.threads)
    shipped = guard.Guard.update
    rates: dict[str, list[float]] = {"guard": [], "no guard": []}
    for _ in range(args.rounds):
        for name in rates:
            guard.Guard.update = shipped if name == "guard" else (lambda self, *a, **k: None)
            rates[name].append(steps_per_second(args.model, args.steps, args.warmup, args.threads, args.device))
    guard.Guard.update = shipped
    on, off = statistics.median(rates["guard"]), statistics.median(rates["no guard"])
    print(f"CPU: {cpu_model()}; torch {torch.__version__}; {args.model}, batch 64, {args.threads} threads, "
          f"device {args.device}, {args.steps - args.warmup} timed steps x {args.rounds} rounds (interleaved)")
    for name, r in rates.items():
        print(f"  {name:<9} {statistics.median(r):7.2f} steps/s  (rounds: {', '.join(f'{x:.2f}' for x in r)})")
    print(f"  ratio guard / no guard: {on / off:.3f}")


if __name__ == "__main__":
    main()
