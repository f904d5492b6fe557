"""A single run's report: ``report.html``, one self-contained page (Jinja2 template ``run.html.j2``, every
image embedded) with the metrics against the untrained baseline, MIG per factor, the MI matrix, training
curves, the KL per latent, reconstructions and labelled latent traversals; beside it the PNG/GIF files
and charts it shows, and ``kl_per_latent.json``.

The VAE is used through ``vae.encode`` and ``vae.decode`` only. The metrics come from the run folder's
``metrics.json`` (written by ``disentkit evaluate``), wherever the report is written.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import FactorDataset, get_dataset
from ..train.checkpoint import Checkpoint, load_checkpoint
from .charts import bar_chart, curves_chart, mi_chart
from .images import (device_of, reconstruction_grid, sample_images, sample_traversal, save_png, traversal_gif,
                     traversal_grid, traversal_rows, upscale)
from .page import Picture, picture, render

NO_FACTOR = "—"


@dataclass
class Latent:
    """One latent of the code: its KL to the prior and the factor it shares the most MI with."""

    index: int
    kl: float
    factor: str = NO_FACTOR
    mi: float | None = None

    @property
    def name(self) -> str:
        """``z<index>``, as the charts label it."""
        return f"z{self.index}"


@dataclass
class RunPictures:
    """What :func:`run_pictures` made: latents most informative first, the reconstruction grid and one
    traversal strip per latent (native size, in the latents' order), the traversal GIF's path."""

    folder: Path
    latents: list[Latent]
    recon: np.ndarray
    rows: list[np.ndarray]
    gif: Path
    steps: int
    limit: float


@dataclass
class MetricRow:
    """A row of the metrics table: a metric's headline value (or one of its other scalars, ``sub``)."""

    name: str
    value: float
    baseline: float | None
    sub: bool = False


def load_run(checkpoint: str | Path, dataset: str | None = None, data_root: str | None = None,
             vae: torch.nn.Module | None = None) -> tuple[Checkpoint, FactorDataset, dict[str, Any]]:
    """The checkpoint, the dataset its pictures come from (default: its training data), and the run
    folder's ``metrics.json`` ({} before ``disentkit evaluate``). ``vae``: a fresh instance of a
    run's own module (runs trained with ``fit(config, vae=...)``)."""
    ck = load_checkpoint(checkpoint, vae=vae)
    data = get_dataset(dataset or ck.config["dataset"], data_root=data_root or ck.config.get("data_root"))
    path = ck.path.parent / "metrics.json"
    return ck, data, json.loads(path.read_text()) if path.is_file() else {}


@torch.no_grad()
def kl_per_latent(vae: torch.nn.Module, dataset: FactorDataset, num: int = 1024, seed: int = 0) -> np.ndarray:
    """Average KL(q(z_j|x) ‖ p(z_j)) per latent: which latents carry information."""
    from ..models.base import gaussian_kl

    mu, logvar = vae.encode(sample_images(dataset, num, seed, device_of(vae)))
    return gaussian_kl(mu, logvar).mean(0).cpu().numpy()


def mi_matrix(metrics: dict[str, Any]) -> np.ndarray | None:
    """MIG's MI matrix (latents × factors, nats) of the record, None when MIG was not evaluated."""
    mi = metrics.get("results", {}).get("mig", {}).get("mi_matrix")
    return np.asarray(mi, dtype=float) if mi else None


def factor_names(metrics: dict[str, Any], count: int) -> list[str]:
    """The record's factor names (``factor <j>`` where it has none)."""
    names = list(metrics.get("factor_names") or [])
    return names if len(names) == count else [f"factor {j}" for j in range(count)]


def latents(kl: np.ndarray, metrics: dict[str, Any]) -> list[Latent]:
    """Every latent, largest KL first, with the factor of the largest MI in its row of MIG's MI matrix."""
    mi = mi_matrix(metrics)
    if mi is not None and mi.shape[0] != len(kl):
        mi = None  # scored with another code than this checkpoint's: no labels rather than wrong ones
    names = factor_names(metrics, mi.shape[1]) if mi is not None else []
    out = []
    for i in np.argsort(-kl, kind="stable"):
        best = int(np.argmax(mi[i])) if mi is not None else None
        out.append(Latent(int(i), float(kl[i]), names[best] if best is not None else NO_FACTOR,
                          float(mi[i, best]) if best is not None else None))
    return out


def metric_rows(metrics: dict[str, Any]) -> list[MetricRow]:
    """Each metric's headline value and its other scalars, beside the untrained baseline's where recorded."""
    rows = []
    base = metrics.get("untrained", {})
    for name, res in metrics.get("results", {}).items():
        if not isinstance(res, dict) or not isinstance(res.get(name), (int, float)):
            continue
        rows.append(MetricRow(name, float(res[name]), base.get(name, {}).get(name)))
        for key, v in res.items():
            if key != name and isinstance(v, float):
                rows.append(MetricRow(key, v, base.get(name, {}).get(key), sub=True))
    return rows


def per_factor(metrics: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """``{metric: {"trained": {factor: v}, "untrained": {factor: v}}}`` of the metrics scored per factor."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, res in metrics.get("results", {}).items():
        pf = res.get(f"{name}_per_factor") if isinstance(res, dict) else None
        if isinstance(pf, dict) and pf:
            out[name] = {"trained": {k: float(v) for k, v in pf.items()}}
            base = metrics.get("untrained", {}).get(name, {}).get(f"{name}_per_factor")
            if isinstance(base, dict):
                out[name]["untrained"] = {k: float(v) for k, v in base.items()}
    return out


def run_pictures(vae: torch.nn.Module, dataset: FactorDataset, metrics: dict[str, Any], folder: str | Path,
                 steps: int = 10, limit: float = 2.0, seed: int = 0) -> RunPictures:
    """Write ``reconstructions.png``, ``traversals.png`` (rows: latents, most informative first),
    ``traversals.gif`` and ``kl_per_latent.json`` into ``folder``; return them for a page."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kl = kl_per_latent(vae, dataset, seed=seed)
    lat = latents(kl, metrics)
    order = [x.index for x in lat]
    recon = reconstruction_grid(vae, sample_images(dataset, 8, seed, device_of(vae)))
    save_png(upscale(recon), folder / "reconstructions.png")
    frames = sample_traversal(vae, dataset, steps, limit, seed, order)
    save_png(upscale(traversal_grid(frames)), folder / "traversals.png")
    gif = traversal_gif(frames, folder / "traversals.gif")
    (folder / "kl_per_latent.json").write_text(json.dumps(
        {"kl": kl.tolist(), "order": order, "best_factor": {x.name: x.factor for x in lat}}, indent=1))
    return RunPictures(folder, lat, recon, traversal_rows(frames), gif, steps, limit)


CHARTS = {"mig": "MIG per factor", "mi": "MI matrix", "curves": "training curves", "kl": "KL per latent"}


def run_charts(run_dir: Path, metrics: dict[str, Any], pics: RunPictures) -> dict[str, Path | None]:
    """The page's charts (keys of ``CHARTS``) as PNGs in the pictures' folder: MIG per factor (against the
    untrained model), the MI matrix, training curves from ``run_dir``'s log, KL per latent; None for a chart
    whose data does not exist yet."""
    from ..train.session import read_rows

    out = pics.folder
    charts: dict[str, Path | None] = dict.fromkeys(CHARTS)
    mig = per_factor(metrics).get("mig")
    if mig:
        series = {k: [v.get(f, np.nan) for f in mig["trained"]] for k, v in mig.items()}
        charts["mig"] = bar_chart(list(mig["trained"]), series, "MIG (normalized MI gap)", "MIG per factor",
                                  out / "mig_per_factor.png")
    mi = mi_matrix(metrics)
    if mi is not None:
        charts["mi"] = mi_chart(mi, factor_names(metrics, mi.shape[1]), "MI between latents and factors",
                                out / "mi_matrix.png")
    charts["curves"] = curves_chart(read_rows(run_dir / "csv" / "metrics.csv", sys.maxsize),
                                    out / "training_curves.png")
    by_index = sorted(pics.latents, key=lambda x: x.index)
    charts["kl"] = bar_chart([x.name for x in by_index], {"KL": [x.kl for x in by_index]}, "KL (nats)",
                             "KL(q(z_j|x) ‖ p(z_j)) per latent", out / "kl_per_latent.png")
    return charts


def range_text(limit: float) -> str:
    """The traversals' range as the page words it: ``value from −2 to +2``."""
    return f"value from −{limit:g} to +{limit:g}"


def write_report(checkpoint: str | Path, out: str | Path | None = None, dataset: str | None = None,
                 steps: int = 10, limit: float = 2.0, seed: int = 0, data_root: str | None = None,
                 vae: torch.nn.Module | None = None) -> Path:
    """Write the report files into ``out`` (default: the checkpoint's run folder); returns the HTML path.
    ``data_root`` locates a real dataset (default: the one the run trained from); ``vae`` is a fresh
    instance of the run's own module for runs trained with ``fit(config, vae=...)``.

    Example:

        >>> import tempfile
        >>> from disentkit.train import TrainConfig, fit
        >>> from disentkit.viz import write_report
        >>> run = fit(TrainConfig(steps=2, batch_size=8, latent_dim=4, out=tempfile.mkdtemp() + "/r", progress=False))
        trained beta_vae for 2 steps...
        >>> write_report(run, steps=5).name        # before `disentkit evaluate`: pictures, no metrics
        'report.html'
    """
    ck, data, metrics = load_run(checkpoint, dataset, data_root, vae)
    out_dir = Path(out) if out else ck.path.parent
    pics = run_pictures(ck.vae, data, metrics, out_dir, steps=steps, limit=limit, seed=seed)
    charts = run_charts(ck.path.parent, metrics, pics)
    shown = {k: picture(p, CHARTS[k]) if p else None for k, p in charts.items()}
    cfg = ck.config
    page = render("run.html.j2", config=cfg, run=str(ck.path.parent), checkpoint=ck.path.name,
                  evaluated=bool(metrics.get("results")), metrics=metric_rows(metrics),
                  baseline="untrained" in metrics, per_factor=per_factor(metrics), charts=shown,
                  hparams=", ".join(f"{k}={v}" for k, v in cfg.get("hparams", {}).items()),
                  recon=picture(pics.recon, "reconstructions", 2),
                  latents=list(zip(pics.latents, (picture(r, f"traversal of {x.name}", 1.5)
                                                  for x, r in zip(pics.latents, pics.rows)))),
                  gif=gif_picture(pics),
                  range=range_text(limit), steps=steps, dataset=data.name)
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def gif_picture(pics: RunPictures, alt: str = "traversal animation") -> Picture:
    """The traversal GIF for a page, its images shown twice their pixel size (as high as two strips)."""
    return picture(pics.gif, alt, height=2 * pics.rows[0].shape[0])
