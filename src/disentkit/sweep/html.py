"""The sweep report: one self-contained HTML file (Jinja2 template ``viz/templates/sweep.html.j2``, every
image embedded as base64).

It holds the results table (mean ± std over seeds), the plots of :mod:`.plots`, and per run (the first
finished seed of each configuration by default) its per-factor scores, reconstructions and latent-traversal
GIF, made by the single-run report's :func:`disentkit.viz.report.run_pictures`. The inline status script
of the pages' base template checks, once the page has loaded, that every image decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..viz.page import Picture, picture, render
from ..viz.report import Latent, RunPictures, gif_picture, load_run, per_factor, range_text, run_pictures
from .aggregate import RunRecord, aggregate, cell, table
from .folders import read_events
from .grid import _short
from .plots import make_plots
from .udr import UDR_COLUMNS, ranking

MAX_RUN_SECTIONS = 48


@dataclass
class RunSection:
    """What the page shows of one run."""

    record: RunRecord
    values: str
    per_factor: dict[str, dict[str, dict[str, float]]]
    latents: list[Latent]
    recon: Picture
    gif: Picture

    @property
    def nbytes(self) -> int:
        """Characters the section's embedded images add to the page."""
        return self.recon.nbytes + self.gif.nbytes


def _failures(sweep_dir: Path) -> dict[str, str]:
    """Last failure reason of each run, from ``events.jsonl``."""
    out: dict[str, str] = {}
    for e in read_events(sweep_dir):
        if e.get("event") == "failed":
            out[e["run"]] = e.get("reason", "")
        elif e.get("event") == "done":
            out.pop(e.get("run"), None)
    return out


def embedded(pics: RunPictures, run_id: str) -> tuple[Picture, Picture]:
    """The two images a run section embeds: reconstructions (a palette PNG at native size, shown doubled)
    and the traversal GIF; together they bound the page's size per run (``tests/test_report.py``)."""
    return (picture(pics.recon, f"reconstructions {run_id}", 2),
            gif_picture(pics, f"traversal animation {run_id}"))


def run_section(r: RunRecord, folder: Path, steps: int = 10, limit: float = 2.0, seed: int = 0) -> RunSection:
    """Pictures of run ``r`` (written into ``folder``) and what the page says about it."""
    ck, data, metrics = load_run(r.folder)
    pics = run_pictures(ck.vae, data, metrics, folder, steps=steps, limit=limit, seed=seed)
    return RunSection(r, ", ".join(f"{k} {v:.3f}" for k, v in r.values.items()), per_factor(metrics), pics.latents,
                      *embedded(pics, r.spec.run_id))


def _table(rows: list, columns: list[str], hps: list[str]) -> dict[str, Any]:
    """Header and cells of the results table (left-aligned: the first three columns)."""
    head = ["stage", "model", "dataset", *hps, "seeds", *columns]
    body = [[row.spec.stage, row.spec.model, row.spec.dataset,
             *[_short(row.spec.hparams[h]) if h in row.spec.hparams else "" for h in hps],
             f"{sum(r.done for r in row.runs)}/{len(row.runs)}", *[cell(row.mean[c], row.std[c]) for c in columns]]
            for row in rows]
    return {"head": head, "body": body, "left": 3}


def _udr_table(rank: dict[str, Any] | None) -> dict[str, Any] | None:
    """The UDR ranking (``aggregate --udr``) as a table, with its rank correlations; None without UDR."""
    if not rank:
        return None
    cols = [*UDR_COLUMNS, *rank["metrics"]]
    body = [[str(k), row["label"], str(row["seed"]), *["" if row[c] is None else f"{row[c]:.3f}" for c in cols]]
            for k, row in enumerate(rank["rows"], 1)]
    corr = [(k.replace("~", " vs "), f"{v:+.2f}") for k, v in rank["correlation"].items() if v is not None]
    return {"head": ["rank", "run", "seed", *cols], "body": body, "left": 2, "corr": corr, "runs": rank["runs"]}


def write_sweep_report(sweep_dir: str | Path, out: str | Path | None = None, steps: int = 10, limit: float = 2.0,
                       seed: int = 0, per_run: str = "first-seed") -> Path:
    """Aggregate, plot and write ``report.html`` (in ``out``, default the sweep folder); returns its path."""
    sweep_dir = Path(sweep_dir)
    out_dir = Path(out) if out else sweep_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    aggregate(sweep_dir)
    rec, records, rows, columns, hps = table(sweep_dir)
    plots = make_plots(rows, records, columns, out_dir / "report_files" / "plots")
    failures = _failures(sweep_dir)
    chosen = []
    if per_run != "none":
        for row in rows:
            finished = [r for r in row.runs if r.done]
            chosen.extend(finished if per_run == "all" else finished[:1])
    shown = chosen[:MAX_RUN_SECTIONS]
    sections = [run_section(r, out_dir / "report_files" / r.spec.run_id, steps, limit, seed) for r in shown]
    done_ids = {r.spec.run_id for r in records if r.done}
    page = render("sweep.html.j2", rec=rec, folder=str(sweep_dir), done=len(done_ids), total=len(records),
                  udr=_udr_table(ranking(records, columns)),
                  failures={k: v for k, v in failures.items() if k not in done_ids}, table=_table(rows, columns, hps),
                  plots=[(p, picture(p.path, p.title)) for p in plots], runs=sections,
                  more=len(chosen) - len(shown), range=range_text(limit))
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
