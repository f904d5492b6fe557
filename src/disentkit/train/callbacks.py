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


class MetricsCallback(L.Callback):
    """Computes disentanglement metrics every ``every`` training batches and logs them as
    ``metrics/<name>`` (headline values) to every logger (TensorBoard, CSV).

    ``params`` overrides metric parameters (e.g. ``{"mig": {"num_train": 2000}}``) to keep the
    cost small during training; the seed is fixed, so successive values differ only by the model.
    """

    def __init__(self, every: int, metrics: str | list[str], dataset, seed: int = 0,
                 representation: str = "mean", params: dict | None = None) -> None:
        from ..metrics import resolve_metrics

        self.every, self.names = int(every), resolve_metrics(metrics)  # unknown names fail before training
        self.dataset, self.seed, self.representation = dataset, seed, representation
        self.params = params or {}
        self.history: list[dict] = []
        self._batches = 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self._batches += 1
        if self.every <= 0 or self._batches % self.every:
            return
        from ..metrics import evaluate, representation_function

        encode = representation_function(module.vae, self.representation, seed=self.seed)
        results = evaluate(encode, self.dataset, self.names, seed=self.seed, params=self.params)
        values = {f"metrics/{n}": float(r[n]) for n, r in results.items()}
        self.history.append({"step": trainer.global_step, **values})
        for logger in trainer.loggers:
            logger.log_metrics(values, step=trainer.global_step)
