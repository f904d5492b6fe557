"""A run that fails does not stop the others: its reason is shown, its chained children are skipped,
and a restart retries only what is not done."""

import json

from disentkit.sweep import expand, run_sweep
from disentkit.sweep.aggregate import aggregate

CONFIG = {
    "name": "failing",
    "defaults": {"steps": 2, "batch_size": 8, "log_every": 1, "threads": 1, "latent_dim": 4, "checkpoint_every": 0},
    "seeds": [0],
    "metrics": {"mig": {"num_train": 300}},
    "stages": [
        {"name": "a", "model": "beta_vae", "grid": {"beta": [2]}},
        # latent_dim 3 cannot start from a 4-latent checkpoint: found only when that run starts
        {"name": "b", "model": "beta_vae", "init_from": "a", "grid": {"latent_dim": [4, 3]}},
        {"name": "c", "model": "beta_vae", "init_from": "b"},
    ],
}


def test_failure_is_reported_and_the_rest_goes_on(tmp_path):
    sweep = expand(CONFIG)
    lines: list[str] = []
    res = run_sweep(sweep, tmp_path / "s", workers=2, printer=lines.append)
    bad = [r for r in sweep.runs if r.stage == "b" and r.train["latent_dim"] == 3][0]
    orphan = [r for r in sweep.runs if r.parent == bad.run_id][0]
    assert not res.ok and res.done == 3 and set(res.failed) == {bad.run_id, orphan.run_id}
    assert "latent_dim" in res.failed[bad.run_id]                       # the exception's own message
    assert "parent run" in res.failed[orphan.run_id]
    text = "\n".join(lines)
    assert f"FAILED {bad.run_id}" in text and "1 failed" in text and "ETA" in text
    assert "Traceback" in (tmp_path / "s" / "runs" / bad.run_id / "error.txt").read_text()
    assert not (tmp_path / "s" / "runs" / bad.run_id / "DONE").exists()

    again = run_sweep(sweep, tmp_path / "s", workers=2, printer=lines.append)   # retries the failed only
    assert again.skipped == 3 and again.done == 0 and set(again.failed) == set(res.failed)
    events = [json.loads(x) for x in (tmp_path / "s" / "events.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "done" for e in events) == 3

    paths = aggregate(tmp_path / "s")
    md = paths["markdown"].read_text()
    assert "3/5 runs done" in md and "| 0/1 |" in md                     # the failed configuration: no values
