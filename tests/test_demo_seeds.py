"""``benchmarks/demo_seeds.py``: the demo's configuration per seed with its untrained baseline, and the CPU named."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import demo_seeds  # noqa: E402


def test_demo_seeds_prints_each_seed_beside_its_untrained_model(capsys):
    assert demo_seeds.main(["--seeds", "3,4", "--set", "steps=4", "--set", "log_every=2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("demo_seeds: ") and "steps=4" in out.splitlines()[0]
    rows = [line for line in out.splitlines() if line.startswith("| 3 |") or line.startswith("| 4 |")]
    assert len(rows) == 2 and all(len(r.split(" | ")) == 10 for r in rows)   # seed, 3 values, time, 5 factors
    assert "smallest trained/untrained ratio" in out
