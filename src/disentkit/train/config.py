"""The training configuration: one flat dataclass, filled from defaults < YAML file < CLI flags.

Each field carries its own help text (the CLI's flags are generated from them) and is converted by its
declared type, so ``lr: 1e-4`` (a string to PyYAML), ``steps: 1e4`` and ``"0.0001"`` all work. A key that
is neither a field nor a hyperparameter of the chosen model is a one-line error naming the key, the model
and the hyperparameters it takes. A run's ``config.yaml`` is :meth:`TrainConfig.to_yaml`: a valid
``--config`` that reproduces the run.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import DisentkitError

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
#: keys a run records beside its options (facts about the dataset): accepted in a config file and ignored
RECORDED_KEYS = ("channels", "factor_names", "num_images", "num_train")
#: dataset-independent choices, checked without importing models or data
CHOICES = {
    "reconstruction": ("bernoulli", "gaussian"),
    "conv_impl": ("auto", "torch"),
    "compile": ("off", "default", "reduce-overhead", "max-autotune"),
    "precision": ("32-true", "bf16-mixed", "16-mixed"),
    "ensemble_mode": ("product", "zip"),
    "ensemble_rng": ("member", "shared"),
    "ensemble_impl": ("auto", "vmap", "loop"),
}


#: the declared ranges of sizes and seeds, checked before anything is built (seeds are 32-bit for numpy)
MAX_SEED = 2**32 - 1
MAX_LATENT_DIM = 4096
MAX_BATCH_SIZE = 65536


def opt(default: Any, help: str, *, cli: bool = True, group: str = "training") -> Any:
    """A config field with its help text (shown by ``disentkit train --help``) and CLI group."""
    meta = {"help": help, "cli": cli, "group": group}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Everything a run needs, as ``disentkit train``'s flags and a YAML config name it; model
    hyperparameters go in ``hparams`` (or as top-level keys of :meth:`from_dict`).

    Example:

        >>> from disentkit.train import TrainConfig
        >>> cfg = TrainConfig(model="beta_tcvae", hparams={"beta": 6}, steps=2000, out="runs/tc6")
        >>> cfg.validate().hparams                 # typed, completed with the model's defaults
        {'beta': 6.0, 'estimator': 'mws'}
        >>> again = TrainConfig.from_dict({"model": "beta_vae", "beta": 4, "lr": "1e-3"})
        >>> again.lr, again.hparams
        (0.001, {'beta': 4})
        >>> import yaml
        >>> TrainConfig.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg   # config.yaml round-trips
        True
    """

    # what to train
    model: str = opt("beta_vae", "objective to train: {models}")
    dataset: str = opt("dsprites_procedural", "factor dataset, optionally with a variant such as "
                       "'dsprites_procedural:corr(posX,posY,0.2)' (see `disentkit datasets list`)")
    seed: int = opt(0, "random seed of the weights, batches and noise; same seed, same weights on one CPU")
    steps: int = opt(3000, "training steps (VAE updates); with --epochs, derived from it instead")
    epochs: int = opt(0, "train for N epochs, each a fresh shuffle of the training split "
                      "(steps = N x (train images // batch size)); 0: --steps, batches drawn with replacement "
                      "as disentanglement_lib does")
    batch_size: int = opt(64, "images per step")
    lr: float = opt(1e-4, "Adam learning rate (betas 0.9, 0.999)")
    latent_dim: int = opt(10, "number of latent dimensions")
    architecture: str = opt("locatello", "encoder/decoder: locatello (disentanglement_lib) or burgess "
                            "(4x4 kernels throughout)")
    reconstruction: str = opt("bernoulli", "likelihood: bernoulli (sigmoid cross-entropy) or gaussian "
                              "(squared error)")
    init_from: str | None = opt(None, "start from this checkpoint's VAE weights (e.g. λβ-VAE from a β-VAE run)")
    # data protocol
    split: list[float] | None = opt(None, "train,validation,test fractions, e.g. 0.8,0.1,0.1: disjoint "
                                    "indices from --data-seed; the test losses of the best checkpoint are "
                                    "written at the end (default: train on every image)", group="data")
    val_fraction: float = opt(0.0, "shorthand for --split 1-F,F,0", group="data")
    subsample: int = opt(0, "train on a fixed random subset of N images (E1: MPI3D to 200000); 0: all",
                         group="data")
    data_seed: int = opt(0, "seed of --subsample and --split: every --seed gets the same subset and split",
                         group="data")
    val_every: int = opt(0, "validate every N steps (0: every epoch with --epochs, else every 500 steps)",
                         group="data")
    val_batches: int = opt(20, "batches of the validation split scored at each validation", group="data")
    early_stopping_patience: int = opt(0, "stop after K validations without a lower validation loss "
                                       "(0: off); best.safetensors keeps the best weights", group="data")
    data_root: str | None = opt(None, "folder holding real datasets (default: $DISENTKIT_DATA, else the user "
                                "cache; procedural datasets need none)", group="data")
    # run folder, logs, checkpoints
    out: str = opt("runs/run", "run folder for config, logs and checkpoints", group="output")
    overwrite: bool = opt(False, "replace a run already in --out", group="output")
    log_every: int = opt(50, "write logged values every N steps (fewer host syncs)", group="output")
    checkpoint_every: int = opt(0, "write the complete training state (for --resume) every N steps "
                                "(0: about 20 times a run)", group="output")
    progress: bool = opt(True, "show a progress bar on stderr", group="output")
    image_every: int = opt(0, "log reconstructions and latent traversals to TensorBoard every N steps (0: once, "
                           "at the end)", group="output")
    eval_every: int = opt(0, "compute --eval-metrics every N steps and log them (0: off); on smaller samples "
                          "than dlib's (2,000 points, DCI 1,000; metrics.MONITORING), so that they cost a few percent",
                          group="output")
    eval_metrics: str = opt("mig", "metrics computed during training with --eval-every, e.g. mig,irs",
                            group="output")
    eval_params: dict[str, Any] = opt({}, "per-metric overrides for --eval-every, e.g. {mig: {num_train: 10000}}",
                                      cli=False, group="output")
    # where and how fast
    device: str = opt("auto", "auto, cpu, cuda or cuda:N", group="speed")
    threads: int = opt(0, "CPU threads for torch (0: one per core)", group="speed")
    precision: str = opt("32-true", "32-true, bf16-mixed or 16-mixed (autocast; 16-mixed with a gradient "
                         "scaler, CUDA only)", group="speed")
    compile: str = opt("off", "torch.compile the loss: off, default, reduce-overhead (CUDA graphs), "
                       "max-autotune (for GPUs; on a CPU the eager step with --channels-last is as fast or "
                       "faster)", group="speed")
    channels_last: bool = opt(False, "NHWC memory format for the convolutions (1.1-1.5x a CPU training step "
                              "here)", group="speed")
    cuda_graphs: bool = opt(False, "capture the whole step (every phase's forward, backward and capturable "
                            "Adam) as one CUDA graph (CUDA only; not with 16-mixed)", group="speed")
    conv_impl: str = opt("auto", "convolutions: auto (exact CPU shortcuts where oneDNN is slow, "
                         "models/layers.py) or torch (PyTorch's own layers; results differ in float rounding)",
                         group="speed")
    # fused ensembles
    ensemble: Any = opt(None, "train a fused ensemble, one member per combination, e.g. --ensemble seed=0,1,2 "
                        "beta=1,4,8; NAME is seed or a model hyperparameter; members are saved in "
                        "<out>/mNN-.../", group="ensemble")
    ensemble_mode: str = opt("product", "how --ensemble lists combine: product (every combination) or zip "
                             "(element-wise)", group="ensemble")
    ensemble_rng: str = opt("member", "member (each member's random streams equal its single run's) or shared "
                            "(one draw for all members: fewer kernel launches)", group="ensemble")
    ensemble_impl: str = opt("auto", "auto (vmap on CUDA, loop on CPU), vmap (grouped kernels for all members) "
                             "or loop", group="ensemble")
    hparams: dict[str, Any] = opt({}, "model hyperparameters (the flags of the model's own group)", cli=False)

    # ------------------------------------------------------------------ conversion
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The config as YAML, readable back by ``--config`` (:meth:`from_dict` of ``yaml.safe_load``)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Build from a flat mapping, converting each value by its field's type; keys that are not fields
        are model hyperparameters (``beta: 4``, checked by :meth:`validate`); recorded dataset facts
        (``channels``, … as older ``config.yaml`` files hold them) are ignored."""
        d = {str(k).replace("-", "_"): v for k, v in d.items() if str(k).replace("-", "_") not in RECORDED_KEYS}
        hp = d.pop("hparams", None) or {}
        if not isinstance(hp, dict):
            raise DisentkitError(f"hparams must be a mapping of name: value, got {hp!r}")
        known = {k: convert(k, v, FIELD_TYPES[k]) for k, v in d.items() if k in FIELD_TYPES}
        hp = {**hp, **{k: v for k, v in d.items() if k not in FIELD_TYPES}}
        return cls(**known, hparams=hp)

    # ------------------------------------------------------------------ checks
    def validate(self) -> "TrainConfig":
        """Check every value a user can get wrong (one-line messages naming the flag); type and fill in the
        model's hyperparameters. Returns self."""
        from ..data import DATASETS
        from ..models import ARCHITECTURES, get_objective
        from ..models.custom import is_custom

        for name, typ in FIELD_TYPES.items():  # a config built in Python gets the conversions a file gets
            setattr(self, name, convert(name, getattr(self, name), typ))
        get_objective(self.model)  # an unknown model is a one-line error naming the choices
        DATASETS[self.dataset.split(":", 1)[0]]  # an unknown dataset is a one-line error naming the choices
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise DisentkitError(f"--{flag(name)} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        fractions = self.split_fractions()
        checks = [
            (0 <= self.seed <= MAX_SEED, f"--seed must be in 0..{MAX_SEED} (a 32-bit seed), got {self.seed}"),
            (0 <= self.data_seed <= MAX_SEED, f"--data-seed must be in 0..{MAX_SEED}, got {self.data_seed}"),
            (0 < self.latent_dim <= MAX_LATENT_DIM,
             f"--latent-dim must be in 1..{MAX_LATENT_DIM}, got {self.latent_dim}"),
            (self.steps > 0, f"--steps must be positive, got {self.steps}"),
            (self.epochs >= 0, f"--epochs must be ≥ 0 (0: use --steps), got {self.epochs}"),
            (0 < self.batch_size <= MAX_BATCH_SIZE, f"--batch-size must be in 1..{MAX_BATCH_SIZE}, got "
                                                    f"{self.batch_size}"),
            (self.threads >= 0, f"--threads must be ≥ 0 (0: one per core), got {self.threads}"),
            (self.out.strip() != "", "--out must name a run folder, got an empty string"),
            (self.lr > 0 and math.isfinite(self.lr), f"--lr must be a positive finite number, got {self.lr}"),
            (self.log_every > 0, f"--log-every must be positive, got {self.log_every}"),
            (0 <= self.val_fraction < 1, f"--val-fraction must be in [0, 1), got {self.val_fraction}"),
            (not (self.split and self.val_fraction), "--split and --val-fraction exclude each other; give --split"),
            (self.subsample >= 0, f"--subsample must be ≥ 0 (0: every image), got {self.subsample}"),
            (min(self.val_every, self.val_batches, self.checkpoint_every, self.eval_every, self.image_every) >= 0,
             "--val-every, --val-batches, --checkpoint-every, --eval-every and --image-every must be ≥ 0"),
            (self.early_stopping_patience >= 0, "--early-stopping-patience must be ≥ 0 (0: off)"),
            (not self.early_stopping_patience or fractions[1] > 0,
             "--early-stopping-patience needs a validation split: give --split 0.8,0.1,0.1 (or --val-fraction)"),
            (self.architecture in ARCHITECTURES or is_custom(self.architecture),
             f"unknown --architecture '{self.architecture}'; choose one of: {', '.join(ARCHITECTURES)}"),
            (not (self.cuda_graphs and self.compile != "off"),
             "--cuda-graphs and --compile exclude each other; pick one"),
            (not (self.cuda_graphs and self.precision == "16-mixed"),
             "--cuda-graphs cannot capture 16-mixed's gradient scaler (it reads the device); use bf16-mixed"),
        ]
        for ok, msg in checks:
            if not ok:
                raise DisentkitError(msg)
        self.hparams = check_hparams(self.model, self.hparams)
        return self

    def split_fractions(self) -> tuple[float, float, float]:
        """(train, validation, test) fractions from --split or --val-fraction."""
        if self.split:
            if len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1) > 1e-6 or self.split[0] <= 0:
                raise DisentkitError(f"--split needs three fractions ≥ 0 summing to 1 with a training share, e.g. "
                                     f"0.8,0.1,0.1; got {','.join(f'{x:g}' for x in self.split)}")
            return tuple(float(x) for x in self.split)  # type: ignore[return-value]
        return (1 - self.val_fraction, self.val_fraction, 0.0)


def check_hparams(model: str, hparams: dict[str, Any]) -> dict[str, Any]:
    """The model's hyperparameters typed, range-checked and completed with defaults. A key the model does
    not declare is an error naming the model and what it takes (another model's flag included)."""
    from ..models import all_hparams, get_objective

    cls = get_objective(model)
    declared = {p.name: p for p in cls.hparams}
    takes = ", ".join("--" + flag(p) for p in declared) or "no hyperparameters"
    out = {}
    for k, v in hparams.items():
        if k not in declared:
            users = all_hparams().get(k, (None, []))[1]
            where = (f"a hyperparameter of {', '.join(users)}, not of {model}" if users else
                     "neither a `disentkit train` option nor a hyperparameter of any model")
            raise DisentkitError(f"--{flag(k)} ({k}) is {where}; {model} takes: {takes} (see `disentkit train --help`)")
        p = declared[k]
        v = convert(k, v, p.type)
        if isinstance(v, float) and not math.isfinite(v):
            raise DisentkitError(f"{p.flag} must be a finite number for {model}, got {v}")
        if p.min is not None and v < p.min:
            raise DisentkitError(f"{p.flag} must be ≥ {p.min} for {model}, got {v}")
        if p.choices and v not in p.choices:
            raise DisentkitError(f"{p.flag} must be one of {', '.join(map(str, p.choices))}, got {v!r}")
        if v in p.refused:
            raise DisentkitError(f"{p.flag} {v} means nothing for {model}: {p.help}")
        out[k] = v
    for p in cls.hparams:
        out.setdefault(p.name, p.default)
    return {p.name: out[p.name] for p in cls.hparams}


def flag(name: str) -> str:
    return name.replace("_", "-")


# ---------------------------------------------------------------------- typed conversion
def convert(key: str, value: Any, typ: Any) -> Any:
    """``value`` as type ``typ`` (int, float, bool, str, list[float], dict, their Optional forms, Any),
    accepting the forms YAML files and flags give (``"1e-4"``, ``1e4`` for an int, ``"true"``)."""
    if typ is Any:
        return value
    args = typing.get_args(typ)
    if type(None) in args:  # Optional[...]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            return None
        typ = next(a for a in args if a is not type(None))
    origin = typing.get_origin(typ) or typ
    try:
        if origin is bool:
            return _to_bool(value)
        if origin is int:
            return _to_int(value)
        if origin is float:
            return _to_float(value)
        if origin is str:
            if key == "compile" and isinstance(value, bool):  # YAML reads a bare `off` as false
                return "default" if value else "off"
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise ValueError
            return str(value)
        if origin is list:
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)):
                raise ValueError
            return [_to_float(x) for x in items]
        if origin is dict:
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
    except (TypeError, ValueError):
        raise DisentkitError(f"--{flag(key)} ({key}) expects {_describe(typ)}, got {value!r}") from None
    return value


def _number(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and _NUMBER.match(v.strip()):
        return float(v)
    raise ValueError


def _to_int(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    f = _number(v)
    if not f.is_integer():
        raise ValueError
    return int(f)


def _to_float(v: Any) -> float:
    return _number(v)


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("true", "yes", "on", "1"):
        return True
    if s in ("false", "no", "off", "0"):
        return False
    raise ValueError


def _describe(typ: Any) -> str:
    origin = typing.get_origin(typ) or typ
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            list: "a comma-separated list of numbers", dict: "a mapping"}.get(origin, str(typ))


FIELD_TYPES: dict[str, Any] = typing.get_type_hints(TrainConfig)
FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(TrainConfig)}


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a flat dict, with a clear error for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise DisentkitError(f"config file not found: {p}" if not p.exists() else
                             f"config file {p} is a folder; pass a YAML file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise DisentkitError(f"config file {p} is not a text file (byte {e.start} is not UTF-8); pass a YAML "
                             "file such as the config.yaml of a run") from None
    except OSError as e:
        raise DisentkitError(f"cannot read config file {p} ({e.strerror}); check the path") from None
    except yaml.YAMLError as e:  # one line: where, and what the parser expected
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(str(x) for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x) or str(e)
        raise DisentkitError(f"config file {p} is not valid YAML{where}: {what}; fix the file and run again") from None
    if not isinstance(data, dict):
        raise DisentkitError(f"config file {p} must hold a mapping of option: value")
    return data
