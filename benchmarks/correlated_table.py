"""The tables of docs/correlated.md from a finished `disentkit sweep correlated` folder.

    python benchmarks/correlated_table.py runs/sweeps/correlated-XXXX

For each method and dataset (mean over seeds, the seed count in brackets when more than one):
- MIG and DCI disentanglement on the full uniform grid;
- posX / posY: per-factor MIG of the two correlated factors, and how many seeds keep them in *separate*
  latents: their most informative latents (argmax over latents of MIG's MI matrix) differ and both
  factors' MIG is at least 0.05 (below that a factor is not captured by any one latent: "uncaptured");
  "shared": one latent is the most informative about both;
- on the holes split: reconstruction BCE on held-out vs seen combinations and MIG on each.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

CAPTURED = 0.05      # per-factor MIG from which a factor counts as held by one latent
ORDER = ["beta_vae", "factor_vae", "beta_tcvae", "hfs_vae", "adaptive_beta_vae", "pairwise_adaptive_vae", "ada_gvae"]


def short(dataset: str) -> str:
    if ":holes(" in dataset:
        return "holes: " + dataset.split(":holes(", 1)[1].rstrip(")")
    if ":corr(" in dataset:
        return "σ=" + dataset.rsplit(",", 1)[1].rstrip(")").replace("inf", "∞")
    return dataset


def collect(sweep: Path) -> dict[tuple[str, str], list[dict]]:
    rows: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for run in sorted((sweep / "runs").iterdir()):
        if not (run / "metrics.json").is_file():
            continue
        spec = json.loads((run / "run.json").read_text())
        rec = json.loads((run / "metrics.json").read_text())
        res, names = rec["results"], rec["factor_names"]
        mi = np.asarray(res["mig"]["mi_matrix"])                  # latents × factors
        x, y = names.index("posX"), names.index("posY")
        row = {"mig": res["mig"]["mig"], "dci": res["dci"]["disentanglement"],
               "mig_x": res["mig"]["mig_per_factor"]["posX"], "mig_y": res["mig"]["mig_per_factor"]["posY"],
               "shared": int(mi[:, x].argmax() == mi[:, y].argmax())}
        row["separate"] = int(not row["shared"] and min(row["mig_x"], row["mig_y"]) >= CAPTURED)
        if "recombination" in res:
            r = res["recombination"]
            row.update(bce_held_out=r["bce_held_out"], bce_seen=r["bce_seen"], gap=r["bce_gap"],
                       mig_held_out=r["mig_held_out"], mig_seen=r["mig_seen"])
        rows[(spec["model"], spec["dataset"])].append(row)
    return rows


def cell(values: list[float], fmt: str = "{:.3f}") -> str:
    text = fmt.format(statistics.mean(values))
    return text + (f" ±{statistics.stdev(values):.3f}" if len(values) > 1 else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", type=Path)
    rows = collect(ap.parse_args().sweep)
    datasets = sorted({d for _, d in rows}, key=lambda d: (":holes(" in d, -float(short(d)[2:].replace("∞", "inf"))
                                                           if d.count(":corr(") else 0))
    models = [m for m in ORDER if any(k[0] == m for k in rows)]
    corr = [d for d in datasets if ":holes(" not in d]
    head = "| method | " + " | ".join(short(d) for d in corr) + " |"
    rule = "|---|" + "---|" * len(corr)
    for title, key in (("MIG", "mig"), ("DCI disentanglement", "dci")):
        print(f"\n{title} (full grid)\n\n{head}\n{rule}")
        for m in models:
            print(f"| {m} | " + " | ".join(cell([r[key] for r in rows.get((m, d), [])]) if (m, d) in rows else ""
                                           for d in corr) + " |")
    print(f"\nper-factor MIG posX / posY; seeds with posX and posY in separate latents, or sharing one\n\n{head}\n{rule}")
    for m in models:
        cells = []
        for d in corr:
            rs = rows.get((m, d), [])
            if rs:
                cells.append(f"{statistics.mean(r['mig_x'] for r in rs):.3f} / {statistics.mean(r['mig_y'] for r in rs):.3f}"
                             f" ({sum(r['separate'] for r in rs)} sep., {sum(r['shared'] for r in rs)} shared"
                             f" of {len(rs)})")
            else:
                cells.append("")
        print(f"| {m} | " + " | ".join(cells) + " |")
    for d in (d for d in datasets if ":holes(" in d):
        print(f"\n{short(d)}: reconstruction BCE (nats per image) and MIG, held-out vs seen\n")
        print("| method | BCE held-out | BCE seen | gap | MIG held-out | MIG seen | MIG full grid |\n|---|---|---|---|---|---|---|")
        for m in models:
            rs = rows.get((m, d), [])
            if rs:
                print(f"| {m} | {cell([r['bce_held_out'] for r in rs], '{:.1f}')} | {cell([r['bce_seen'] for r in rs], '{:.1f}')}"
                      f" | {cell([r['gap'] for r in rs], '{:.2f}')} | {cell([r['mig_held_out'] for r in rs])}"
                      f" | {cell([r['mig_seen'] for r in rs])} | {cell([r['mig'] for r in rs])} |")


if __name__ == "__main__":
    main()
