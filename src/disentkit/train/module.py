"""The LightningModule: a Gaussian VAE trained with one registered objective."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from ..models import GaussianVAE, LossTerms, get_objective


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
                             dataset_size=config.get("num_images"), **config["hparams"])
        if getattr(self.objective, "manual_optimization", False):
            self.automatic_optimization = False
        self.steps_per_update = self.objective.optimizer_steps_per_update()

    @property
    def vae_step(self) -> int:
        """Number of VAE updates so far (``global_step`` counts every optimizer's steps when an
        objective steps several optimizers by hand, e.g. FactorVAE's VAE + discriminator)."""
        return self.global_step // self.steps_per_update

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.encode_mean(x)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor | None:
        if not self.automatic_optimization:
            terms = self.objective.manual_step(self, batch)
        else:
            terms = self.objective.loss(self.vae(batch), batch, self.vae_step)
        self._log_terms("train", terms, on_step=True, prog_bar=True)
        return terms.loss if self.automatic_optimization else None

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        terms: LossTerms = self.objective.loss(self.vae(batch), batch, self.vae_step)
        self._log_terms("val", terms, on_step=False, prog_bar=False)

    def _log_terms(self, stage: str, terms: LossTerms, on_step: bool, prog_bar: bool) -> None:
        for k, v in terms.logs.items():
            show = prog_bar and k in ("loss", "reconstruction", "kl")
            self.log(f"{stage}/{k}", v.detach(), on_step=on_step, on_epoch=not on_step, prog_bar=show,
                     batch_size=self.config["batch_size"])

    def configure_optimizers(self):
        params = list(self.vae.parameters()) + list(self.objective.vae_parameters())
        opt = torch.optim.Adam(params, lr=self.config["lr"], betas=(0.9, 0.999), eps=1e-8)
        extra = self.objective.extra_optimizers()
        return [opt, *extra] if extra else opt

    def export_state(self) -> dict[str, torch.Tensor]:
        """Everything a checkpoint holds: ``vae.*`` and ``objective.*`` tensors."""
        return {**{f"vae.{k}": v for k, v in self.vae.state_dict().items()},
                **{f"objective.{k}": v for k, v in self.objective.state_dict().items()}}
