"""Callbacks: safetensors checkpoints (last, best on validation loss, final)."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L

from .checkpoint import save_checkpoint


class SafetensorsCheckpoint(L.Callback):
    """Writes ``last.safetensors`` every ``every`` steps, ``best.safetensors`` whenever the validation
    loss improves, and ``model.safetensors`` when training ends. Each carries the full config."""

    def __init__(self, run_dir: str | Path, every: int, monitor: str = "val/loss") -> None:
        self.run_dir, self.every, self.monitor = Path(run_dir), every, monitor
        self.best = math.inf

    def _save(self, module, name: str, **meta) -> None:
        save_checkpoint(self.run_dir / name, module.export_state(), module.config, step=module.vae_step, **meta)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        step = module.vae_step  # VAE updates (global_step also counts e.g. FactorVAE's discriminator steps)
        if self.every and step % self.every == 0 and step < module.config["steps"]:
            self._save(module, "last.safetensors")

    def on_validation_end(self, trainer, module) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None and float(value) < self.best:
            self.best = float(value)
            self._save(module, "best.safetensors", val_loss=self.best)

    def on_train_end(self, trainer, module) -> None:
        self._save(module, "model.safetensors")
        (self.run_dir / "last.safetensors").unlink(missing_ok=True)
