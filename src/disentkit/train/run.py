"""Run folders and process set-up: ``fit(config)`` and ``resume(run)``, the entry points of training.

A run folder holds ``config.yaml`` (a valid ``--config`` that reproduces the run), TensorBoard logs
(``tb/``), a CSV of logged values (``csv/metrics.csv``), safetensors checkpoints (``model.safetensors``,
``best.safetensors``, ``last.safetensors`` while it trains) and ``training_state.pt``, the complete state
``--resume`` continues from. A fused ensemble's folder holds its ``config.yaml``, ``ensemble.yaml`` (the
members), the training state, and one ordinary run folder per member.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import DisentkitError
from .checkpoint import STATE_FILE, check_shapes, read_checkpoint
from .config import TrainConfig, load_yaml
from .status import run_lock

#: files whose presence means a folder holds a run (``disentkit train`` refuses to write over them)
RUN_MARKERS = ("model.safetensors", "best.safetensors", "last.safetensors", "metrics.json", STATE_FILE,
               "config.yaml", "ensemble.yaml")
#: what disentkit writes in a run folder (``--overwrite`` removes these and nothing else)
RUN_FILES = (*RUN_MARKERS, "metrics.previous.json", "test_losses.json", "csv", "tb", "report.html",
             "reconstructions.png", "traversals.png", "traversals.gif", "kl_per_latent.json", STATE_FILE + ".part",
             "diverged.json", "finished.json")


# ---------------------------------------------------------------------- process set-up
def resolve_device(device: str) -> torch.device:
    """``auto``: the GPU when there is one; ``cuda:N`` must exist."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise DisentkitError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DisentkitError(f"--device {device} was asked for but no CUDA GPU is available; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DisentkitError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s)")
    return dev


def setup_process(threads: int = 0) -> None:
    """What a training or evaluation *process* sets once (the CLI and sweep workers call it; ``fit()`` from a
    notebook does not, unless asked): torch's intra-op threads (0: one per core), a heap that keeps freed
    memory (:func:`keep_freed_memory`), and Lightning's start-up chatter silenced."""
    if threads < 0:
        raise DisentkitError(f"--threads must be ≥ 0 (0: one per core), got {threads}")
    torch.set_num_threads(threads if threads > 0 else max(1, os.cpu_count() or 1))
    keep_freed_memory()
    quiet_lightning()




def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks in the heap instead of returning them to the OS.

    By default glibc serves big blocks (a batch's activations and gradients) with mmap and trims the heap's
    top, so freed tensors go back to the OS and the next step page-faults them in again, zeroed by the
    kernel: on the 2-core CPU ≈ 8k minor faults and ≈ 37 ms of system time a β-VAE step at batch 64
    (53k and ≈ 220 ms at batch 256; ``docs/speed.md``). No mmap and no trimming let each step reuse the
    last step's pages. The cost: the process keeps its peak heap until it exits. A no-op (False) where
    libc is not glibc.
    """
    global _HEAP_KEPT
    if _HEAP_KEPT is None:
        _HEAP_KEPT = False
        try:
            libc = ctypes.CDLL("libc.so.6")
            # mallopt(M_MMAP_MAX = -4, 0): never mmap; mallopt(M_TRIM_THRESHOLD = -1, 1 GiB): never trim
            _HEAP_KEPT = bool(libc.mallopt(-4, 0)) and bool(libc.mallopt(-1, 1 << 30))
        except (OSError, AttributeError):
            pass
    return _HEAP_KEPT


_HEAP_KEPT: bool | None = None


def quiet_lightning() -> None:
    """Keep Lightning's start-up chatter (precision notices, log-folder warnings) out of the terminal."""
    for name in ("lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*")


# ---------------------------------------------------------------------- run folders
def prepare_run_dir(out: str | Path, overwrite: bool) -> Path:
    """Refuse to write over an earlier run unless ``overwrite`` is given; then remove what it left."""
    run_dir = Path(out)
    if run_dir.exists() and holds_run(run_dir):
        if not overwrite:
            raise DisentkitError(f"{run_dir} already holds a run; continue it with `disentkit train --resume "
                                 f"{run_dir}`, choose another --out, or pass --overwrite to replace it")
        clear_run(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def holds_run(folder: Path) -> bool:
    return any((folder / m).exists() for m in RUN_MARKERS)


def clear_run(folder: Path) -> None:
    """Remove the files a run (or fused ensemble, with its members' folders) wrote; anything else stays."""
    for sub in folder.iterdir() if (folder / "ensemble.yaml").exists() else ():
        if sub.is_dir() and holds_run(sub):
            clear_run(sub)
            if not any(sub.iterdir()):
                sub.rmdir()
    for name in RUN_FILES:
        p = folder / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def member_configs(config: TrainConfig) -> list[TrainConfig]:
    """The single-run configs a config trains: itself, or one per member of its ``--ensemble`` grid."""
    if config.ensemble:
        from .ensemble import expand_members

        return expand_members(config)
    return [config]


def read_init_from(path: str | Path, cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The VAE weights of another run (e.g. λβ-VAE from a β-VAE); the VAE must be the same shape."""
    state, saved, _ = read_checkpoint(path)
    for key in ("architecture", "latent_dim", "channels"):
        if saved.get(key, "locatello" if key == "architecture" else None) != cfg.get(key):
            raise DisentkitError(f"--init-from {path}: checkpoint has {key}={saved.get(key)!r} but this run has "
                                 f"{key}={cfg.get(key)!r}; match them or pick another checkpoint")
    weights = {k[4:]: v for k, v in state.items() if k.startswith("vae.")}
    if not str(cfg.get("architecture", "")).startswith("custom:"):
        check_shapes(weights, saved, Path(path))
    return weights


def user_vae(vae: nn.Module | None, config: TrainConfig) -> Any:
    """A user's VAE (``fit(config, vae=...)``) wrapped for the engine and checked once on the run's image
    shape, before any file is written; None for a built-in architecture (which a custom run then needs)."""
    from ..data import get_dataset
    from ..models.custom import CustomVAE, architecture_name, as_vae, check_protocol, is_custom

    if vae is None:
        if is_custom(config.architecture):
            cls = config.architecture.split(":", 1)[1]
            raise DisentkitError(f"architecture {config.architecture} is a user-supplied VAE; train it from Python "
                                 f"with fit(config, vae={cls.rsplit('.', 1)[-1]}(...)) (or resume(run, vae=...))")
        return None
    if config.ensemble:
        raise DisentkitError("vae=: a fused ensemble (--ensemble) trains the built-in architectures only; train "
                             "your VAE as one run per seed")
    net = as_vae(vae, config.latent_dim)
    if isinstance(net, CustomVAE):
        name = architecture_name(net.net)
        if is_custom(config.architecture) and config.architecture != name:
            raise DisentkitError(f"this run trained {config.architecture.split(':', 1)[1]}, not "
                                 f"{name.split(':', 1)[1]}; pass an instance of the class it trained")
        config.architecture = name
    shape = get_dataset(config.dataset, data_root=config.data_root).observation_shape
    check_protocol(net, tuple(shape), config.latent_dim)
    return net


# ---------------------------------------------------------------------- entry points
def fit(config: TrainConfig | dict[str, Any], *, vae: nn.Module | None = None, setup: bool = False,
        callbacks: Sequence = ()) -> Path:
    """Train a run (or a fused ensemble, with ``config.ensemble``) as ``config`` says; returns its folder.

    ``vae``: your own encoder/decoder, an ``nn.Module`` with ``encode(x) -> (mu, logvar)`` and
    ``decode(z) -> logits`` (:mod:`disentkit.models.custom`), trained in place instead of
    ``config.architecture``. ``setup=True`` also sets up this process as ``disentkit train`` does
    (:func:`setup_process`); ``callbacks``: functions called as ``fn(step, logs)`` after every step.

    Example (5 steps; the demo trains 2,000):

        >>> import tempfile
        >>> from disentkit.train import TrainConfig, fit
        >>> config = TrainConfig(model="beta_vae", hparams={"beta": 4}, steps=5, batch_size=8,
        ...                      out=tempfile.mkdtemp() + "/bvae4", progress=False)
        >>> run = fit(config)
        trained beta_vae for 5 steps...
        >>> sorted(p.name for p in run.iterdir())
        ['config.yaml', 'csv', 'finished.json', 'model.safetensors', 'tb', 'training_state.pt']
    """
    from .loop import train

    config = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    config.validate()
    net = user_vae(vae, config)
    members = member_configs(config)
    with run_lock(config.out):   # one training per folder; nothing of an earlier run is cleared before this
        run_dir = prepare_run_dir(config.out, config.overwrite)
        if config.ensemble:
            for m in members:
                prepare_run_dir(m.out, config.overwrite)
        if setup:
            setup_process(config.threads)
        return train(config, members, run_dir, resume=False, callbacks=callbacks, vae=net)


def finished(run_dir: str | Path) -> int:
    """The steps a run trained if it finished training (all steps, or every member stopped early), else 0."""
    from .checkpoint import load_state

    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        return 0
    state = load_state(path)
    stopped = bool(state["trackers"]) and all(t["stopped"] for t in state["trackers"])
    done = state["done"] >= state["total"] or stopped
    outs = [Path(o) for o in state["members"]]
    return int(state["done"]) if done and all((o / "model.safetensors").is_file() for o in outs) else 0


#: options a resumed run may change: how far it trains and where it runs, not what it computes
RESUMABLE_OVERRIDES = ("steps", "epochs", "device", "threads", "progress", "data_root")


def resume(run: str | Path, *, vae: nn.Module | None = None, setup: bool = False, **overrides: Any) -> Path:
    """Continue a run (or fused ensemble) from its training state; returns its folder. A run killed before
    its first checkpoint starts again from its ``config.yaml``; ``steps``/``epochs`` may be raised to train
    a finished run further. With the same settings the final weights equal an uninterrupted run's (CPU).
    A run of your own VAE (``fit(config, vae=...)``) needs a fresh instance of its class as ``vae``.

    Example (train 4 steps, then 4 more):

        >>> import tempfile
        >>> from disentkit.train import TrainConfig, fit, resume, load_checkpoint
        >>> run = fit(TrainConfig(steps=4, batch_size=8, out=tempfile.mkdtemp() + "/run", progress=False))
        trained beta_vae for 4 steps...
        >>> run = resume(run, steps=8)
        trained beta_vae for 8 steps...
        >>> load_checkpoint(run).meta["step"]
        '8'
    """
    from .loop import train

    run_dir = Path(run)
    if not (run_dir / "config.yaml").is_file():
        raise DisentkitError(f"--resume {run_dir}: no config.yaml there (is it a `disentkit train` run folder?)")
    bad = sorted(k for k, v in overrides.items() if k not in RESUMABLE_OVERRIDES and v is not None)
    if bad:
        raise DisentkitError(f"--resume continues the run as it was configured; it takes only "
                             f"{', '.join('--' + k.replace('_', '-') for k in RESUMABLE_OVERRIDES)}, not "
                             f"{', '.join('--' + k.replace('_', '-') for k in bad)}")
    saved = load_yaml(run_dir / "config.yaml")
    saved.update({k: v for k, v in overrides.items() if v is not None}, out=str(run_dir), overwrite=False)
    config = TrainConfig.from_dict(saved).validate()
    net = user_vae(vae, config)
    if not (run_dir / STATE_FILE).is_file() and (run_dir / "model.safetensors").is_file():
        raise DisentkitError(f"{run_dir} finished without a training state (an older disentkit wrote it), so it "
                             f"cannot be continued; start a new run from its weights with --init-from {run_dir}")
    trained = finished(run_dir) if overrides.get("steps") is None and overrides.get("epochs") is None else 0
    if trained:
        raise DisentkitError(f"{run_dir} already trained all {trained} steps; give --steps (or --epochs) "
                             "larger than that to train it further")
    if setup:
        setup_process(config.threads)
    with run_lock(run_dir):
        return train(config, member_configs(config), run_dir, resume=True, vae=net)
