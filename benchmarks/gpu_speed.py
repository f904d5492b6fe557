"""The throughput rows of ``benchmarks/gpu_check.py``: the engine's step path (batches gathered on the device,
the step's draws, the step; ``train/loop.py: bare_steps``) timed through a real training session.

* one β-VAE at batch 64, eager / ``--cuda-graphs`` / ``--compile``: steps/s and the projected time of 300k
  steps (goal ≥ 3,000 steps/s on one H200); the same eager step with cuDNN's benchmark mode and with TF32
  (suspect 14 of CUDA_SUSPECTS: measured, not switched on blindly); batch 256;
* fused ensembles, M ∈ {1, 4, 16, 64, 128}, β-VAE and FactorVAE: aggregate training images/s, peak GPU
  memory, and the share of the activation-traffic bound (:func:`traffic_bound`; goal ≥ 1.5M images/s);
* the metric suite (``evaluate --metrics all``) at disentanglement_lib's defaults (goal ≤ 10 s a model).

Speed rows are measurements (no PASS/FAIL): each says whether its goal is met or by how much it falls short.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch

from disentkit.train import TrainConfig
from disentkit.train.loop import bare_steps
from disentkit.train.members import initial_vae
from disentkit.train.run import member_configs, prepare_run_dir
from disentkit.train.session import Session

#: HBM bandwidth by GPU name (the vendors' data sheets), bytes/s
BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.0e12, "L40S": 0.864e12, "A10": 0.6e12}
#: fp32 activation traffic of a training step per image, in passes over the activations: each written and
#: read once in the forward, its gradient written and read once in the backward
PASSES = 4
STEPS_GOAL, IMAGES_GOAL, SUITE_GOAL = 3000.0, 1.5e6, 10.0


def activation_elements(cfg: dict) -> int:
    """Elements of one image's activations through the VAE (input, every layer's output; in-place ReLUs
    alias their input and add nothing)."""
    vae, counts = initial_vae(cfg), [64 * 64 * cfg.get("channels", 1)]
    hooks = [m.register_forward_hook(lambda m, i, o: counts.append(sum(
        t.numel() for t in (o if isinstance(o, (tuple, list)) else [o]) if isinstance(t, torch.Tensor))))
        for m in vae.modules() if not list(m.children()) and not isinstance(m, torch.nn.ReLU)]
    with torch.no_grad():
        vae(torch.zeros(1, cfg.get("channels", 1), 64, 64))
    for h in hooks:
        h.remove()
    return sum(counts)


def traffic_bound(gpu_name: str, cfg: dict) -> float | None:
    """Training images/s if the step did nothing but move its fp32 activations at the GPU's HBM bandwidth
    (≈ 3.0M images/s for the Locatello VAE on an H200: 100,884 floats × 4 B × 4 passes at 4.8 TB/s); None
    for a GPU not in :data:`BANDWIDTH`."""
    bw = next((b for k, b in BANDWIDTH.items() if k in gpu_name), None)
    return None if bw is None else bw / (activation_elements(cfg) * 4 * PASSES)


@contextlib.contextmanager
def backend_flags(benchmark: bool = False, tf32: bool = False):
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.benchmark = benchmark
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def measure(folder: Path, device: torch.device, quick: bool, **cfg) -> tuple[float, int, int]:
    """(seconds a step, images a step, peak device bytes) of the engine's step path for ``cfg``: a session
    opened as ``disentkit train`` opens it, warm-up steps (capture, compile), then steps for about a second."""
    config = TrainConfig(**{"device": str(device), "progress": False, "out": str(folder / "speed"),
                            "overwrite": True, **cfg}).validate()
    members = member_configs(config)
    for folder_ in {config.out, *(m.out for m in members)}:
        prepare_run_dir(folder_, overwrite=True)
    s = Session.open(config, members, Path(config.out), resume=False)
    bare_steps(s, 3 if quick else 20)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    pilot = bare_steps(s, 2 if quick else 20)
    n = 3 if quick else max(20, min(5000, int(1.0 / max(pilot, 1e-6))))
    per_step = bare_steps(s, n)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return per_step, config.batch_size * len(s.cfgs), peak


def goal(value: float, target: float, higher: bool = True, device: torch.device | None = None) -> str:
    if device is not None and device.type != "cuda":
        return "the goal is a GPU's"
    met = value >= target if higher else value <= target
    return "goal met" if met else f"{(value / target if higher else target / value):.2f}× of the goal"


def throughput(check, folder: Path, run: Path | None) -> None:
    dev, quick = check.device, check.quick
    beta = {"model": "beta_vae", "hparams": {"beta": 4.0}}

    def single(label: str, flags: dict | None = None, **cfg):
        def row():
            with backend_flags(**(flags or {})):
                sec, _, peak = measure(folder, dev, quick, **beta, **cfg)
            rate = 1.0 / sec
            return None, (f"{rate:,.0f} steps/s, 300k steps in {300_000 * sec / 60:.1f} min; "
                          + (f"{peak / 2**20:.0f} MiB peak; " if dev.type == "cuda" else "")
                          + goal(rate, STEPS_GOAL, device=dev))
        check.run("speed", label, row)
    single("β-VAE batch 64 eager")
    single("β-VAE batch 64 --cuda-graphs", cuda_graphs=True)
    if (not quick or dev.type == "cuda") and "compile" not in check.skip:
        single("β-VAE batch 64 --compile", compile="default")
        single("β-VAE batch 64 --compile reduce-overhead", compile="reduce-overhead")
    if dev.type == "cuda":
        single("β-VAE batch 64 eager, cudnn.benchmark", {"benchmark": True})
        single("β-VAE batch 64 eager, TF32", {"tf32": True})
        single("β-VAE batch 64 --cuda-graphs, cudnn.benchmark + TF32", {"benchmark": True, "tf32": True},
               cuda_graphs=True)
    single("β-VAE batch 256 eager", batch_size=256)
    if not quick:
        single("β-VAE batch 256 --cuda-graphs", batch_size=256, cuda_graphs=True)

    sizes = (1, 2) if quick else (1, 4, 16, 64, 128)
    cfg0 = {**TrainConfig(**beta).validate().to_dict(), "channels": 1}
    bound = traffic_bound(torch.cuda.get_device_name(dev), cfg0) if dev.type == "cuda" else None
    for model, extra in (("beta_vae", {"hparams": {"beta": 4.0}}), ("factor_vae", {})):
        for m in sizes:
            for graphs in ((False, True) if model == "beta_vae" and dev.type == "cuda" else (False,)):
                def row(m=m, graphs=graphs, model=model, extra=extra):
                    sec, images, peak = measure(folder, dev, quick, model=model, cuda_graphs=graphs,
                                                ensemble=[f"seed={','.join(map(str, range(m)))}"], **extra)
                    rate = images / sec
                    share = f", {rate / bound:.0%} of the {bound / 1e6:.1f}M images/s traffic bound" if bound else ""
                    target = "; " + goal(rate, IMAGES_GOAL, device=dev) if model == "beta_vae" and m == max(sizes) else ""
                    memory = f", {peak / 2**30:.2f} GiB peak" if dev.type == "cuda" else ""
                    return None, f"{rate:,.0f} images/s ({1 / sec:,.1f} steps/s){memory}{share}{target}"
                check.run("speed", f"{model} ensemble M={m}{' --cuda-graphs' if graphs else ''}", row)

    if run is not None and (run / "model.safetensors").is_file():
        from disentkit.evaluate import evaluate_checkpoint
        from gpu_check import QUICK_PARAMS

        def suite():
            t = time.perf_counter()
            evaluate_checkpoint(run, "all", device=str(dev), params=QUICK_PARAMS if quick else None,
                                out=run / "metrics-speed.json")
            sec = time.perf_counter() - t
            return None, f"{sec:.1f} s" + ("" if quick else "; " + goal(sec, SUITE_GOAL, higher=False, device=dev))
        check.run("speed", "metric suite (--metrics all)" + (" at reduced sizes" if quick else " at dlib defaults"),
                  suite)
