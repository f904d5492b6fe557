"""The LightningModule: a Gaussian VAE trained with one registered objective."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from ..models import GaussianVAE, LossTerms, get_objective
from .datamodule import num_train_images


class VAEModule(L.LightningModule):
    """Holds ``vae`` (encoder/decoder) and ``objective`` (the loss, plus any modules it owns).

    Logging goes through ``self.log`` with tensors; Lightning reads them to the host only every
    ``log_every_n_steps``, so the step itself never waits on the device.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.config = config
        self.vae = GaussianVAE(config["architecture"], int(config["channels"]), int(config["latent_dim"]))
        cls = get_objective(config["model"])
        self.objective = cls(reconstruction=config["reconstruction"], latent_dim=int(config["latent_dim"]),
                             dataset_size=num_train_images(config), **config["hparams"])
        if getattr(self.objective, "manual_optimization", False):
            self.automatic_optimization = False
        # speed options (train/fast.py); all default off
        self.channels_last = bool(config.get("channels_last"))
        if self.channels_last:
            self.vae.to(memory_format=torch.channels_last)
        self.cuda_graphs = bool(config.get("cuda_graphs")) and self.automatic_optimization
        if self.cuda_graphs:
            self.automatic_optimization = False  # the captured step runs backward and Adam itself
        self._captured = None
        mode = config.get("compile", "off")
        self._loss = self._train_loss if mode in ("off", None) else torch.compile(
            self._train_loss, mode=None if mode == "default" else mode)
        self.steps_per_update = self.objective.optimizer_steps_per_update()

    @property
    def vae_step(self) -> int:
        """Number of VAE updates so far (``global_step`` counts every optimizer's steps when an
        objective steps several optimizers by hand, e.g. FactorVAE's VAE + discriminator)."""
        return self.global_step // self.steps_per_update

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.encode_mean(x)

    def _train_loss(self, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = self.objective.loss(self.vae(batch), batch, step)
        return terms.loss, terms.logs

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor | None:
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        if self.cuda_graphs:
            terms = self._captured_step(batch)
        elif not self.automatic_optimization:
            terms = self.objective.manual_step(self, batch)
        else:
            terms = LossTerms(*self._loss(batch, self.vae_step))
        if _should_log(self):  # Lightning writes logs every log_every steps: skip self.log otherwise
            if self.cuda_graphs:  # the captured step's outputs are overwritten by the next replay
                terms = LossTerms(terms.loss.clone(), {k: v.clone() for k, v in terms.logs.items()})
            self._log_terms("train", terms, on_step=True, prog_bar=True)
        return terms.loss if self.automatic_optimization else None

    def _captured_step(self, batch: torch.Tensor) -> LossTerms:
        """Forward, backward and Adam as one CUDA graph (on a CPU: the same step, run eagerly)."""
        from .fast import CapturedStep

        if self._captured is None:
            opt = self.optimizers().optimizer
            self._captured = CapturedStep(lambda x: self._train_loss(x, self.global_step), list(self._adam_params()), opt,
                                          batch, precision=self.config.get("precision", "32-true"))
        loss, logs = self._captured(batch)
        # the optimizer stepped outside Lightning's wrapper: count the step as Lightning would
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        progress.increment_ready()
        progress.increment_completed()
        return LossTerms(loss, logs)

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        terms: LossTerms = self.objective.loss(self.vae(batch), batch, self.vae_step)
        self._log_terms("val", terms, on_step=False, prog_bar=False)

    def _log_terms(self, stage: str, terms: LossTerms, on_step: bool, prog_bar: bool) -> None:
        for k, v in terms.logs.items():
            show = prog_bar and k in ("loss", "reconstruction", "kl")
            self.log(f"{stage}/{k}", v.detach(), on_step=on_step, on_epoch=not on_step, prog_bar=show,
                     batch_size=self.config["batch_size"])

    def _adam_params(self) -> list[torch.Tensor]:
        return list(self.vae.parameters()) + list(self.objective.vae_parameters())

    def configure_optimizers(self):
        from .fast import make_adam

        opt = make_adam(self._adam_params(), float(self.config["lr"]), capturable=self.cuda_graphs)
        extra = self.objective.extra_optimizers()
        return [opt, *extra] if extra else opt

    def export_state(self) -> dict[str, torch.Tensor]:
        """Everything a checkpoint holds: ``vae.*`` and ``objective.*`` tensors."""
        return {**{f"vae.{k}": v for k, v in self.vae.state_dict().items()},
                **{f"objective.{k}": v for k, v in self.objective.state_dict().items()}}


def _should_log(module: L.LightningModule) -> bool:
    """Whether Lightning writes logged values this step (``log_every``); outside a trainer, always."""
    try:
        return bool(module.trainer._logger_connector.should_update_logs)
    except (AttributeError, RuntimeError):
        return True
