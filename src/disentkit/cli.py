"""``disentkit``: the one command-line entry point.

Every subcommand turns bad input into one line on stderr naming what is wrong and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .errors import DisentkitError

TRAIN_FLAGS: list[tuple[str, type, str]] = [
    ("model", str, "objective to train: {models}"),
    ("dataset", str, "factor dataset to train on (see `disentkit datasets list`)"),
    ("seed", int, "random seed: weights, batches and noise; same seed gives identical losses on CPU"),
    ("steps", int, "number of optimizer steps"),
    ("batch-size", int, "images per step"),
    ("lr", float, "Adam learning rate (betas 0.9, 0.999)"),
    ("latent-dim", int, "number of latent dimensions"),
    ("architecture", str, "encoder/decoder: locatello (disentanglement_lib) or burgess (4x4 kernels throughout)"),
    ("reconstruction", str, "likelihood: bernoulli (sigmoid cross-entropy, default) or gaussian (squared error)"),
    ("out", str, "run folder for config, logs and checkpoints"),
    ("val-fraction", float, "fraction of images held out for validation; >0 enables best-checkpoint selection"),
    ("val-every", int, "validate every N steps (with --val-fraction)"),
    ("val-batches", int, "batches of the held-out split scored at each validation"),
    ("log-every", int, "write logged values every N steps (fewer host syncs)"),
    ("checkpoint-every", int, "write last.safetensors every N steps"),
    ("device", str, "auto, cpu, cuda or cuda:N"),
    ("threads", int, "CPU threads for torch (0 = one per core)"),
    ("init-from", str, "start from this checkpoint's weights (e.g. λβ-VAE from a β-VAE run)"),
]


def _add_train_parser(sub) -> None:
    from .models import OBJECTIVES, all_hparams
    from .train import TrainConfig

    defaults = TrainConfig()
    p = sub.add_parser("train", help="train one model", argument_default=argparse.SUPPRESS,
                       description="Train a VAE-family model on a factor dataset. Options come from "
                                   "defaults, then --config YAML, then flags given here.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", help="YAML file of options (keys as the flags, e.g. batch_size: 64)")
    models = ", ".join(sorted(OBJECTIVES))
    for name, typ, text in TRAIN_FLAGS:
        default = getattr(defaults, name.replace("-", "_"))
        p.add_argument(f"--{name}", type=typ, help=f"{text.format(models=models)} (default: {default})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    g = p.add_argument_group("model hyperparameters (each applies to the models named)")
    for hp, users in all_hparams().values():
        g.add_argument(hp.flag, type=hp.type, dest=hp.name, help=_hparam_help(hp.name, users))
    p.set_defaults(func=cmd_train)


def _hparam_help(name: str, users: list[str]) -> str:
    """Help for a flag several models may share: each distinct text once, each model's own default."""
    from .models import OBJECTIVES

    declared = {u: next(p for p in OBJECTIVES[u].hparams if p.name == name) for u in users}
    texts = list(dict.fromkeys(p.help for p in declared.values()))
    defaults = {p.default for p in declared.values()}
    default = (next(iter(defaults)) if len(defaults) == 1
               else ", ".join(f"{u} {p.default}" for u, p in declared.items()))
    return f"{'; '.join(texts)} [{', '.join(users)}] (default: {default})"


def cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, fit
    from .train.config import load_yaml

    given = {k: v for k, v in vars(args).items() if k not in ("func", "command", "config")}
    merged: dict[str, Any] = load_yaml(args.config) if getattr(args, "config", None) else {}
    merged.update(given)
    config = TrainConfig.from_dict(merged)
    t0 = time.time()
    run_dir = fit(config)
    print(f"trained {config.model} for {config.steps} steps in {time.time() - t0:.0f}s -> {run_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import get_dataset
    from .metrics import evaluate, representation_function, resolve_metrics
    from .train import load_checkpoint
    from .train.run import set_threads

    set_threads(args.threads)
    names = resolve_metrics(args.metrics)
    ck = load_checkpoint(args.checkpoint, device=args.device)
    dataset = get_dataset(args.dataset or ck.config["dataset"])
    encode = representation_function(ck.vae, args.representation, seed=args.seed)
    results = evaluate(encode, dataset, names, seed=args.seed)
    out = Path(args.out) if args.out else ck.path.parent / "metrics.json"
    record: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    record.update(checkpoint=str(ck.path), model=ck.config["model"], dataset=dataset.name, seed=args.seed,
                  representation=args.representation, factor_names=list(dataset.factor_names))
    record.setdefault("results", {}).update(results)
    if args.baseline:
        import torch

        from .train.checkpoint import build_vae

        torch.manual_seed(ck.config["seed"])  # the same initialisation the run started from
        fresh = build_vae(ck.config).to(args.device).eval()
        record.setdefault("untrained", {}).update(
            evaluate(representation_function(fresh, args.representation, args.seed), dataset, names, args.seed))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(format_table(record))
    print(f"wrote {out}")
    return 0


def format_table(record: dict) -> str:
    """Headline value of each metric (and of the untrained baseline, when computed)."""
    lines = [f"{'metric':<12}{'value':>10}" + (f"{'untrained':>12}" if "untrained" in record else "")]
    for name, res in record["results"].items():
        line = f"{name:<12}{res[name]:>10.4f}"
        if name in record.get("untrained", {}):
            line += f"{record['untrained'][name][name]:>12.4f}"
        lines.append(line)
        for factor, v in (res.get(f"{name}_per_factor") or {}).items():
            lines.append(f"  {factor:<10}{v:>10.4f}")
    return "\n".join(lines)


def cmd_report(args: argparse.Namespace) -> int:
    from .viz import write_report

    path = write_report(args.checkpoint, args.out, args.dataset, steps=args.steps, limit=args.limit, seed=args.seed)
    print(f"wrote {path} (reconstructions.png, traversals.png, traversals.gif beside it)")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from .data import DATASETS, get_dataset

    if args.action == "list":
        print(f"{'name':<24}{'images':>10}  {'kind':<11}description")
        for name, e in sorted(DATASETS.items()):
            ds = get_dataset(name) if e.procedural else None
            n = f"{ds.num_images:,}" if ds else "-"
            print(f"{name:<24}{n:>10}  {'procedural' if e.procedural else 'file':<11}{e.description}")
        return 0
    if not args.name:
        raise DisentkitError("`disentkit datasets info` needs a dataset NAME")
    print(json.dumps(get_dataset(args.name).describe(), indent=1))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .models import OBJECTIVES

    for name, cls in sorted(OBJECTIVES.items()):
        hp = ", ".join(f"{p.name}={p.default}" for p in cls.hparams)
        print(f"{name:<22}{hp:<40} {cls.paper}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="disentkit",
                                     description="Train, evaluate and compare disentangled representation learners.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train_parser(sub)

    p = sub.add_parser("evaluate", help="score a checkpoint with disentanglement metrics",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a run folder or a .safetensors checkpoint")
    p.add_argument("--metrics", default="mig", help="comma-separated metric names, or 'all'")
    p.add_argument("--dataset", help="dataset to score on (default: the one the model was trained on)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw the metrics make")
    p.add_argument("--representation", default="mean", help="mean (dlib default) or sampled")
    p.add_argument("--out", help="metrics JSON to write (default: metrics.json beside the checkpoint)")
    p.add_argument("--baseline", action="store_true", help="also score the same model untrained (its initial weights)")
    p.add_argument("--device", default="cpu", help="device to encode on")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = one per core)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("report", help="reconstructions, latent traversals (PNG and GIF) and an HTML page",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a run folder or a .safetensors checkpoint")
    p.add_argument("--out", help="folder for the report (default: the checkpoint's folder)")
    p.add_argument("--dataset", help="dataset to draw images from (default: the training dataset)")
    p.add_argument("--steps", type=int, default=10, help="traversal steps per latent")
    p.add_argument("--limit", type=float, default=2.0, help="traverse each latent over ±limit")
    p.add_argument("--seed", type=int, default=0, help="seed for the images shown")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("datasets", help="list datasets or show one")
    p.add_argument("action", choices=["list", "info"], help="list: every dataset; info NAME: factors and sizes")
    p.add_argument("name", nargs="?", help="dataset name (for info)")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("models", help="list the registered models and their hyperparameters")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except DisentkitError as e:
        print(f"disentkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
