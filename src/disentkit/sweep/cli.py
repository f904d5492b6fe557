"""``disentkit sweep`` and ``disentkit aggregate``: their flags, checked before any config is read or
folder made, and what they run."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DisentkitError
from ..names import split_outside_parens


def add_parsers(sub) -> None:
    """``disentkit sweep`` and ``disentkit aggregate`` on the CLI's subparsers."""
    p = sub.add_parser("sweep", help="run a grid of trainings (models × hyperparameters × seeds × datasets)",
                       show_defaults=True,
                       description="Run every run of a sweep config; killed and started again, it skips finished "
                                   "runs and reruns the others.")
    from ..configs import bundled

    p.add_argument("config", help=f"sweep YAML file, or the name of a shipped one: {', '.join(bundled('sweeps'))}")
    p.add_argument("--steps", type=int, help="scale every stage so the config's default steps become N")
    p.add_argument("--seeds", help="comma-separated seeds replacing the config's (e.g. 0,1,2)")
    p.add_argument("--datasets", help="comma-separated datasets replacing the config's (e.g. dsprites,mpi3d_real)")
    p.add_argument("--metrics", help="comma-separated metrics replacing the config's (e.g. mig)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="setting applied to every run, e.g. --set batch_size=32, or a metric's, e.g. --set "
                        "dci.num_train=2000 (repeatable)")
    p.add_argument("--backend", default="local", choices=["local", "ray"], help="where runs execute")
    p.add_argument("--workers", type=int, help="runs at a time (local: processes, default 1; ray: at most N, "
                                                 "default: as many as the cluster's resources allow)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads per run (0: the config's `threads`, else cores / workers)")
    p.add_argument("--address", help="ray: join this cluster (HEAD:6379 or auto) instead of a private local instance; "
                                     "token authentication is used when RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or "
                                     "~/.ray/auth_token holds a token (docs/sweeps.md, running on a cluster)")
    p.add_argument("--shared-fs", action="store_true", default=None,
                   help="ray cluster: every node sees the sweep folder at the same path, so runs write into it "
                        "directly (default: runs execute in node-local scratch, $DISENTKIT_SCRATCH, and their "
                        "results come back to this machine through Ray)")
    p.add_argument("--sync-state", action="store_true",
                   help="ray cluster without --shared-fs: also bring each run's training state back at every "
                        "checkpoint, so a run whose node dies continues from its last checkpoint (default: only "
                        "results come back, and such a run starts again)")
    p.add_argument("--gpus-per-run", type=float, help="ray: GPU share per run (0.25: four per GPU; default: the "
                                                      "cluster's GPUs shared by --workers runs; 0: CPU only)")
    p.add_argument("--cpus-per-run", type=float, default=1.0, help="ray: CPUs reserved per run")
    p.add_argument("--ensemble", type=int, default=0, metavar="M",
                   help="train up to M ready runs that differ only in seed and real-valued hyperparameters (β, γ, "
                        "…) as one fused ensemble (one process, stacked weights; same results as one by one; "
                        "the fast path on a GPU, see docs/speed.md); 0 or 1: one process per run")
    p.add_argument("--out", help="sweep folder (default: runs/sweeps/NAME-CONFIGHASH)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("aggregate", help="results table (CSV and Markdown, mean ± std over seeds) of a sweep")
    p.add_argument("sweep_dir", help="a sweep folder written by `disentkit sweep`")
    p.add_argument("--udr", action="store_true",
                   help="first score every run with UDR (Duan et al. 2020; no labels) against the other seeds of "
                        "its configuration, into udr.json; the table then ranks runs by UDR beside MIG, DCI, …")
    p.add_argument("--udr-points", type=int, default=10_000, help="images UDR compares the models on")
    p.add_argument("--seed", type=int, default=0, help="seed of UDR's image draw and Lasso")
    p.add_argument("--device", default="cpu", help="device to encode on for --udr: cpu, cuda, cuda:N or auto")
    p.set_defaults(func=cmd_aggregate)


def check_sweep_flags(args: argparse.Namespace) -> None:
    """The sweep's own flags against their ranges, before any config is read or folder made."""
    from ..train.config import MAX_SEED

    for s in (args.seeds or "").split(",") if args.seeds else []:
        if not s.strip().isdigit() or int(s) > MAX_SEED:
            raise DisentkitError(f"--seeds expects comma-separated integers in 0..{MAX_SEED}, got '{args.seeds}'")
    least = 1 if args.backend == "local" else 0
    checks = [(args.workers is None or args.workers >= least, f"--workers must be ≥ {least} with --backend "
               f"{args.backend}, got {args.workers}"),
              (args.steps is None or args.steps > 0, f"--steps must be positive, got {args.steps}"),
              (args.threads >= 0, f"--threads must be ≥ 0 (0: one per core), got {args.threads}"),
              (args.ensemble >= 0, f"--ensemble must be ≥ 0 (0: off), got {args.ensemble}"),
              (args.cpus_per_run > 0, f"--cpus-per-run must be positive, got {args.cpus_per_run}"),
              (args.gpus_per_run is None or args.gpus_per_run >= 0,
               f"--gpus-per-run must be ≥ 0, got {args.gpus_per_run}"),
              (args.backend == "ray" or not (args.shared_fs or args.sync_state or args.address),
               "--address, --shared-fs and --sync-state are for --backend ray"),
              (not args.sync_state or args.address, "--sync-state is for a Ray cluster (--address): a local "
                                                    "Ray instance writes into the sweep folder directly"),
              (not (args.shared_fs and args.sync_state),
               "--sync-state brings state back without a shared filesystem; with --shared-fs it is already there")]
    for ok, msg in checks:
        if not ok:
            raise DisentkitError(msg)


def split_top_level(text: str) -> list[str]:
    """'a,b:corr(x,y,0.2)' -> ['a', 'b:corr(x,y,0.2)']: commas inside parentheses stay."""
    return [p for p in split_outside_parens(text, ",") if p]


def cmd_sweep(args: argparse.Namespace) -> int:
    from . import load_sweep, run_sweep
    from .grid import _number, validate_runs

    overrides: dict = {}
    metric_params: dict[str, dict] = {}
    for item in args.set:
        if "=" not in item:
            raise DisentkitError(f"--set expects KEY=VALUE, got '{item}'")
        k, v = item.split("=", 1)
        metric, dot, param = k.strip().partition(".")
        if dot:                       # METRIC.PARAM=VALUE: a metric's setting, e.g. dci.num_train=2000
            metric_params.setdefault(metric, {})[param] = _number(v.strip())
        else:
            overrides[k.strip().replace("-", "_")] = _number(v.strip())
    check_sweep_flags(args)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    datasets = split_top_level(args.datasets) if args.datasets else None
    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    from ..configs import resolve_config

    args.config = resolve_config(args.config, "sweeps")
    sweep = load_sweep(args.config, steps=args.steps, seeds=seeds, datasets=datasets, overrides=overrides,
                       metrics=metrics, metric_params=metric_params)
    if args.dry_run:
        validate_runs(sweep.runs)
        for r in sweep.runs:
            length = f"epochs={r.train['epochs']}" if r.train.get('epochs') else f"steps={r.train.get('steps', 3000)}"
            print(f"{r.run_id:<60} {length} {'<- ' + r.parent if r.parent else ''}")
        print(f"{len(sweep.runs)} runs (config hash {sweep.config_hash[:8]})")
        return 0
    workers = args.workers if args.workers is not None else (1 if args.backend == "local" else 0)
    res = run_sweep(sweep, args.out, backend=args.backend, workers=workers, address=args.address,
                    gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run, threads=args.threads,
                    printer=lambda s: print(s, flush=True), source_text=Path(args.config).read_text(),
                    ensemble=args.ensemble, shared_fs=args.shared_fs, sync_state=args.sync_state)
    from .aggregate import aggregate

    paths = aggregate(res.out)
    print(f"results: {paths['markdown']} (report: disentkit report --sweep {res.out})")
    return 0 if res.ok else 1


def cmd_aggregate(args: argparse.Namespace) -> int:
    from .aggregate import aggregate

    if args.udr:
        from .udr import sweep_udr

        print(f"wrote {sweep_udr(args.sweep_dir, args.udr_points, args.seed, device=args.device)}")
    paths = aggregate(args.sweep_dir)
    print(paths["markdown"].read_text())
    print(f"wrote {paths['csv']}, {paths['runs_csv']} and {paths['markdown']}")
    return 0
