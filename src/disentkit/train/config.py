"""The training configuration: one flat dataclass, filled from defaults < YAML file < CLI flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import DisentkitError


@dataclass
class TrainConfig:
    model: str = "beta_vae"
    dataset: str = "dsprites_procedural"
    seed: int = 0
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-4
    latent_dim: int = 10
    architecture: str = "locatello"
    reconstruction: str = "bernoulli"
    out: str = "runs/run"
    val_fraction: float = 0.0
    val_every: int = 500
    val_batches: int = 20
    log_every: int = 50
    checkpoint_every: int = 1000
    device: str = "auto"
    threads: int = 0
    data_root: str | None = None   # where real datasets live (else $DISENTKIT_DATA, else the user cache)
    init_from: str | None = None
    eval_every: int = 0
    eval_metrics: str = "mig"
    eval_params: dict[str, Any] = field(default_factory=dict)  # per-metric overrides, e.g. {mig: {num_train: 2000}}
    overwrite: bool = False
    progress: bool = True
    # speed options (see train/fast.py): torch.compile mode, autocast precision, NHWC convolutions,
    # the whole step as one CUDA graph
    compile: str = "off"
    precision: str = "32-true"
    channels_last: bool = False
    cuda_graphs: bool = False
    # fused ensembles (see train/ensemble.py): NAME=VALUES items, how they combine, random streams
    ensemble: Any = None
    ensemble_mode: str = "product"
    ensemble_rng: str = "member"
    ensemble_impl: str = "auto"
    hparams: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Build from a flat mapping; keys that are not fields go to ``hparams`` (e.g. ``beta``)."""
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k.replace("-", "_"): v for k, v in d.items()}
        hp = dict(d.pop("hparams", None) or {})
        known = {k: v for k, v in d.items() if k in names}
        hp.update({k: v for k, v in d.items() if k not in names})
        return cls(**known, hparams=hp)

    def validate(self) -> "TrainConfig":
        """Check values a user can get wrong; the message names the flag and the accepted range."""
        from ..data import DATASETS
        from ..models import ARCHITECTURES, get_objective
        from .fast import COMPILE_MODES, PRECISIONS

        if self.compile in (True, "on", "true", "True"):
            self.compile = "default"
        elif self.compile in (False, None, "false", "False"):
            self.compile = "off"

        cls = get_objective(self.model)
        base = self.dataset.split(":", 1)[0]
        if base not in DATASETS:
            raise DisentkitError(f"unknown dataset '{self.dataset}'; choose one of: {', '.join(sorted(DATASETS))}")
        checks = [
            (self.latent_dim > 0, f"--latent-dim must be a positive integer, got {self.latent_dim}"),
            (self.steps > 0, f"--steps must be positive, got {self.steps}"),
            (self.batch_size > 0, f"--batch-size must be positive, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (0 <= self.val_fraction < 1, f"--val-fraction must be in [0, 1), got {self.val_fraction}"),
            (self.eval_every >= 0, f"--eval-every must be ≥ 0 (0 = off), got {self.eval_every}"),
            (self.architecture in ARCHITECTURES,
             f"unknown --architecture '{self.architecture}'; choose one of: {', '.join(ARCHITECTURES)}"),
            (self.reconstruction in ("bernoulli", "gaussian"),
             f"--reconstruction must be 'bernoulli' or 'gaussian', got '{self.reconstruction}'"),
            (self.precision in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"),
            (self.compile in COMPILE_MODES, f"--compile must be one of {', '.join(COMPILE_MODES)}, got {self.compile!r}"),
            (not (self.cuda_graphs and self.compile != "off"), "--cuda-graphs and --compile exclude each other; pick one"),
        ]
        for ok, msg in checks:
            if not ok:
                raise DisentkitError(msg)
        declared = {p.name: p for p in cls.hparams}
        from ..models import all_hparams

        unknown = sorted(k for k in self.hparams if k not in all_hparams())
        if unknown:
            raise DisentkitError(f"unknown option(s) {', '.join(unknown)}: neither a `disentkit train` option nor a "
                                 f"hyperparameter of any model (see `disentkit train --help`)")
        for k, v in self.hparams.items():
            if k not in declared:
                continue  # a flag of another model: ignored, and dropped from the saved config
            p = declared[k]
            try:
                v = p.type(v)
            except (TypeError, ValueError):
                raise DisentkitError(f"{p.flag} expects a {p.type.__name__}, got {v!r}") from None
            if p.min is not None and v < p.min:
                raise DisentkitError(f"{p.flag} must be ≥ {p.min} for {self.model}, got {v}")
            if p.choices and v not in p.choices:
                raise DisentkitError(f"{p.flag} must be one of {', '.join(map(str, p.choices))}, got {v!r}")
            self.hparams[k] = v
        self.hparams = {k: v for k, v in self.hparams.items() if k in declared}
        for p in cls.hparams:
            self.hparams.setdefault(p.name, p.default)
        return self


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a flat dict, with a clear error for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise DisentkitError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:  # one line: where, and what the parser expected
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(str(x) for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x) or str(e)
        raise DisentkitError(f"config file {p} is not valid YAML{where}: {what}; fix the file and run again") from None
    if not isinstance(data, dict):
        raise DisentkitError(f"config file {p} must hold a mapping of option: value")
    return data
