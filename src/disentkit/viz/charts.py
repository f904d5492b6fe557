"""Matplotlib charts (Agg backend) of one run: bars, the MI matrix, training curves; the sweep plots
(:mod:`disentkit.sweep.plots`) share :func:`save` and :func:`draw_mi` with them."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 80
GRID_ALPHA = 0.3
CURVE_PANELS = (("reconstruction", "reconstruction"), ("kl", "KL (nats)"), ("loss", "loss"))


def save(fig, path: Path) -> Path:
    """Lay out, write as PNG at the reports' resolution and close ``fig``."""
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def draw_mi(fig, ax, mi: np.ndarray, factor_names: Sequence[str] | None, title: str, annotate: bool = False) -> None:
    """MIG's MI matrix (latents × factors, nats) on ``ax``: magma from 0, a colour bar, optionally the values."""
    im = ax.imshow(mi, cmap="magma", aspect="auto", vmin=0)
    names = list(factor_names) if factor_names else list(range(mi.shape[1]))
    ax.set_xticks(range(mi.shape[1]), names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(mi.shape[0]), [f"z{i}" for i in range(mi.shape[0])], fontsize=7)
    ax.set_title(title, fontsize=8)
    if annotate:
        top = float(np.max(mi)) if mi.size else 0.0
        for (i, j), v in np.ndenumerate(mi):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="k" if v > 0.6 * top else "w")
    fig.colorbar(im, ax=ax, fraction=0.046, label="MI (nats)")


def mi_chart(mi: np.ndarray, factor_names: Sequence[str] | None, title: str, path: Path) -> Path:
    """One run's MI matrix as a PNG, values written in the cells."""
    fig, ax = plt.subplots(figsize=(0.75 * mi.shape[1] + 2.8, 0.32 * mi.shape[0] + 1.8))
    draw_mi(fig, ax, mi, factor_names, title, annotate=True)
    return save(fig, path)


def bar_chart(labels: Sequence[str], series: dict[str, Sequence[float]], ylabel: str, title: str,
              path: Path) -> Path:
    """Grouped bars: one group per label, one bar per series (e.g. trained and untrained)."""
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.55 * len(labels) * max(1, len(series)) + 1.5), 3.2))
    for k, (name, values) in enumerate(series.items()):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, list(labels), rotation=45 if len(labels) > 8 else 0, ha="right" if len(labels) > 8 else "center",
                  fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=GRID_ALPHA)
    if len(series) > 1:
        ax.legend(fontsize=7)
    return save(fig, path)


def curves_chart(rows: list[dict], path: Path) -> Path | None:
    """Training (and validation, where logged) reconstruction, KL and loss against step, one panel each;
    None when the log has none of them."""
    panels = []
    for key, label in CURVE_PANELS:
        lines = {}
        for split in ("train", "val"):
            pts = [(r["step"], r[f"{split}/{key}"]) for r in rows if f"{split}/{key}" in r and "step" in r]
            if pts:
                lines[split] = pts
        if lines:
            panels.append((label, lines))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0), squeeze=False)
    for ax, (label, lines) in zip(axes[0], panels):
        for split, pts in lines.items():
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o" if len(xs) <= 8 else None, label=split)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=GRID_ALPHA)
        ax.legend(fontsize=7)
    return save(fig, path)
