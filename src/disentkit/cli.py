"""``disentkit``: the one command-line entry point.

Every subcommand turns bad input into one line on stderr naming what is wrong and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

from .errors import DisentkitError


def show_default(action: argparse.Action) -> argparse.Action:
    """Append ``(default: …)`` to a flag's help, except where there is no default or the help already says
    it (argparse's ``ArgumentDefaultsHelpFormatter`` rule, through the public ``Action`` attributes)."""
    text = action.help or ""
    shown = action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)
    if (shown and action.help is not argparse.SUPPRESS and action.default is not None
            and action.default is not argparse.SUPPRESS and "default" not in text):
        action.help = text + " (default: %(default)s)"
    return action


class Parser(argparse.ArgumentParser):
    """argparse with the one-line error the rest of the CLI gives (the problem and where the help is); with
    ``show_defaults`` each flag's default in its help (:func:`show_default`), in argument groups too."""

    def __init__(self, *args: Any, show_defaults: bool = False, **kwargs: Any) -> None:
        self.show_defaults = show_defaults       # set first: the constructor adds --help
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # documented override point: print, then exit 2
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        return show_default(action) if self.show_defaults else action

    def add_argument_group(self, *args: Any, **kwargs: Any):
        group = super().add_argument_group(*args, **kwargs)
        add = group.add_argument
        if self.show_defaults:
            group.add_argument = lambda *a, **k: show_default(add(*a, **k))
        return group


GROUPS = {"training": "training", "data": "data protocol (E1: --epochs 200 --split 0.8,0.1,0.1 "
            "--early-stopping-patience 10)", "output": "run folder, logs and checkpoints",
          "speed": "device and speed", "ensemble": "fused ensembles"}


METAVARS = {"init_from": "CKPT", "split": "TRAIN,VAL,TEST", "data_root": "DIR", "out": "DIR", "steps": "N",
            "epochs": "N", "subsample": "N", "val_every": "N", "val_batches": "N", "early_stopping_patience": "K",
            "log_every": "N", "checkpoint_every": "N", "eval_every": "N", "image_every": "N", "threads": "N", "model": "NAME",
            "dataset": "NAME"}


TRAIN_HELP = "train one model (or a fused ensemble)"


def _add_train_parser(sub) -> None:
    """``disentkit train``: one flag per :class:`TrainConfig` field (its help is the field's), one per model
    hyperparameter, and --config / --print-config / --resume."""
    import dataclasses

    from .models import OBJECTIVES, all_hparams
    from .train.config import FIELD_TYPES, TrainConfig

    p = sub.add_parser("train", help=TRAIN_HELP, argument_default=argparse.SUPPRESS,
                       description="Train a VAE-family model on a factor dataset. Options come from "
                                   "defaults, then --config YAML, then flags given here.",
                       show_defaults=True)
    p.add_argument("--config", help="YAML file of options (keys as the flags, e.g. batch_size: 64), or a shipped "
                                    "config by name: demo, or a model's (beta_vae, factor_vae, ...); a run's own "
                                    "config.yaml reproduces it")
    p.add_argument("--print-config", action="store_true", help="print the merged configuration as YAML and exit")
    p.add_argument("--resume", metavar="RUN", help="continue the run (or ensemble) in this folder from its last "
                                                   "training state; --steps/--epochs may be raised")
    groups = {k: p.add_argument_group(v) for k, v in GROUPS.items()}
    models = ", ".join(sorted(OBJECTIVES))
    for f in dataclasses.fields(TrainConfig):
        if not f.metadata.get("cli", True):
            continue
        g = groups[f.metadata.get("group", "training")]
        text = f.metadata["help"].format(models=models)
        name = "--" + f.name.replace("_", "-")
        if FIELD_TYPES[f.name] is bool:
            g.add_argument(name, action=argparse.BooleanOptionalAction, help=f"{text} (default: {f.default})")
        elif f.name == "ensemble":
            g.add_argument(name, nargs="+", metavar="NAME=V1,V2", help=text)
        else:
            metavar = METAVARS.get(f.name, f.name.upper().split("_")[-1])
            g.add_argument(name, metavar=metavar, help=text if f.default is None else f"{text} (default: {f.default})")
    g = p.add_argument_group("model hyperparameters (each applies to the models named)")
    for hp, users in all_hparams().values():
        g.add_argument(hp.flag, dest=hp.name, metavar=hp.name.upper(), help=_hparam_help(hp.name, users))
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
    from .train import TrainConfig
    from .train.config import load_yaml

    given = {k: v for k, v in vars(args).items() if k not in ("func", "command", "config", "print_config", "resume")}
    if getattr(args, "resume", None):
        if getattr(args, "config", None):
            raise DisentkitError("--resume continues a run from its own config.yaml; drop --config")
        from .train.run import resume

        resume(args.resume, setup=True, **given)
        return 0
    from .configs import resolve_config

    merged: dict[str, Any] = load_yaml(resolve_config(args.config)) if getattr(args, "config", None) else {}
    merged.update(given)
    config = TrainConfig.from_dict(merged).validate()
    if getattr(args, "print_config", False):
        print(config.to_yaml(), end="")
        return 0
    from .train import fit

    fit(config, setup=True)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_checkpoint
    from .train.run import setup_process

    setup_process(args.threads)
    record, out = evaluate_checkpoint(args.checkpoint, args.metrics, dataset=args.dataset, data_root=args.data_root,
                                      seed=args.seed, representation=args.representation,
                                      params=parse_sets(args.set or []), device=args.device, baseline=args.baseline,
                                      out=args.out, allow_partial=args.allow_partial)
    if args.json:
        import json

        print(json.dumps(record, indent=1))
    else:
        print(format_table(record))
        print(f"wrote {out}")
    return 0


def parse_sets(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["dci.num_train=2000", ...]`` -> ``{"dci": {"num_train": 2000}}`` (values read as YAML scalars)."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        metric, dot, param = key.partition(".")
        if not (eq and dot and metric and param):
            raise DisentkitError(f"--set expects METRIC.PARAM=VALUE (e.g. dci.num_train=2000), got '{item}'")
        out.setdefault(metric.strip(), {})[param.strip()] = yaml.safe_load(value)
    return out


def format_table(record: dict) -> str:
    """Headline value of each metric (and of the untrained baseline, when computed)."""
    lines = [f"{'metric':<28}{'value':>10}" + (f"{'untrained':>12}" if "untrained" in record else "")]
    for name, res in record["results"].items():
        line = f"{name:<28}{res[name]:>10.4f}"
        if name in record.get("untrained", {}):
            line += f"{record['untrained'][name][name]:>12.4f}"
        lines.append(line)
        for key, v in res.items():  # the metric's other scalar values (train/test accuracy, ...)
            if key not in (name, "params") and isinstance(v, float):
                base = record.get("untrained", {}).get(name, {}).get(key)
                lines.append(f"  {key:<26}{v:>10.4f}" + (f"{base:>12.4f}" if isinstance(base, float) else ""))
        for factor, v in (res.get(f"{name}_per_factor") or {}).items():
            lines.append(f"  {factor:<26}{v:>10.4f}")
    return "\n".join(lines)


def cmd_report(args: argparse.Namespace) -> int:
    from .sweep.folders import is_sweep_dir
    from .viz import write_report

    sweep = args.sweep or (args.checkpoint if args.checkpoint and is_sweep_dir(args.checkpoint) else None)
    if sweep:
        from .sweep.html import write_sweep_report

        path = write_sweep_report(sweep, args.out, steps=args.steps, limit=args.limit, seed=args.seed,
                                  per_run=args.per_run)
        print(f"wrote {path} (one self-contained page: table, plots, reconstructions and traversals)")
        return 0
    if not args.checkpoint:
        raise DisentkitError("`disentkit report` needs --checkpoint RUN (a run folder) or --sweep DIR (a sweep folder)")
    from pathlib import Path

    from .train.status import require_finished

    folder = Path(args.checkpoint) if Path(args.checkpoint).is_dir() else Path(args.checkpoint).parent
    require_finished(folder, args.allow_partial, what="report")
    path = write_report(args.checkpoint, args.out, args.dataset, steps=args.steps, limit=args.limit, seed=args.seed,
                        data_root=args.data_root)
    print(f"wrote {path} (one self-contained page; its images and charts, PNG and GIF, beside it)")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from .data import datasets_cli

    return datasets_cli.run(args)


def cmd_models(args: argparse.Namespace) -> int:
    from .models import OBJECTIVES

    for name, cls in sorted(OBJECTIVES.items()):
        hp = ", ".join(f"{p.name}={p.default}" for p in cls.hparams)
        print(f"{name:<22}{hp:<40} {cls.paper}")
    return 0


RUN_DATA_ROOT_HELP = ("folder holding real datasets (default: the training run's, else $DISENTKIT_DATA, "
                      "else the user cache)")


def build_parser(command: str | None = "train") -> argparse.ArgumentParser:
    """The whole parser; ``train``'s flags (one per model hyperparameter: they import the models, hence
    torch, ≈ 2 s) only when ``command`` is ``train``, so ``disentkit --help`` and the other commands start fast."""
    parser = Parser(prog="disentkit",
                    description="Train, evaluate and compare disentangled representation learners.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"disentkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if command == "train":
        _add_train_parser(sub)
    else:
        sub.add_parser("train", help=TRAIN_HELP)

    p = sub.add_parser("evaluate", help="score a checkpoint with disentanglement metrics", show_defaults=True)
    p.add_argument("--checkpoint", required=True, help="a run folder or a .safetensors checkpoint")
    p.add_argument("--metrics", default="mig", help="comma-separated metric names; 'all' (disentanglement_lib's "
                   "suite), 'extended' (all + the newer scores: downstream_task, infomec, dci_es, chen_mig); recombination by name, on a "
                   "dataset with holes")
    p.add_argument("--dataset", help="dataset to score on (default: the one the model was trained on)")
    p.add_argument("--data-root", help=RUN_DATA_ROOT_HELP)
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw the metrics make")
    p.add_argument("--representation", default="mean", choices=["mean", "sampled"],
                   help="codes: the posterior mean (dlib's default) or one sample of q(z|x)")
    p.add_argument("--json", action="store_true", help="print the record as JSON on stdout instead of the table")
    p.add_argument("--out", help="metrics JSON to write (default: metrics.json beside the checkpoint)")
    p.add_argument("--baseline", action="store_true", help="also score the same model untrained (its initial weights)")
    p.add_argument("--allow-partial", action="store_true",
                   help="score a run that has not finished (killed, diverged, still training): its latest checkpoint, "
                        "recorded as partial with its step")
    p.add_argument("--device", default="cpu", help="device to encode on: cpu, cuda, cuda:N or auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = one per core)")
    p.add_argument("--set", action="append", metavar="METRIC.PARAM=VALUE",
                   help="override a metric parameter (repeatable), e.g. --set dci.num_train=2000 "
                        "(the defaults are disentanglement_lib's; see docs/metrics.md)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("report", help="one self-contained HTML page: metrics against the untrained model, MIG "
                                      "per factor, MI matrix, training curves, KL per latent, reconstructions, "
                                      "labelled latent traversals (PNG and GIF)",
                       show_defaults=True)
    p.add_argument("--checkpoint", help="a run folder or a .safetensors checkpoint (or a sweep folder)")
    p.add_argument("--sweep", help="a sweep folder: write its HTML report (table, plots, every run's pictures)")
    p.add_argument("--per-run", default="first-seed", choices=["first-seed", "all", "none"],
                   help="with --sweep: which runs get reconstructions and traversal GIFs in the page")
    p.add_argument("--out", help="folder for the report (default: the checkpoint's or sweep's folder)")
    p.add_argument("--allow-partial", action="store_true",
                   help="report a run that has not finished (killed, diverged, still training)")
    p.add_argument("--dataset", help="dataset to draw images from (default: the training dataset)")
    p.add_argument("--data-root", help=RUN_DATA_ROOT_HELP)
    p.add_argument("--steps", type=int, default=10, help="traversal steps per latent")
    p.add_argument("--limit", type=float, default=2.0, help="traverse each latent over ±limit")
    p.add_argument("--seed", type=int, default=0, help="seed for the images shown")
    p.set_defaults(func=cmd_report)

    from .sweep.cli import add_parsers as add_sweep_parsers

    add_sweep_parsers(sub)

    p = sub.add_parser("datasets", help="list, inspect, download, verify, import or forget datasets",
                       description="Datasets live under --data-root, else $DISENTKIT_DATA, else a per-user cache "
                                   "folder. Each real dataset is converted once into memory-mappable uint8 arrays. "
                                   "A file without a published checksum is pinned by its sha256 once it has "
                                   "converted; a file that does not convert is not kept.")
    p.add_argument("action", choices=["list", "info", "download", "verify", "import", "forget"],
                   help="list: every dataset; info NAME: files, sources, factors; download NAME: fetch, verify and "
                        "convert; verify NAME: re-check the files and the converted cache (readable, complete, the "
                        "factor grid the loader expects, unchanged since conversion); import NAME --from-file PATH: "
                        "add a file you downloaded yourself (converted before anything is kept or pinned); "
                        "forget NAME: clear the sha256 pinned for NAME's files (then a different file may be "
                        "imported; the cache and raw files stay)")
    p.add_argument("name", nargs="?", help="dataset name")
    p.add_argument("--data-root", help="folder holding datasets (default: $DISENTKIT_DATA, else the user cache)")
    p.add_argument("--from-file", help="with import: the downloaded file to verify and add")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("models", help="list the registered models and their hyperparameters")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
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
    except (MemoryError, RuntimeError) as e:   # torch.OutOfMemoryError is a RuntimeError
        text = str(e)
        if not isinstance(e, MemoryError) and "out of memory" not in text and "can't allocate memory" not in text:
            raise
        print(f"disentkit {args.command}: error: out of memory ({text.splitlines()[0][:160] if text else 'MemoryError'}); "
              "lower --batch-size, --latent-dim or --ensemble, or use a machine with more memory", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
