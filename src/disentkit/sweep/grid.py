"""Sweep configs: a YAML file -> the list of runs it means, each with a stable id.

A sweep config names defaults (any ``disentkit train`` option or model hyperparameter), seeds,
datasets, the metrics to score every run with, and one or more *stages*::

    name: e2_lambda_beta
    defaults: {steps: 150000, batch_size: 64, lr: 1.0e-4}
    seeds: [0, 1, 2]
    datasets: [dsprites_procedural, shapes3d_procedural]
    metrics: {mig: {}, sap: {}}
    stages:
      - name: beta_vae
        model: beta_vae
        grid: {beta: [1, 4, 8, 16, 32]}     # product of the lists; or a list of points (dicts)
      - name: lambda_beta_vae
        model: lambda_beta_vae
        init_from: beta_vae                  # one child per parent run × own grid point
        steps: 50000
        grid: {lam: [0, 2, 4, 6, 8]}

A stage's other keys (``steps`` above) are fixed settings for its runs. A chained stage starts each
run from a finished run of the stage it names (same dataset and seed) and inherits that run's
hyperparameters (β above), so tables and heatmaps show λ × β.

A run's id is readable plus the hash of its resolved config (training options that change results,
metrics with their settings, the parent run's id): the same config always gives the same id, and a
changed config a new one, so results of two configs never share a folder.

Names (models, datasets, metrics, hyperparameters) are checked by :func:`validate_runs` when a sweep
is about to run, not when it is expanded: a config may name models that a later version registers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DisentkitError
from ..train.config import TrainConfig, convert, load_yaml
from .validate import validate_runs  # noqa: F401  (checked before running; re-exported, as it always was here)

#: TrainConfig fields that say how/where a run executes, not what it computes: kept out of run ids.
EXECUTION_KEYS = ("out", "device", "threads", "progress", "overwrite", "init_from", "data_root")
#: ... of which a run spec keeps these (the sweep sets the others per run).
KEPT_EXECUTION_KEYS = ("device", "threads", "data_root")
SWEEP_KEYS = {"name", "description", "defaults", "seeds", "datasets", "metrics", "evaluation", "stages",
              "model", "grid"}
STAGE_KEYS = {"name", "model", "grid", "init_from", "seeds", "datasets"}
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass
class RunSpec:
    """One training run of a sweep: everything needed to train, evaluate and file it.

    Example:

        >>> from disentkit.sweep import RunSpec, expand
        >>> run = expand({"name": "demo", "model": "beta_vae", "grid": {"beta": [4]}}).runs[0]
        >>> run.run_id                                  # readable, then the hash of its resolved config
        'beta_vae-beta4-dsprites_procedural-s0-...'
        >>> run.label, run.hparams, run.train["model"]
        ('beta_vae beta=4 dsprites_procedural', {'beta': 4.0}, 'beta_vae')
        >>> RunSpec.from_dict(run.to_dict()) == run       # as each run folder's run.json holds it
        True
    """

    run_id: str
    stage: str
    model: str
    dataset: str
    seed: int
    train: dict[str, Any]                 # TrainConfig options (flat; hyperparameters included)
    hparams: dict[str, Any]               # shown hyperparameters: inherited from parents, then own grid point
    metrics: dict[str, dict[str, Any]]    # metric name -> keyword settings
    evaluation: dict[str, Any]            # seed and representation of the metrics
    parent: str | None = None             # run id this run starts from (chained stages)
    group: str = ""                       # configuration id: the same for every seed of a configuration
    config_hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})

    @property
    def label(self) -> str:
        """Configuration label without the seed, e.g. ``beta_vae β=4 dsprites_procedural``."""
        hp = " ".join(f"{k}={_short(v)}" for k, v in self.hparams.items())
        return " ".join(x for x in (self.stage, hp, self.dataset) if x)


@dataclass
class Sweep:
    """An expanded sweep: its name, description, source config and the runs in dependency order.

    Example:

        >>> from disentkit.sweep import expand
        >>> sweep = expand({"name": "demo", "model": "beta_vae", "grid": {"beta": [1, 4]}, "seeds": [0, 1, 2]})
        >>> sweep.name, len(sweep.runs), len({run.group for run in sweep.runs})   # 2 configurations x 3 seeds
        ('demo', 6, 2)
        >>> sweep.config_hash == expand(sweep.source).config_hash                 # same config, same hash
        True
    """

    name: str
    description: str
    runs: list[RunSpec]
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def config_hash(self) -> str:
        """Hash of the whole resolved sweep: its name and every run id (ids hash their configs)."""
        return _hash({"name": self.name, "runs": [r.run_id for r in self.runs]})


def _short(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _number(v: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` as a string: turn numeric-looking strings into numbers."""
    if isinstance(v, str) and _NUMBER.match(v.strip()):
        f = float(v)
        return int(f) if f.is_integer() and not re.search(r"[.eE]", v) else f
    return v


_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(TrainConfig)}


def _coerce(key: str, v: Any) -> Any:
    """Coerce a setting to its TrainConfig field type; hyperparameter numbers become floats for ids."""
    v = _number(v)
    t = _FIELD_TYPES.get(key)
    if t in ("int", int) and isinstance(v, float) and v.is_integer():
        return int(v)
    if t in ("float", float) and isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return v


def _hp_value(v: Any) -> Any:
    """Hyperparameter values as ids see them: 4, 4.0 and '4' are one value."""
    v = _number(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


def _as_list(v: Any, what: str) -> list:
    if v is None:
        return []
    if isinstance(v, (list, tuple)):
        return list(v)
    if isinstance(v, (str, int, float)):
        return [v]
    raise DisentkitError(f"sweep config: '{what}' must be a list, got {v!r}")


def _seeds(v: Any, what: str) -> list[int]:
    """Seeds as a list: ``[0, 1, 2]``, a single int, or a range string ``"0..49"`` (inclusive)."""
    if isinstance(v, str) and ".." in v:
        lo, hi = v.split("..", 1)
        try:
            return list(range(int(lo), int(hi) + 1))
        except ValueError:
            raise DisentkitError(f"sweep config: {what} range must look like '0..49', got {v!r}") from None
    try:
        return [int(_number(s)) for s in _as_list(v, what)]
    except (TypeError, ValueError):
        raise DisentkitError(f"sweep config: {what} must be integers, got {v!r}") from None


def _grid_points(grid: Any, where: str) -> list[dict[str, Any]]:
    """A grid as a list of points: a mapping of lists is their product; a list of mappings is as given."""
    if grid is None or grid == {}:
        return [{}]
    if isinstance(grid, dict):
        keys = list(grid)
        values = [_as_list(grid[k], f"{where}.grid.{k}") for k in keys]
        for k, vs in zip(keys, values):
            if not vs:
                raise DisentkitError(f"sweep config: {where}.grid.{k} is an empty list; give at least one value")
        return [dict(zip(keys, combo)) for combo in itertools.product(*values)]
    if isinstance(grid, list) and all(isinstance(p, dict) for p in grid):
        return [dict(p) for p in grid]
    raise DisentkitError(f"sweep config: {where}.grid must be a mapping of name: [values] or a list of "
                         f"mappings, got {grid!r}")


def _split(settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(TrainConfig options, model hyperparameters) of a flat settings mapping."""
    train = {k: _coerce(k, v) for k, v in settings.items() if k in _FIELD_TYPES and k != "hparams"}
    hp = {k: _hp_value(v) for k, v in (settings.get("hparams") or {}).items()}   # inherited first
    hp.update({k: _hp_value(v) for k, v in settings.items() if k not in _FIELD_TYPES})
    return train, hp


def _metrics(spec: Any) -> dict[str, dict[str, Any]]:
    if spec is None:
        return {"mig": {}}
    if isinstance(spec, str):
        spec = [s.strip() for s in spec.split(",") if s.strip()]
    if isinstance(spec, list):
        return {str(m): {} for m in spec}
    if isinstance(spec, dict):
        return {str(m): {k: _number(v) for k, v in (kw or {}).items()} for m, kw in spec.items()}
    raise DisentkitError(f"sweep config: 'metrics' must be a list of names or a mapping name: {{settings}}, "
                         f"got {spec!r}")


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", s).strip("_")


def load_sweep(path: str | Path, steps: int | None = None, seeds: list[int] | None = None,
               datasets: list[str] | None = None, overrides: dict[str, Any] | None = None,
               metrics: list[str] | None = None, metric_params: dict[str, dict[str, Any]] | None = None) -> Sweep:
    """Read a sweep YAML and expand it (see :func:`expand`); ``metrics`` replaces the config's metrics and
    ``metric_params`` updates their settings (``{"dci": {"num_train": 2000}}``).

    Example:
        The shipped ``quick`` sweep (3 β-VAE runs, then 2 λβ-VAE runs from each), one seed, a tenth of its
        steps:

        >>> from disentkit.configs import resolve_config
        >>> from disentkit.sweep import load_sweep
        >>> sweep = load_sweep(resolve_config("quick", "sweeps"), steps=200, seeds=[0])
        >>> len(sweep.runs), sweep.runs[0].train["steps"], sweep.runs[-1].train["steps"]
        (9, 200, 50)
        >>> sweep.runs[-1].label, sorted(sweep.runs[-1].metrics)
        ('lambda_beta_vae beta=16 lam=4 dsprites_procedural', ['im', 'mig'])
    """
    raw = load_yaml(path)
    raw.setdefault("name", Path(path).stem)
    if metrics:
        raw["metrics"] = list(metrics)
    if metric_params:
        merged = _metrics(raw.get("metrics"))
        for name, kw in metric_params.items():
            if name not in merged:
                raise DisentkitError(f"--set {name}.…: '{name}' is not one of this sweep's metrics "
                                     f"({', '.join(merged)})")
            merged[name].update(kw)
        raw["metrics"] = merged
    return expand(raw, steps=steps, seeds=seeds, datasets=datasets, overrides=overrides)


def expand(raw: dict[str, Any], steps: int | None = None, seeds: list[int] | None = None,
           datasets: list[str] | None = None, overrides: dict[str, Any] | None = None) -> Sweep:
    """The runs a sweep config means, parents before children.

    ``steps`` scales every stage's steps by ``steps / defaults.steps`` (so a chained stage keeps its
    length relative to the first); ``seeds`` and ``datasets`` replace the config's lists;
    ``overrides`` are settings applied to every run (e.g. ``batch_size``), after the config's own.

    Example:
        A chained sweep: λβ-VAE continued from each β-VAE run, inheriting its β:

        >>> from disentkit.sweep import expand
        >>> sweep = expand({"name": "chain", "defaults": {"steps": 1000}, "stages": [
        ...     {"name": "beta_vae", "model": "beta_vae", "grid": {"beta": [4]}},
        ...     {"name": "lam", "model": "lambda_beta_vae", "init_from": "beta_vae", "steps": 500,
        ...      "grid": {"lam": [0, 2]}}]}, steps=100)
        >>> [(run.label, run.train["steps"]) for run in sweep.runs]      # doctest: +NORMALIZE_WHITESPACE
        [('beta_vae beta=4 dsprites_procedural', 100), ('lam beta=4 lam=0 dsprites_procedural', 50),
         ('lam beta=4 lam=2 dsprites_procedural', 50)]
        >>> sweep.runs[1].parent == sweep.runs[0].run_id
        True
    """
    unknown = set(raw) - SWEEP_KEYS
    if unknown:
        raise DisentkitError(f"sweep config: unknown key(s) {', '.join(sorted(unknown))}; "
                             f"expected some of: {', '.join(sorted(SWEEP_KEYS))}")
    name = str(raw.get("name") or "sweep")
    defaults = dict(raw.get("defaults") or {})
    if not isinstance(defaults, dict):
        raise DisentkitError("sweep config: 'defaults' must be a mapping of option: value")
    try:
        base_steps = convert("steps", defaults.get("steps", TrainConfig.steps), int)
    except DisentkitError as e:
        raise DisentkitError(f"sweep config: defaults: {e}") from None
    scale = None if steps is None else steps / base_steps
    if steps is not None and steps <= 0:
        raise DisentkitError(f"--steps must be positive, got {steps}")
    top_seeds = list(seeds) if seeds else _seeds(raw.get("seeds", [0]), "seeds")
    top_data = [str(d) for d in (datasets or _as_list(raw.get("datasets", ["dsprites_procedural"]), "datasets"))]
    metrics = _metrics(raw.get("metrics"))
    evaluation = {"seed": 0, "representation": "mean", **(raw.get("evaluation") or {})}
    stages = raw.get("stages")
    if stages is None:
        if "model" not in raw:
            raise DisentkitError("sweep config: give 'stages' (a list) or a single 'model' with its 'grid'")
        stages = [{"name": raw["model"], "model": raw["model"], "grid": raw.get("grid")}]
    if not isinstance(stages, list) or not stages:
        raise DisentkitError("sweep config: 'stages' must be a non-empty list of stage mappings")

    runs: list[RunSpec] = []
    by_stage: dict[str, list[RunSpec]] = {}
    for i, st in enumerate(stages):
        if not isinstance(st, dict) or "model" not in st:
            raise DisentkitError(f"sweep config: stage {i + 1} must be a mapping with at least 'model'")
        sname = str(st.get("name") or st["model"])
        if sname in by_stage:
            raise DisentkitError(f"sweep config: two stages are named '{sname}'; give each a distinct 'name'")
        where = f"stages[{sname}]"
        points = _grid_points(st.get("grid"), where)
        fixed = {k: v for k, v in st.items() if k not in STAGE_KEYS}
        st_seeds = list(seeds) if seeds else (_seeds(st.get("seeds"), f"{where}.seeds") or top_seeds)
        st_data = [str(d) for d in (datasets or _as_list(st.get("datasets"), f"{where}.datasets") or top_data)]
        parent_stage = st.get("init_from")
        if parent_stage is not None and str(parent_stage) not in by_stage:
            raise DisentkitError(f"sweep config: {where}.init_from names '{parent_stage}', which is not an earlier "
                                 f"stage; earlier stages: {', '.join(by_stage) or 'none'}")
        if parent_stage is None:
            origins: list[RunSpec | None] = [None]
            combos = [(None, d, s) for d in st_data for s in st_seeds]
        else:
            origins = [p for p in by_stage[str(parent_stage)] if p.dataset in st_data and p.seed in st_seeds]
            combos = [(p, p.dataset, p.seed) for p in origins]
        stage_runs = []
        for parent, dataset, seed in combos:
            for point in points:
                settings: dict[str, Any] = dict(defaults)
                inherited: dict[str, Any] = {}
                if parent is not None:
                    settings.update({k: v for k, v in parent.train.items() if k not in ("model", "steps")})
                    inherited = dict(parent.hparams)
                settings.update(fixed)
                settings.update(point)
                settings.update(overrides or {})
                settings.update(model=st["model"], dataset=dataset, seed=seed)
                train, hp = _split(settings)
                if scale is not None:
                    train["steps"] = max(1, round(int(train.get("steps", base_steps)) * scale))
                train = {k: v for k, v in train.items() if k not in EXECUTION_KEYS or k in KEPT_EXECUTION_KEYS}
                shown = {**inherited, **{k: _hp_value(v) for k, v in point.items()}}
                train_hashed = {k: v for k, v in train.items() if k not in EXECUTION_KEYS}
                key = {"stage": sname, "train": train_hashed, "hparams": hp, "metrics": metrics,
                       "evaluation": evaluation, "parent": parent.run_id if parent else None}
                h = _hash(key)
                group_key = {**key, "train": {k: v for k, v in train_hashed.items() if k != "seed"},
                             "parent": parent.group if parent else None}
                point_slug = "_".join(f"{k}{_short(_hp_value(v))}" for k, v in shown.items())
                rid = _slug("-".join(x for x in (sname, point_slug, dataset, f"s{seed}", h[:8]) if x))
                spec = RunSpec(rid, sname, str(st["model"]), dataset, seed, {**train, "hparams": hp}, shown,
                               metrics, evaluation, parent.run_id if parent else None, _hash(group_key)[:12], h)
                stage_runs.append(spec)
        if not stage_runs:
            raise DisentkitError(f"sweep config: stage '{sname}' has no runs (its init_from stage has no run with "
                                 "its datasets and seeds)")
        by_stage[sname] = stage_runs
        runs.extend(stage_runs)
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise DisentkitError(f"sweep config: grid points repeat, giving identical runs ({', '.join(dup[:3])}); "
                             "remove the duplicates")
    return Sweep(name, str(raw.get("description") or ""), runs, source=raw)
