"""The models a run trains: 1..M members, each a VAE and its objective, behind one interface.

- :class:`Single` (M = 1): plain ``nn.Module`` s, called directly (no ``functional_call``), so that CUDA
  graphs and ``torch.compile`` see ordinary modules.
- :class:`Stacked` (M > 1, a fused ensemble): each parameter of the M members is one (M, ...) tensor
  (``torch.func.stack_module_state``), run through a weightless template of the VAE and the objective with
  ``functional_call``, under ``vmap`` (one grouped kernel per layer: the GPU path) or a loop over the
  members' slices (faster on CPUs, where oneDNN's grouped convolutions are slow). Real-valued loss
  hyperparameters (β, γ, …) are (M,) tensors. Members share no parameter and the loss minimised is the
  sum of theirs, so one Adam over the stacked tensors is M independent Adams.

Both build member i as ``disentkit train --seed s_i`` builds its model (the VAE, then the objective, from
the CPU generator seeded with s_i) and continue that generator for the step's random draws
(:meth:`Members.draw_noise`), so member i trains exactly as the run of its seed.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ..errors import DisentkitError
from ..models import GaussianVAE, Objective, Phase, PhaseOut, VAEOutput, get_objective
from ..models.custom import is_custom
from ..models.layers import set_conv_impl
from .data import shared_seed


def build_objective(cfg: dict[str, Any]) -> Objective:
    """A run's objective from its config (``num_train``: the training images, β-TCVAE's N)."""
    cls = get_objective(cfg["model"])
    n = cfg.get("num_train")
    return cls(reconstruction=cfg["reconstruction"], latent_dim=int(cfg["latent_dim"]),
               dataset_size=None if n is None else int(n), **cfg["hparams"])


def build_vae(cfg: dict[str, Any]) -> GaussianVAE:
    """The VAE a config describes (``channels`` recorded from the dataset), with its convolution kind."""
    arch = cfg.get("architecture", "locatello")
    if is_custom(arch):
        cls = arch[len("custom:"):]
        raise DisentkitError(f"this run trained a user-supplied VAE ({cls}), which disentkit cannot rebuild; "
                             f"load it from Python with disentkit.load(run, vae={cls.rsplit('.', 1)[-1]}(...))")
    vae = GaussianVAE(cfg.get("architecture", "locatello"), int(cfg.get("channels") or 1), int(cfg["latent_dim"]))
    return set_conv_impl(vae, cfg.get("conv_impl", "auto"))


def initial_vae(cfg: dict[str, Any]) -> GaussianVAE:
    """The VAE a run with this config starts from (its seed's initial weights), e.g. an untrained baseline."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(cfg["seed"]))
        return build_vae(cfg)


def phase_param_names(objective: Objective) -> list[list[str]]:
    """For each of the objective's phases, the names of the objective's own parameters it trains."""
    phases = type(objective).phases
    default = next((i for i, ph in enumerate(phases) if ph.params is None), None)
    out: list[list[str]] = [[] for _ in phases]
    for name, _ in objective.named_parameters():
        owner = next((i for i, ph in enumerate(phases) if ph.params and any(name.startswith(p) for p in ph.params)),
                     default)
        if owner is None:
            raise DisentkitError(f"{objective.name}: parameter {name} is trained by none of its phases")
        out[owner].append(name)
    return out


def member_init(cfg: dict[str, Any], init_state: dict[str, torch.Tensor] | None = None,
                vae: GaussianVAE | None = None) -> tuple[GaussianVAE, Objective, torch.Tensor]:
    """Member ``cfg``'s VAE and objective, initialised from the CPU generator seeded with its seed, and that
    generator's state afterwards (where its step noise continues). The global generator is left as it was.
    A user-supplied ``vae`` comes with its own initial weights and is used as it is."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(cfg["seed"]))
        vae, objective = vae if vae is not None else build_vae(cfg), build_objective(cfg)
        state = torch.get_rng_state()
    if init_state is not None:
        vae.load_state_dict(init_state)
    return vae, objective, state


class Members:
    """What the step and the loop need of the models, for one member or many."""

    num: int
    objective: Objective     # the objective (M = 1) or its weightless template (M > 1)

    def __init__(self, configs: list[dict[str, Any]], device: torch.device, rng: str = "member") -> None:
        self.configs, self.device, self.rng = configs, torch.device(device), rng
        self.num = len(configs)

    # -- random draws
    def make_generators(self, cpu_states: list[torch.Tensor]) -> list[torch.Generator]:
        """One generator per member continuing its initialisation's CPU stream (on a GPU: seeded with its
        seed); ``rng="shared"``: one generator for all."""
        seeds = [int(c["seed"]) for c in self.configs]
        if self.rng == "shared":
            return [torch.Generator(device=self.device).manual_seed(shared_seed(seeds) + 1)]
        gens = []
        for seed, state in zip(seeds, cpu_states):
            g = torch.Generator(device=self.device)
            if self.device.type == "cpu":
                g.set_state(state)
            else:
                g.manual_seed(seed)
            gens.append(g)
        return gens

    def draw_noise(self, batch_size: int) -> dict[str, torch.Tensor]:
        """A step's random draws (the objective's :meth:`~Objective.draws`): (...) for one member, (M, ...)
        for several, member i's from its own generator in the declared order."""
        draws = self.objective.draws(batch_size)
        sample = {"normal": torch.randn, "uniform": torch.rand}
        if self.rng == "shared" and self.num > 1:
            g = self.generators[0]
            return {d.name: sample[d.kind]((self.num, *d.shape), generator=g, device=self.device) for d in draws}
        per: dict[str, list[torch.Tensor]] = {d.name: [] for d in draws}
        for g in self.generators:
            for d in draws:
                per[d.name].append(sample[d.kind](d.shape, generator=g, device=self.device))
        if self.num == 1:
            return {k: v[0] for k, v in per.items()}
        return {k: torch.stack(v) for k, v in per.items()}

    # -- to implement
    generators: list[torch.Generator]

    def phase_parameters(self, index: int) -> list[torch.Tensor]:
        raise NotImplementedError

    def run_phase(self, phase: Phase, batch: torch.Tensor, noise: dict[str, torch.Tensor], step: torch.Tensor,
                  carry: dict[str, torch.Tensor]) -> PhaseOut:
        raise NotImplementedError

    def module(self) -> nn.Module:
        """Every tensor of the members (parameters and buffers), for resume state and ``.to``."""
        raise NotImplementedError

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        """Member i as a single run's checkpoint holds it: ``vae.*`` and ``objective.*`` tensors."""
        raise NotImplementedError

    def member_vae(self, i: int) -> GaussianVAE:
        """A plain VAE with member i's current weights (for metrics and pictures)."""
        vae = initial_vae(self.configs[i])   # built without touching the global generator
        vae.load_state_dict({k[4:]: v for k, v in self.member_state(i).items() if k.startswith("vae.")})
        return vae.to(self.device).eval()

    def train(self, mode: bool = True) -> None:
        self.module().train(mode)
        self.objective.train(mode)

    def capture_buffers(self) -> list[torch.Tensor]:
        """State the step changes besides parameters (e.g. adaptive β's running covariance)."""
        return list(self.module().buffers())

    def compile(self, mode: str) -> None:
        """``torch.compile`` each phase's forward and loss (backward through AOTAutograd)."""
        self._compile_mode = None if mode == "default" else mode

    _compile_mode: str | None = "off"

    def _maybe_compiled(self, fn: Callable, cache: dict, key: str) -> Callable:
        if self._compile_mode == "off":
            return fn
        if key not in cache:
            cache[key] = torch.compile(fn, mode=self._compile_mode)
        return cache[key]


class Single(Members):
    """One member: its VAE and objective as ordinary modules."""

    def __init__(self, config: dict[str, Any], device: torch.device, init_state: dict | None = None,
                 channels_last: bool = False, vae: GaussianVAE | None = None) -> None:
        super().__init__([config], device)
        vae, objective, state = member_init(config, init_state, vae)
        if channels_last:
            vae = vae.to(memory_format=torch.channels_last)
        self.vae, self.objective = vae.to(self.device), objective.to(self.device)
        self._modules = nn.ModuleDict({"vae": self.vae, "objective": self.objective})
        self._owned = phase_param_names(objective)
        self.generators = self.make_generators([state])
        self._compiled: dict[str, Callable] = {}

    def phase_parameters(self, index: int) -> list[torch.Tensor]:
        phase = type(self.objective).phases[index]
        named = dict(self.objective.named_parameters())
        return (list(self.vae.parameters()) if phase.trains_vae else []) + [named[n] for n in self._owned[index]]

    def run_phase(self, phase, batch, noise, step, carry) -> PhaseOut:
        fn = self._maybe_compiled(getattr(self.objective, phase.method), self._compiled, phase.method)
        return fn(self.vae, batch, noise, step, carry)

    def module(self) -> nn.Module:
        return self._modules

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        return {**{f"vae.{k}": v for k, v in self.vae.state_dict().items()},
                **{f"objective.{k}": v for k, v in self.objective.state_dict().items()}}

    def member_vae(self, i: int) -> GaussianVAE:
        return self.vae


# ---------------------------------------------------------------------- stacked members
class StackedParams(nn.Module):
    """The parameters of M modules of one structure as (M, ...) tensors, and a weightless (meta-device)
    copy of the module that runs any member's slice through ``functional_call``."""

    def __init__(self, modules: list[nn.Module], what: str = "module") -> None:
        super().__init__()
        if any(True for _ in modules[0].buffers()):
            raise DisentkitError(f"--ensemble does not support {what} yet: it keeps buffers (batch-norm "
                                 "statistics or running state) per model; train its members one by one")
        params = stack_module_state(modules)[0] if any(True for _ in modules[0].parameters()) else {}
        self.num_members = len(modules)
        self.names = list(params)
        self.stacked = nn.ParameterDict({n.replace(".", "__"): nn.Parameter(p.detach().clone())
                                         for n, p in params.items()})
        self._template = [copy.deepcopy(modules[0]).to("meta")]  # a list: not a submodule (no real weights)
        self._methods: dict[str, _Method] = {}                    # made once: torch.compile traces no module set-up

    def hparams_as_buffers(self, names: list[str]) -> None:
        """Make the template's hyperparameter attributes (e.g. ``beta``) buffers, so that :meth:`call` swaps in
        each member's value with its weights (``functional_call``) instead of setting attributes, which
        ``torch.compile`` cannot trace under ``vmap`` (CUDA_SUSPECTS 11)."""
        for n in names:
            value = float(getattr(self.template, n))
            delattr(self.template, n)
            self.template.register_buffer(n, torch.tensor(value, device="meta"), persistent=False)

    @property
    def template(self) -> nn.Module:
        return self._template[0]

    def params(self) -> dict[str, torch.Tensor]:
        return {n: self.stacked[n.replace(".", "__")] for n in self.names}

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        return {n: self.stacked[n.replace(".", "__")][i].detach() for n in self.names}

    def prepare(self, methods: list[str]) -> None:
        """Make the wrappers :meth:`call` uses for ``methods`` now, outside any traced (compiled) region."""
        for m in methods:
            self._methods.setdefault(m, _Method(self.template, m))

    def call(self, method: str, params: dict[str, torch.Tensor], *args: Any) -> Any:
        """``template.method(*args)`` with one member's parameters ``params`` (vmappable)."""
        if method not in self._methods:
            self._methods[method] = _Method(self.template, method)
        return functional_call(self._methods[method], {f"module.{k}": v for k, v in params.items()}, args)


class _Method(nn.Module):
    """Calls one method of a wrapped module, so that ``functional_call`` can swap weights for any method."""

    def __init__(self, module: nn.Module, method: str) -> None:
        super().__init__()
        self.module, self.method = module, method

    def forward(self, *args: Any) -> Any:
        return getattr(self.module, self.method)(*args)


class StackedVAE(StackedParams):
    """M :class:`GaussianVAE` of one architecture, parameters stacked as (M, ...) tensors."""

    def __init__(self, vaes: list[GaussianVAE]) -> None:
        super().__init__(vaes, what="this VAE architecture")
        self.latent_dim = vaes[0].latent_dim

    def member_forward(self, params: dict[str, torch.Tensor], x: torch.Tensor, eps: torch.Tensor) -> VAEOutput:
        """One member's VAE forward (to be vmapped): z = μ + σ·ε with the given noise ε."""
        return functional_call(self.template, params, (x, eps))

    def encode_mean(self, x: torch.Tensor) -> torch.Tensor:
        """μ(x) of every member, (M, B, D), for x of shape (M, B, C, H, W)."""
        def one(params, xi):
            enc = {k[len("encoder."):]: v for k, v in params.items() if k.startswith("encoder.")}
            return functional_call(self.template.encoder, enc, (xi,))[0]

        return vmap(one)(self.params(), x)


class MemberVAE:
    """One fused member's VAE as its phases see it: ``vae(x, eps)``, ``vae.encode(x)``, ``vae.decode(z)``
    with that member's slice of the stacked weights (vmappable), as a single run's :class:`GaussianVAE`."""

    def __init__(self, vaes: StackedVAE, params: dict[str, torch.Tensor]) -> None:
        self.vaes, self.params = vaes, params

    def __call__(self, x: torch.Tensor, eps: torch.Tensor) -> VAEOutput:
        return self.vaes.member_forward(self.params, x, eps)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vaes.call("encode", self.params, x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vaes.call("decode", self.params, z)


def tensor_hparams(cls: type[Objective]) -> list[str]:
    """Hyperparameters that may differ between fused members: the loss's real-valued ones (not those that
    configure an optimizer, e.g. FactorVAE's ``disc_lr``)."""
    optimizer = {ph.lr for ph in cls.phases if ph.lr}
    return [p.name for p in cls.hparams if p.type is float and p.name not in optimizer]


class Stacked(Members):
    """M members of one objective as stacked tensors (see the module docstring)."""

    def __init__(self, configs: list[dict[str, Any]], device: torch.device, impl: str = "auto",
                 rng: str = "member", init_states: list[dict] | None = None) -> None:
        super().__init__(configs, device, rng)
        cls = get_objective(configs[0]["model"])
        self.hp_names = tensor_hparams(cls)
        for p in cls.hparams:
            if p.name not in self.hp_names and len({str(c["hparams"].get(p.name)) for c in configs}) > 1:
                why = ("it sets an optimizer, one for all members" if p.type is float else
                       "only real-valued hyperparameters of the loss can differ")
                raise DisentkitError(f"--ensemble {p.name}=... must be the same for all members ({why}); "
                                     "train members with different values as separate ensembles")
        built = [member_init(c, None if init_states is None else init_states[i]) for i, c in enumerate(configs)]
        self.vaes = StackedVAE([b[0] for b in built]).to(self.device)
        self.vaes.prepare(["encode", "decode"])      # MemberVAE's methods, made outside any traced region
        self.objectives = StackedParams([b[1] for b in built], what=f"the {configs[0]['model']} objective")
        self.objectives.to(self.device)
        self.objectives.hparams_as_buffers(self.hp_names)
        self.objectives.prepare([ph.method for ph in cls.phases])
        self.objective = self.objectives.template
        set_conv_impl(self.vaes.template, configs[0].get("conv_impl", "auto"))
        self._owned = phase_param_names(built[0][1])
        self.hp = {n: torch.tensor([float(c["hparams"][n]) for c in configs], device=self.device)
                   for n in self.hp_names}
        self.impl = ("vmap" if self.device.type == "cuda" else "loop") if impl == "auto" else impl
        self.generators = self.make_generators([b[2] for b in built])
        self._modules = nn.ModuleDict({"vae": self.vaes, "objective": self.objectives})
        self._fns: dict[str, Callable] = {}

    def phase_parameters(self, index: int) -> list[torch.Tensor]:
        phase = type(self.objective).phases[index]
        stacked = self.objectives.params()
        return (list(self.vaes.parameters()) if phase.trains_vae else []) + [stacked[n] for n in self._owned[index]]

    def _member_fn(self, method: str) -> Callable:
        def one(vae_p, obj_p, hp, x, noise, step, carry):
            return self.objectives.call(method, {**obj_p, **hp}, MemberVAE(self.vaes, vae_p), x, noise, step, carry)
        return one

    def run_phase(self, phase, batch, noise, step, carry) -> PhaseOut:
        args = (self.vaes.params(), self.objectives.params(), self.hp, batch, noise)
        if self.impl == "loop":
            one = self._member_fn(phase.method)
            outs = [one(*(_member(a, i) for a in args), step, _member(carry, i)) for i in range(self.num)]
            return PhaseOut(torch.stack([o.loss for o in outs]),
                            {k: torch.stack([o.logs[k] for o in outs]) for k in outs[0].logs},
                            {k: torch.stack([o.carry[k] for o in outs]) for k in outs[0].carry})
        if phase.method not in self._fns:
            fn = vmap(self._member_fn(phase.method), in_dims=(0, 0, 0, 0, 0, None, 0))
            self._fns[phase.method] = self._maybe_compiled(fn, {}, phase.method)
        return PhaseOut(*self._fns[phase.method](*args, step, carry))

    def module(self) -> nn.Module:
        return self._modules

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        return {**{f"vae.{k}": v for k, v in self.vaes.member_state(i).items()},
                **{f"objective.{k}": v for k, v in self.objectives.member_state(i).items()}}


def _member(tree: Any, i: int) -> Any:
    """Member i's slice of a stacked tensor or of a dict of them."""
    if isinstance(tree, dict):
        return {k: v[i] for k, v in tree.items()}
    return tree[i]
