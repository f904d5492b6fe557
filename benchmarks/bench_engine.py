"""The one training engine measured: its own cost per step, and its speed beside the Lightning Trainer path
it replaced, in the same run.

* **loop cost**: a tiny model (64×64 → 8×8 pooling encoder, linear layers, blank images) through ``fit`` (the
  loop: logging, checkpoint checks, progress bar, callbacks) against the same step called bare in a plain
  Python loop (batches, noise, step). The difference is the loop's own cost, in µs a step (goal ≤ 50 µs:
  < 15 % of a 3,000-steps/s GPU step).
* **old vs new** (``--old-src PATH``: a checkout of the Trainer-path commit, e.g. ``git worktree add
  ../old e572e1e``): ``fit()`` of the same configs, old code and new, each in a fresh process, the steps
  after a warm-up timed by a callback (the old path's a Lightning callback added to the Trainer ``fit``
  makes, the engine's ``fit(callbacks=...)``); rounds interleaved. Ratio ≥ 0.95 is the goal.

    python benchmarks/bench_engine.py --old-src ../old/src            # both parts
    python benchmarks/bench_engine.py --skip old                      # the loop cost only
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: the configs compared, old vs new (β = 4 where it applies; batch 64)
CASES = {
    "beta_vae": {"model": "beta_vae", "hparams": {"beta": 4.0}},
    "beta_vae --channels-last": {"model": "beta_vae", "hparams": {"beta": 4.0}, "channels_last": True},
    "factor_vae": {"model": "factor_vae"},
    "ensemble M=2 (beta_vae)": {"model": "beta_vae", "hparams": {"beta": 4.0}, "ensemble": ["seed=0,1"]},
    "ensemble M=4 (beta_vae)": {"model": "beta_vae", "hparams": {"beta": 4.0}, "ensemble": ["seed=0,1,2,3"]},
}

TIMED_FIT = r"""
import json, sys, tempfile, time, torch
torch.set_num_threads(int(sys.argv[2]))
import disentkit.train.run as run
from disentkit.train import TrainConfig, fit
run.keep_freed_memory()
spec, warmup = json.loads(sys.argv[1]), int(sys.argv[3])
marks = []
if hasattr(run, "make_trainer"):  # the Trainer path: a Lightning callback added to the trainer fit() makes
    import lightning as L

    class Marks(L.Callback):
        def on_train_batch_end(self, *args):
            marks.append(time.perf_counter())

    real = run.make_trainer
    run.make_trainer = lambda config, run_dir, device, callbacks, *a, **k: real(
        config, run_dir, device, [*callbacks, Marks()], *a, **k)
    kwargs = {}
else:                             # the engine: fit's own callbacks
    kwargs = {"callbacks": [lambda step, logs: marks.append(time.perf_counter())]}
with tempfile.TemporaryDirectory() as tmp:
    fit(TrainConfig(out=tmp + "/run", progress=False, log_every=50, checkpoint_every=100000, **spec), **kwargs)
print("SECONDS", (marks[-1] - marks[warmup]) / (len(marks) - 1 - warmup))
"""


def timed_fit(src: Path, spec: dict, threads: int, warmup: int) -> float:
    """Seconds a step of ``fit(spec)`` after ``warmup`` steps, in a fresh process importing disentkit from
    ``src`` (timed by a callback: start-up and the last step's saving are left out)."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    res = subprocess.run([sys.executable, "-c", TIMED_FIT, json.dumps(spec), str(threads), str(warmup)],
                         capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    for line in res.stdout.splitlines():
        if line.startswith("SECONDS"):
            return float(line.split()[1])
    raise RuntimeError((res.stderr.strip().splitlines() or ["no output"])[-1])


def old_vs_new(old_src: Path, threads: int, steps: int, warmup: int, repeats: int, batch: int) -> None:
    new_src = ROOT / "src"
    print(f"\n## old Trainer path vs the engine: fit() of the same config, batch {batch}, {steps} steps, the mean "
          f"step after {warmup} timed by a callback; {repeats} interleaved rounds, each fit in its own process")
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(repeats):
        for case, spec in CASES.items():
            for which, src in (("old", old_src), ("new", new_src)):
                sec = timed_fit(src, {**spec, "steps": steps, "batch_size": batch}, threads, warmup)
                times.setdefault((case, which), []).append(sec)
    print(f"{'case':<28}{'old steps/s':>12}{'new steps/s':>12}{'new/old best':>14}{'new/old median':>16}")
    for case, spec in CASES.items():
        old, new = times[(case, "old")], times[(case, "new")]
        m = len(spec["ensemble"][0].split("=")[1].split(",")) if "ensemble" in spec else 1
        print(f"{case:<28}{m / min(old):>12.2f}{m / min(new):>12.2f}{min(old) / min(new):>13.2f}x"
              f"{statistics.median(old) / statistics.median(new):>15.2f}x", flush=True)
    print("(steps/s of the ensembles count member-steps: M models trained at once)")


def loop_cost(threads: int, steps: int, repeats: int) -> None:
    """The loop's own µs a step: fit() of a tiny model against its step called bare (same batches)."""
    import numpy as np
    import torch
    from torch import nn

    from disentkit.data import DATASETS, DatasetEntry, Factor, FactorDataset
    from disentkit.models import ARCHITECTURES
    from disentkit.train import TrainConfig, fit
    from disentkit.train.loop import bare_steps
    from disentkit.train.session import Session

    torch.set_num_threads(threads)

    class Tiny(nn.Module):
        def __init__(self, latent: int) -> None:
            super().__init__()
            self.pool, self.mu, self.logvar = nn.AvgPool2d(8), nn.Linear(64, latent), nn.Linear(64, latent)

        def forward(self, x):
            h = self.pool(x).flatten(1)
            return self.mu(h), self.logvar(h)

    def tiny(channels: int, latent: int):
        dec = nn.Sequential(nn.Linear(latent, 64), nn.Unflatten(1, (1, 8, 8)), nn.Upsample(scale_factor=8))
        return Tiny(latent), dec

    class Blank(FactorDataset):
        """1,000 blank 64×64 images: a batch costs nothing to gather, so the step is small."""

        name = "blank_bench"
        factors = (Factor("i", tuple(float(v) for v in range(1000))),)

        def _gather(self, index):
            return torch.zeros(len(index), 1, 64, 64)

    ARCHITECTURES["tiny_bench"] = tiny
    DATASETS.register(DatasetEntry("blank_bench", Blank, "benchmark only", procedural=True))
    print(f"\n## the loop's own cost: a tiny model (pooling encoder, linear decoder, blank images), batch 16, "
          f"{steps * repeats} steps (µs a step)")
    with tempfile.TemporaryDirectory() as tmp:
        # checkpoints (about 20 a run, by default) are timed apart below: a per-run cost, not a per-step one
        cfg = TrainConfig(architecture="tiny_bench", dataset="blank_bench", batch_size=16, steps=steps, log_every=50,
                          progress=True, checkpoint_every=steps, hparams={"beta": 1.0}, out=tmp + "/run",
                          overwrite=True)
        (Path(tmp) / "bare").mkdir()
        bare_cfg = TrainConfig(**{**cfg.to_dict(), "out": tmp + "/bare"}).validate()
        real_step = Session.step
        for stub in (False, True):
            if stub:  # the step replaced by one returning a real step's logs: only the loop is left to time
                s0 = Session.open(bare_cfg, [bare_cfg], Path(tmp) / "bare", resume=False)
                logs = real_step(s0, s0.batches.next(), s0.members.draw_noise(16))
                Session.step = lambda self, batch, noise: logs
            # windows of W steps through the loop alternate, in the same process, with W steps of the same
            # step called bare (from a callback, on a second session): each pair saw the same machine load
            bare_s = Session.open(bare_cfg, [bare_cfg], Path(tmp) / "bare", resume=False)
            window, pairs = max(50, steps // 20), []
            clock: dict[str, float] = {}

            def alternate(i: int, logs: dict) -> None:
                if (i + 1) % window:
                    return
                now = time.perf_counter()
                engine = (now - clock["t"]) / window if "t" in clock else None
                bare = bare_steps(bare_s, window)           # under the loop's deterministic setting
                if engine is not None:
                    pairs.append((engine, bare))
                clock["t"] = time.perf_counter()

            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                fit(TrainConfig(**{**cfg.to_dict(), "steps": steps * repeats, "hparams": {"beta": 1.0}}),
                    callbacks=[alternate])                   # progress bar on, into a buffer
            Session.step = real_step
            for lg in bare_s.all_loggers():
                lg.finalize("success")
            pairs = pairs[len(pairs) // 5:]                 # the first fifth: warm-up
            diff = [e - b for e, b in pairs]
            what = "a stub step (the loop alone)" if stub else "the tiny model's step"
            e_med, b_med = (statistics.median(x[k] for x in pairs) * 1e6 for k in (0, 1))
            print(f"{what:<30}through fit {e_med:>8.1f}, bare {b_med:>8.1f}: loop cost "
                  f"{statistics.median(diff) * 1e6:>6.1f} µs/step (median of {len(pairs)} paired windows of {window}; "
                  f"quartiles "
                  f"{np.percentile(diff, 25) * 1e6:.0f}..{np.percentile(diff, 75) * 1e6:.0f}; goal ≤ 50)", flush=True)
        for name, model in (("tiny model", "tiny_bench"), ("Locatello β-VAE", "locatello")):
            ck_cfg = TrainConfig(**{**cfg.to_dict(), "architecture": model, "dataset": "dsprites_procedural",
                                    "out": tmp + "/ck"}).validate()
            (Path(tmp) / "ck").mkdir(exist_ok=True)
            s = Session.open(ck_cfg, [ck_cfg], Path(tmp) / "ck", resume=False)
            bare_steps(s, 2)
            t = time.perf_counter()
            for _ in range(5):
                s.checkpoint()
            ms = (time.perf_counter() - t) / 5 * 1e3
            size = (Path(tmp) / "ck" / "training_state.pt").stat().st_size / 1e6
            print(f"checkpoint, {name:<16}{ms:>8.1f} ms  ({size:.1f} MB state + last.safetensors, fsync'd; "
                  f"about 20 a run)", flush=True)
            for lg in s.all_loggers():
                lg.finalize("success")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-src", type=Path, help="src/ folder of the Trainer-path checkout to compare with")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (set deliberately: shared machines)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=50, help="steps of each old-vs-new fit (after --warmup more)")
    ap.add_argument("--warmup", type=int, default=10, help="steps of each old-vs-new fit left out of its timing")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--loop-steps", type=int, default=3000)
    ap.add_argument("--skip", default="", help="comma list: loop,old")
    ap.add_argument("--quick", action="store_true", help="smoke run: few steps, one round")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    skip = set(args.skip.split(","))
    import torch

    from machine import cpu_label  # benchmarks/machine.py, beside this script

    print(f"# bench_engine: torch {torch.__version__}, CPU {cpu_label()}, threads {args.threads}")
    if args.quick:
        args.repeats, args.loop_steps, args.steps, args.warmup = 1, 200, 4, 2
    if "loop" not in skip:
        loop_cost(args.threads, args.loop_steps, args.repeats)
    if "old" not in skip and args.old_src:
        old_vs_new(args.old_src.resolve(), args.threads, args.steps + args.warmup, args.warmup, args.repeats,
                   args.batch)
    elif "old" not in skip:
        print("\n# old vs new skipped: give --old-src PATH (src/ of the Trainer-path commit)")


if __name__ == "__main__":
    main()
