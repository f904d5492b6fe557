"""Short-run numbers for the model zoo, and the adaptive-β comparison on correlated dSprites.

``python benchmarks/models_compare.py zoo``      each registered method, a short run on dsprites_procedural:
                                                final reconstruction, KL and the method's own term.
``python benchmarks/models_compare.py compare``  β-VAE vs FactorVAE vs adaptive β on dSprites whose posX
                                                and posY are correlated (same steps, batch, lr, seed), MIG
                                                on the uncorrelated grid.

The correlated sampler (until ``dsprites_procedural:corr(...)`` lands): the training index is drawn
uniformly as usual, but the image shown has posY' = clip(posX + round(w·(posY − 15.5)), 0, 31), so
posY' stays within ±round(15.5·w) classes of posX (w = 0.2: ±3 of 32; correlation ≈ 0.99).
Everything runs on one thread; print-outs are Markdown tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from disentkit.data import get_dataset, register
from disentkit.data.dsprites_procedural import DSpritesProcedural
from disentkit.metrics import mig, representation_function
from disentkit.train import TrainConfig, fit, load_checkpoint


class CorrelatedPositions(DSpritesProcedural):
    """dSprites rendered with posY pulled towards posX (see module docstring)."""

    name = "dsprites_corr_bench"

    def __init__(self, width: float = 0.2) -> None:
        super().__init__()
        self.width = width

    def correlated_factors(self, factors: torch.Tensor) -> torch.Tensor:
        f = factors.clone()
        offset = torch.round(self.width * (factors[:, 4].double() - 15.5)).long()
        f[:, 4] = (factors[:, 3] + offset).clamp(0, 31)
        return f

    def _gather(self, index: torch.Tensor) -> torch.Tensor:
        f = self.correlated_factors(self.index_to_factors(index))
        return self.render_factors(f).unsqueeze(1).float()


register("dsprites_corr_bench", CorrelatedPositions, "benchmark only: dSprites with posY ≈ posX", procedural=True)

OWN_TERMS = {
    "beta_vae": [], "factor_vae": ["tc", "d_z_real", "d_z_perm", "disc_accuracy"],
    "lambda_beta_vae": ["mse"], "annealed_vae": ["capacity"], "beta_tcvae": ["tc", "mi", "dwkl"],
    "dip_vae_i": ["dip_offdiag", "dip_diag"], "dip_vae_ii": ["dip_offdiag", "dip_diag"],
    "learnable_beta_vae": ["beta_effective"], "adaptive_beta_vae": ["entanglement_mean"],
}


def last_logged(run: Path, n: int = 5) -> dict[str, float]:
    """Mean over the last n logged training rows of every train/ value."""
    with open(run / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    keys = [k for k in rows[0] if k.startswith("train/")]
    return {k[6:]: float(np.mean([float(r[k]) for r in rows[-n:] if r[k] != ""])) for k in keys}


def zoo(args) -> None:
    hp = {"beta_vae": {"beta": 4.0}, "lambda_beta_vae": {"beta": 4.0, "lam": 4.0},
          "annealed_vae": {"c_max": 10.0, "anneal_steps": args.steps}, "adaptive_beta_vae": {"beta_warmup": 50}}
    print("| model | reconstruction | KL | own terms | seconds |\n|---|---|---|---|---|")
    for model, terms in OWN_TERMS.items():
        out = Path(args.out) / "zoo" / model
        t0 = time.time()
        fit(TrainConfig(model=model, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=0,
                        out=str(out), overwrite=True, threads=1, progress=False, log_every=10,
                        reconstruction="gaussian" if model == "learnable_beta_vae" else "bernoulli",
                        hparams=hp.get(model, {})))
        v = last_logged(out)
        own = ", ".join(f"{t} {v[t]:.3g}" for t in terms if t in v)
        if model == "adaptive_beta_vae":
            own += ", β_j " + "/".join(f"{v[f'beta/{j}']:.2f}" for j in range(10))
        print(f"| {model} | {v['reconstruction']:.1f} | {v['kl']:.2f} | {own} | {time.time() - t0:.0f} |", flush=True)


def compare(args) -> None:
    runs = {"beta_vae": {"beta": 4.0}, "factor_vae": {"gamma": 10.0},
            "adaptive_beta_vae": {"beta": 4.0, "kappa": 1.0, "tau": 0.1, "beta_warmup": 300}}
    grid = get_dataset("dsprites_procedural")
    results = {}
    for model, hp in runs.items():
        if args.models and model not in args.models.split(","):
            continue
        out = Path(args.out) / "compare" / model
        t0 = time.time()
        fit(TrainConfig(model=model, dataset="dsprites_corr_bench", steps=args.steps, batch_size=args.batch_size,
                        lr=args.lr, seed=args.seed, out=str(out), overwrite=True, threads=1, progress=False,
                        log_every=25, hparams=hp))
        seconds = time.time() - t0
        vae = load_checkpoint(out).vae
        m = mig(representation_function(vae), grid, seed=0)
        v = last_logged(out)
        results[model] = {"mig": m["mig"], "mig_per_factor": m["mig_per_factor"], "reconstruction": v["reconstruction"],
                          "kl": v["kl"], "seconds": seconds, "hparams": hp,
                          "betas": [v.get(f"beta/{j}") for j in range(10)] if model == "adaptive_beta_vae" else None}
        print(model, json.dumps(results[model]), flush=True)
    name = f"results_{args.models.replace(',', '_')}.json" if args.models else "results.json"
    Path(args.out, "compare", name).write_text(json.dumps(results, indent=1))
    print("\n| model | MIG | MIG posX | MIG posY | reconstruction | KL | seconds |\n|---|---|---|---|---|---|---|")
    for model, r in results.items():
        pf = r["mig_per_factor"]
        print(f"| {model} | {r['mig']:.3f} | {pf['posX']:.3f} | {pf['posY']:.3f} | {r['reconstruction']:.1f} | "
              f"{r['kl']:.2f} | {r['seconds']:.0f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["zoo", "compare"])
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", default="", help="compare: comma-separated subset of the three models")
    p.add_argument("--out", default="runs/bench_models")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.mode == "zoo":
        args.steps, args.batch_size = args.steps or 300, args.batch_size or 32
        zoo(args)
    else:
        args.steps, args.batch_size = args.steps or 1500, args.batch_size or 64
        compare(args)


if __name__ == "__main__":
    main()
