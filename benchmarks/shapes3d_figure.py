"""Side-by-side picture of real 3D Shapes notebook panels and their best procedural matches.

Usage: python benchmarks/shapes3d_figure.py PANELS.npy OUT.png [--geometry CACHE.npz]
For each real panel the floor and wall hues are read off its pixels, the object hue off its centre,
and the geometry (scale, shape, orientation) with the lowest mean absolute error is shown below it.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from disentkit.data.shapes3d_procedural import Shapes3DProcedural, best_matches


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("panels")
    ap.add_argument("out")
    ap.add_argument("--geometry", default="auto")
    ap.add_argument("--count", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    panels = np.load(args.panels)[: args.count].astype(np.float32) / 255
    ds = Shapes3DProcedural(cache_path=args.geometry)
    mine, errs = best_matches(ds, panels)
    n = len(panels)
    grid = np.concatenate([panels, mine]).reshape(2, n, 64, 64, 3).transpose(0, 2, 1, 3, 4).reshape(128, n * 64, 3)
    import imageio.v2 as imageio

    big = np.kron((grid * 255).round().astype(np.uint8), np.ones((3, 3, 1), dtype=np.uint8))
    imageio.imwrite(args.out, big)
    print(f"wrote {args.out}; mean abs error per channel (0-255): "
          f"median {np.median(errs) * 255:.1f}, per panel {[round(e * 255, 1) for e in errs]}")


if __name__ == "__main__":
    main()
