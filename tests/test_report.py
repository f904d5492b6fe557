"""The single-run report (``disentkit report --checkpoint RUN``) in headless Chromium: every section, no broken
image, no console message; labelled traversal rows; the run's metrics.json wherever the page goes; unevaluated
runs; autoescaping; and the bytes a run's section adds to a sweep page, bounded on grey and colour data."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from disentkit.cli import main
from disentkit.data import get_dataset
from disentkit.evaluate import evaluate_checkpoint
from disentkit.sweep.html import embedded
from disentkit.viz.images import sample_traversal
from disentkit.viz.report import run_pictures

SECTIONS = {"summary", "metrics", "mig-per-factor", "mi-matrix", "curves", "kl", "reconstructions", "traversals"}
FAST = {"mig": {"num_train": 1000}, "sap": {"num_train": 1000, "num_test": 500}}
# A 20-run sweep page stays under 10 MB: each run section's images under 10 MB / 20, with a 20% margin for
# the table, the plots and the text (a 20-run shapes3d sweep: plots 0.47 MB, the whole page 6.4 MB).
SECTION_BUDGET = 10_000_000 // 20 * 8 // 10


def _rows(dom: str) -> list[tuple[int, str, str]]:
    """(latent, KL cell, factor cell) of each traversal row, in page order."""
    rows = re.findall(r'<tr class="latent" data-latent="(\d+)"><td class="l">z\d+</td><td>([^<]*)</td>\s*'
                      r'<td class="l">([^<]*)', dom)
    return [(int(i), kl, factor.strip()) for i, kl, factor in rows]


def _check_page(page, html: str) -> None:
    assert page.section_ids() >= SECTIONS, SECTIONS - page.section_ids()
    assert page.console == [], page.console
    assert page.status() == {"ok": html.count("<img "), "broken": 0, "errors": 0}
    assert 'src="http' not in html and "<link" not in html      # self-contained
    assert page.screenshot.stat().st_size > 20_000


def test_evaluated_run_report_in_the_browser(tiny_run, tmp_path, browser):
    evaluate_checkpoint(tiny_run, "mig,sap", baseline=True, params=FAST)
    record = json.loads((tiny_run / "metrics.json").read_text())
    out = tmp_path / "elsewhere"
    out.mkdir()
    decoy = {"results": {"mig": {"mig": 0.987654}}}          # --out's own metrics.json must not be read
    (out / "metrics.json").write_text(json.dumps(decoy))
    assert main(["report", "--checkpoint", str(tiny_run), "--out", str(out), "--limit", "3", "--steps", "5"]) == 0
    html = (out / "report.html").read_text()
    assert "0.9877" not in html and f"{record['results']['mig']['mig']:.4f}" in html
    assert f"{record['untrained']['mig']['mig']:.4f}" in html and "not evaluated yet" not in html
    for name in ("mig_per_factor", "mi_matrix", "training_curves", "kl_per_latent"):
        assert (out / f"{name}.png").stat().st_size > 2000
    assert "value from −3 to +3" in html and "in 5 steps" in html

    page = browser(out / "report.html", window="1200,4400")
    _check_page(page, html)
    metrics = page.dom[page.dom.index('<table class="metrics">'):]
    metrics = metrics[:metrics.index("</table>")]
    assert "<th>untrained</th>" in metrics and ">sap<" in metrics and ">mig<" in metrics
    # rows: largest KL first, each labelled with the factor of the largest MI in its row of MIG's MI matrix
    kl = json.loads((out / "kl_per_latent.json").read_text())["kl"]
    rows = _rows(page.dom)
    assert [i for i, _, _ in rows] == sorted(range(10), key=lambda i: -kl[i])
    mi = np.asarray(record["results"]["mig"]["mi_matrix"])
    for i, kl_cell, factor in rows:
        assert float(kl_cell) == pytest.approx(kl[i], abs=5e-4)
        assert factor == record["factor_names"][int(np.argmax(mi[i]))]


def test_unevaluated_run_still_gets_every_section(tiny_run, tmp_path, browser):
    run = tmp_path / "a<i>run"                                 # the page escapes what it shows
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("metrics*.json", "csv"))
    assert main(["report", "--checkpoint", str(run)]) == 0
    html = (run / "report.html").read_text()
    assert "a&lt;i&gt;run" in html and "a<i>run" not in html
    todo = f"not evaluated yet: run disentkit evaluate --checkpoint {run}".replace("<", "&lt;").replace(">", "&gt;")
    assert html.count(todo) == 3                              # metrics, MIG per factor, MI matrix
    assert "no training log" in html and "value from −2 to +2" in html
    page = browser(run / "report.html")
    _check_page(page, html)
    assert [f for _, _, f in _rows(page.dom)] == ["—"] * 10


class RenderingVAE(torch.nn.Module):
    """A stand-in VAE for the size bound: every latent moves a factor (latent k factor k mod F), decoded to the
    dataset's own image, blurred like a VAE's decodings, with noise of its own in every image (a decoder's
    speckle). Harder to compress than trained runs: on shapes3d its GIF is 0.33 MB of base64, those of a
    20-run sweep of 300-step β-VAEs and β-TCVAEs 0.22-0.30 MB; on dSprites 0.18 MB against the 300-step
    demo's 0.03 MB."""

    def __init__(self, dataset, latent_dim: int = 10, limit: float = 2.0, blur: float = 1.5,
                 noise: float = 0.025) -> None:
        super().__init__()
        self.dataset, self.latent_dim, self.limit, self.noise = dataset, latent_dim, limit, noise
        r = int(3 * blur)
        k = torch.exp(-torch.arange(-r, r + 1.0) ** 2 / (2 * blur ** 2))
        self.kernel, self.r = k / k.sum(), r

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.randn(x[0].numel(), self.latent_dim, generator=torch.Generator().manual_seed(0))
        mu = torch.frac((x.flatten(1) @ w).abs()) * 2 - 1         # a code in [-1, 1] that differs per image
        return mu, torch.zeros_like(mu)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        sizes = np.asarray(self.dataset.factor_sizes)
        t = ((z.numpy() + self.limit) / (2 * self.limit)).clip(0, 1)
        factors = np.stack([np.round(t[:, f::len(sizes)].mean(1) * (sizes[f] - 1)) for f in range(len(sizes))], 1)
        x = self.dataset.sample_observations_from_factors(factors.astype(np.int64))
        c, r = x.shape[1], self.r
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), self.kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1),
                     groups=c)
        x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), self.kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1),
                     groups=c)
        x = x + self.noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
        return torch.logit(x.clamp(1e-3, 1 - 1e-3))


@pytest.mark.parametrize("name", ["dsprites_procedural", "shapes3d_procedural"])
def test_a_run_section_fits_a_twentieth_of_ten_megabytes(name, tmp_path):
    data = get_dataset(name)
    pics = run_pictures(RenderingVAE(data), data, {}, tmp_path, steps=10)
    recon, gif = embedded(pics, "run")
    assert recon.nbytes + gif.nbytes <= SECTION_BUDGET, (recon.nbytes, gif.nbytes)
    print(f"{name}: reconstructions {recon.nbytes} + traversal GIF {gif.nbytes} bytes of base64")
    frames = sample_traversal(RenderingVAE(data, noise=0.0), data)    # without noise every latent moves its image
    assert all((frames[0, k] - frames[-1, k]).abs().max() > 0.1 for k in range(10))
