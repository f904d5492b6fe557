"""A small sweep end to end: killed mid-way by real signals and resumed (every run done exactly once),
the aggregate table against a hand computation, the HTML report in headless Chromium, and the same
sweep on a local Ray instance giving the same numbers."""

from __future__ import annotations

import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from disentkit.sweep import load_sweep
from disentkit.sweep.folders import DONE, load_sweep_dir

REPO = Path(__file__).resolve().parents[1]

# 2 "models" (a β-VAE stage and a chained stage continuing from each of its runs) × 2 β × 2 seeds.
CONFIG = """
name: tiny
description: two stages x two betas x two seeds, a few steps each
defaults: {steps: 4, batch_size: 8, log_every: 1, threads: 1, lr: 1e-3, latent_dim: 4, checkpoint_every: 0}
seeds: [0, 1]
datasets: [dsprites_procedural]
metrics: {mig: {num_train: 400}}
stages:
  - name: bvae
    model: beta_vae
    grid: {beta: [1, 8]}
  - name: cont
    model: beta_vae
    init_from: bvae
    steps: 2
"""


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    return env


def _start(cfg: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "disentkit", "sweep", str(cfg), "--out", str(out),
                             "--workers", "2", "--threads", "1"], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _done(out: Path) -> set[str]:
    return {p.parent.name for p in (out / "runs").glob(f"*/{DONE}")}


def _wait_for_done(proc: subprocess.Popen, out: Path, more_than: int, timeout: float = 240) -> None:
    t0 = time.time()
    while len(_done(out)) <= more_than:
        assert proc.poll() is None, f"sweep ended before it could be killed:\n{proc.stdout.read()}"
        assert time.time() - t0 < timeout, "sweep made no progress"
        time.sleep(0.05)


def _events(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]


def capsys_text(out: Path) -> str:
    return (out / "events.jsonl").read_text()


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return "\nState:\tZ" in status


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """Run the sweep, SIGTERM it after one run, SIGKILL it after another, then let it finish."""
    root = tmp_path_factory.mktemp("sweep")
    cfg = root / "tiny.yaml"
    cfg.write_text(CONFIG)
    out = root / "out"

    first = _start(cfg, out)
    _wait_for_done(first, out, 0)
    first.send_signal(signal.SIGTERM)                       # graceful: stops its runs, exits 130
    log1 = first.communicate(timeout=60)[0]
    assert first.returncode == 130, log1
    assert "interrupted" in log1

    second = _start(cfg, out)
    before = len(_done(out))
    _wait_for_done(second, out, before)
    os.kill(second.pid, signal.SIGKILL)                     # no chance to clean up
    second.wait(timeout=30)
    second.stdout.close()
    killed_at = {rid: (out / "runs" / rid / DONE).read_text() for rid in _done(out)}
    assert 2 <= len(killed_at) < 8, "the kill should land mid-way"
    started = [e["pid"] for e in _events(out) if e["event"] == "start" and e.get("pid")]
    t0 = time.time()
    while not all(_gone(p) for p in started):               # the runs die with their sweep (no orphans)
        assert time.time() - t0 < 15, "run processes outlived the killed sweep"
        time.sleep(0.1)

    # the third start, in this process, finishes the sweep
    from disentkit.cli import main

    assert main(["sweep", str(cfg), "--out", str(out), "--workers", "2", "--threads", "1"]) == 0
    log3 = capsys_text(out)
    for rid, text in killed_at.items():                     # finished runs were not touched again
        assert (out / "runs" / rid / DONE).read_text() == text
    assert sum(e["event"] == "sweep_start" for e in _events(out)) == 3
    assert [e["todo"] for e in _events(out) if e["event"] == "sweep_start"][-1] == 8 - len(killed_at), log3
    out.joinpath("killed_at.json").write_text(json.dumps(sorted(killed_at)))
    return out


def test_every_run_completes_exactly_once(sweep_dir, capsys):
    rec, specs = load_sweep_dir(sweep_dir)
    assert len(specs) == 8
    assert _done(sweep_dir) == {s.run_id for s in specs}
    done_events = [e["run"] for e in _events(sweep_dir) if e["event"] == "done"]
    assert sorted(done_events) == sorted(s.run_id for s in specs)      # each exactly once over 3 attempts
    for s in specs:
        folder = sweep_dir / "runs" / s.run_id
        assert (folder / "model.safetensors").is_file() and (folder / "metrics.json").is_file()
        assert json.loads((folder / DONE).read_text())["config_hash"] == s.config_hash
        assert not list(folder.glob("*.part"))
    # chained runs started from their parent's final weights
    children = [s for s in specs if s.parent]
    assert len(children) == 4
    for c in children:
        cfg = (sweep_dir / "runs" / c.run_id / "config.yaml").read_text()
        assert f"runs/{c.parent}/model.safetensors" in cfg

    # a fourth start finds nothing to do
    from disentkit.cli import main

    assert main(["sweep", str(sweep_dir / "sweep.yaml"), "--out", str(sweep_dir)]) == 0
    assert "8 already done, 0 to run" in capsys.readouterr().out


def _tail_mean(folder: Path, col: str) -> float:
    with open(folder / "csv" / "metrics.csv") as f:
        vals = [float(r[col]) for r in csv.DictReader(f) if r.get(col)]
    k = max(1, round(len(vals) * 0.1))
    return sum(vals[-k:]) / k


def test_aggregate_matches_hand_computation(sweep_dir):
    from disentkit.cli import main

    assert main(["aggregate", str(sweep_dir)]) == 0
    _, specs = load_sweep_dir(sweep_dir)
    by_conf: dict[tuple, list[dict]] = {}
    for s in specs:
        folder = sweep_dir / "runs" / s.run_id
        mig = json.loads((folder / "metrics.json").read_text())["results"]["mig"]["mig"]
        by_conf.setdefault((s.stage, s.hparams["beta"]), []).append(
            {"reconstruction": _tail_mean(folder, "train/reconstruction"), "kl": _tail_mean(folder, "train/kl"),
             "mig": mig})
    with open(sweep_dir / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    md = (sweep_dir / "results.md").read_text()
    for row in rows:
        runs = by_conf[(row["stage"], float(row["beta"]))]
        assert row["seeds_done"] == "2"
        for col in ("reconstruction", "kl", "mig"):
            vals = [r[col] for r in runs]
            mean, std = statistics.mean(vals), statistics.stdev(vals)
            assert float(row[f"{col}_mean"]) == pytest.approx(mean, rel=1e-12)
            assert float(row[f"{col}_std"]) == pytest.approx(std, rel=1e-12)
            assert f"{mean:.3f} ± {std:.3f}" in md
        for col in ("tc", "d_z_real", "d_z_perm"):      # not logged by β-VAE: blank, not zero
            assert row[f"{col}_mean"] == "" and row[f"{col}_std"] == ""
        assert float(row["loss_mean"]) > 0 and "kl_dim/0_mean" not in row   # every logged term, not per latent
        nll = [_window_mean(sweep_dir / "runs" / s.run_id) for s in specs
               if (s.stage, s.hparams["beta"]) == (row["stage"], float(row["beta"]))]
        assert float(row["nll_last5k_mean"]) == pytest.approx(statistics.mean(nll), rel=1e-12)
    assert md.count("\n| bvae ") == 4 and md.count("\n| cont ") == 4  # the results table and MIG per factor
    assert "posX" in md.split("## MIG per factor")[1]


def _window_mean(folder: Path, window: int = 5000) -> float:
    with open(folder / "csv" / "metrics.csv") as f:
        rows = [(int(r["step"]), float(r["train/reconstruction"])) for r in csv.DictReader(f) if r.get("train/reconstruction")]
    return statistics.mean(v for step, v in rows if step > rows[-1][0] - window)


SWEEP_SECTIONS = {"summary", "results-table", "plots", "runs"}
RUN_SECTION_BUDGET = 10_000_000 // 20 * 8 // 10     # as tests/test_report.py: a 20-run page under 10 MB


def test_html_report(sweep_dir, tmp_path, browser):
    from disentkit.cli import main

    report_dir = tmp_path / "report"
    assert main(["report", "--sweep", str(sweep_dir), "--out", str(report_dir), "--steps", "5"]) == 0
    page = (report_dir / "report.html").read_text()
    assert page.count('<figure class="plot"') >= 4          # boxplot, trade-off, curves, MI matrices
    assert page.count("data:image/gif;base64") == 4         # one traversal GIF per configuration
    assert 'src="http' not in page and "src='http" not in page   # self-contained
    runs = page.split('<div class="run" ')[1:]
    assert len(runs) == 4 and all(len(r) <= RUN_SECTION_BUDGET for r in runs), [len(r) for r in runs]
    assert all(r.count("KL ") == 4 for r in runs)            # every latent labelled (latent_dim 4)
    shown = browser(report_dir / "report.html", window="1200,2400")
    html = shown.dom
    assert shown.section_ids() >= SWEEP_SECTIONS and shown.console == [], shown.console
    # the inline script ran after load and found every image decoded by the browser
    assert shown.status() == {"ok": page.count("<img "), "broken": 0, "errors": 0}, html[:3000]
    results = html[html.index('id="results"'):]
    results = results[:results.index("</table>")]
    assert results.count("<tr>") == 5 and "mig" in results and "± " in results    # header + 4 configurations
    assert html.count('class="pf"') == 4                                          # MIG per factor, per run
    assert shown.screenshot.stat().st_size > 20_000


@pytest.mark.slow
def test_same_sweep_on_ray_gives_the_same_numbers(sweep_dir, tmp_path):
    pytest.importorskip("ray")
    from disentkit.sweep import run_sweep

    sweep = load_sweep(sweep_dir / "sweep.yaml")
    res = run_sweep(sweep, tmp_path / "ray", backend="ray", workers=1, threads=1, printer=lambda s: None,
                    ray_init={"num_cpus": 1})
    assert res.ok and res.done == 8
    _, specs = load_sweep_dir(sweep_dir)
    for s in specs:   # same ids, and on CPU the same seed gives the same weights, hence the same MIG
        a = json.loads((sweep_dir / "runs" / s.run_id / "metrics.json").read_text())["results"]["mig"]
        b = json.loads((tmp_path / "ray" / "runs" / s.run_id / "metrics.json").read_text())["results"]["mig"]
        assert a["mig"] == b["mig"] and a["mi_matrix"] == b["mi_matrix"]
