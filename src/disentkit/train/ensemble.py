"""Fused ensembles: M runs trained at once in one process, their parameters stacked on a member axis.

``disentkit train --ensemble seed=0,1,2 beta=1,4,8`` trains every member of the grid together; this module
turns the grid into one validated single-run config per member (:func:`expand_members`) and says which runs
can be fused (:func:`fusable`). The training itself is the one engine's (``train/loop.py``) with
:class:`~disentkit.train.members.Stacked` members: member i draws its initial weights, batches and step noise
from its own seed's streams, in the order the run of that seed draws them, so it trains exactly as that run
alone (to float tolerance: in our CPU runs bit for bit with the loop implementation; ``tests/test_ensemble.py``).
``ensemble_rng: shared`` trades that for one draw of each kind a step (faster for large M on a GPU;
statistically the same training).

Each member is an ordinary run folder (``<out>/mNN-<grid point>/``: ``config.yaml``, logs, checkpoints) that
``disentkit evaluate`` and ``report`` accept; the ensemble's folder holds ``config.yaml``, ``ensemble.yaml``
and the training state. Hyperparameters that configure an optimizer (FactorVAE's ``disc_lr``), integer ones and
choices must agree across members. Not supported: objectives with running state (buffers, e.g. adaptive β-VAE).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from ..errors import DisentkitError
from ..models import get_objective
from .config import TrainConfig, convert
from .members import tensor_hparams


# ----------------------------------------------------------------------------- the member grid
def parse_ensemble(spec: Any) -> dict[str, list]:
    """``["seed=0,1,2", "beta=1,4"]`` (CLI), ``"seed=0,1 beta=4"`` or ``{"seed": [0, 1]}`` (YAML)
    -> ``{"seed": ["0", "1", "2"], "beta": ["1", "4"]}`` (values typed later, per hyperparameter)."""
    if spec is None:
        return {}
    if isinstance(spec, dict):
        out = {}
        for k, v in spec.items():
            vals = v if isinstance(v, (list, tuple)) else str(v).split(",")
            out[str(k).replace("-", "_")] = [str(x).strip() for x in vals if str(x).strip()]
        return out
    items = spec.split() if isinstance(spec, str) else list(spec)
    out: dict[str, list] = {}
    for item in items:
        if "=" not in item:
            raise DisentkitError(f"--ensemble expects NAME=V1,V2,... items (e.g. seed=0,1,2 beta=1,4), got {item!r}")
        name, values = item.split("=", 1)
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not vals:
            raise DisentkitError(f"--ensemble {name}= has no values; give e.g. {name}=1,4,8")
        out[name.strip().replace("-", "_")] = vals
    return out


def expand_members(config: TrainConfig) -> list[TrainConfig]:
    """One validated single-run config per member: the base config with the member's seed and
    hyperparameters, combined as the Cartesian product (``product``) or element-wise (``zip``)."""
    grid = parse_ensemble(config.ensemble)
    if not grid:
        raise DisentkitError("--ensemble needs at least one NAME=VALUES item, e.g. --ensemble seed=0,1,2 beta=1,4")
    declared = {p.name: p for p in get_objective(config.model).hparams}
    allowed = ["seed", *declared]
    typed: dict[str, list] = {}
    for name, vals in grid.items():
        if name not in allowed:
            raise DisentkitError(f"--ensemble {name}=... is not a per-member option of {config.model}; "
                                 f"choose among: {', '.join(allowed)} (other options are shared by all members)")
        typed[name] = [convert(name, v, int if name == "seed" else declared[name].type) for v in vals]
    names = list(typed)
    if config.ensemble_mode == "product":
        combos = list(itertools.product(*(typed[n] for n in names)))
    else:
        lengths = {len(v) for v in typed.values()} - {1}
        if len(lengths) > 1:
            raise DisentkitError("--ensemble-mode zip needs every NAME=VALUES list to have the same length "
                                 f"(or one value); got lengths {', '.join(f'{n}:{len(typed[n])}' for n in names)}")
        m = lengths.pop() if lengths else 1
        combos = [tuple(typed[n][i if len(typed[n]) > 1 else 0] for n in names) for i in range(m)]
    members = []
    for i, combo in enumerate(combos):
        values = dict(zip(names, combo))
        d = config.to_dict()
        d.update(ensemble=None, seed=values.pop("seed", config.seed),
                 hparams={**config.hparams, **values})
        tag = "-".join(f"{k}{_fmt(v)}" for k, v in zip(names, combo))
        d["out"] = str(Path(config.out) / f"{member_name(i)}-{tag}")
        members.append(TrainConfig.from_dict(d).validate())
    return members


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def unsupported(config: TrainConfig) -> str | None:
    """Why a run with this config cannot be a fused-ensemble member, or None when it can."""
    from ..models import OBJECTIVES
    from .members import build_objective

    if config.model not in OBJECTIVES:
        return f"unknown model {config.model!r}"
    obj = build_objective({**config.to_dict(), "num_train": None})
    if any(True for _ in obj.buffers()):
        return f"{config.model} is not supported by fused ensembles yet (it keeps running state: buffers)"
    return None


def shared_settings(config: TrainConfig) -> str:
    """Everything ensemble members must agree on, as one string: all options but the seed, the output
    and start checkpoint, and the loss's real-valued hyperparameters (β, γ, …: per-member tensors)."""
    from ..models import OBJECTIVES

    cls = OBJECTIVES.get(config.model)
    real = set(tensor_hparams(cls)) if cls else set()
    d = {k: v for k, v in config.to_dict().items() if k not in ("seed", "out", "init_from", "hparams")}
    d["hparams"] = {k: v for k, v in config.hparams.items() if k not in real}
    return json.dumps(d, sort_keys=True, default=str)


def fusable(configs: list[TrainConfig]) -> str | None:
    """Why these single-run configs cannot train as one fused ensemble, or None when they can: the
    same objective and shared options, differing only in seed and real-valued hyperparameters."""
    why = unsupported(configs[0])
    if why:
        return why
    if len({shared_settings(c) for c in configs}) > 1:
        return "the runs differ in more than seed and real-valued hyperparameters"
    return None


def member_name(i: int) -> str:
    """Member i's folder prefix: ``m03``."""
    return f"m{i:02d}"
