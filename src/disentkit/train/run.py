"""``fit(config)``: one training run from a :class:`TrainConfig` to a run folder.

A run folder holds ``config.yaml``, TensorBoard logs (``tb/``), a CSV of logged values
(``csv/metrics.csv``) and safetensors checkpoints (``model.safetensors``, ``best.safetensors``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import warnings
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from ..data import get_dataset
from ..errors import DisentkitError
from .callbacks import MetricsCallback, SafetensorsCheckpoint
from .checkpoint import read_checkpoint
from .config import TrainConfig
from .datamodule import FactorDataModule
from .module import VAEModule

RUN_MARKERS = ("model.safetensors", "best.safetensors", "last.safetensors", "metrics.json")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DisentkitError(f"--device {device} was asked for but no CUDA GPU is available; use --device cpu")
    return torch.device(device)


def setup_cpu(threads: int) -> None:
    """Set up this process's CPU work: torch's intra-op threads (0 = one per core; inter-op parallelism is
    not used here), and a heap that keeps freed memory (:func:`keep_freed_memory`)."""
    torch.set_num_threads(threads if threads > 0 else max(1, os.cpu_count() or 1))
    keep_freed_memory()


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
    """Keep Lightning's start-up chatter out of the terminal (the progress bar stays)."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*")
    warnings.filterwarnings("ignore", ".*Your `IterableDataset` has `__len__` defined.*")


def prepare_run_dir(out: str | Path, overwrite: bool) -> Path:
    """Refuse to write over an earlier run unless ``overwrite`` is given."""
    run_dir = Path(out)
    if run_dir.exists() and any((run_dir / m).exists() for m in RUN_MARKERS) and not overwrite:
        raise DisentkitError(f"{run_dir} already holds a run; choose another --out or pass --overwrite to replace it")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def fit(config: TrainConfig) -> Path:
    """Train one model as ``config`` says (or a fused ensemble, with ``config.ensemble``); returns the run folder."""
    if config.ensemble:
        from .ensemble import fit_ensemble

        return fit_ensemble(config)
    config.validate()
    run_dir = prepare_run_dir(config.out, config.overwrite)
    setup_cpu(config.threads)
    device = resolve_device(config.device)
    quiet_lightning()
    L.seed_everything(config.seed, verbose=False)

    dataset = place_dataset(get_dataset(config.dataset, data_root=config.data_root), device)
    cfg = config.to_dict()
    cfg.update(channels=dataset.observation_shape[0], factor_names=list(dataset.factor_names),
               num_images=dataset.num_images)
    module = VAEModule(cfg)
    if config.init_from:
        init_from_checkpoint(module, config.init_from)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    data = FactorDataModule(dataset, config.batch_size, config.seed, config.val_fraction, config.val_batches, device)
    has_val = config.val_fraction > 0
    callbacks: list = [SafetensorsCheckpoint(run_dir, config.checkpoint_every)]
    if config.eval_every:
        callbacks.append(MetricsCallback(config.eval_every, config.eval_metrics, dataset, seed=config.seed,
                                         params=config.eval_params))
    trainer = make_trainer(config, run_dir, device, callbacks, has_val,
                           max_steps=config.steps * module.steps_per_update)  # global_step counts every optimizer's steps
    trainer.fit(module, datamodule=data)
    return run_dir


def progress_refresh_rate(steps: int, log_every: int, tty: bool | None = None) -> int:
    """Steps between progress-bar updates: frequent on a terminal; about 20 in all when stderr is a log
    file (a batch job), where every update is one more carriage-return line."""
    tty = sys.stderr.isatty() if tty is None else tty
    return max(1, min(log_every, 25)) if tty else max(25, steps // 20)


def make_trainer(config: TrainConfig, run_dir: Path, device: torch.device, callbacks: list,
                 has_val: bool, max_steps: int | None = None) -> L.Trainer:
    """The Lightning trainer of a run: loggers, progress bar, precision; no Lightning checkpoints.
    ``max_steps`` counts Lightning's optimizer steps (default: ``config.steps``).

    On a CPU, deterministic algorithms are on (same seed, same losses) but not their debugging aid of
    filling every new tensor with NaN (``torch.utils.deterministic.fill_uninitialized_memory``): that
    is ≈ 190 fills and ≈ 4 ms of a batch-64 β-VAE step on the 2-core CPU, and changes no result."""
    trainer = L.Trainer(
        max_steps=config.steps if max_steps is None else max_steps,
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        logger=[TensorBoardLogger(run_dir, name="tb", version="", default_hp_metric=False),
                CSVLogger(run_dir, name="csv", version="")],
        callbacks=callbacks
        + ([TQDMProgressBar(refresh_rate=progress_refresh_rate(config.steps, config.log_every))]
           if config.progress else []),
        log_every_n_steps=config.log_every,
        enable_checkpointing=False,
        enable_progress_bar=config.progress,
        enable_model_summary=False,
        val_check_interval=config.val_every if has_val else None,
        check_val_every_n_epoch=None,
        limit_val_batches=1.0 if has_val else 0,
        num_sanity_val_steps=0,
        # with --cuda-graphs the module applies autocast itself (inside the captured step)
        precision="32-true" if config.cuda_graphs else config.precision,
        deterministic=device.type == "cpu",
    )
    if device.type == "cpu":
        torch.utils.deterministic.fill_uninitialized_memory = False
    return trainer


def place_dataset(dataset, device: torch.device, max_fraction: float = 0.5):
    """Hold the dataset on the GPU when training there and it fits in ``max_fraction`` of free memory:
    procedural dSprites is rendered straight onto the GPU bit-packed (0.38 GB), an array dataset is
    copied there as uint8; batches are then gathered by index on the device. Otherwise the data stays
    on the host (rendered on demand, or read from its memory map)."""
    if device.type != "cuda":
        return dataset
    free, _ = torch.cuda.mem_get_info(device)
    if hasattr(dataset, "materialize") and getattr(dataset, "packed", None) is None:
        need = dataset.num_images * dataset.observation_shape[1] * dataset.observation_shape[2] // 8
        return dataset.materialize(device, chunk=8192) if need < max_fraction * free else dataset
    images = getattr(dataset, "images", None)
    if images is not None and images.nbytes < max_fraction * free:
        return dataset.to(device)
    return dataset


def init_from_checkpoint(module: VAEModule, path: str | Path) -> None:
    """Start from another run's weights (e.g. λβ-VAE from a β-VAE); the VAE must be the same shape."""
    state, saved, _ = read_checkpoint(path)
    vae_state = {k[4:]: v for k, v in state.items() if k.startswith("vae.")}
    for key in ("architecture", "latent_dim", "channels"):
        if saved.get(key) != module.config.get(key):
            raise DisentkitError(f"--init-from {path}: checkpoint has {key}={saved.get(key)!r} but this run has "
                                 f"{key}={module.config.get(key)!r}; match them or pick another checkpoint")
    module.vae.load_state_dict(vae_state)
