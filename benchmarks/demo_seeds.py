"""The demo's result as it is: `--config demo` trained for 3 seeds, MIG per seed and per factor beside the
same models untrained, on the CPU this runs on (named, since oneDNN's kernels and so the numbers differ between
CPU kinds; same CPU kind and thread count, same numbers).

    python benchmarks/demo_seeds.py                      # seeds 42 (the demo's), 1, 2; 2 threads
    python benchmarks/demo_seeds.py --seeds 42,1,2,3 --set steps=3000 --set lr=0.0005
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from disentkit.evaluate import evaluate_checkpoint  # noqa: E402
from disentkit.train import fit  # noqa: E402


def cpu_model() -> str:
    out = subprocess.run("lscpu", capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = fields.get("Flags", "")
    isa = ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags.split())
    return f"{fields.get('Model name', '?').strip()} ({isa}; {fields.get('CPU(s)', '?').strip()} CPUs)"


def run_seed(config: dict, seed: int, folder: Path) -> dict:
    t = time.time()
    run = fit({**config, "seed": seed, "out": str(folder / f"seed{seed}"), "overwrite": True, "progress": False},
              setup=True)
    seconds = time.time() - t
    record, _ = evaluate_checkpoint(run, "mig", baseline=True)
    trained, untrained = record["results"]["mig"], record["untrained"]["mig"]
    return {"seed": seed, "seconds": seconds, "mig": trained["mig"], "untrained": untrained["mig"],
            "per_factor": trained["mig_per_factor"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "src" / "disentkit" / "configs" / "demo.yaml"))
    ap.add_argument("--seeds", default="42,1,2")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the demo's default: one per core)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    args = ap.parse_args(argv)
    config = yaml.safe_load(Path(args.config).read_text())
    for kv in args.set:
        k, _, v = kv.partition("=")
        config[k] = yaml.safe_load(v)
    config["threads"] = args.threads
    print(f"demo_seeds: {cpu_model()}; {Path(args.config).name} {' '.join(args.set)}; threads {args.threads}",
          flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            rows.append(run_seed(config, seed, Path(tmp)))
            r = rows[-1]
            print(f"seed {seed}: MIG {r['mig']:.4f} trained / {r['untrained']:.4f} untrained "
                  f"({r['mig'] / max(r['untrained'], 1e-12):.1f}×) in {r['seconds']:.0f} s", flush=True)
    factors = list(rows[0]["per_factor"])
    print(f"\n| seed | MIG trained | untrained | ratio | training | {' | '.join(factors)} |")
    print("|---|---|---|---|---|" + "---|" * len(factors))
    for r in rows:
        print(f"| {r['seed']} | {r['mig']:.4f} | {r['untrained']:.4f} | {r['mig'] / max(r['untrained'], 1e-12):.1f}× | "
              f"{r['seconds']:.0f} s | " + " | ".join(f"{r['per_factor'][f]:.3f}" for f in factors) + " |")
    mig = [r["mig"] for r in rows]
    worst = min(r["mig"] / max(r["untrained"], 1e-12) for r in rows)
    print(f"\nMIG over seeds: median {statistics.median(mig):.4f}, range {min(mig):.4f}–{max(mig):.4f}; "
          f"smallest trained/untrained ratio {worst:.1f}× ({'≥' if worst >= 2 else '<'} 2×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
