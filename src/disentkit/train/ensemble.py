"""Fused ensembles: M VAEs trained at once in one process, their parameters stacked on a member axis.

``disentkit train --ensemble seed=0,1,2 beta=1,4,8`` trains every member of the grid together.
Each parameter of the M members is one tensor of shape (M, ...) (``torch.func.stack_module_state``);
one forward is ``vmap`` over ``functional_call`` of a single template VAE, so convolutions become
grouped convolutions and linear layers batched matmuls: one kernel serves all M members. Per-member
hyperparameters (β, γ, …) are (M,) tensors fed through the same ``vmap``, so one graph serves a
whole grid. The loss minimised is the sum of the members' losses; members share no parameter, so
each member's gradient is exactly its own loss's gradient, and because Adam is elementwise, one Adam
over the stacked tensors is M independent Adams (same lr, betas, eps).

An objective's own weights are stacked the same way (:class:`StackedParams`) and run through
``functional_call`` of a weightless template of the objective: those its ``vae_parameters`` names
(e.g. L-VAE's learnable σ's) join the VAE's Adam; those of its ``extra_optimizers`` get one optimizer
each, of the same class and settings, over the stacked tensors. FactorVAE's discriminators are thus
(M, ...) tensors with one second Adam (lr ``disc_lr``, betas 0.5/0.9) = M independent discriminator
Adams, and the step is manual as in ``FactorVAE.manual_step``: the VAE Adam on every member's
rec + KL + γ·TC, then the discriminators' Adam on real vs permuted codes (for objectives that step
by hand, the ensemble needs ``split_batch``, ``step_noise`` and ``adversary_loss``; others are refused).
Hyperparameters that configure an optimizer (``optimizer_hparams``: ``disc_lr``), integer ones and
choices must agree across members.

Random streams are per member and match a single ``disentkit train`` run with the member's seed:
the initial weights (VAE, then the objective's, e.g. the discriminator) come from
``torch.manual_seed(seed)`` in the same order as :class:`VAEModule` builds them, the batch indices
from a generator seeded with the seed (as :class:`RandomBatches`), and every random draw of a step
continues the member's own stream where initialisation left it (CPU) or starts the CUDA stream at the
seed (CUDA), in the order a single run draws them: the reparameterization noise, and for FactorVAE
also the uniform draws behind its permutations (``FactorVAE.step_noise``), drawn up front and passed
in. So member i reproduces model i trained alone, to float tolerance (in our CPU runs bit for bit with the
loop; ``tests/test_ensemble.py``, ``tests/test_ensemble_factor_vae.py``). ``ensemble_rng: shared``
trades that for one draw of each kind a step instead of one per member (faster for large M on a GPU;
statistically the same training).

Each member is saved as an ordinary checkpoint (``<out>/<member>/model.safetensors`` with ``vae.*`` and
``objective.*`` tensors, as a single run writes, + its own ``config.yaml``) that ``disentkit evaluate``
and ``report`` accept. Not supported: objectives with running state (buffers, e.g. adaptive β-VAE).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import torch
import yaml
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ..data import FactorDataset
from ..errors import DisentkitError
from ..models import GaussianVAE, VAEOutput, get_objective
from .checkpoint import save_checkpoint
from .config import TrainConfig
from .datamodule import num_train_images, split_indices
from .module import _should_log

MODES = ("product", "zip")
IMPLS = ("auto", "vmap", "loop")
RNG_MODES = ("member", "shared")


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
        typ = int if name == "seed" else declared[name].type
        try:
            typed[name] = [typ(float(v)) if typ is int else typ(v) for v in vals]
        except (TypeError, ValueError):
            raise DisentkitError(f"--ensemble {name}= expects {typ.__name__} values, got {','.join(vals)}") from None
    if config.ensemble_mode not in MODES:
        raise DisentkitError(f"--ensemble-mode must be one of {', '.join(MODES)}, got {config.ensemble_mode!r}")
    if config.ensemble_impl not in IMPLS:
        raise DisentkitError(f"--ensemble-impl must be one of {', '.join(IMPLS)}, got {config.ensemble_impl!r}")
    if config.ensemble_rng not in RNG_MODES:
        raise DisentkitError(f"--ensemble-rng must be one of {', '.join(RNG_MODES)}, got {config.ensemble_rng!r}")
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
        d["out"] = str(Path(config.out) / f"m{i:02d}-{tag}")
        members.append(TrainConfig.from_dict(d).validate())
    return members


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


# ----------------------------------------------------------------------------- the stacked model
class StackedParams(nn.Module):
    """The parameters of M modules of one structure as (M, ...) tensors (``stack_module_state``), and a
    weightless (meta-device) copy of the module that runs any member's slice through ``functional_call``.

    ``names`` are the single module's parameter names (``encoder.conv.0.weight`` …); ``member_state(i)``
    returns member i's ordinary state dict.
    """

    def __init__(self, modules: list[nn.Module], what: str = "module") -> None:
        super().__init__()
        params, buffers = stack_module_state(modules) if any(True for _ in modules[0].parameters()) else ({}, {})
        if buffers or any(True for _ in modules[0].buffers()):
            raise DisentkitError(f"--ensemble does not support {what} yet: it keeps buffers (batch-norm "
                                 "statistics or running state) per model; train its members one by one")
        self.num_members = len(modules)
        self.names = list(params)
        self.stacked = nn.ParameterDict({n.replace(".", "__"): nn.Parameter(p.detach().clone())
                                         for n, p in params.items()})
        template = copy.deepcopy(modules[0]).to("meta")
        self._template = [template]  # a list: not registered as a submodule (it has no real weights)

    @property
    def template(self) -> nn.Module:
        return self._template[0]

    def params(self) -> dict[str, torch.Tensor]:
        return {n: self.stacked[n.replace(".", "__")] for n in self.names}

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        return {n: self.stacked[n.replace(".", "__")][i].detach() for n in self.names}

    def load_member(self, i: int, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for n in self.names:
                self.stacked[n.replace(".", "__")][i].copy_(state[n])

    def call(self, method: str, params: dict[str, torch.Tensor], *args: Any, **kwargs: Any) -> Any:
        """``template.method(*args, **kwargs)`` with one member's parameters ``params`` (vmappable)."""
        return functional_call(_Method(self.template, method), {f"module.{k}": v for k, v in params.items()},
                               args, kwargs)


class _Method(nn.Module):
    """Calls one method of a wrapped module, so that ``functional_call`` can swap weights for any method."""

    def __init__(self, module: nn.Module, method: str) -> None:
        super().__init__()
        self.module, self.method = module, method

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.module, self.method)(*args, **kwargs)


class StackedVAE(StackedParams):
    """M :class:`GaussianVAE` of one architecture, parameters stacked as (M, ...) tensors."""

    def __init__(self, vaes: list[GaussianVAE]) -> None:
        super().__init__(vaes, what="this VAE architecture")
        self.latent_dim = vaes[0].latent_dim

    def member_sample(self, params: dict[str, torch.Tensor], x: torch.Tensor,
                      eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One member's (μ, log σ², z = μ + σ·ε) for the given noise ε (to be vmapped)."""
        enc = {k[len("encoder."):]: v for k, v in params.items() if k.startswith("encoder.")}
        mu, logvar = functional_call(self.template.encoder, enc, (x,))
        return mu, logvar, mu + torch.exp(0.5 * logvar) * eps

    def member_forward(self, params: dict[str, torch.Tensor], x: torch.Tensor, eps: torch.Tensor) -> VAEOutput:
        """One member's VAE forward (to be vmapped): z = μ + σ·ε with the given noise ε."""
        mu, logvar, z = self.member_sample(params, x, eps)
        dec = {k[len("decoder."):]: v for k, v in params.items() if k.startswith("decoder.")}
        return VAEOutput(mu, logvar, z, functional_call(self.template.decoder, dec, (z,)))

    def encode_mean(self, x: torch.Tensor) -> torch.Tensor:
        """μ(x) of every member, (M, B, D), for x of shape (M, B, C, H, W)."""
        t = self.template

        def one(params, xi):
            enc = {k[len("encoder."):]: v for k, v in params.items() if k.startswith("encoder.")}
            return functional_call(t.encoder, enc, (xi,))[0]

        return vmap(one)(self.params(), x)


@contextlib.contextmanager
def hparams_as(objective: nn.Module, values: dict[str, torch.Tensor]) -> Iterator[None]:
    """Temporarily replace an objective's hyperparameter attributes (e.g. ``beta``) by tensors."""
    saved = {k: getattr(objective, k) for k in values}
    try:
        for k, v in values.items():
            object.__setattr__(objective, k, v)
        yield
    finally:
        for k, v in saved.items():
            object.__setattr__(objective, k, v)


# ----------------------------------------------------------------------------- data
class EnsembleBatches:
    """Endless (M, B, C, H, W) batches: member i's indices drawn as :class:`RandomBatches` draws them
    for seed i (``rng="member"``), or all members' indices in one draw (``rng="shared"``)."""

    def __init__(self, dataset: FactorDataset, indices: torch.Tensor | None, batch_size: int,
                 seeds: list[int], device: str | torch.device = "cpu", rng: str = "member") -> None:
        self.dataset, self.batch_size, self.seeds, self.rng = dataset, batch_size, list(seeds), rng
        self.device = torch.device(device)
        self.indices = None if indices is None else indices.to(self.device)

    def __iter__(self) -> Iterator[torch.Tensor]:
        m, b = len(self.seeds), self.batch_size
        if self.rng == "member":
            gens = [torch.Generator(device=self.device).manual_seed(s) for s in self.seeds]
        else:
            gens = [torch.Generator(device=self.device).manual_seed(_shared_seed(self.seeds))]
        draw = self.dataset.sample_training_indices  # uniform, or a dataset's own training joint
        while True:
            if self.rng == "member":
                idx = torch.stack([draw(b, g, self.indices) for g in gens])
            else:
                idx = draw(m * b, gens[0], self.indices)
            images = self.dataset.images_at(idx.flatten(), check=False)  # in range: no device sync
            yield images.view(m, b, *images.shape[1:])


def _shared_seed(seeds: list[int]) -> int:
    return hash(tuple(seeds)) % (2 ** 31)


class EnsembleDataModule(L.LightningDataModule):
    def __init__(self, dataset: FactorDataset, batch_size: int, seeds: list[int], split_seed: int,
                 val_fraction: float, device: str | torch.device, rng: str) -> None:
        super().__init__()
        self.dataset, self.batch_size, self.seeds, self.device, self.rng = dataset, batch_size, seeds, device, rng
        self.train_idx, _ = split_indices(dataset.num_images, val_fraction, split_seed)

    def train_dataloader(self) -> EnsembleBatches:
        return EnsembleBatches(self.dataset, self.train_idx, self.batch_size, self.seeds, self.device, self.rng)


# ----------------------------------------------------------------------------- the LightningModule
class EnsembleModule(L.LightningModule):
    """M members of one objective, trained as one stacked model: one Adam over the stacked VAEs (and the
    objective's own weights the VAE's optimizer trains), plus, for objectives that step extra optimizers
    by hand (FactorVAE's discriminator), one such optimizer over their stacked weights."""

    def __init__(self, member_configs: list[dict[str, Any]], rng: str = "member",
                 init_states: list[dict[str, torch.Tensor]] | None = None) -> None:
        super().__init__()
        self.member_configs = member_configs
        base = member_configs[0]
        cls = get_objective(base["model"])
        # real-valued loss hyperparameters become (M,) tensors; others (ints, choices, an optimizer's
        # settings) must agree across members
        shared = set(getattr(cls, "optimizer_hparams", ()))
        self.hp_names = [p.name for p in cls.hparams if p.type is float and p.name not in shared]
        for p in cls.hparams:
            if p.name not in self.hp_names and len({str(c["hparams"].get(p.name)) for c in member_configs}) > 1:
                why = "it sets an optimizer, one for all members" if p.name in shared else \
                    "only real-valued hyperparameters of the loss can differ"
                raise DisentkitError(f"--ensemble {p.name}=... must be the same for all members ({why}); "
                                     "train members with different values as separate ensembles")
        vaes, objectives, self._cpu_noise_states = [], [], []
        for cfg in member_configs:
            # The same construction order and RNG use as VAEModule under L.seed_everything(seed).
            torch.manual_seed(int(cfg["seed"]))
            vaes.append(GaussianVAE(cfg["architecture"], int(cfg["channels"]), int(cfg["latent_dim"])))
            objectives.append(_build_objective(cls, cfg))
            self._cpu_noise_states.append(torch.get_rng_state())
        first = objectives[0]
        manual = bool(getattr(cls, "manual_optimization", False))
        if manual and not all(hasattr(first, a) for a in MANUAL_PROTOCOL):
            raise DisentkitError(f"--ensemble does not support {base['model']} yet (its hand-written training step "
                                 f"has no ensemble form: {', '.join(MANUAL_PROTOCOL)}); train its members one by one")
        if init_states:
            for vae, state in zip(vaes, init_states):
                vae.load_state_dict(state)
        self.stack = StackedVAE(vaes)
        self.objectives = StackedParams(objectives, what=f"the {base['model']} objective")
        self.automatic_optimization = not manual
        self.steps_per_update = first.optimizer_steps_per_update()
        # which of the objective's weights each optimizer trains (by name), and how it is built
        names = {id(p): n for n, p in first.named_parameters()}
        self._vae_objective_names = [names[id(p)] for p in first.vae_parameters()]
        self._extra_optimizers = [(type(o), dict(o.defaults), [names[id(p)] for g in o.param_groups
                                                                for p in g["params"]])
                                  for o in first.extra_optimizers()]
        self.rng = rng
        for name in self.hp_names:
            vals = [float(c["hparams"][name]) for c in member_configs]
            self.register_buffer(f"hp_{name}", torch.tensor(vals, dtype=torch.float32))
        self._noise_gens: list[torch.Generator] = []
        self._loss_fn = vmap(self._member_loss, in_dims=(0, 0, 0, 0, 0, None))
        self._compiled = None

    @property
    def num_members(self) -> int:
        return self.stack.num_members

    @property
    def objective(self) -> nn.Module:
        """The objective's weightless template (its methods run with each member's weights)."""
        return self.objectives.template

    @property
    def vae_step(self) -> int:
        """VAE updates so far (``global_step`` counts every optimizer's steps under manual optimization)."""
        return self.global_step // self.steps_per_update

    def hparam_tensors(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, f"hp_{name}") for name in self.hp_names}

    def _member_loss(self, params, obj_params, hp, x, noise, step):
        out = self.stack.member_forward(params, x, noise["eps"])
        kwargs = {"noise": noise["loss_noise"]} if "loss_noise" in noise else {}
        with hparams_as(self.objective, hp):
            terms = self.objectives.call("loss", obj_params, out, x, step, **kwargs)
        return terms.loss, {k: v for k, v in terms.logs.items() if "/" not in k}, out.z

    def losses(self, x: torch.Tensor, eps: torch.Tensor, step: int,
               noise: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-member losses (M,) and logs {name: (M,)} for images (M, B, C, H, W) and noise (M, B, D)
        (plus the objective's own noise, e.g. FactorVAE's ``loss_noise``)."""
        loss, logs, _ = self._losses(x, {"eps": eps, **(noise or {})}, step)
        return loss, logs

    def _losses(self, x: torch.Tensor, noise: dict[str, torch.Tensor], step: int):
        """(losses (M,), logs {name: (M,)}, codes z (M, B, D))."""
        noise = {k: v for k, v in noise.items() if k in ("eps", "loss_noise")}
        params, obj_params, hp = self.stack.params(), self.objectives.params(), self.hparam_tensors()
        if self.impl_for(x.device) == "loop":
            results = [self._member_loss(_member(params, i), _member(obj_params, i), _member(hp, i), x[i],
                                         _member(noise, i), step) for i in range(self.num_members)]
            loss, z = torch.stack([r[0] for r in results]), torch.stack([r[2] for r in results])
            return loss, {k: torch.stack([r[1][k] for r in results]) for k in results[0][1]}, z
        fn = self._loss_fn
        if self.member_configs[0].get("compile", "off") not in ("off", None, False):
            if self._compiled is None:
                self._compiled = torch.compile(self._loss_fn, mode=_compile_mode(self.member_configs[0]["compile"]))
            fn = self._compiled
        return fn(params, obj_params, hp, x, noise, step)

    def _per_member(self, fn, device: torch.device, *args: Any) -> Any:
        """``fn(member params, *member args)`` for every member, stacked: vmap or a loop over slices."""
        if self.impl_for(device) == "loop":
            outs = [fn(*(_member(a, i) for a in args)) for i in range(self.num_members)]
            return torch.stack(outs)
        return vmap(fn)(*args)

    def sample_codes(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """z = μ(x) + σ(x)·ε of every member, (M, B, D), for images (M, B, C, H, W)."""
        return self._per_member(lambda p, xi, ei: self.stack.member_sample(p, xi, ei)[2], x.device,
                                self.stack.params(), x, eps)

    def adversary_losses(self, z_real: torch.Tensor, z_other: torch.Tensor,
                         noise: torch.Tensor) -> torch.Tensor:
        """Every member's ``objective.adversary_loss`` (FactorVAE: its discriminator's loss), (M,)."""
        def one(obj_params, hp, zr, zo, u):
            with hparams_as(self.objective, hp):
                return self.objectives.call("adversary_loss", obj_params, zr, zo, u)

        return self._per_member(one, z_real.device, self.objectives.params(), self.hparam_tensors(),
                                z_real, z_other, noise)

    def impl_for(self, device: torch.device) -> str:
        """``vmap`` (one grouped kernel per layer for all members: the GPU path) or ``loop`` (members one
        after another over slices of the stacked tensors: faster on CPUs, where oneDNN's grouped
        convolutions are slower than M ordinary ones — see benchmarks/bench_train.py)."""
        impl = self.member_configs[0].get("ensemble_impl", "auto")
        return ("vmap" if device.type == "cuda" else "loop") if impl == "auto" else impl

    # -- random streams
    def on_fit_start(self) -> None:
        self._noise_gens = self.make_noise_generators(self.device)

    def make_noise_generators(self, device: torch.device) -> list[torch.Generator]:
        """One noise generator per member continuing its single run's stream (see module docstring)."""
        device = torch.device(device)
        seeds = [int(c["seed"]) for c in self.member_configs]
        if self.rng == "shared":
            return [torch.Generator(device=device).manual_seed(_shared_seed(seeds) + 1)]
        gens = []
        for seed, state in zip(seeds, self._cpu_noise_states):
            g = torch.Generator(device=device)
            if device.type == "cpu":
                g.set_state(state)
            else:  # torch.manual_seed(seed) seeds the device's stream; initialisation ran on the CPU
                g.manual_seed(seed)
            gens.append(g)
        return gens

    def step_noise(self, batch_size: int) -> list[tuple[str, str, tuple[int, ...]]]:
        """A training step's draws (name, normal|uniform, shape) in a single run's order: the objective's
        own list (FactorVAE.step_noise) or just the reparameterization noise ``eps``."""
        if hasattr(self.objective, "step_noise"):
            return self.objective.step_noise(batch_size)
        return [("eps", "normal", (batch_size, self.stack.latent_dim))]

    def draw_step_noise(self, batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
        """{name: (M, ...)}: member i's draws come from its own stream, in :meth:`step_noise`'s order."""
        spec = self.step_noise(batch_size)
        if not self._noise_gens:
            self._noise_gens = self.make_noise_generators(device)
        draw = {"normal": torch.randn, "uniform": torch.rand}
        if self.rng == "shared":
            g = self._noise_gens[0]
            return {n: draw[k]((self.num_members, *shape), generator=g, device=device) for n, k, shape in spec}
        per: dict[str, list[torch.Tensor]] = {n: [] for n, _, _ in spec}
        for g in self._noise_gens:
            for n, k, shape in spec:
                per[n].append(draw[k](shape, generator=g, device=device))
        return {n: torch.stack(v) for n, v in per.items()}

    def draw_noise(self, batch_size: int, device: torch.device) -> torch.Tensor:
        """Reparameterization noise (M, B, D) for the VAE alone (objectives without noise of their own)."""
        return self.draw_step_noise(batch_size, device)["eps"]

    # -- Lightning hooks
    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor | None:
        if self.automatic_optimization:
            loss, logs, _ = self._losses(batch, self.draw_step_noise(batch.shape[1], batch.device), self.vae_step)
        else:
            loss, logs = self._manual_step(batch)
        if _should_log(self):
            names = [member_name(i) for i in range(self.num_members)]
            for k, v in logs.items():
                v = v.detach()
                for i, name in enumerate(names):
                    self.log(f"train/{name}/{k}", v[i], on_step=True, on_epoch=False,
                             batch_size=batch.shape[1])
            self.log("train/mean_loss", loss.detach().mean(), on_step=True, on_epoch=False, prog_bar=True,
                     batch_size=batch.shape[1])
        return loss.sum() if self.automatic_optimization else None

    def _manual_step(self, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """FactorVAE's step (``FactorVAE.manual_step``) for all members at once: the VAE Adam on every
        member's rec + KL + γ·TC, then the stacked discriminators' Adam on real vs permuted codes."""
        vae_opt, adv_opt = self.optimizers()
        x, x_other = self.objective.split_batch(batch, 1)
        noise = self.draw_step_noise(batch.shape[1], batch.device)
        loss, logs, z = self._losses(x, noise, self.vae_step)
        vae_opt.zero_grad()
        self.manual_backward(loss.sum())
        vae_opt.step()

        z_real = z.detach()
        if x_other is None:
            z_other = z_real
        else:  # encoded by the just-updated VAEs, as a single run does
            with torch.no_grad():
                z_other = self.sample_codes(x_other, noise["eps_other"])
        adv_loss = self.adversary_losses(z_real, z_other, noise["adversary_noise"])
        adv_opt.zero_grad()  # also clears the gradient the VAE loss left on the discriminators
        self.manual_backward(adv_loss.sum())
        adv_opt.step()
        logs["disc_loss"] = adv_loss.detach()
        return loss, logs

    def configure_optimizers(self):
        from .fast import make_adam

        stacked = self.objectives.params()
        vae_opt = make_adam(list(self.stack.parameters()) + [stacked[n] for n in self._vae_objective_names],
                            float(self.member_configs[0]["lr"]))
        extra = [cls([stacked[n] for n in names], **defaults) for cls, defaults, names in self._extra_optimizers]
        return [vae_opt, *extra] if extra else vae_opt

    def export_member(self, i: int) -> dict[str, torch.Tensor]:
        """Member i as a single run's checkpoint state: ``vae.*`` and ``objective.*`` tensors."""
        return {**{f"vae.{k}": v for k, v in self.stack.member_state(i).items()},
                **{f"objective.{k}": v for k, v in self.objectives.member_state(i).items()}}


MANUAL_PROTOCOL = ("split_batch", "step_noise", "adversary_loss")  # what FactorVAE offers ensembles


def _member(tree: Any, i: int) -> Any:
    """Member i's slice of a stacked tensor or of a dict of them."""
    if isinstance(tree, dict):
        return {k: v[i] for k, v in tree.items()}
    return tree[i]


def _build_objective(cls, cfg: dict[str, Any]):
    """The member's objective, built with the same arguments VAEModule passes (those it accepts)."""
    import inspect

    accepted = inspect.signature(cls.__init__).parameters
    extra = {k: v for k, v in (("latent_dim", int(cfg["latent_dim"])), ("dataset_size", num_train_images(cfg)))
             if k in accepted}
    return cls(reconstruction=cfg["reconstruction"], **extra, **cfg["hparams"])


def _compile_mode(value: Any) -> str | None:
    return None if value in (True, "on", "default") else str(value)


class EnsembleCheckpoint(L.Callback):
    """Writes each member's ``last.safetensors`` every ``every`` steps and ``model.safetensors`` at the end."""

    def __init__(self, every: int) -> None:
        self.every = every

    def _save(self, module: EnsembleModule, name: str) -> None:
        for i, cfg in enumerate(module.member_configs):
            save_checkpoint(Path(cfg["out"]) / name, module.export_member(i), cfg, step=module.vae_step)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        step = module.vae_step  # VAE updates (global_step also counts e.g. FactorVAE's discriminator steps)
        if self.every and step % self.every == 0 and step < int(module.member_configs[0]["steps"]):
            self._save(module, "last.safetensors")

    def on_train_end(self, trainer, module) -> None:
        self._save(module, "model.safetensors")
        for cfg in module.member_configs:
            (Path(cfg["out"]) / "last.safetensors").unlink(missing_ok=True)


# ----------------------------------------------------------------------------- fit
def fit_ensemble(config: TrainConfig) -> Path:
    """Train every member of ``config.ensemble`` at once; returns the ensemble's run folder, which holds
    ``ensemble.yaml``, the logs, and one ordinary run folder per member."""
    from .run import prepare_run_dir

    config.validate()
    members = expand_members(config)
    if config.val_fraction > 0:
        raise DisentkitError("--val-fraction is not supported with --ensemble yet; drop it (members train on all images)")
    run_dir = prepare_run_dir(config.out, config.overwrite)
    for m in members:
        prepare_run_dir(m.out, config.overwrite)
    init = [config.init_from] * len(members) if config.init_from else None
    train_members(config, members, run_dir, init_from=init)
    return run_dir


def unsupported(config: TrainConfig) -> str | None:
    """Why a run with this config cannot be a fused-ensemble member, or None when it can."""
    from ..models import OBJECTIVES

    cls = OBJECTIVES.get(config.model)
    if cls is None:
        return f"unknown model {config.model!r}"
    obj = _build_objective(cls, {**config.to_dict(), "num_images": None})
    if any(True for _ in obj.buffers()) or (getattr(cls, "manual_optimization", False)
                                            and not all(hasattr(obj, a) for a in MANUAL_PROTOCOL)):
        return f"{config.model} is not supported by fused ensembles yet"
    if config.val_fraction > 0:
        return "--val-fraction is not supported with ensembles"
    return None


def shared_settings(config: TrainConfig) -> str:
    """Everything ensemble members must agree on, as one string: all options but the seed, the output
    and start checkpoint, and the loss's real-valued hyperparameters (β, γ, …: per-member tensors)."""
    from ..models import OBJECTIVES

    cls = OBJECTIVES.get(config.model)
    real = ({p.name for p in cls.hparams if p.type is float} - set(getattr(cls, "optimizer_hparams", ()))
            if cls else set())
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


def train_members(config: TrainConfig, members: list[TrainConfig], run_dir: Path,
                  init_from: list[str | None] | None = None) -> None:
    """Train ``members`` (validated single-run configs, each with its own ``out``) as one fused ensemble
    whose shared options (steps, lr, batch, device, …) come from ``config``. ``init_from[i]`` starts
    member i from that checkpoint. Writes each member's ``config.yaml``, checkpoints and its own
    ``csv/metrics.csv`` (its columns of the ensemble's log), and ``ensemble.yaml`` + logs in ``run_dir``."""
    from ..data import get_dataset
    from .checkpoint import read_checkpoint
    from .run import make_trainer, place_dataset, quiet_lightning, resolve_device, setup_cpu

    setup_cpu(config.threads)
    device = resolve_device(config.device)
    quiet_lightning()
    dataset = place_dataset(get_dataset(config.dataset, data_root=config.data_root), device)
    extra = dict(channels=dataset.observation_shape[0], factor_names=list(dataset.factor_names),
                 num_images=dataset.num_images)  # as a single run records them (β-TCVAE needs N)
    cfgs = [{**m.to_dict(), **extra} for m in members]
    init_states = None
    if init_from and any(init_from):
        init_states = []
        for path in init_from:
            if path is None:
                raise DisentkitError("either every member of an ensemble starts from a checkpoint or none does")
            state, saved, _ = read_checkpoint(path)
            for key in ("architecture", "latent_dim", "channels"):
                if saved.get(key) != cfgs[0].get(key):
                    raise DisentkitError(f"--init-from {path}: checkpoint has {key}={saved.get(key)!r} but "
                                         f"this run has {key}={cfgs[0].get(key)!r}")
            init_states.append({k[4:]: v for k, v in state.items() if k.startswith("vae.")})
    module = EnsembleModule(cfgs, rng=config.ensemble_rng, init_states=init_states)
    for cfg in cfgs:
        (Path(cfg["out"]) / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    summary = {**config.to_dict(), "ensemble": parse_ensemble(config.ensemble),
               "members": [{"out": c["out"], "seed": c["seed"], "hparams": c["hparams"]} for c in cfgs]}
    (run_dir / "ensemble.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(summary)), sort_keys=False))
    data = EnsembleDataModule(dataset, config.batch_size, [c["seed"] for c in cfgs], config.seed,
                              0.0, device, config.ensemble_rng)
    trainer = make_trainer(config, run_dir, device, [EnsembleCheckpoint(config.checkpoint_every)], has_val=False,
                           max_steps=config.steps * module.steps_per_update)
    trainer.fit(module, datamodule=data)
    split_member_logs(run_dir / "csv" / "metrics.csv", [Path(c["out"]) for c in cfgs])


def member_name(i: int) -> str:
    """Member i's prefix in the ensemble's logs: ``train/m03/loss``."""
    return f"m{i:02d}"


def split_member_logs(log: Path, outs: list[Path]) -> None:
    """Give each member folder its own ``csv/metrics.csv``: the step column and the member's
    ``train/mNN/*`` columns renamed ``train/*``, as a single run logs them (what aggregation reads)."""
    import csv

    if not log.is_file():
        return
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    for i, out in enumerate(outs):
        prefix = f"train/{member_name(i)}/"
        keep = [(k, "train/" + k[len(prefix):]) for k in (rows[0] if rows else {}) if k.startswith(prefix)]
        (out / "csv").mkdir(parents=True, exist_ok=True)
        with open(out / "csv" / "metrics.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", *(new for _, new in keep)])
            for r in rows:
                vals = [r.get(k, "") for k, _ in keep]
                if any(vals):
                    w.writerow([r.get("step", ""), *vals])
