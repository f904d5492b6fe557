"""Per-metric wall-clock times of the disentkit metrics suite at disentanglement_lib's defaults.

    PYTHONPATH=src python benchmarks/bench_metrics.py --checkpoint /tmp/run --threads 2 --repeats 3
    PYTHONPATH=src python benchmarks/bench_metrics.py --checkpoint /tmp/run --dci-only --dci-seeds 5
    PYTHONPATH=src python benchmarks/bench_metrics.py --checkpoint runs/demo --metrics infomec,dci_es --udr-models 3

Prints: encoder throughput (plain ``no_grad`` forward in 2048-image batches vs disentkit's
``representation_function``: channels_last, in-place ReLUs, ``CPU_CHUNK``-image chunks, inference_mode), then each metric run alone (its own sampling and encoding), then
the whole suite through ``evaluate`` (one shared encoding of the union of images). Without
``--checkpoint`` a randomly initialised Locatello encoder is used (and the table says so). Timings
on a shared machine are noisy: use ``--repeats`` and read the minimum.

The DCI section (``--dci-seeds K``, K > 0; ``--dci-only`` skips the rest) encodes DCI's sample once
(dlib defaults unless ``--set dci.num_train=…``) and scores those same codes with the ``exact``
backend and with the ``sklearn`` reference for random states 0..K-1, in this process: values side by
side, sklearn's spread over its random states, and the wall-time ratio. Figures are printed, never
asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from disentkit.data import get_dataset
from disentkit.metrics import METRICS, SPECS, CodeSource, dci_from_codes, representation_function, resolve_metrics
from disentkit.metrics.utils import check_params, run_metrics
from disentkit.models import GaussianVAE
from machine import cpu_label  # noqa: E402  (benchmarks/machine.py, beside this script)

DCI_KEYS = ("disentanglement", "completeness", "informativeness_train", "informativeness_test")


def _time(fn, repeats: int) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def _fmt(times: list[float]) -> str:
    return f"{min(times):8.2f}s" + (f"  (median {statistics.median(times):.2f}s, n={len(times)})" if len(times) > 1 else "")


def dci_compare(enc, ds, params: dict, seeds: int) -> None:
    """DCI of one encoder's codes with the exact backend and with sklearn over ``seeds`` random states."""
    p = check_params(SPECS["dci"], params.get("dci", {}))
    draws = SPECS["dci"].sample(ds, np.random.default_rng(0), **p)
    src = CodeSource(enc, ds)
    codes = {k: src.codes(f) for k, f in draws.items()}
    args = (codes["train"], draws["train"], codes["test"], draws["test"])
    print(f"\nDCI on the same codes ({p['num_train']:,} train / {p['num_test']:,} test, "
          f"{codes['train'].shape[1]} latents, factor classes {list(ds.factor_sizes)}); {cpu_label()}, "
          f"{torch.get_num_threads()} torch threads, sklearn n_jobs={p['n_jobs']}")
    print(f"{'backend':<10}{'seed':>5}{'time':>10}  " + "".join(f"{k:>23}" for k in DCI_KEYS))
    rows = {}
    for backend in ("exact",) + ("sklearn",) * seeds:
        seed = len([b for b in rows if b[0] == backend])
        t = time.perf_counter()
        out = dci_from_codes(*args, backend=backend, n_jobs=p["n_jobs"], seed=seed, device=str(src.device))
        rows[(backend, seed)] = (time.perf_counter() - t, out)
        print(f"{backend:<10}{seed:>5}{rows[(backend, seed)][0]:>9.1f}s  "
              + "".join(f"{out[k]:>23.4f}" for k in DCI_KEYS))
    if str(src.device) == "cpu":  # the same probes on the torch engine (the CUDA path), same codes
        from disentkit.metrics.gbt import fit_probes
        t = time.perf_counter()
        probes = fit_probes(codes["train"], list(draws["train"].T), codes["test"], list(draws["test"].T),
                            engine="torch")
        t_torch = time.perf_counter() - t
        same = all(np.array_equal(p.test_pred, q) for p, q in zip(probes, [
            fit.test_pred for fit in fit_probes(codes["train"], list(draws["train"].T), codes["test"],
                                                list(draws["test"].T))]))
        print(f"exact backend, torch engine on the CPU: {t_torch:.1f}s ({t_torch / rows[('exact', 0)][0]:.1f}x the "
              f"compiled default's time); same predictions as the compiled engine: {same}")
    ref = [out for (b, _), (_, out) in rows.items() if b == "sklearn"]
    if ref:
        exact = rows[("exact", 0)]
        print(f"{'sklearn min..max':<25}" + "".join(f"{min(r[k] for r in ref):>11.4f}..{max(r[k] for r in ref):<10.4f}"
                                             for k in DCI_KEYS))
        print(f"{'exact − sklearn seed 0':<25}" + "".join(f"{exact[1][k] - ref[0][k]:>+23.4f}" for k in DCI_KEYS))
        t_ref = np.mean([t for (b, _), (t, _) in rows.items() if b == "sklearn"])
        print(f"time: exact {exact[0]:.1f}s, sklearn {t_ref:.1f}s (mean of {len(ref)}), ratio {t_ref / exact[0]:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="trained run folder or .safetensors (default: random-init encoder)")
    ap.add_argument("--dataset", default="dsprites_procedural")
    ap.add_argument("--metrics", default="all")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (set explicitly)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--skip-suite", action="store_true", help="skip the shared whole-suite run")
    ap.add_argument("--set", action="append", default=[], metavar="METRIC.PARAM=VALUE", help="override a default")
    ap.add_argument("--dci-seeds", type=int, default=0,
                    help="DCI section: exact vs sklearn with this many random states")
    ap.add_argument("--dci-only", action="store_true", help="only the DCI section")
    ap.add_argument("--udr-models", type=int, default=0,
                    help="also time UDR of the model and N-1 random-init ones (it scores models against each other)")
    args = ap.parse_args()
    from disentkit.cli import parse_sets
    from disentkit.train.run import setup_process

    setup_process(args.threads)  # as `disentkit evaluate`: threads, and a heap that keeps freed memory

    params = parse_sets(args.set)
    if args.checkpoint:
        from disentkit.train import load_checkpoint

        vae, what = load_checkpoint(args.checkpoint).vae, f"trained checkpoint {args.checkpoint}"
    else:
        torch.manual_seed(0)
        vae, what = GaussianVAE("locatello", 1, 10).eval(), "random-init Locatello encoder"
    ds = get_dataset(args.dataset)
    names = resolve_metrics(args.metrics)
    print(f"# {what}; dataset {ds.name}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"overrides {params or 'none (dlib defaults)'}")
    enc = representation_function(vae, "mean")
    if args.dci_only:
        dci_compare(enc, ds, params, max(args.dci_seeds, 1))
        return

    # encoder throughput on 10,000 images (rendering excluded)
    x = ds.images_at(torch.as_tensor(ds.factors_to_index(ds.sample_factors(10_000, np.random.default_rng(0)))))
    t = time.perf_counter()
    ds.images_at(torch.as_tensor(ds.factors_to_index(ds.sample_factors(10_000, np.random.default_rng(1)))))
    print(f"render/gather 10k images:             {time.perf_counter() - t:8.2f}s")

    def plain():
        with torch.no_grad():
            return [vae.encoder(x[i:i + 2048])[0] for i in range(0, len(x), 2048)]

    print(f"encode 10k, plain no_grad (bs 2048):  {_fmt(_time(plain, args.repeats)[0])}")
    print(f"encode 10k, representation_function:  "
          f"{_fmt(_time(lambda: [enc(x[i:i + 4096]) for i in range(0, len(x), 4096)], args.repeats)[0])}")

    print(f"\n{'metric (alone)':<20}{'time':>9}  {'images encoded':>15}  headline")
    for name in names:
        holder = {}

        def one():
            holder["src"] = CodeSource(enc, ds)
            return run_metrics([SPECS[name]], enc, ds, 0, {name: params.get(name, {})}, holder["src"])[name]

        times, out = _time(one, args.repeats)
        print(f"{name:<20}{_fmt(times)}  {holder['src'].num_encoded:>15,}  {out[name]:.4f}")

    if not args.skip_suite and len(names) > 1:
        holder = {}

        def suite():
            holder["src"] = CodeSource(enc, ds)
            return run_metrics([SPECS[n] for n in names], enc, ds, 0, params, holder["src"])

        times, _ = _time(suite, args.repeats)
        print(f"{'suite (shared)':<20}{_fmt(times)}  {holder['src'].num_encoded:>15,}")
    if args.dci_seeds:
        dci_compare(enc, ds, params, args.dci_seeds)
    if args.udr_models:
        udr_time(vae, ds, args.udr_models, args.repeats)


def udr_time(vae, ds, models: int, repeats: int) -> None:
    """UDR (both correlations) of the model and ``models`` − 1 randomly initialised ones, 10,000 images."""
    from disentkit.metrics.udr import udr

    others = [GaussianVAE("locatello", ds.observation_shape[0], vae.latent_dim).eval() for _ in range(models - 1)]
    times, out = _time(lambda: udr([vae, *others], ds), repeats)
    print(f"{'udr (' + str(models) + ' models)':<20}{_fmt(times)}  {10_000 * models:>15,}  "
          f"{out['udr'][0]:.4f} (first model)")


if __name__ == "__main__":
    assert METRICS  # registry imported
    main()
