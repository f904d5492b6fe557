"""The sweep report: one self-contained HTML file (every image embedded as base64).

It holds the results table (mean ± std over seeds), the plots of :mod:`.plots`, and per run (the
first finished seed of each configuration by default) its reconstructions and latent-traversal GIF,
made with the single-run report of :func:`disentkit.viz.write_report`. A small inline script checks,
once the page has loaded, that every image decoded, and writes the count into ``#status``.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from ..viz import write_report
from .aggregate import aggregate, cell, table
from .grid import _short
from .plots import make_plots

MAX_RUN_SECTIONS = 48

_STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:1.5em auto;padding:0 1em;color:#222}
img{max-width:100%}img.px{image-rendering:pixelated}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}
.run{border-top:1px solid #ddd;padding-top:.5em;margin-top:1em}.fail{color:#a00}figure{margin:1em 0}
figcaption{font-size:13px;color:#555}.small{font-size:13px;color:#555}"""

_SCRIPT = """window.addEventListener('load',function(){var imgs=document.images,ok=0,bad=0;
for(var i=0;i<imgs.length;i++){if(imgs[i].complete&&imgs[i].naturalWidth>0){ok++}else{bad++}}
var s=document.getElementById('status');s.textContent='images: '+ok+' loaded, '+bad+' broken';
s.setAttribute('data-ok',String(ok));s.setAttribute('data-broken',String(bad));});"""


def _img(path: Path, alt: str, pixelated: bool = False) -> str:
    mime = "image/gif" if path.suffix == ".gif" else "image/png"
    data = base64.b64encode(path.read_bytes()).decode()
    cls = ' class="px"' if pixelated else ""
    return f'<img{cls} alt="{html.escape(alt)}" src="data:{mime};base64,{data}">'


def _failures(sweep_dir: Path) -> dict[str, str]:
    """Last failure reason of each run, from ``events.jsonl``."""
    out: dict[str, str] = {}
    p = sweep_dir / "events.jsonl"
    if p.is_file():
        for line in p.read_text().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("event") == "failed":
                out[e["run"]] = e.get("reason", "")
            elif e.get("event") == "done":
                out.pop(e.get("run"), None)
    return out


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
    done = sum(r.done for r in records)

    e = html.escape
    head = ["stage", "model", "dataset", *hps, "seeds", *columns]
    trs = []
    for row in rows:
        n = sum(r.done for r in row.runs)
        cells = [f'<td class="l">{e(row.spec.stage)}</td>', f'<td class="l">{e(row.spec.model)}</td>',
                 f'<td class="l">{e(row.spec.dataset)}</td>',
                 *[f"<td>{e(_short(row.spec.hparams[h])) if h in row.spec.hparams else ''}</td>" for h in hps],
                 f"<td>{n}/{len(row.runs)}</td>", *[f"<td>{e(cell(row.mean[c], row.std[c]))}</td>" for c in columns]]
        trs.append("<tr>" + "".join(cells) + "</tr>")
    table_html = ('<table id="results"><tr>' + "".join(f'<th class="l">{e(h)}</th>' if i < 3 else f"<th>{e(h)}</th>"
                                                      for i, h in enumerate(head)) + "</tr>" + "".join(trs) + "</table>")

    plot_html = "".join(f'<figure class="plot" data-kind="{p.kind}"><h3>{e(p.title)}</h3>{_img(p.path, p.title)}'
                        f"<figcaption>{e(p.caption)}</figcaption></figure>" for p in plots)

    chosen = []
    if per_run != "none":
        for row in rows:
            finished = [r for r in row.runs if r.done]
            chosen.extend(finished if per_run == "all" else finished[:1])
    shown, run_html = chosen[:MAX_RUN_SECTIONS], []
    for r in shown:
        pics = out_dir / "report_files" / r.spec.run_id
        write_report(r.folder, pics, steps=steps, limit=limit, seed=seed)
        vals = ", ".join(f"{k} {v:.3f}" for k, v in r.values.items())
        per_factor = ""
        for name, res in r.metrics.items():
            pf = res.get(f"{name}_per_factor") if isinstance(res, dict) else None
            if isinstance(pf, dict) and pf:
                per_factor += (f'<table class="pf"><tr><th class="l">{e(name)} per factor</th>'
                               + "".join(f"<th>{e(str(k))}</th>" for k in pf) + "</tr><tr><td></td>"
                               + "".join(f"<td>{float(v):.3f}</td>" for v in pf.values()) + "</tr></table>")
        run_html.append(
            f'<div class="run" id="{e(r.spec.run_id)}"><h3>{e(r.spec.label)} · seed {r.spec.seed}</h3>'
            f'<p class="small">{e(r.spec.run_id)}{" · from " + e(r.spec.parent) if r.spec.parent else ""} · '
            f"{e(vals)}</p>{per_factor}"
            f"<p>Reconstructions (top: inputs, bottom: reconstructions)</p>"
            f"{_img(pics / 'reconstructions.png', 'reconstructions ' + r.spec.run_id, True)}"
            f"<p>Latent traversals, most informative latent first (each frame: every latent's image)</p>"
            f"{_img(pics / 'traversals.gif', 'traversal animation ' + r.spec.run_id, True)}</div>")
    more = f"<p>{len(chosen) - len(shown)} more runs not shown.</p>" if len(chosen) > len(shown) else ""
    fail_html = "".join(f'<li class="fail"><b>{e(rid)}</b>: {e(why)}</li>' for rid, why in failures.items()
                        if not any(r.done and r.spec.run_id == rid for r in records))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>disentkit sweep: {e(rec.get('name', ''))}</title>
<style>{_STYLE}</style></head><body>
<h1>Sweep <code>{e(rec.get('name', ''))}</code></h1>
<p>{e(rec.get('description', ''))}</p>
<p class="small">{done}/{len(records)} runs done · config hash {e(rec.get('config_hash', '')[:8])} · folder {e(str(sweep_dir))}
· <span id="status">images: not checked (scripts off)</span></p>
{'<h2>Failed runs</h2><ul>' + fail_html + '</ul>' if fail_html else ''}
<h2>Results</h2>
<p class="small">Mean ± std over seeds (sample std). Training columns: mean of the last 10% of logged values;
blank where a model does not log the quantity.</p>
{table_html}
<h2>Plots</h2>{plot_html or '<p>No finished runs to plot yet.</p>'}
<h2>Runs</h2>{''.join(run_html) or '<p>No finished runs yet.</p>'}{more}
<script>{_SCRIPT}</script>
</body></html>"""
    path = out_dir / "report.html"
    path.write_text(page)
    return path
