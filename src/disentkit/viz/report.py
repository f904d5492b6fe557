"""A single run's report: reconstructions, traversals (PNG + GIF), the KL per latent, metrics,
and ``report.html`` — one self-contained file with the images embedded."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np
import torch

from ..data import get_dataset
from ..train.checkpoint import load_checkpoint
from .images import reconstructions, traversals


@torch.no_grad()
def kl_per_latent(vae, dataset, num: int = 1024, seed: int = 0) -> np.ndarray:
    """Average KL(q(z_j|x) ‖ p(z_j)) per latent: which latents carry information."""
    from ..models.base import gaussian_kl

    device = next(vae.parameters()).device
    rng = np.random.default_rng(seed)
    x = dataset.sample_observations_from_factors(dataset.sample_factors(num, rng), rng, device=device)
    mu, logvar = vae.encode(x)
    return gaussian_kl(mu, logvar).mean(0).cpu().numpy()


def write_report(checkpoint: str | Path, out: str | Path | None = None, dataset: str | None = None,
                 steps: int = 10, limit: float = 2.0, seed: int = 0, data_root: str | None = None) -> Path:
    """Write the report files into ``out`` (default: the checkpoint's run folder); returns the HTML path.
    ``data_root`` locates a real dataset (default: the one the run trained from)."""
    ck = load_checkpoint(checkpoint)
    out_dir = Path(out) if out else ck.path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    data = get_dataset(dataset or ck.config["dataset"], data_root=data_root or ck.config.get("data_root"))
    kl = kl_per_latent(ck.vae, data, seed=seed)
    order = [int(i) for i in np.argsort(-kl)]  # most informative latents first
    reconstructions(ck.vae, data, out_dir / "reconstructions.png", seed=seed)
    traversals(ck.vae, data, out_dir / "traversals.png", out_dir / "traversals.gif",
               steps=steps, limit=limit, seed=seed, order=order)
    metrics_path = ck.path.parent / "metrics.json"  # the run's record, wherever the report goes
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    page = _html(ck.config, metrics, kl, order, out_dir, limit)
    (out_dir / "report.html").write_text(page)
    (out_dir / "kl_per_latent.json").write_text(json.dumps({"kl": kl.tolist(), "order": order}, indent=1))
    return out_dir / "report.html"


def _img(path: Path, alt: str) -> str:
    mime = "image/gif" if path.suffix == ".gif" else "image/png"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:{mime};base64,{data}">'


def _html(config: dict, metrics: dict, kl: np.ndarray, order: list[int], out_dir: Path, limit: float = 2.0) -> str:
    hp = ", ".join(f"{k}={v}" for k, v in config.get("hparams", {}).items())
    rows = []
    for name, res in metrics.get("results", {}).items():
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{res.get(name, float('nan')):.4f}</td></tr>")
    kl_rows = "".join(f"<tr><td>z{i}</td><td>{kl[i]:.3f}</td></tr>" for i in order)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>disentkit report: {html.escape(config['out'])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}img{{image-rendering:pixelated;max-width:100%}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px}}</style></head><body>
<h1>{html.escape(config['model'])} on {html.escape(config['dataset'])}</h1>
<p>{html.escape(hp)} · seed {config['seed']} · {config['steps']} steps · batch {config['batch_size']} · lr {config['lr']}</p>
<h2>Metrics</h2><table><tr><th>metric</th><th>value</th></tr>{''.join(rows) or '<tr><td colspan=2>not evaluated yet: run disentkit evaluate</td></tr>'}</table>
<h2>Reconstructions</h2><p>Top: inputs; bottom: reconstructions.</p>{_img(out_dir / 'reconstructions.png', 'reconstructions')}
<h2>Latent traversals</h2><p>Rows: latents, most informative first ({', '.join(f'z{i}' for i in order)}); columns: value from −{limit:g} to +{limit:g}.</p>
{_img(out_dir / 'traversals.png', 'traversals')}{_img(out_dir / 'traversals.gif', 'traversal animation')}
<h2>KL per latent (nats)</h2><table><tr><th>latent</th><th>KL</th></tr>{kl_rows}</table>
</body></html>"""
