"""The sweep plots (matplotlib, Agg backend): what E1/E2 draw by hand, from any sweep.

- metric boxplots across seeds, one panel per dataset (E2's boxplots);
- heatmaps of a metric's mean over two hyperparameters, e.g. λ × β (E2's λβ-VAE heatmaps);
- reconstruction and KL against a hyperparameter, mean ± std (the β trade-off of E1);
- MI heatmaps, latents × factors, from MIG's ``mi_matrix`` (E2);
- training curves (reconstruction, KL) from each run's CSV log, averaged over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ..viz.charts import GRID_ALPHA, draw_mi
from ..viz.charts import save as _save
from .aggregate import RunRecord, Row, read_log
from .grid import _short

MAX_PER_FIGURE = 12


@dataclass
class Plot:
    kind: str       # boxplot, heatmap, tradeoff, mi, curves
    title: str
    path: Path
    caption: str


def _label(row: Row, varying: list[str]) -> str:
    hp = " ".join(f"{k}={_short(row.spec.hparams[k])}" for k in varying if k in row.spec.hparams)
    return f"{row.spec.stage} {hp}".strip()


def _varying(rows: list[Row]) -> list[str]:
    """Hyperparameters that take more than one value across ``rows`` (in first-seen order)."""
    keys: dict[str, set] = {}
    for r in rows:
        for k, v in r.spec.hparams.items():
            keys.setdefault(k, set()).add(repr(v))
    return [k for k, vs in keys.items() if len(vs) > 1]


def headline_metrics(rows: list[Row], columns: list[str]) -> list[str]:
    """Metric columns named like a metric the sweep ran (``mig``, ``sap``, ...)."""
    names = {m for row in rows for m in row.spec.metrics}
    return [c for c in columns if c in names] or [c for c in columns if "." not in c and c in names]


def boxplots(rows: list[Row], metric: str, path: Path) -> Path | None:
    datasets = list(dict.fromkeys(r.spec.dataset for r in rows))
    panels = []
    for d in datasets:
        sub = [r for r in rows if r.spec.dataset == d]
        data = [[x.values[metric] for x in r.runs if x.done and metric in x.values] for r in sub]
        if any(data):
            panels.append((d, sub, data))
    if not panels:
        return None
    width = max(5.0, 0.55 * max(len(p[1]) for p in panels) + 2)
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), 4), squeeze=False)
    varying = _varying(rows)
    for ax, (d, sub, data) in zip(axes[0], panels):
        ax.boxplot([x if x else [np.nan] for x in data], showmeans=True)
        for i, xs in enumerate(data, 1):  # every seed as a dot
            ax.plot(np.full(len(xs), i) + np.linspace(-0.08, 0.08, len(xs)), xs, ".", color="k", alpha=0.6)
        ax.set_xticks(range(1, len(sub) + 1), [_label(r, varying) for r in sub], rotation=45, ha="right",
                      fontsize=8)
        ax.set_title(d, fontsize=10)
        ax.set_ylabel(metric)
        ax.grid(axis="y", alpha=GRID_ALPHA)
    return _save(fig, path)


def heatmap(rows: list[Row], y_key: str, x_key: str, metric: str, title: str, path: Path) -> Path | None:
    xs = sorted({r.spec.hparams[x_key] for r in rows if x_key in r.spec.hparams}, key=_sort_key)
    ys = sorted({r.spec.hparams[y_key] for r in rows if y_key in r.spec.hparams}, key=_sort_key)
    grid = np.full((len(ys), len(xs)), np.nan)
    for r in rows:
        if x_key in r.spec.hparams and y_key in r.spec.hparams and r.mean.get(metric) is not None:
            grid[ys.index(r.spec.hparams[y_key]), xs.index(r.spec.hparams[x_key])] = r.mean[metric]
    if np.isnan(grid).all():
        return None
    fig, ax = plt.subplots(figsize=(1.0 * len(xs) + 2.5, 0.7 * len(ys) + 1.8))
    im = ax.imshow(grid, cmap="viridis", aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=8,
                    color="w" if v < np.nanmean(grid) else "k")
    ax.set_xticks(range(len(xs)), [_short(x) for x in xs])
    ax.set_yticks(range(len(ys)), [_short(y) for y in ys])
    ax.set_xlabel(x_key)
    ax.set_ylabel(y_key)
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label=f"{metric} (mean over seeds)")
    return _save(fig, path)


def _sort_key(v):
    return (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))


def tradeoff(rows: list[Row], key: str, title: str, path: Path) -> Path | None:
    """Reconstruction and KL (mean ± std over seeds) against hyperparameter ``key``, a line per dataset."""
    quantities = [q for q in ("reconstruction", "kl") if any(r.mean.get(q) is not None for r in rows)]
    rows = [r for r in rows if isinstance(r.spec.hparams.get(key), (int, float))]
    if not quantities or len({r.spec.hparams[key] for r in rows}) < 2:
        return None
    fig, axes = plt.subplots(1, len(quantities), figsize=(5 * len(quantities), 3.6), squeeze=False)
    others = [k for k in _varying(rows) if k != key]
    for ax, q in zip(axes[0], quantities):
        lines: dict[str, list[Row]] = {}
        for r in rows:
            name = " ".join([r.spec.dataset] + [f"{k}={_short(r.spec.hparams.get(k))}" for k in others])
            lines.setdefault(name, []).append(r)
        for name, rs in lines.items():
            rs = sorted(rs, key=lambda r: r.spec.hparams[key])
            x = [r.spec.hparams[key] for r in rs]
            m = np.array([np.nan if r.mean.get(q) is None else r.mean[q] for r in rs])
            s = np.array([0.0 if r.std.get(q) is None else r.std[q] for r in rs])
            ax.errorbar(x, m, yerr=s, marker="o", capsize=3, label=name)
        xs = [r.spec.hparams[key] for r in rows]
        if min(xs) > 0 and max(xs) / min(xs) >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xlabel(key)
        ax.set_ylabel(q)
        ax.grid(alpha=GRID_ALPHA)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def mi_heatmaps(rows: list[Row], path: Path) -> Path | None:
    """MIG's MI matrix (latents × factors, nats) of the first finished seed of each configuration."""
    items = []
    varying = _varying(rows)
    for r in rows:
        rec = next((x for x in r.runs if x.done and "mi_matrix" in x.metrics.get("mig", {})), None)
        if rec is not None:
            items.append((f"{_label(r, varying)} {r.spec.dataset} s{rec.spec.seed}", rec))
    items = items[:MAX_PER_FIGURE]
    if not items:
        return None
    cols = min(4, len(items))
    nrows = (len(items) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(3.4 * cols, 3.6 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, rec) in zip(axes.flat, items):
        ax.axis("on")
        draw_mi(fig, ax, np.asarray(rec.metrics["mig"]["mi_matrix"]), rec.factor_names, title)
    return _save(fig, path)


def training_curves(rows: list[Row], title: str, path: Path) -> Path | None:
    """Training reconstruction and KL against step, averaged over each configuration's seeds."""
    rows = rows[:MAX_PER_FIGURE]
    varying = _varying(rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    drawn = False
    for r in rows:
        for ax, q in zip(axes, ("reconstruction", "kl")):
            series = []
            for rec in r.runs:
                if not rec.done:
                    continue
                pts = [(int(float(x["step"])), float(x[f"train/{q}"])) for x in read_log(rec.folder)
                       if x.get(f"train/{q}") not in (None, "")]
                if pts:
                    series.append(dict(pts))
            if not series:
                continue
            steps = sorted(set.intersection(*(set(s) for s in series)))
            if not steps:
                continue
            ax.plot(steps, [np.mean([s[t] for s in series]) for t in steps], marker="o" if len(steps) <= 8 else None,
                    label=f"{_label(r, varying)} {r.spec.dataset}")
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    for ax, q in zip(axes, ("reconstruction", "kl")):
        ax.set_xlabel("step")
        ax.set_ylabel(f"train {q}")
        ax.grid(alpha=GRID_ALPHA)
    axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def make_plots(rows: list[Row], records: list[RunRecord], columns: list[str], out_dir: str | Path) -> list[Plot]:
    """Every plot the sweep's results allow, as PNG files in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots: list[Plot] = []

    def add(kind: str, title: str, path: Path | None, caption: str) -> None:
        if path is not None:
            plots.append(Plot(kind, title, path, caption))

    metrics = headline_metrics(rows, columns)
    for m in metrics:
        add("boxplot", f"{m} across seeds", boxplots(rows, m, out / f"box_{m}.png"),
            "Each box: one configuration's seeds (dots); one panel per dataset; triangle: mean.")
    by_stage: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        by_stage.setdefault((r.spec.stage, r.spec.dataset), []).append(r)
    for (stage, dataset), rs in by_stage.items():
        varying = _varying(rs)
        if len(varying) >= 2:
            y_key, x_key = varying[0], varying[-1]
            for m in metrics:
                add("heatmap", f"{m}: {x_key} × {y_key} ({stage}, {dataset})",
                    heatmap(rs, y_key, x_key, m, f"{stage} on {dataset}", out / f"heat_{stage}_{dataset}_{m}.png"),
                    f"Mean {m} over seeds for each {y_key} (rows) and {x_key} (columns).")
    stages = list(dict.fromkeys(r.spec.stage for r in rows))
    for stage in stages:
        rs = [r for r in rows if r.spec.stage == stage]
        varying = _varying(rs)
        if varying:
            add("tradeoff", f"reconstruction and KL vs {varying[0]} ({stage})",
                tradeoff(rs, varying[0], f"{stage}: final training values", out / f"tradeoff_{stage}.png"),
                "Mean ± std over seeds of the final training reconstruction error and KL.")
        add("curves", f"training curves ({stage})", training_curves(rs, stage, out / f"curves_{stage}.png"),
            "Training reconstruction error and KL per logged step, averaged over seeds.")
    add("mi", "MI matrices (MIG)", mi_heatmaps(rows, out / "mi_matrices.png"),
        "Mutual information (nats) between each latent (rows) and factor (columns), first finished seed; "
        "a disentangled code has one bright cell per factor column.")
    return plots
