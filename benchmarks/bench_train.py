"""Training throughput: steps/s and images/s of disentkit's training paths against two baselines
measured in the same run on the same data.

* ``eager loop``   — a plain PyTorch loop written here: the same Locatello conv VAE as plain
  ``nn.Sequential``, batches gathered by index, Adam; a ``loss.item()`` every 50 steps.
* ``lightning+DL`` — the straightforward Lightning implementation: a ``Dataset`` with a per-sample
  ``__getitem__``, a ``DataLoader`` (shuffle, batch collation), ``self.log`` of every term each step.
* ``disentkit …``  — ``disentkit train`` itself (``fit``: the engine's loop, step and batches), plain and
  with each speed option (channels_last, bf16-mixed, torch.compile, CUDA graphs).
* ``ensemble M=…`` — fused ensembles (the same engine with stacked members): aggregate images/s of M
  members against M single models (the eager loop's images/s); for FactorVAE, against M single
  ``disentkit train --model factor_vae`` runs (its discriminator step has no eager-loop twin here).
* ``stacked fwd+bwd`` — how to stack M models: vmap over functional_call (what ensembles use),
  explicit grouped convolutions, and a Python loop over M models.

Data: procedural dSprites rendered once (cached bit-packed under runs/cache/), all paths gather
from the same tensor. Each figure is the best of ``--repeats`` timed windows after warm-up, the variants interleaved
round by round (drifting load on a shared machine then hits them alike); the single-model table also gives the
ratio of the medians. On a CPU each of its windows runs in a fresh process: ``disentkit train`` sets its
process's heap to keep freed memory (``train/run.py``: ``keep_freed_memory``), the baselines do not.
``benchmarks/bench_engine.py`` sets the engine beside the Trainer path it replaced.

    python benchmarks/bench_train.py                  # CPU (and CUDA when present), batch 64 and 256
    python benchmarks/bench_train.py --quick          # a smoke run (few steps)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import lightning as L  # noqa: E402

from disentkit.data import get_dataset  # noqa: E402
from disentkit.models import OBJECTIVES  # noqa: E402
from disentkit.train import TrainConfig, fit  # noqa: E402
from disentkit.train.run import keep_freed_memory, quiet_lightning  # noqa: E402

CACHE = ROOT / "runs" / "cache" / "dsprites_procedural_packed.npy"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_data(device: torch.device, verbose: bool = True):
    """Procedural dSprites, materialized once (bit-packed, cached on disk) and held on ``device``."""
    ds = get_dataset("dsprites_procedural")
    t = time.perf_counter()
    ds.materialize(device, chunk=8192, cache_path=CACHE)  # renders on the device when there is no cache
    if verbose:
        print(f"# data: dsprites_procedural, {ds.num_images:,} images, bit-packed on {device} "
              f"({time.perf_counter() - t:.1f}s to render or load {CACHE.relative_to(ROOT)})")
    return ds


# ----------------------------------------------------------------------------- the baselines
def plain_vae(latent: int = 10) -> tuple[nn.Module, nn.Module]:
    """Locatello et al. 2019's conv VAE (the same as disentkit's ``locatello``), as plain layers."""
    enc = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),
                        nn.Conv2d(32, 64, 2, 2), nn.ReLU(), nn.Conv2d(64, 64, 2, 2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(1024, 256), nn.ReLU(), nn.Linear(256, 2 * latent))
    dec = nn.Sequential(nn.Linear(latent, 256), nn.ReLU(), nn.Linear(256, 1024), nn.ReLU(),
                        nn.Unflatten(1, (64, 4, 4)), nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),
                        nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 32, 4, 2, 1),
                        nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1))
    return enc, dec


def plain_loss(enc: nn.Module, dec: nn.Module, x: torch.Tensor, beta: float = 4.0):
    mu, logvar = enc(x).chunk(2, 1)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    logits = dec(z)
    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
    kl = 0.5 * (mu.square() + logvar.exp() - logvar - 1).sum(1).mean()
    return rec + beta * kl, rec, kl


# ----------------------------------------------------------------------------- the compute ceiling
def step_gflop(batch: int) -> float:
    """GFLOP of one β-VAE training step (forward + backward, convolutions and matmuls), as PyTorch's
    FlopCounterMode counts them; the first layer's input gradient is not computed, so not counted."""
    from torch.utils.flop_counter import FlopCounterMode

    enc, dec = plain_vae()
    x = torch.zeros(batch, 1, 64, 64)
    with FlopCounterMode(display=False) as counter:
        plain_loss(enc, dec, x)[0].backward()
    return counter.get_total_flops() / 1e9


def matmul_peak(device: torch.device, n: int = 1024, reps: int = 20) -> float:
    """GFLOP/s of a float32 n×n matmul on ``device`` (best of 5): what this machine's BLAS sustains."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(5):
        sync(device)
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - t) / reps)
    return 2 * n ** 3 / best / 1e9


def time_eager_loop(ds, device, batch: int, steps: int, warmup: int, repeats: int) -> list[float]:
    """Seconds per step of the plain eager loop, one figure per timed window."""
    enc, dec = (m.to(device) for m in plain_vae())
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-4)
    n = ds.num_images

    def run(k: int) -> None:
        for i in range(k):
            x = ds.images_at(torch.randint(0, n, (batch,), device=device), check=False)
            loss, _, _ = plain_loss(enc, dec, x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i % 50 == 0:
                loss.item()

    run(warmup)
    out = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        run(steps)
        sync(device)
        out.append((time.perf_counter() - t) / steps)
    return out


class PerSampleDataset(torch.utils.data.Dataset):
    """The straightforward dataset: one image per ``__getitem__`` (collated by the DataLoader)."""

    def __init__(self, ds) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return self.ds.num_images

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.ds.images_at(torch.tensor([i]))[0]


class PlainLightningVAE(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.enc, self.dec = plain_vae()

    def training_step(self, x, batch_idx):
        loss, rec, kl = plain_loss(self.enc, self.dec, x)
        self.log_dict({"train/loss": loss, "train/reconstruction": rec, "train/kl": kl}, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-4)


class StepTimer:
    """Times ``repeats`` windows of ``steps`` training batches after ``warmup`` batches: a Lightning callback
    for the baseline, and a ``fit(callbacks=...)`` function for disentkit's engine."""

    def __init__(self, warmup: int, steps: int, repeats: int, device: torch.device) -> None:
        self.warmup, self.steps, self.repeats, self.device = warmup, steps, repeats, device
        self.times: list[float] = []
        self._t = 0.0
        self._seen = 0

    def _tick(self) -> None:
        """After each batch: close a window, open the next."""
        self._seen += 1
        k = self._seen - self.warmup
        if k >= 0 and k % self.steps == 0 and len(self.times) <= self.repeats:
            sync(self.device)
            now = time.perf_counter()
            if k > 0:
                self.times.append((now - self._t) / self.steps)
            self._t = now

    def __call__(self, step: int, logs: dict) -> None:  # fit(callbacks=[timer])
        self._tick()

    def callback(self) -> L.Callback:
        timer = self

        class _Lightning(L.Callback):
            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
                timer._tick()

        return _Lightning()

    @property
    def total(self) -> int:
        return self.warmup + self.steps * self.repeats


def time_lightning_dataloader(ds, device, batch: int, steps: int, warmup: int, repeats: int) -> list[float]:
    timer = StepTimer(warmup, steps, repeats, device)
    host = ds if device.type == "cpu" else _host_copy(ds)
    loader = torch.utils.data.DataLoader(PerSampleDataset(host), batch_size=batch, shuffle=True, drop_last=True)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(max_steps=timer.total, accelerator="gpu" if device.type == "cuda" else "cpu",
                            devices=1, default_root_dir=tmp, callbacks=[timer.callback()], enable_progress_bar=False,
                            enable_checkpointing=False, enable_model_summary=False)
        trainer.fit(PlainLightningVAE(), train_dataloaders=loader)
    return timer.times


def _host_copy(ds):
    host = get_dataset("dsprites_procedural")
    host.packed = ds.packed.cpu()
    return host


def base_config(batch: int, model: str, **kw) -> TrainConfig:
    hp = {"beta": 4.0} if model == "beta_vae" else {}
    return TrainConfig(model=model, batch_size=batch, log_every=50, progress=False, threads=0,
                       hparams=hp, **kw).validate()


def same_data(ds) -> str:
    """Register ``ds`` (the bit-packed grid every path here gathers from) under a name ``fit`` can train on,
    so that the engine's rows see the baselines' data path."""
    from disentkit.data import DATASETS, DatasetEntry

    DATASETS.register(DatasetEntry("dsprites_packed_bench", lambda: ds, "benchmark: the packed grid", procedural=True))
    return "dsprites_packed_bench"


def time_disentkit(ds, device, batch: int, steps: int, warmup: int, repeats: int, model: str = "beta_vae",
                   **options) -> list[float]:
    """``disentkit train``'s path (``fit``: the engine's loop), with speed options, on ``ds``."""
    timer = StepTimer(warmup, steps, repeats, device)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = base_config(batch, model, steps=timer.total, out=str(Path(tmp) / "run"), device=str(device),
                          checkpoint_every=timer.total, dataset=same_data(ds), **options)
        with contextlib.redirect_stdout(io.StringIO()):  # the run's last line
            fit(cfg, callbacks=[timer])
    return timer.times


def time_ensemble(ds, device, batch: int, members: int, steps: int, warmup: int, repeats: int,
                  rng: str = "member", model: str = "beta_vae") -> list[float]:
    timer = StepTimer(warmup, steps, repeats, device)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = base_config(batch, model, steps=timer.total, out=str(Path(tmp) / "ens"), device=str(device),
                          checkpoint_every=timer.total, ensemble=[f"seed={','.join(str(i) for i in range(members))}"],
                          ensemble_rng=rng, dataset=same_data(ds))
        with contextlib.redirect_stdout(io.StringIO()):
            fit(cfg, callbacks=[timer])
    return timer.times


# ----------------------------------------------------------------------------- stacking, forward + backward
class GroupedVAE(nn.Module):
    """M Locatello VAEs written as grouped convolutions (groups=M) and batched matmuls."""

    def __init__(self, m: int, latent: int = 10) -> None:
        super().__init__()
        self.m, self.latent = m, latent
        conv = lambda ci, co, k, p: nn.Conv2d(m * ci, m * co, k, 2, p, groups=m)  # noqa: E731
        deconv = lambda ci, co: nn.ConvTranspose2d(m * ci, m * co, 4, 2, 1, groups=m)  # noqa: E731
        self.convs = nn.ModuleList([conv(1, 32, 4, 1), conv(32, 32, 4, 1), conv(32, 64, 2, 0), conv(64, 64, 2, 0)])
        self.deconvs = nn.ModuleList([deconv(64, 64), deconv(64, 32), deconv(32, 32), deconv(32, 1)])
        lin = lambda i, o: nn.Parameter(torch.randn(m, i, o) / i ** 0.5)  # noqa: E731
        self.w = nn.ParameterList([lin(1024, 256), lin(256, 2 * latent), lin(latent, 256), lin(256, 1024)])
        self.b = nn.ParameterList([nn.Parameter(torch.zeros(m, 1, w.shape[-1])) for w in self.w])

    def forward(self, x: torch.Tensor, eps: torch.Tensor):
        m, b = x.shape[:2]
        h = x.transpose(0, 1).reshape(b, m * x.shape[2], *x.shape[3:])      # (B, M·C, H, W)
        for c in self.convs:
            h = F.relu(c(h))
        h = h.view(b, m, -1).transpose(0, 1)                                  # (M, B, 1024)
        h = F.relu(torch.baddbmm(self.b[0], h, self.w[0]))
        mu, logvar = torch.baddbmm(self.b[1], h, self.w[1]).chunk(2, -1)
        z = mu + torch.exp(0.5 * logvar) * eps
        h = F.relu(torch.baddbmm(self.b[2], z, self.w[2]))
        h = F.relu(torch.baddbmm(self.b[3], h, self.w[3]))                   # (M, B, 1024)
        h = h.view(m, b, 64, 4, 4).transpose(0, 1).reshape(b, m * 64, 4, 4)
        for i, d in enumerate(self.deconvs):
            h = d(h) if i == 3 else F.relu(d(h))
        logits = h.view(b, m, *x.shape[2:]).transpose(0, 1)
        return mu, logvar, logits


def time_stacked(kind: str, m: int, batch: int, steps: int, repeats: int) -> list[float]:
    """Seconds per forward + backward of M models on (M, B) images: vmap / grouped / loop."""
    from torch.func import vmap

    from disentkit.models import GaussianVAE
    from disentkit.train.members import StackedVAE

    x, eps = torch.rand(m, batch, 1, 64, 64).round(), torch.randn(m, batch, 10)

    def loss_of(mu, logvar, logits, xi):
        rec = F.binary_cross_entropy_with_logits(logits, xi, reduction="none").flatten(-3).sum(-1).mean(-1)
        return rec + 0.5 * (mu.square() + logvar.exp() - logvar - 1).sum(-1).mean(-1)

    if kind == "vmap":
        stack = StackedVAE([GaussianVAE() for _ in range(m)])

        def one(params, xi, ei):
            out = stack.member_forward(params, xi, ei)
            return loss_of(out.mu, out.logvar, out.logits, xi)

        fn: Callable[[], torch.Tensor] = lambda: vmap(one)(stack.params(), x, eps).sum()  # noqa: E731
    elif kind == "grouped":
        g = GroupedVAE(m)
        fn = lambda: loss_of(*g(x, eps), x).sum()  # noqa: E731
    else:
        vaes = [GaussianVAE() for _ in range(m)]

        def fn() -> torch.Tensor:
            total = x.new_zeros(())
            for i, v in enumerate(vaes):
                mu, logvar = v.encoder(x[i])
                z = mu + torch.exp(0.5 * logvar) * eps[i]
                total = total + loss_of(mu, logvar, v.decoder(z), x[i])
            return total
    for _ in range(2):
        fn().backward()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            fn().backward()
        out.append((time.perf_counter() - t) / steps)
    return out


# ----------------------------------------------------------------------------- one window, own process
def run_window(spec: dict) -> list[float]:
    """Seconds per step of one timed window of one path (``spec``: kind, batch, steps, warmup, options).

    On a CPU each window runs in a fresh process (:func:`window_in_subprocess`): ``disentkit train`` sets
    the process's heap to keep freed memory (``keep_freed_memory``, no page faults per step), which the
    baselines, as straightforward scripts, do not; a process-wide setting needs a process per path."""
    device = torch.device(spec["device"])
    if spec["kind"] == "disentkit":
        keep_freed_memory()  # what `disentkit train` does first (train/run.py: setup_process)
    ds = load_data(device, verbose=False)
    b, steps, warmup = spec["batch"], spec["steps"], spec["warmup"]
    if spec["kind"] == "eager":
        return time_eager_loop(ds, device, b, steps, warmup, 1)
    if spec["kind"] == "lightning":
        return time_lightning_dataloader(ds, device, b, steps, warmup, 1)
    return time_disentkit(ds, device, b, steps, warmup, 1, **spec["options"])


def window_in_subprocess(spec: dict, threads: int) -> list[float]:
    """:func:`run_window` in a new Python process (``bench_train.py --window SPEC``)."""
    cmd = [sys.executable, __file__, "--threads", str(threads), "--window", json.dumps(spec)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    for line in res.stdout.splitlines():
        if line.startswith("WINDOW "):
            return json.loads(line[len("WINDOW "):])
    raise RuntimeError((res.stderr.strip().splitlines() or ["no output"])[-1])


# ----------------------------------------------------------------------------- main
def fmt_row(name: str, batch: int, sec: float, base: float | None, images: int | None = None) -> str:
    """One table row; the ratio is images/s over the baseline's (which trains ``batch`` images a step)."""
    images = images or batch
    ratio = f"{(images / sec) / (batch / base):7.2f}x" if base else "      -"
    return f"{name:<30}{batch:>6}{1 / sec:>10.1f}{images / sec:>12.0f}{ratio:>10}"


def print_ensemble_table(res: dict[str, float], base_name: str, batch: int, ratio: str, title: str) -> None:
    """One ensemble table: each variant's steps/s and aggregate images/s (M members × batch) against ``base_name``."""
    print(f"\n## {title}")
    print(f"{'path':<30}{'batch':>6}{'steps/s':>10}{'images/s':>12}{ratio:>10}")
    for name, sec in res.items():
        m = int(name.split("M=")[1].split()[0]) if "M=" in name else 1
        print(fmt_row(name, batch, sec, res[base_name], m * batch), flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default="auto", help="comma list of cpu,cuda (auto: cpu, plus cuda if present)")
    ap.add_argument("--batches", default="64,256")
    ap.add_argument("--members", default="1,2,4,8", help="ensemble sizes M (CPU); CUDA adds 16,32,64")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (set deliberately: shared machines)")
    ap.add_argument("--steps", type=int, default=0, help="steps per timed window (0: 20 on CPU, 200 on CUDA)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timed windows per variant (best is kept)")
    ap.add_argument("--compile", action="store_true", help="also time --compile on the CPU (slow to compile)")
    ap.add_argument("--bf16", action="store_true", help="also time bf16-mixed on the CPU (≈ 8x slower on CPUs "
                                                        "without native bf16, e.g. AVX-only)")
    ap.add_argument("--ensemble-models", default="beta_vae,factor_vae",
                    help="models of the fused-ensemble tables (beta_vae always; factor_vae optional)")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: single,ensemble,stacked")
    ap.add_argument("--quick", action="store_true", help="smoke run: few steps, batch 64, M ≤ 2")
    ap.add_argument("--window", help=argparse.SUPPRESS)  # internal: time one window of one path (JSON spec)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    quiet_lightning()
    warnings.filterwarnings("ignore")
    if args.window:
        print("WINDOW " + json.dumps(run_window(json.loads(args.window))), flush=True)
        return
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.devices == "auto" \
        else args.devices.split(",")
    batches = [64] if args.quick else [int(b) for b in args.batches.split(",")]
    skip = set(args.skip.split(","))
    print(f"# bench_train: torch {torch.__version__}, lightning {L.__version__}, CPU threads {args.threads}"
          + (f", GPU {torch.cuda.get_device_name()}" if "cuda" in devices else ""))
    for dev_name in devices:
        device = torch.device(dev_name)
        cuda = device.type == "cuda"
        steps = args.steps or (3 if args.quick else (200 if cuda else 20))
        warmup = 2 if args.quick else (30 if cuda else 5)
        repeats = 1 if args.quick else args.repeats
        ds = load_data(device)

        def windows(fns: dict[str, Callable[[], list[float]]]) -> dict[str, list[float]]:
            """``repeats`` windows of seconds/step of each variant, interleaved round by round so that
            drifting load on a shared machine hits them alike."""
            times: dict[str, list[float]] = {k: [] for k in fns}
            for _ in range(repeats):
                for k, fn in fns.items():
                    try:
                        times[k] += fn()
                    except Exception as e:  # an option this machine cannot run: say so, keep going
                        print(f"# {k}: failed: {type(e).__name__}: {str(e).splitlines()[0][:100]}", flush=True)
                        times[k] = [float("nan")]
            return times

        def best(fns: dict[str, Callable[[], list[float]]]) -> dict[str, float]:
            """Best-of-``repeats`` seconds/step (the minimum is the least disturbed window)."""
            return {k: min(v) for k, v in windows(fns).items()}

        if "single" not in skip:
            print(f"\n## single model, {device}  (best of {repeats} interleaved windows of {steps} steps"
                  + ("" if cuda else ", each window in its own process") + "; ratios: images/s over the eager "
                  "loop's and over lightning+DataLoader's, best windows, and medians of the windows)")
            print(f"{'path':<30}{'batch':>6}{'steps/s':>10}{'images/s':>12}{'vs eager':>10}{'vs L+DL':>10}"
                  f"{'median vs L+DL':>16}")
            def window(kind: str, b: int, w: int, options: dict | None = None) -> Callable[[], list[float]]:
                """One timed window: in its own process on a CPU (see run_window), in this one on CUDA."""
                spec = dict(kind=kind, batch=b, steps=steps, warmup=w, options=options or {}, device=str(device))
                if cuda:
                    return lambda: run_window(spec)
                return lambda: window_in_subprocess(spec, args.threads)

            for b in batches:
                variants: dict[str, Callable[[], list[float]]] = {
                    "eager loop (baseline)": window("eager", b, warmup),
                    "lightning+DataLoader": window("lightning", b, warmup),
                }
                opts: list[tuple[str, dict]] = [("disentkit", {}),
                                                ("disentkit --channels-last", {"channels_last": True})]
                if cuda or args.bf16:
                    opts.append(("disentkit bf16-mixed", {"precision": "bf16-mixed"}))
                if args.compile or cuda:
                    opts.append(("disentkit --compile", {"compile": "default"}))
                    opts.append(("disentkit --compile --ch-last", {"compile": "default", "channels_last": True}))
                if cuda:
                    opts += [("disentkit --compile reduce-ovh", {"compile": "reduce-overhead"}),
                             ("disentkit --cuda-graphs", {"cuda_graphs": True}),
                             ("disentkit --cuda-graphs bf16", {"cuda_graphs": True, "precision": "bf16-mixed"})]
                if "factor_vae" in OBJECTIVES:
                    opts.append(("disentkit factor_vae", {"model": "factor_vae"}))
                for name, o in opts:
                    variants[name] = window("disentkit", b, warmup + (10 if "compile" in o else 0), o)
                times = windows(variants)
                res = {k: min(v) for k, v in times.items()}
                med = {k: statistics.median(v) for k, v in times.items()}
                base, naive = res["eager loop (baseline)"], res["lightning+DataLoader"]
                for name, sec in res.items():
                    print(fmt_row(name, b, sec, base) + f"{naive / sec:>9.2f}x"
                          + f"{med['lightning+DataLoader'] / med[name]:>15.2f}x", flush=True)
                gflop, peak = step_gflop(b), matmul_peak(device)
                ceiling = peak / gflop  # steps/s if every FLOP of the step ran at the matmul peak
                fastest = min(res, key=res.get)
                print(f"# ceiling, batch {b}: {gflop:.2f} GFLOP a step / {peak:.0f} GFLOP/s (float32 1024² "
                      f"matmul, same run) = {ceiling:.1f} steps/s = {naive * ceiling:.2f}x lightning+DataLoader; "
                      f"fastest here: {fastest} at {100 / res[fastest] / ceiling:.0f}% of it", flush=True)

        if "ensemble" not in skip:
            ms = [int(m) for m in args.members.split(",")] + ([16, 32, 64] if cuda else [])
            ms = [m for m in ms if m <= 2] if args.quick else ms
            b = 64
            variants = {"eager loop (baseline)": lambda: time_eager_loop(ds, device, b, steps, warmup, 1)}
            for m in ms:
                for rng in (("member", "shared") if cuda else ("member",)):
                    k = max(2, steps // max(1, m // 2))
                    variants[f"ensemble M={m}" + (f" rng={rng}" if cuda else "")] = \
                        lambda m=m, rng=rng, k=k: time_ensemble(ds, device, b, m, k, warmup, 1, rng)
            print_ensemble_table(best(variants), "eager loop (baseline)", b, "vs eager",
                                 f"fused ensembles (beta_vae), {device}, batch {b} per member  (aggregate images/s; "
                                 "ratio over one eager loop = M models trained one after another)")

        if "ensemble" not in skip and "factor_vae" in args.ensemble_models.split(","):
            # FactorVAE (paper-size discriminator, 6 × 1000): the baseline is disentkit's own single-model
            # path, so the ratio is M members at once against M single runs one after another
            variants = {"factor_vae, one model": lambda: time_disentkit(ds, device, b, steps, warmup, 1,
                                                                         model="factor_vae")}
            for m in ms:
                k = max(2, steps // max(1, m // 2))
                variants[f"factor_vae ensemble M={m}"] = \
                    lambda m=m, k=k: time_ensemble(ds, device, b, m, k, warmup, 1, "member", "factor_vae")
            print_ensemble_table(best(variants), "factor_vae, one model", b, "vs single",
                                 f"fused ensembles (factor_vae), {device}, batch {b} per member  (aggregate "
                                 "images/s; ratio over one disentkit factor_vae run = M runs one after another)")

        if "stacked" not in skip and not cuda:
            ms = [2] if args.quick else [m for m in (2, 4, 8) if m <= max(int(x) for x in args.members.split(","))]
            print("\n## stacking M models, forward + backward only, CPU, batch 64 per member (aggregate images/s)")
            print(f"{'M':>3}{'vmap':>12}{'grouped':>12}{'loop':>12}")
            for m in ms:
                k = 2 if args.quick else max(2, steps // m)
                row = [m * 64 / min(time_stacked(kind, m, 64, k, repeats)) for kind in ("vmap", "grouped", "loop")]
                print(f"{m:>3}" + "".join(f"{v:>12.0f}" for v in row), flush=True)


if __name__ == "__main__":
    main()
