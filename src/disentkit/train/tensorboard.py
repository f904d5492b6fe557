"""What TensorBoard shows of a run beyond its scalars: the per-latent KL as one multi-line chart (Custom
Scalars tab), reconstructions and latent traversals as images (Images tab), and the run's hyperparameters
with its final losses and metrics (HParams tab), so runs and sweeps compare there.

Written through the run's Lightning ``TensorBoardLogger`` (``<run>/tb``) with torch's summary writers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

#: the Custom Scalars layout: every latent's batch KL (``train/kl_dim/<d>``) in one chart
KL_LAYOUT = {"latents": {"KL per latent (nats)": ["Multiline", [r"train/kl_dim/\d+"]],
                         "loss terms": ["Multiline", [r"train/(loss|reconstruction|kl)$"]]}}


def write_layout(tb) -> None:
    """The Custom Scalars layout, once per run folder (written again on resume: the same layout)."""
    tb.experiment.add_custom_scalars(KL_LAYOUT)


@torch.no_grad()
def log_images(tb, vae: torch.nn.Module, dataset, step: int, seed: int, num: int = 8, steps: int = 8) -> None:
    """``images/reconstructions`` (originals above reconstructions) and ``images/traversals`` (one row per
    latent, −2 … +2 around the first image's μ) at ``step``; the model is put back in its mode."""
    from ..viz.images import reconstruction_grid, traversal_frames, traversal_grid

    was = vae.training
    vae.eval()
    try:
        device = next(vae.parameters()).device
        rng = np.random.default_rng(seed)
        x = dataset.sample_observations_from_factors(dataset.sample_factors(num, rng), rng, device=device)
        tb.experiment.add_image("images/reconstructions", reconstruction_grid(vae, x), step, dataformats="HWC")
        tb.experiment.add_image("images/traversals", traversal_grid(traversal_frames(vae, x[0], steps=steps)), step,
                                dataformats="HWC")
    finally:
        vae.train(was)


def flat_hparams(cfg: dict[str, Any]) -> dict[str, Any]:
    """The run's settings as TensorBoard hparams (numbers, strings, booleans): the objective's own
    hyperparameters as ``hparams.<name>``."""
    keep = ("model", "dataset", "seed", "steps", "epochs", "batch_size", "lr", "latent_dim", "architecture",
            "reconstruction", "precision")
    out = {k: cfg[k] for k in keep if isinstance(cfg.get(k), (int, float, str, bool))}
    out.update({f"hparams.{k}": v for k, v in (cfg.get("hparams") or {}).items() if isinstance(v, (int, float, str, bool))})
    return out


def log_hparams(writer, cfg: dict[str, Any], step: int) -> None:
    """The run's HParams session: its settings. No experiment summary is written, so TensorBoard's HParams
    tab takes every scalar of the run folder as a metric column, final losses and (after ``disentkit
    evaluate``) ``eval/<metric>`` alike; it keeps the first session a folder holds, so the one a resumed
    run writes again changes nothing."""
    from torch.utils.tensorboard.summary import hparams

    _, start, end = hparams(flat_hparams(cfg), {})
    writer.file_writer.add_summary(start, step)
    writer.file_writer.add_summary(end, step)
    writer.flush()


def log_evaluation(run_dir: str | Path, results: dict[str, dict], step: int) -> None:
    """After ``disentkit evaluate``: the headline metrics as ``eval/<metric>`` scalars at the checkpoint's step,
    in the run's own TensorBoard folder (the HParams tab shows them beside the run's settings); nothing when
    the run has no such folder."""
    tb_dir = Path(run_dir) / "tb"
    if not tb_dir.is_dir():
        return
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tb_dir))
    try:
        for name, r in results.items():
            value = r.get(name)
            if isinstance(value, (int, float)) and np.isfinite(value):
                writer.add_scalar(f"eval/{name}", float(value), step)
    finally:
        writer.close()
