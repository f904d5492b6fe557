"""``disentkit.load``: a trained run as one object that encodes, decodes, traverses, scores and saves::

    import disentkit
    from disentkit.data import get_dataset
    from disentkit.metrics import mig
    model = disentkit.load("runs/demo")                    # a run folder or a .safetensors file
    z = model.encode(images)                                # (N, D) posterior means; sample=True draws
    x_hat = model.reconstruct(images)                       # (N, C, H, W) in [0, 1]
    mig(model, get_dataset("dsprites_procedural"))["mig"]

Images are float tensors or arrays (N, C, H, W) in [0, 1], or uint8 (scaled by 1/255, binary {0, 1}
kept as is); one image (C, H, W) is a batch of one. Everything runs under ``torch.inference_mode`` on
the model's device and returns tensors there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.arrays import uint8_scale
from .errors import DisentkitError
from .models import GaussianVAE


def as_images(images: Any, device: torch.device | str = "cpu") -> torch.Tensor:
    """A float32 batch (N, C, H, W) in [0, 1] on ``device`` from a tensor or array (one (C, H, W) image
    is a batch of one; uint8 is scaled by 1/255 unless it is binary)."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise DisentkitError(f"images must be (N, C, H, W) or one (C, H, W) image, got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() * uint8_scale(x)
    return x.to(device=device, dtype=torch.float32)


@dataclass
class Model:
    """A trained disentkit VAE with its config: ``encode``, ``decode``, ``reconstruct``, ``traverse``,
    ``save``. Metrics accept it directly (its mean representation, dlib's default).

    Example:

        >>> import tempfile, torch, disentkit
        >>> from disentkit.train import TrainConfig, fit
        >>> run = fit(TrainConfig(steps=2, batch_size=8, latent_dim=6, out=tempfile.mkdtemp() + "/r", progress=False))
        trained beta_vae for 2 steps...
        >>> model = disentkit.load(run)
        >>> images = torch.rand(4, 1, 64, 64).round()
        >>> model.encode(images).shape, model.reconstruct(images).shape
        (torch.Size([4, 6]), torch.Size([4, 1, 64, 64]))
        >>> model.traverse(images[0], steps=5, latents=[0, 1]).shape       # 2 latents × 5 values
        torch.Size([2, 5, 1, 64, 64])
        >>> model.decode(torch.zeros(1, 6)).shape, model.save(run / "copy.safetensors").name
        (torch.Size([1, 1, 64, 64]), 'copy.safetensors')
    """

    vae: GaussianVAE
    config: dict[str, Any]
    path: Path | None = None
    state: dict[str, torch.Tensor] | None = None  # every tensor of the checkpoint (objective's too), for save

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def latent_dim(self) -> int:
        return int(self.vae.latent_dim)

    def to(self, device: str | torch.device) -> "Model":
        """Move the model to ``device``; returns self."""
        self.vae.to(device)
        return self

    @torch.inference_mode()
    def encode(self, images: Any, sample: bool = False, seed: int | None = None) -> torch.Tensor:
        """Codes (N, D): the posterior means μ(x), or with ``sample=True`` one draw z ~ q(z|x)
        (``seed`` makes the draw repeatable)."""
        mu, logvar = self.vae.encode(as_images(images, self.device))
        if not sample:
            return mu
        gen = None if seed is None else torch.Generator(device=mu.device).manual_seed(seed)
        return mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen, device=mu.device)

    @torch.inference_mode()
    def posterior(self, images: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance (N, D) each of q(z|x)."""
        return self.vae.encode(as_images(images, self.device))

    @torch.inference_mode()
    def decode(self, z: Any) -> torch.Tensor:
        """Images (N, C, H, W) in [0, 1]: the decoder's Bernoulli means sigmoid(logits) of codes (N, D)."""
        z = torch.as_tensor(z, dtype=torch.float32, device=self.device)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise DisentkitError(f"codes must be (N, {self.latent_dim}) for this model, got shape {tuple(z.shape)}")
        return torch.sigmoid(self.vae.decode(z))

    def reconstruct(self, images: Any) -> torch.Tensor:
        """decode(encode(images)): reconstructions from the posterior means, (N, C, H, W) in [0, 1]."""
        return self.decode(self.encode(images))

    def traverse(self, image: Any, steps: int = 10, limit: float = 2.0,
                 latents: list[int] | None = None) -> torch.Tensor:
        """Latent traversals of one image: (len(latents), steps, C, H, W), latent d swept from −limit to
        +limit with the others held at μ(image) (all latents unless ``latents`` names some)."""
        from .viz.images import traversal_frames

        x = as_images(image, self.device)
        if len(x) != 1:
            raise DisentkitError(f"traverse takes one image, got {len(x)}")
        with torch.inference_mode():
            frames = traversal_frames(self.vae, x[0], steps=steps, limit=limit)  # (steps, D, C, H, W)
        frames = frames.transpose(0, 1)
        return frames if latents is None else frames[list(latents)]

    def representation(self, kind: str = "mean", seed: int = 0):
        """The encode function metrics use (``mean``, dlib's default, or ``sampled``)."""
        from .metrics.utils import representation_function

        return representation_function(self.vae, kind, seed=seed)

    def save(self, path: str | Path) -> Path:
        """Write the model as a disentkit checkpoint (safetensors + its config), loadable by :func:`load`
        and by ``disentkit evaluate`` / ``report``; an existing file is replaced atomically."""
        from .train.checkpoint import save_checkpoint

        state = dict(self.state or {})
        state.update({f"vae.{k}": v for k, v in self.vae.state_dict().items()})
        path = Path(path)
        return save_checkpoint(path / "model.safetensors" if path.suffix != ".safetensors" else path,
                               state, self.config)

    def __repr__(self) -> str:
        where = f" from {self.path}" if self.path else ""
        return (f"Model({self.config.get('model')}, {self.latent_dim} latents, dataset "
                f"{self.config.get('dataset')}{where})")


def load(path: str | Path, device: str | torch.device = "cpu", vae: torch.nn.Module | None = None) -> Model:
    """Load a trained run (its folder: ``best`` then ``model`` checkpoint) or a ``.safetensors`` checkpoint
    as a :class:`Model` on ``device``, in eval mode. Never unpickles code. A run of your own VAE
    (``fit(config, vae=MyVAE())``) loads into ``vae``, a fresh instance of its class.

    Example:

        >>> import tempfile, disentkit
        >>> from disentkit.data import get_dataset
        >>> from disentkit.metrics import mig
        >>> from disentkit.train import TrainConfig, fit
        >>> run = fit(TrainConfig(steps=2, batch_size=8, out=tempfile.mkdtemp() + "/r", progress=False))
        trained beta_vae for 2 steps...
        >>> model = disentkit.load(run)           # or disentkit.load(run / "model.safetensors")
        >>> model
        Model(beta_vae, 10 latents, dataset dsprites_procedural from .../model.safetensors)
        >>> 0 <= mig(model, get_dataset("dsprites_procedural"), num_train=1000)["mig"] <= 1
        True
    """
    from .train.checkpoint import load_checkpoint

    ck = load_checkpoint(path, device=device, vae=vae)
    return Model(ck.vae, ck.config, ck.path, ck.state)
