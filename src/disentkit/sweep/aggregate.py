"""``disentkit aggregate SWEEP_DIR``: one results table over the finished runs of a sweep.

Per run: the final training values of reconstruction error, KL, TC, D(z_real) and D(z_perm) and of every
other term the objective logs (λβ-VAE's ``mse``, …; each the mean of the last 10% of its logged values in
``csv/metrics.csv``, to smooth single-batch noise; blank when the model does not log it), the validation
loss (the same tail mean of ``val/loss``) and the test loss (``test_losses.json``) where the run has them,
``nll_last5k`` (the mean reconstruction NLL over the last 5,000 steps, E2's figure), and every scalar of
every metric in ``metrics.json``.
Per configuration (all seeds of one stage × hyperparameter point × dataset): mean and sample
standard deviation (ddof = 1; blank for a single seed) of each column — the shape of the E1/E2 tables.

Writes ``results_runs.csv`` (one row per run), ``results.csv`` (mean and std columns) and
``results.md`` (mean ± std, then MIG per factor by configuration).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .grid import RunSpec, _short
from .folders import is_done, load_sweep_dir, run_dir

#: Logged training quantities tabulated per run (``train/<name>`` columns of the CSV log).
TRAINING_COLUMNS = ("reconstruction", "kl", "tc", "d_z_real", "d_z_perm")
TAIL_FRACTION = 0.1
#: held-out and windowed columns, after the logged terms
HELD_OUT_COLUMNS = ("val_loss", "test_loss", "nll_last5k")
NLL_WINDOW = 5000


@dataclass
class RunRecord:
    spec: RunSpec
    folder: Path
    done: bool
    values: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)   # metrics.json "results"
    factor_names: list[str] = field(default_factory=list)
    logged: list[str] = field(default_factory=list)   # training terms this run logged (``train/<name>``)
    mig_factors: dict[str, float] = field(default_factory=dict)  # MIG per factor (metrics.json)


@dataclass
class Row:
    """One configuration: its runs and the mean/std of every column over their seeds."""

    spec: RunSpec          # the first seed's spec (stage, model, dataset, hyperparameters)
    runs: list[RunRecord]
    mean: dict[str, float | None]
    std: dict[str, float | None]


def read_log(folder: Path) -> list[dict[str, str]]:
    path = folder / "csv" / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def final_value(rows: list[dict[str, str]], column: str, tail_fraction: float = TAIL_FRACTION) -> float | None:
    """Mean of the last ``tail_fraction`` (at least one) of the logged values of ``column``."""
    vals = [float(r[column]) for r in rows if r.get(column) not in (None, "")]
    if not vals:
        return None
    k = max(1, round(len(vals) * tail_fraction))
    return sum(vals[-k:]) / k


def logged_terms(rows: list[dict[str, str]]) -> list[str]:
    """The ``train/<name>`` columns of a log, the per-latent ``kl_dim/*`` left out, in logged order."""
    names = dict.fromkeys(k[len("train/"):] for r in rows for k in r
                          if k and k.startswith("train/") and r[k] not in ("", None))
    return [n for n in names if not n.startswith("kl_dim/")]


def held_out_values(folder: Path, rows: list[dict[str, str]]) -> dict[str, float]:
    """``val_loss`` (tail mean of ``val/loss``), ``test_loss`` (``test_losses.json``) and ``nll_last5k``
    (mean ``train/reconstruction`` over the last :data:`NLL_WINDOW` steps), where the run has them."""
    out: dict[str, float] = {}
    val = final_value(rows, "val/loss")
    if val is not None:
        out["val_loss"] = val
    test = folder / "test_losses.json"
    if test.is_file():
        out["test_loss"] = float(json.loads(test.read_text())["test"]["loss"])
    nll = [(int(r["step"]), float(r["train/reconstruction"])) for r in rows if r.get("train/reconstruction")]
    if nll:
        last = nll[-1][0]
        window = [v for step, v in nll if step > last - NLL_WINDOW]
        out["nll_last5k"] = sum(window) / len(window)
    return out


def metric_scalars(results: dict[str, Any]) -> dict[str, float]:
    """Every scalar a metric returned: ``mig`` for MIG's headline, ``dci.completeness`` style for others."""
    out: dict[str, float] = {}
    for name, res in results.items():
        if not isinstance(res, dict):
            continue
        for key, v in res.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or key == "params":
                continue
            out[key if key == name or key.startswith(name) else f"{name}.{key}"] = float(v)
    return out


def collect(sweep_dir: str | Path) -> tuple[dict[str, Any], list[RunRecord]]:
    """The sweep record and every run's values (runs not done yet come back with ``done=False``)."""
    from .udr import read_udr

    rec, specs = load_sweep_dir(sweep_dir)
    udr = read_udr(sweep_dir)          # ``aggregate --udr``: each run's score against its configuration's seeds
    records = []
    for s in specs:
        folder = run_dir(sweep_dir, s.run_id)
        r = RunRecord(s, folder, is_done(folder, s))
        if r.done:
            log = read_log(folder)
            r.logged = logged_terms(log)
            for col in r.logged:
                v = final_value(log, f"train/{col}")
                if v is not None:
                    r.values[col] = v
            r.values.update(held_out_values(folder, log))
            m = json.loads((folder / "metrics.json").read_text())
            r.metrics = m.get("results", {})
            r.factor_names = m.get("factor_names", [])
            r.values.update(metric_scalars(r.metrics))
            r.mig_factors = {k: float(v) for k, v in (r.metrics.get("mig", {}).get("mig_per_factor") or {}).items()}
            r.values.update(udr.get(s.run_id, {}))
        records.append(r)
    return rec, records


def _mean_std(vals: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in vals if v is not None and not math.isnan(v)]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def group_rows(records: list[RunRecord]) -> tuple[list[Row], list[str]]:
    """Configurations in sweep order, and the value columns present in any run."""
    groups: dict[str, list[RunRecord]] = {}
    for r in records:
        groups.setdefault(r.spec.group, []).append(r)
    present = {k for r in records for k in r.values}
    logged = [k for k in dict.fromkeys(k for r in records for k in r.logged) if k not in TRAINING_COLUMNS]
    training = [*TRAINING_COLUMNS, *sorted(logged), *[c for c in HELD_OUT_COLUMNS if c in present]]
    metric_cols = sorted(k for k in present if k not in training)
    columns = [*training, *metric_cols]
    rows = []
    for runs in groups.values():
        done = [r for r in runs if r.done]
        mean, std = {}, {}
        for c in columns:
            mean[c], std[c] = _mean_std([r.values.get(c) for r in done])
        rows.append(Row(runs[0].spec, runs, mean, std))
    return rows, columns


def hparam_columns(rows: list[Row]) -> list[str]:
    """Hyperparameters shown in the table: every one a configuration names, in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        for k in row.spec.hparams:
            seen.setdefault(k, None)
    return list(seen)


def _fmt(v: float | None) -> str:
    if v is None:
        return ""
    return f"{v:.3f}" if abs(v) < 1e4 else f"{v:.4g}"


def cell(mean: float | None, std: float | None) -> str:
    """``mean ± std`` (just the mean for one seed; blank when missing)."""
    if mean is None:
        return ""
    return _fmt(mean) if std is None else f"{_fmt(mean)} ± {_fmt(std)}"


def table(sweep_dir: str | Path) -> tuple[dict[str, Any], list[RunRecord], list[Row], list[str], list[str]]:
    rec, records = collect(sweep_dir)
    rows, columns = group_rows(records)
    return rec, records, rows, columns, hparam_columns(rows)


def aggregate(sweep_dir: str | Path) -> dict[str, Path]:
    """Write ``results_runs.csv``, ``results.csv`` and ``results.md`` into the sweep folder."""
    sweep_dir = Path(sweep_dir)
    rec, records, rows, columns, hps = table(sweep_dir)
    head = ["stage", "model", "dataset", *hps]

    runs_csv = sweep_dir / "results_runs.csv"
    with open(runs_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run_id", *head, "seed", "done", *columns])
        for r in records:
            w.writerow([r.spec.run_id, r.spec.stage, r.spec.model, r.spec.dataset,
                        *[r.spec.hparams.get(h, "") for h in hps], r.spec.seed, int(r.done),
                        *[_raw(r.values.get(c)) for c in columns]])

    res_csv = sweep_dir / "results.csv"
    with open(res_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*head, "seeds_done", "seeds", *[f"{c}_{s}" for c in columns for s in ("mean", "std")]])
        for row in rows:
            n_done = sum(r.done for r in row.runs)
            w.writerow([row.spec.stage, row.spec.model, row.spec.dataset, *[row.spec.hparams.get(h, "") for h in hps],
                        n_done, len(row.runs), *[_raw(x) for c in columns for x in (row.mean[c], row.std[c])]])

    md = sweep_dir / "results.md"
    md.write_text(markdown(rec, rows, columns, hps))
    return {"runs_csv": runs_csv, "csv": res_csv, "markdown": md}


def _raw(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def markdown(rec: dict[str, Any], rows: list[Row], columns: list[str], hps: list[str]) -> str:
    """A Markdown table: one row per configuration, each value ``mean ± std`` over its seeds."""
    done = sum(r.done for row in rows for r in row.runs)
    total = sum(len(row.runs) for row in rows)
    head = ["stage", "model", "dataset", *hps, "seeds", *columns]
    lines = [f"# Sweep `{rec.get('name')}`", ""]
    if rec.get("description"):
        lines += [rec["description"].strip(), ""]
    lines += [f"{done}/{total} runs done. Values: mean ± std over seeds (sample std); training columns are the "
              f"mean of the last {int(TAIL_FRACTION * 100)}% of logged values; blank: not logged by that model.", ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" for _ in head) + "|")
    for row in rows:
        n = sum(r.done for r in row.runs)
        cells = [row.spec.stage, row.spec.model, row.spec.dataset, *[_short(row.spec.hparams[h]) if h in row.spec.hparams else "" for h in hps],
                 f"{n}/{len(row.runs)}", *[cell(row.mean[c], row.std[c]) for c in columns]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += mig_factor_table(rows, hps)
    from .udr import ranking, ranking_markdown

    lines += ranking_markdown(ranking([r for row in rows for r in row.runs], columns))
    return "\n".join(lines) + "\n"


def mig_factor_table(rows: list[Row], hps: list[str]) -> list[str]:
    """Markdown lines: MIG per factor (mean ± std over seeds) for each configuration (E3's table)."""
    factors = list(dict.fromkeys(f for row in rows for r in row.runs if r.done for f in r.mig_factors))
    if not factors:
        return []
    head = ["stage", "model", "dataset", *hps, *factors]
    lines = ["", "## MIG per factor", "", "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in rows:
        done = [r for r in row.runs if r.done]
        cells = [cell(*_mean_std([r.mig_factors.get(f) for r in done])) for f in factors]
        lines.append("| " + " | ".join([row.spec.stage, row.spec.model, row.spec.dataset,
                                       *[_short(row.spec.hparams[h]) if h in row.spec.hparams else "" for h in hps],
                                       *cells]) + " |")
    return lines
