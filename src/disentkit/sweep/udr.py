"""UDR over a sweep (``disentkit aggregate SWEEP --udr``): every configuration's seeds scored against each
other (:mod:`disentkit.metrics.udr`), written to ``udr.json``, then ranked beside the supervised metrics
with their Spearman rank correlation across runs (Duan et al. 2020 report the same correlation).

``udr.json``: ``params``, and per run id its ``udr`` (Lasso), ``udr_spearman``, ``group`` and the seeds it was
compared with. A configuration with one finished seed cannot be scored and is listed under ``unscored``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..files import write_atomic

UDR_FILE = "udr.json"
UDR_COLUMNS = ("udr", "udr_spearman")


def sweep_udr(sweep_dir: str | Path, num_data_points: int = 10_000, seed: int = 0, kl_threshold: float = 0.01,
              device: str = "cpu", printer=print) -> Path:
    """Score the finished runs of every configuration of a sweep with UDR; writes and returns ``udr.json``."""
    from ..data import get_dataset
    from ..metrics.udr import udr
    from ..train.checkpoint import load_checkpoint
    from ..train.run import resolve_device
    from ..errors import DisentkitError
    from .aggregate import collect

    if isinstance(num_data_points, bool) or not isinstance(num_data_points, int) or num_data_points < 10:
        raise DisentkitError(f"--udr-points must be an integer ≥ 10, got {num_data_points!r}")
    sweep_dir = Path(sweep_dir)
    _, records = collect(sweep_dir)           # not a sweep folder: one line, before any model loads
    groups: dict[str, list] = {}
    for r in records:
        if r.done:
            groups.setdefault(r.spec.group, []).append(r)
    dev = resolve_device(device)
    runs: dict[str, Any] = {}
    unscored = []
    for group, members in groups.items():
        if len(members) < 2:
            unscored.append(members[0].spec.run_id)
            continue
        vaes = [load_checkpoint(r.folder / "model.safetensors", device=dev).vae for r in members]
        out = udr(vaes, get_dataset(members[0].spec.dataset), seed, num_data_points, kl_threshold)
        for k, r in enumerate(members):
            runs[r.spec.run_id] = {"udr": out["udr"][k], "udr_spearman": out["udr_spearman"][k], "group": group,
                                   "compared_with": [m.spec.run_id for m in members if m is not r],
                                   "active_latents": int(sum(out["active"][k]))}
        printer(f"udr: {members[0].spec.label}: " + ", ".join(f"seed {r.spec.seed} {out['udr'][k]:.3f}"
                                                            for k, r in enumerate(members)))
    path = sweep_dir / UDR_FILE
    record = {"params": {"num_data_points": num_data_points, "seed": seed, "kl_threshold": kl_threshold},
              "runs": runs, "unscored": unscored}
    write_atomic(path, json.dumps(record, indent=1))
    return path


def read_udr(sweep_dir: str | Path) -> dict[str, dict[str, float]]:
    """Run id -> {"udr", "udr_spearman"} from ``udr.json`` (empty when UDR was not run)."""
    path = Path(sweep_dir) / UDR_FILE
    if not path.is_file():
        return {}
    runs = json.loads(path.read_text()).get("runs", {})
    return {rid: {c: float(v[c]) for c in UDR_COLUMNS if c in v} for rid, v in runs.items()}


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman rank correlation of two equally long lists (None for fewer than 3 pairs or a constant list)."""
    from ..metrics.udr import spearman_matrix

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(spearman_matrix(np.c_[x], np.c_[y])[0, 0])


def supervised_columns(columns: list[str]) -> list[str]:
    """The headline supervised metric columns of a results table (``mig``, ``dci``, …), UDR's left out."""
    from ..metrics import METRICS

    return [c for c in columns if c in METRICS]


def ranking(records: list, columns: list[str]) -> dict[str, Any] | None:
    """Runs scored by UDR, best first, with their supervised headline values, and the rank correlation of
    UDR (and UDR-Spearman) with each supervised metric across those runs; None when no run has UDR."""
    scored = [r for r in records if r.done and "udr" in r.values]
    if not scored:
        return None
    scored.sort(key=lambda r: -r.values["udr"])
    metrics = supervised_columns(columns)
    rows = [{"run": r.spec.run_id, "label": r.spec.label, "seed": r.spec.seed,
             **{c: r.values.get(c) for c in (*UDR_COLUMNS, *metrics)}} for r in scored]
    corr = {}
    for u in UDR_COLUMNS:
        for m in metrics:
            pairs = [(r.values[u], r.values[m]) for r in scored if u in r.values and m in r.values]
            corr[f"{u}~{m}"] = spearman([a for a, _ in pairs], [b for _, b in pairs])
    return {"rows": rows, "metrics": metrics, "correlation": corr, "runs": len(scored)}


def ranking_markdown(rank: dict[str, Any] | None) -> list[str]:
    """Markdown lines of :func:`ranking` (nothing when UDR was not run)."""
    if not rank:
        return []
    corr = ", ".join(f"{k.replace('~', ' vs ')} {v:+.2f}" for k, v in rank["correlation"].items() if v is not None)
    head = ["rank", "run", "seed", *UDR_COLUMNS, *rank["metrics"]]
    lines = ["", "## UDR ranking (no labels; Duan et al. 2020)", "",
             f"Spearman rank correlation across {rank['runs']} runs: {corr or 'too few runs'}.", "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for k, row in enumerate(rank["rows"], 1):
        vals = ["" if row[c] is None else f"{row[c]:.3f}" for c in (*UDR_COLUMNS, *rank["metrics"])]
        lines.append("| " + " | ".join([str(k), row["label"], str(row["seed"]), *vals]) + " |")
    return lines
