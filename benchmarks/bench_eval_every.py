"""What ``--eval-every N --eval-metrics mig,sap,dci`` costs against the training it interleaves with.

    PYTHONPATH=src python benchmarks/bench_eval_every.py                 # the demo config, 2,000 steps, N = 1,000
    PYTHONPATH=src python benchmarks/bench_eval_every.py --steps 200 --every 100 --quick

Trains the demo configuration (``--config demo``: β-TCVAE on procedural dSprites) twice in this process,
without and with ``--eval-every``, and times every metric evaluation the second run makes (the session's
``log_metrics`` wrapped by a timer here). Prints the mean evaluation time, the training time per N steps of the
run without evaluations, their ratio (the issue's goal: < 10 % at N = 1,000 on CPU), and the two wall times.
Figures are printed, never asserted; the CPU is named beside them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from disentkit.train import session as session_mod  # noqa: E402
from disentkit.train.run import fit  # noqa: E402
from machine import cpu_label  # noqa: E402  (benchmarks/machine.py, beside this script)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--every", type=int, default=1000, help="N of --eval-every")
    ap.add_argument("--metrics", default="mig,sap,dci")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (set explicitly)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: tiny metric samples")
    args = ap.parse_args()

    base = yaml.safe_load((ROOT / "src" / "disentkit" / "configs" / "demo.yaml").read_text())
    base.update(steps=args.steps, threads=args.threads, progress=False, overwrite=True, log_every=50)
    evals: list[float] = []
    inner = session_mod.Session.log_metrics

    def timed(self, i: int) -> None:
        t = time.perf_counter()
        inner(self, i)
        evals.append(time.perf_counter() - t)

    session_mod.Session.log_metrics = timed  # type: ignore[method-assign]
    walls = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra in (("plain", {}), ("eval", {"eval_every": args.every, "eval_metrics": args.metrics})):
            if args.quick and extra:
                extra["eval_params"] = {m: {"num_train": 200} for m in args.metrics.split(",")}
            t = time.perf_counter()
            fit({**base, **extra, "out": str(Path(tmp) / label)}, setup=True)
            walls[label] = time.perf_counter() - t
    per_n = walls["plain"] / args.steps * args.every
    mean_eval = sum(evals) / max(len(evals), 1)
    print(f"# {cpu_label()}; {args.threads} torch threads; demo config, {args.steps} steps; "
          f"--eval-every {args.every} --eval-metrics {args.metrics}")
    print(f"training without evaluations: {walls['plain']:.1f} s ({per_n:.1f} s per {args.every} steps)")
    print(f"training with evaluations:    {walls['eval']:.1f} s ({len(evals)} evaluations: "
          + ", ".join(f"{e:.2f}" for e in evals) + " s)")
    print(f"one evaluation / {args.every} training steps: {mean_eval:.2f} s / {per_n:.1f} s = "
          f"{100 * mean_eval / per_n:.1f} %  (wall-time overhead {100 * (walls['eval'] / walls['plain'] - 1):+.1f} %)")


if __name__ == "__main__":
    main()
