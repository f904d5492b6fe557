"""One command that proves disentkit's CUDA paths against the CPU and measures its GPU goals: one table,
PASS/FAIL per row, exit status 1 on any FAIL.

    python benchmarks/gpu_check.py                           # on a CUDA machine (≤ 4 minutes on one H200)
    python benchmarks/gpu_check.py --device cpu --quick      # the same logic on a CPU (CI: test_gpu_check.py)
    make gpu-check

Correctness (fp32 with TF32 off, so that "fp32" is fp32): every objective a few steps on the device from the
same initial weights, batches and step noise as a CPU run (the noise is drawn by the CPU members' generators
and copied over: CUDA's generators draw other numbers for one seed), eager, ``--cuda-graphs`` and
``--compile``; a vmap ensemble of 4 (β-VAE, FactorVAE) against the CPU's member loop; bf16 finite and close;
a run killed after its checkpoint and resumed against one run straight through; every dataset placed on the
device (memory taken, batches equal to the CPU's, no host sync while batches are drawn and a step runs);
``evaluate --metrics all`` on the device against the CPU. Throughput rows: ``benchmarks/gpu_speed.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from disentkit.data import get_dataset                                   # noqa: E402
from disentkit.models import OBJECTIVES                                  # noqa: E402
from disentkit.train import TrainConfig                                  # noqa: E402
from disentkit.train.fast import autocast_for                            # noqa: E402
from disentkit.data.pairs import partner_indices                         # noqa: E402
from disentkit.train.data import pair_k                                  # noqa: E402
from disentkit.train.members import Single, Stacked                      # noqa: E402
from disentkit.train.step import Step, make_optimizers                   # noqa: E402

#: loss and weight tolerances of a device run against the CPU run (relative to max(|loss|, 1); absolute
#: on weights): fp32 kernels differ in summation order only, and a few Adam steps of lr 1e-4 keep that small
FP32_TOL, WEIGHT_TOL, BF16_TOL = 1e-3, 1e-3, 5e-2
#: ``evaluate --metrics all`` on the device against the CPU: DCI (boosted trees, ties) and the others
DCI_TOL, METRIC_TOL = 0.01, 2e-3


@dataclass
class Row:
    section: str
    name: str
    ok: bool | None          # None: a measurement (no pass/fail)
    detail: str


@dataclass
class Check:
    device: torch.device
    quick: bool
    skip: set[str] = field(default_factory=set)
    rows: list[Row] = field(default_factory=list)

    def add(self, section: str, name: str, ok: bool | None, detail: str) -> None:
        self.rows.append(Row(section, name, ok, detail))
        mark = {True: "PASS", False: "FAIL", None: "    "}[ok]
        print(f"  {mark}  {section}: {name}: {detail}", flush=True)

    def run(self, section: str, name: str, fn, *args, **kwargs) -> None:
        """Add the row ``fn`` returns as (ok, detail); an exception is a FAIL naming it."""
        t = time.perf_counter()
        try:
            ok, detail = fn(*args, **kwargs)
        except Exception as e:  # a crash is what this check exists to find: report it as a row
            ok, detail = False, f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
        self.add(section, name, ok, f"{detail} [{time.perf_counter() - t:.1f}s]")


# ------------------------------------------------------------------------------ runs to compare
def member_cfg(model: str, seed: int = 1, **hp) -> dict:
    """A member config as the engine builds it (small FactorVAE discriminator: its shape is not under test)."""
    cfg = TrainConfig(model=model, seed=seed, hparams=hp).validate().to_dict()
    return {**cfg, "channels": 1, "num_train": 737_280, "out": "-"}


def inputs(cfgs: list[dict], steps: int, batch: int) -> tuple[list[torch.Tensor], list[dict]]:
    """CPU batches and step noise: the CPU members' own draws, which the device run gets copies of."""
    ds = get_dataset("dsprites_procedural")
    ref = members_for(cfgs, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    k = pair_k(ref.objective)          # Ada-VAE trains on pairs: B first images, then their B partners
    shape = (len(cfgs), batch) if len(cfgs) > 1 else (batch,)
    batches = []
    for _ in range(steps):
        first = torch.randint(ds.num_images, shape, generator=g).view(-1, batch)
        idx = first if k is None else torch.cat([first, torch.stack([partner_indices(ds, f, k, g) for f in first])], 1)
        batches.append(ds.images_at(idx.flatten()).view(*shape[:-1], idx.shape[1], 1, 64, 64))
    return batches, [ref.draw_noise(batch) for _ in range(steps)]


def members_for(cfgs: list[dict], device: torch.device, impl: str = "auto"):
    return Single(cfgs[0], device) if len(cfgs) == 1 else Stacked(cfgs, device, impl)


def train_steps(cfgs: list[dict], device: torch.device, batches, noises, *, precision: str = "32-true",
                cuda_graphs: bool = False, compile_mode: str = "off", impl: str = "auto"):
    """Losses (steps, M) and every member's final weights of the engine's step on ``device``."""
    members = members_for(cfgs, device, impl)
    if compile_mode != "off":
        members.compile(compile_mode)
    captured = cuda_graphs and device.type == "cuda"
    step = Step(members, make_optimizers(members, cfgs[0], captured), precision,
                lambda: autocast_for(precision, device, cache_enabled=not cuda_graphs), cuda_graphs=cuda_graphs)
    losses = []
    for x, n in zip(batches, noises):
        logs = step(x.to(device), {k: v.to(device) for k, v in n.items()})
        losses.append(logs["loss"].detach().float().reshape(-1).cpu().clone())  # a replay overwrites its outputs
    weights = [{k: v.detach().float().cpu() for k, v in members.member_state(i).items()} for i in range(len(cfgs))]
    return torch.stack(losses), weights


def compare(ref, got, loss_tol: float, weight_tol: float | None = WEIGHT_TOL) -> tuple[bool, str]:
    (l0, w0), (l1, w1) = ref, got
    finite = bool(torch.isfinite(l1).all())
    rel = float(((l1 - l0).abs() / l0.abs().clamp_min(1)).max())
    wdiff = max(float((a[k] - b[k]).abs().max()) for a, b in zip(w0, w1) for k in a if a[k].is_floating_point())
    ok = finite and rel <= loss_tol and (weight_tol is None or wdiff <= weight_tol)
    return ok, (f"loss rel diff {rel:.1e} (tol {loss_tol:g}), weights max |diff| {wdiff:.1e}"
                + ("" if weight_tol is None else f" (tol {weight_tol:g})") + ("" if finite else ", NOT FINITE"))


def hparams_of(model: str) -> dict:
    """Hyperparameters that make each objective's step-dependent and adversarial parts run within a few steps."""
    return {"annealed_vae": {"anneal_steps": 4, "c_max": 5.0}, "adaptive_beta_vae": {"beta_warmup": 2},
            "factor_vae": {"disc_hidden": 64, "disc_layers": 2}}.get(model, {})


def correctness(check: Check) -> None:
    dev, cpu = check.device, torch.device("cpu")
    steps, batch = (3, 16) if check.quick else (6, 64)
    # compiling takes tens of seconds an objective: the plain one, the adversarial one, and (on a GPU) the one
    # whose loss reads the step (a recompile per step would show as a slow row)
    compiled = {"beta_vae", "factor_vae"} | (set() if check.quick else {"annealed_vae"})
    for model in sorted(OBJECTIVES):
        cfgs = [member_cfg(model, **hparams_of(model))]
        batches, noises = inputs(cfgs, steps, batch)
        ref = train_steps(cfgs, cpu, batches, noises)
        check.run("fp32", f"{model} eager", lambda: compare(ref, train_steps(cfgs, dev, batches, noises), FP32_TOL))
        check.run("fp32", f"{model} --cuda-graphs",
                  lambda: compare(ref, train_steps(cfgs, dev, batches, noises, cuda_graphs=True), FP32_TOL))
        if model in compiled and "compile" not in check.skip:
            check.run("fp32", f"{model} --compile",
                      lambda: compare(ref, train_steps(cfgs, dev, batches, noises, compile_mode="default"), FP32_TOL))
        if model in ("beta_vae", "factor_vae"):
            check.run("bf16", f"{model} bf16-mixed", lambda: compare(
                ref, train_steps(cfgs, dev, batches, noises, precision="bf16-mixed"), BF16_TOL, None))
            check.run("bf16", f"{model} bf16-mixed --cuda-graphs", lambda: compare(
                ref, train_steps(cfgs, dev, batches, noises, precision="bf16-mixed", cuda_graphs=True), BF16_TOL, None))
            if dev.type == "cuda":  # fp16 with its gradient scaler: CUDA only
                check.run("bf16", f"{model} 16-mixed (gradient scaler)", lambda: compare(
                    ref, train_steps(cfgs, dev, batches, noises, precision="16-mixed"), BF16_TOL, None))
    for model in ("beta_vae", "factor_vae"):
        cfgs = [member_cfg(model, seed=s, **hparams_of(model)) for s in range(4)]
        batches, noises = inputs(cfgs, steps, batch)
        ref = train_steps(cfgs, cpu, batches, noises, impl="loop")
        check.run("fp32", f"{model} vmap ensemble M=4 vs CPU loop",
                  lambda: compare(ref, train_steps(cfgs, dev, batches, noises, impl="vmap"), FP32_TOL))
        check.run("fp32", f"{model} vmap ensemble M=4 --cuda-graphs", lambda: compare(
            ref, train_steps(cfgs, dev, batches, noises, impl="vmap", cuda_graphs=True), FP32_TOL))


# ------------------------------------------------------------------------------ resume
class Killed(Exception):
    pass


def resume_row(check: Check, folder: Path) -> Path:
    """A run killed after its checkpoint and resumed against one trained straight through (same process)."""
    from disentkit.train import fit, load_checkpoint, resume

    steps = 20 if check.quick else 200
    base = dict(model="factor_vae", steps=steps, checkpoint_every=steps // 2, device=str(check.device),
                progress=False, log_every=5, out=str(folder / "straight"), hparams=hparams_of("factor_vae"))

    def row() -> tuple[bool, str]:
        fit(base)

        def kill(i: int, logs: dict) -> None:
            if i + 1 == steps // 2 + 3:
                raise Killed()
        with contextlib.suppress(Killed):
            fit({**base, "out": str(folder / "killed")}, callbacks=[kill])
        resume(folder / "killed")
        a, b = (load_checkpoint(folder / r).state for r in ("straight", "killed"))
        diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
        tol = 0.0 if check.device.type == "cpu" else 1e-4  # cuDNN's backward kernels may add in another order
        return diff <= tol, f"final weights max |diff| {diff:.1e} (tol {tol:g}), {steps} steps killed at {steps // 2 + 3}"
    check.run("resume", "factor_vae killed after its checkpoint, resumed", row)
    return folder / "straight"


# ------------------------------------------------------------------------------ datasets
def write_real_dsprites(folder: Path) -> Path:
    """A dSprites file in its published .npz format (a smaller grid), converted as `datasets import` does;
    returns the cache folder (each ``load_cache`` of it is a fresh memory-mapped dataset)."""
    from disentkit.data import dsprites
    from disentkit.data.registry import SOURCES
    from disentkit.testing import synthetic

    sizes = (1, 3, 6, 10, 8, 8)
    p = synthetic.write_dsprites_npz(folder / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz", sizes)
    return dsprites.convert({p.name: p}, folder / "cache", SOURCES["dsprites"], sizes=sizes)


@contextlib.contextmanager
def no_sync(device: torch.device):
    """CUDA raises on any synchronizing call inside (a host read of a device value, a blocking copy)."""
    if device.type != "cuda":
        yield
        return
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def placement(check: Check, folder: Path) -> None:
    from disentkit.train.data import Batches

    dev = check.device
    names = ["dsprites_procedural", "dsprites_procedural:corr(posX,posY,0.2)", "real-format dsprites file",
             "real-format dsprites file:corr(posX,posY,0.4)"]
    if not check.quick:
        names[1:1] = ["shapes3d_procedural", "shapes3d_procedural:corr(floor_hue,wall_hue,0.2)",
                      "dsprites_procedural, not placed", "shapes3d_procedural, not placed"]
    real: list[Path] = []

    def dataset(name: str):
        if not name.startswith("real-format"):
            return get_dataset(name)
        from disentkit.data.cache import load_cache
        from disentkit.data.correlated import CorrelatedFactors, parse_variant

        real[:] = real or [write_real_dsprites(folder)]
        ds = load_cache(real[0])
        return CorrelatedFactors(ds, *parse_variant(name.partition(":")[2])) if ":" in name else ds

    def row(name: str) -> tuple[bool, str]:
        unplaced = name.endswith(", not placed")   # too big for the free memory: rendered on the device per batch
        name = name.removesuffix(", not placed")
        ds, ref = dataset(name), dataset(name)
        before = torch.cuda.memory_allocated(dev) if dev.type == "cuda" else 0
        need = ds.placement_bytes()
        placed = ds.place(dev, free_bytes=0 if unplaced else None)
        took = (torch.cuda.memory_allocated(dev) - before) if dev.type == "cuda" else 0
        batches = Batches(ds, None, 64, [3], dev)
        idx = batches.next_indices().flatten()
        same = torch.equal(ds.images_at(idx).cpu(), ref.images_at(idx.cpu()))
        cfg = member_cfg("beta_vae")
        members = Single(cfg, dev)
        step = Step(members, make_optimizers(members, cfg))
        step(batches.next(), members.draw_noise(64))   # allocations and lazy set-up outside the watched steps
        with no_sync(dev):
            for _ in range(5):
                step(batches.next(), members.draw_noise(64))
        ok = same and (placed or dev.type == "cpu" or unplaced)
        syncs = "no host sync in 5 steps" if dev.type == "cuda" else "host syncs are checked on CUDA only"
        return ok, (f"{'on the device' if placed else 'on the host'}: {took / 2**30:.2f} GiB taken, "
                    f"{need / 2**30:.2f} GiB estimated; batch equals the CPU's: {same}; {syncs}")
    for name in names:
        check.run("placement", name, row, name)


# ------------------------------------------------------------------------------ evaluation
def flat(d, prefix="") -> dict[str, float]:
    out = {}
    for k, v in (d.items() if isinstance(d, dict) else enumerate(d)):
        key = f"{prefix}{k}"
        if isinstance(v, (dict, list)):
            out.update(flat(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def evaluation(check: Check, run: Path, params: dict) -> None:
    from disentkit.evaluate import evaluate_checkpoint

    def row() -> tuple[bool, str]:
        on = {d: flat(evaluate_checkpoint(run, "all", device=d, params=params,
                                          out=run / f"metrics-{d}.json")[0]["results"])
              for d in ("cpu", str(check.device))}
        a, b = on["cpu"], on[str(check.device)]
        worst = {"dci": 0.0, "other": 0.0}
        for k in a:
            diff = abs(a[k] - b.get(k, math.inf)) if not (math.isnan(a[k]) and math.isnan(b.get(k, 0))) else 0.0
            kind = "dci" if k.startswith("dci.") else "other"
            worst[kind] = max(worst[kind], diff)
        ok = set(a) == set(b) and worst["dci"] <= DCI_TOL and worst["other"] <= METRIC_TOL
        return ok, (f"{len(a)} values; DCI max |diff| {worst['dci']:.1e} (tol {DCI_TOL}), others "
                    f"{worst['other']:.1e} (tol {METRIC_TOL})")
    check.run("evaluate", "--metrics all on the device vs the CPU", row)


#: metric sizes of the quick (CPU, CI) mode: the logic of every metric, not its statistics
QUICK_PARAMS = {"mig": {"num_train": 500}, "im": {"num_train": 500}, "irs": {"num_train": 500},
                "unsupervised": {"num_train": 500}, "modularity": {"num_train": 500, "num_test": 300},
                "sap": {"num_train": 300, "num_test": 200}, "dci": {"num_train": 300, "num_test": 200},
                "factor_vae_score": {"num_train": 50, "num_eval": 30, "batch_size": 16,
                                     "num_variance_estimate": 1000},
                "beta_vae_score": {"num_train": 50, "num_eval": 30, "batch_size": 16}}


# ------------------------------------------------------------------------------ main
def machine(device: torch.device) -> str:
    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout
    cpu = cpu.split(":", 1)[-1].strip() or "unknown CPU"
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU"
    return f"{gpu}; {cpu}; torch {torch.__version__}"


def print_table(check: Check, seconds: float) -> None:
    print(f"\n## gpu_check on {machine(check.device)} ({'quick' if check.quick else 'full'}, {seconds:.0f} s)\n")
    print("| section | row | result | detail |\n|---|---|---|---|")
    for r in check.rows:
        print(f"| {r.section} | {r.name} | {({True: 'PASS', False: 'FAIL', None: ''})[r.ok]} | {r.detail} |")
    fails = sum(r.ok is False for r in check.rows)
    print(f"\n{sum(r.ok is True for r in check.rows)} PASS, {fails} FAIL, "
          f"{sum(r.ok is None for r in check.rows)} measured")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="the device checked against the CPU (cuda, cuda:N, cpu)")
    ap.add_argument("--quick", action="store_true", help="fewer steps and rows (CPU mode, CI)")
    ap.add_argument("--skip", default="", help="comma-separated sections to leave out: "
                                                "correctness,compile,resume,placement,evaluate,speed")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for torch (the CPU reference runs)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a GPU machine or pass --device cpu --quick", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 rows compare fp32 (cuDNN's default is TF32 convs)
    torch.backends.cudnn.allow_tf32 = False
    skip = set(filter(None, args.skip.split(",")))
    check, t0 = Check(device, args.quick, skip), time.time()
    print(f"gpu_check: {machine(device)}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if "correctness" not in skip:
            correctness(check)
        run = resume_row(check, Path(tmp)) if "resume" not in skip else None
        if "placement" not in skip:
            placement(check, Path(tmp))
        if run is not None and "evaluate" not in skip and (run / "model.safetensors").is_file():
            evaluation(check, run, QUICK_PARAMS if args.quick else {"dci": {"num_train": 2000, "num_test": 1000}})
        if "speed" not in skip:
            import gpu_speed

            gpu_speed.throughput(check, Path(tmp), run)
    print_table(check, time.time() - t0)
    return 1 if any(r.ok is False for r in check.rows) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
