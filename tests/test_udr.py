"""UDR (Duan et al. 2020, dlib's compute_udr_sklearn) on known pairs of representations, and over a sweep:
`disentkit aggregate --udr` writes udr.json, adds the columns, ranks the runs beside MIG with their rank
correlation, and the sweep report shows the ranking."""

from __future__ import annotations

import json

import numpy as np
import pytest

from disentkit.cli import main
from disentkit.errors import DisentkitError
from disentkit.metrics import resolve_metrics
from disentkit.metrics.udr import relative_strength, similarity, udr_from_codes
from disentkit.sweep import expand, run_sweep
from disentkit.sweep.udr import spearman

RNG = np.random.default_rng(0)
A = RNG.normal(size=(2000, 5))
Q = np.linalg.qr(RNG.normal(size=(5, 5)))[0]
ON = np.ones(5)


def pair(b, kl_b=ON, correlation="lasso", a=A, kl_a=ON):
    return udr_from_codes([a, b], [kl_a, kl_b], correlation)["model_scores"]


# measured (AMD EPYC AVX2, 2026-12-03): lasso / spearman
def test_same_factors_permuted_and_rescaled():
    b = 3 * A[:, [2, 0, 4, 1, 3]] + 1
    assert pair(b) == pytest.approx([0.9, 0.9], abs=1e-3)            # Lasso(alpha=0.1) shrinks 1 to 0.9
    assert min(pair(b, correlation="spearman")) > 0.9    # 0.923: chance |ρ| ≈ 0.02 of 2,000 points add to each sum


def test_rotation_noise_and_duplicates_score_lower():
    rot = pair(A @ Q)                                                  # every latent mixes every factor
    noise = pair(RNG.normal(size=(2000, 5)))
    dup = pair(np.concatenate([A, A], 1), np.ones(10))
    assert max(rot) < 0.6 and max(noise) < 0.05 and max(pair(RNG.normal(size=(2000, 5)), correlation="spearman")) < 0.1
    assert 0.5 < min(dup) < 0.8                                        # rows: two equal maxima of 0.9 each
    assert max(rot) < min(dup) < 0.9


def test_inactive_latents_do_not_count():
    dead = np.concatenate([A, np.zeros((2000, 2))], 1)                 # two collapsed latents (KL 0)
    kl = np.r_[ON, 0.0, 0.0]
    assert pair(dead, kl, a=dead, kl_a=kl) == pytest.approx(pair(A), abs=1e-9)
    out = udr_from_codes([A, dead], [ON, kl])
    assert out["active"][1] == [True] * 5 + [False, False]
    assert udr_from_codes([A, dead], [ON, np.zeros(7)])["model_scores"] == [0.0, 0.0]   # nothing active: 0


def test_median_over_partners_ranks_the_odd_model_last():
    b, c = 2 * A[:, ::-1], A[:, [1, 0, 2, 3, 4]]
    noise = RNG.normal(size=(2000, 5))
    scores = udr_from_codes([A, b, c, noise], [ON] * 4)["model_scores"]
    assert scores[3] < 0.05 and min(scores[:3]) == pytest.approx(0.9, abs=1e-3)


def test_relative_strength_by_hand_and_errors():
    assert relative_strength(np.array([[0.9, 0.0], [0.9, 0.3]])) == pytest.approx(
        0.5 * (np.mean([0.81 / 1.8, 0.09 / 0.3]) + np.mean([1.0 * 0.9, 0.81 / 1.2])))
    assert relative_strength(np.zeros((2, 2))) == 0.0 and relative_strength(np.zeros((0, 3))) == 0.0
    assert similarity(A[:, :1], A[:, :1] ** 3, "spearman") == pytest.approx(np.ones((1, 1)))
    with pytest.raises(DisentkitError, match="correlation must be one of lasso, spearman"):
        udr_from_codes([A, A], [ON, ON], "pearson")
    with pytest.raises(DisentkitError, match="at least 2"):
        udr_from_codes([A], [ON])
    with pytest.raises(DisentkitError, match="aggregate SWEEP_DIR --udr"):
        resolve_metrics("mig,udr")
    assert spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8) and spearman([1, 2], [1, 2]) is None


SWEEP = {
    "name": "udr",
    "defaults": {"steps": 200, "batch_size": 32, "lr": 1e-3, "log_every": 50, "threads": 1, "latent_dim": 4,
                 "checkpoint_every": 0},
    "seeds": [0, 1],
    "metrics": {"mig": {"num_train": 300}},
    "stages": [{"name": "b", "model": "beta_vae", "grid": {"beta": [1, 8]}}],
}


@pytest.mark.slow            # four 200-step trainings (~1 min on 2 cores): runs trained enough for KL > 0.01
def test_aggregate_udr_ranks_a_sweep_and_the_report_shows_it(tmp_path, capsys, browser):
    out = tmp_path / "s"
    assert run_sweep(expand(SWEEP), out, workers=1, printer=lambda s: None).ok
    assert main(["aggregate", str(out), "--udr", "--udr-points", "300"]) == 0
    record = json.loads((out / "udr.json").read_text())
    assert len(record["runs"]) == 4 and record["unscored"] == []
    for rid, r in record["runs"].items():
        assert 0.2 < r["udr"] <= 0.9 and r["active_latents"] >= 1 and len(r["compared_with"]) == 1 and rid not in r["compared_with"]
    md = (out / "results.md").read_text()
    assert "## UDR ranking" in md and "udr vs mig" in md
    assert "udr_spearman" in md.split("## MIG per factor")[0]          # a column of the results table too
    rows = [line for line in md.split("## UDR ranking")[1].splitlines() if line.startswith("| ") and "rank" not in line]
    assert len(rows) == 4
    assert main(["report", "--sweep", str(out), "--per-run", "none"]) == 0
    page = browser(out / "report.html")
    assert "udr" in page.section_ids() and 'id="udr-ranking"' in page.dom and page.status()["errors"] == 0


def test_aggregate_udr_errors_are_one_line(tmp_path, capsys):
    assert main(["aggregate", str(tmp_path), "--udr"]) == 2
    assert "not a sweep folder" in capsys.readouterr().err
    assert main(["aggregate", str(tmp_path), "--udr", "--udr-points", "3"]) == 2
    assert "--udr-points must be an integer ≥ 10" in capsys.readouterr().err
