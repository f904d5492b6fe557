"""Values of every metric on the identity, a random rotation, and pure noise of the factors.

    PYTHONPATH=src python benchmarks/known_answers.py

Dataset: 5 factors × 10 classes, observations = factor classes (dlib's IdentityObservationsData).
Defaults are dlib's except where ``--set`` says otherwise (DCI's 10,000-point GBT probes take minutes).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from disentkit.cli import parse_sets
from disentkit.testing import IdentityDataset
from disentkit.metrics import METRICS, evaluate





def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", action="append", default=["dci.num_train=2000", "dci.num_test=1000"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    q = torch.as_tensor(np.linalg.qr(np.random.default_rng(0).normal(size=(5, 5)))[0])

    def noise(x):
        return torch.randn(len(x), 5, generator=torch.Generator().manual_seed(int(x.sum()) + len(x)))

    noise.deterministic = False
    encoders = {"identity": lambda x: x.flatten(1), "rotation": lambda x: x.flatten(1).double() @ q, "noise": noise}
    params = parse_sets(args.set)
    rows = {n: evaluate(e, IdentityDataset(), "all", seed=0, params=params) for n, e in encoders.items()}
    print(f"overrides: {params}")
    print(f"| value | {' | '.join(encoders)} |\n|---|{'---|' * len(encoders)}")
    for metric in METRICS:
        for key, v in rows["identity"][metric].items():
            if isinstance(v, float) and (key == metric or not key.startswith(metric)):
                vals = [rows[n][metric][key] for n in encoders]
                label = metric if key == metric else f"{metric}: {key}"
                print(f"| {label} | " + " | ".join("inf" if math.isinf(x) else f"{x:.4f}" for x in vals) + " |")


if __name__ == "__main__":
    main()
