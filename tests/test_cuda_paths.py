"""CUDA paths checked on a CPU (../shared/CUDA_SUSPECTS.md): what a CUDA graph or torch.compile needs of the
step, the meta device standing in for a GPU.

- no loss copies a host value to the device or reads a device value back (a sync) inside the step;
- a step-dependent loss (AnnealedVAE's capacity, adaptive β's warm-up) reads the step as a tensor, so one
  captured graph is right at every later step;
- the step draws no random numbers of its own (its noise comes in, drawn before capture);
- CUDA-graph warm-up is undone: weights, buffers and optimizer state as before;
- ``--cuda-graphs`` runs FactorVAE and ensembles through the captured-step path, with the run's precision;
- ``cuda:N`` is Fabric's GPU N; 16-mixed's gradient scaler is updated once a step.
"""

from __future__ import annotations

import csv

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from disentkit.models import OBJECTIVES, VAEOutput
from disentkit.train import TrainConfig, fit, load_checkpoint
from disentkit.train.members import Single, Stacked, build_objective
from disentkit.train.session import fabric_args
from disentkit.train.step import Step, make_optimizers

META = torch.device("meta")
FUSABLE = [m for m in sorted(OBJECTIVES) if m not in ("adaptive_beta_vae", "pairwise_adaptive_vae")]   # buffers


def _cfg(model: str, **hp) -> dict:
    cfg = TrainConfig(model=model, latent_dim=3, seed=1, hparams=hp).validate().to_dict()
    small = {"disc_hidden": 8, "disc_layers": 1} if model == "factor_vae" else {}
    cfg["hparams"].update(small)
    return {**cfg, "channels": 1, "num_train": 1000, "out": "-"}


class HostTraffic(TorchDispatchMode):
    """Records every op that mixes host (CPU) and device (meta) tensors or reads a device value back, and every
    tensor made on the device from Python data (``new_tensor``, ``torch.tensor``: a host-to-device copy that the
    dispatcher does not show)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._saved: list = []

    def __enter__(self):
        def watch(owner, name):
            real = getattr(owner, name)

            def wrapper(*args, **kwargs):
                data = args[1] if owner is torch.Tensor else (args[0] if args else None)
                target = kwargs.get("device") or (args[0].device if owner is torch.Tensor else "cpu")
                if not isinstance(data, torch.Tensor) and torch.device(target).type != "cpu":
                    self.found.append(f"{name}({data!r}): a tensor from host data")
                return real(*args, **kwargs)
            self._saved.append((owner, name, real))
            setattr(owner, name, wrapper)
        for owner, name in ((torch.Tensor, "new_tensor"), (torch, "tensor"), (torch, "as_tensor")):
            watch(owner, name)
        return super().__enter__()

    def __exit__(self, *exc):
        for owner, name, real in self._saved:
            setattr(owner, name, real)
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat = list(args) + list(kwargs.values())
        tensors = [t for a in flat for t in (a if isinstance(a, (list, tuple)) else [a]) if isinstance(t, torch.Tensor)]
        # a 0-dim host tensor is a scalar argument (read on the host, no copy); anything bigger is a copy
        devices = {t.device.type for t in tensors if t.dim() > 0 or t.device.type != "cpu"}
        if {"cpu", "meta"} <= devices:
            self.found.append(f"{func}: host and device operands")
        if func is torch.ops.aten._to_copy.default and tensors and tensors[0].device.type == "cpu" \
                and str(kwargs.get("device", "")) == "meta":
            self.found.append(f"{func}: host-to-device copy")
        if func is torch.ops.aten._local_scalar_dense.default and tensors[0].device.type != "cpu":
            self.found.append(f"{func}: device value read on the host (a sync)")
        return func(*args, **kwargs)


def _meta_step(model: str) -> tuple[Step, torch.Tensor, dict]:
    cfg = _cfg(model)
    member = Single(cfg, torch.device("cpu"))
    member.module().to(META)
    member.device = META
    step = Step(member, make_optimizers(member, cfg))
    pairs = getattr(type(member.objective), "pairs", False)        # Ada-VAE: 6 pairs, 12 images
    batch = torch.empty(12 if pairs else 6, 1, 64, 64, device=META)
    noise = {d.name: torch.empty(d.shape, device=META) for d in member.objective.draws(6)}
    return step, batch, noise


@pytest.mark.parametrize("model", sorted(OBJECTIVES))
def test_a_training_step_makes_no_host_copy_and_no_sync(model):
    """Forward, loss, backward and Adam of every phase on device tensors: nothing crosses to or from the host
    (AnnealedVAE's capacity was a host-to-device copy; adaptive β read its update count back)."""
    step, batch, noise = _meta_step(model)
    with HostTraffic() as mode:
        for _ in range(2):
            logs = step(batch, noise)
    assert mode.found == [] and "loss" in logs


class CountingBackend:
    """A torch.compile backend that counts the graphs it is given and runs them as they are."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


@pytest.mark.parametrize("model, hp, key", [("annealed_vae", {"anneal_steps": 100, "c_max": 10.0}, "capacity"),
                                            ("adaptive_beta_vae", {"beta_warmup": 3, "kappa": 1.0}, "beta/0")])
def test_a_loss_captured_once_reads_the_current_step(model, hp, key):
    """One graph of the loss (fullgraph: no Python read of a device value) serves every step: the capacity
    rises and adaptive β leaves its warm-up as eager code does. (A Python step would be frozen in a CUDA
    graph, and recompiled per value by torch.compile.)"""
    torch.manual_seed(0)
    cfg = _cfg(model, **hp)
    eager, captured = build_objective(cfg), build_objective(cfg)
    backend = CountingBackend()
    loss = torch.compile(lambda o, out, x, s: o.loss(out, x, s).logs[key], backend=backend, fullgraph=True)
    mu = torch.randn(16, 3) @ torch.tensor([[1.0, 0.9, 0.0], [0.0, 0.4, 0.0], [0.0, 0.0, 1.0]])
    out = VAEOutput(mu, torch.full((16, 3), -1.0), mu, torch.zeros(16, 1, 4, 4))
    x = torch.rand(16, 1, 4, 4).round()
    values = []
    for s in (0, 1, 5, 50):
        step = torch.tensor(s)
        want, got = eager.loss(out, x, step).logs[key], loss(captured, out, x, step)
        assert torch.equal(got, want), s
        values.append(float(got))
    assert backend.graphs == 1
    assert len(set(values)) > 1                      # the value moved with the step


def test_the_step_draws_no_random_numbers_of_its_own():
    cfg = _cfg("factor_vae", permutation="second_batch")
    member = Single(cfg, torch.device("cpu"))
    step = Step(member, make_optimizers(member, cfg))
    noise, batch = member.draw_noise(6), torch.rand(6, 1, 64, 64).round()
    before = torch.get_rng_state(), [g.get_state() for g in member.generators]
    step(batch, noise)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert all(torch.equal(g.get_state(), s) for g, s in zip(member.generators, before[1]))


def test_cuda_graph_warm_up_is_undone():
    """The warm-up capture needs leaves weights, buffers (adaptive β's running state, the step count) and
    Adam's state as they were: the first replayed step is the model's true first step."""
    from disentkit.train.fast import CapturedStep

    cfg = _cfg("adaptive_beta_vae", beta_warmup=1)

    def fresh():
        member = Single(cfg, torch.device("cpu"))
        return member, Step(member, make_optimizers(member, cfg))

    x = torch.rand(6, 1, 64, 64).round()
    (m1, s1), (m2, s2) = fresh(), fresh()
    noise = m1.draw_noise(6)
    params = [p for o in s1.optimizers for g in o.param_groups for p in g["params"]]
    cap = CapturedStep(lambda b, n: s1.body(b, n, set_to_none=False), x, noise, params, s1.optimizers,
                       [s1.count, *m1.capture_buffers()], capture=False)
    before = {k: v.clone() for k, v in m1.member_state(0).items()}
    cap.warm_up(3)
    assert all(torch.equal(v, before[k]) for k, v in m1.member_state(0).items())
    assert int(s1.count) == 0
    cap(x, noise)
    s2(x, noise)
    assert all(torch.equal(v, m2.member_state(0)[k]) for k, v in m1.member_state(0).items())


@pytest.mark.parametrize("model, ensemble", [("factor_vae", None), ("beta_vae", ["seed=0,1"]),
                                             ("annealed_vae", None)])
def test_cuda_graphs_path_runs_every_objective_and_ensembles(tmp_path, model, ensemble):
    """On a CPU --cuda-graphs runs the step through CapturedStep uncaptured: the same training, FactorVAE's
    two phases and ensembles included (they used to ignore the flag)."""
    base = dict(model=model, steps=4, batch_size=8, latent_dim=3, threads=1, progress=False, log_every=1,
                ensemble=ensemble, hparams={"disc_hidden": 8, "disc_layers": 1} if model == "factor_vae" else {})
    plain = fit(TrainConfig(out=str(tmp_path / "p"), **base))
    graphs = fit(TrainConfig(out=str(tmp_path / "g"), cuda_graphs=True, **base))
    for a, b in ((plain, graphs),) if not ensemble else ((plain / "m00-seed0", graphs / "m00-seed0"),):
        sa, sb = load_checkpoint(a).state, load_checkpoint(b).state
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_cuda_graphs_keep_the_runs_precision(tmp_path):
    """--cuda-graphs used to force 32-bit precision; now the captured step runs under the run's autocast."""
    base = dict(steps=3, batch_size=8, latent_dim=3, threads=1, progress=False, log_every=1, cuda_graphs=True)
    fp32 = fit(TrainConfig(out=str(tmp_path / "a"), **base))
    bf16 = fit(TrainConfig(out=str(tmp_path / "b"), precision="bf16-mixed", **base))

    def losses(run):
        with open(run / "csv" / "metrics.csv") as f:
            return [float(r["train/loss"]) for r in csv.DictReader(f)]
    assert losses(bf16) != losses(fp32) and losses(bf16) == pytest.approx(losses(fp32), rel=0.05)


def test_fabric_uses_the_gpu_it_is_given():
    assert fabric_args(torch.device("cuda:1"), "bf16-mixed") == {"accelerator": "cuda", "devices": [1],
                                                                 "precision": "bf16-mixed"}
    assert fabric_args(torch.device("cuda"), "32-true")["devices"] == [0]
    assert fabric_args(torch.device("cpu"), "32-true")["accelerator"] == "cpu"


def test_16_mixed_scales_every_phase_and_updates_its_scaler_once_a_step():
    cfg = _cfg("factor_vae")
    member = Single(cfg, torch.device("cpu"))
    step = Step(member, make_optimizers(member, cfg), precision="16-mixed")
    updates = []
    real = step.scaler.update
    step.scaler.update = lambda *a: (updates.append(1), real(*a))[1]
    for _ in range(3):
        step(torch.rand(8, 1, 64, 64).round(), member.draw_noise(8))
    assert len(updates) == 3 and int(step.count) == 3


def test_stacked_members_on_the_device_make_no_host_copy():
    cfgs = [{**_cfg("beta_vae", beta=b), "seed": s} for s, b in ((0, 1.0), (1, 4.0))]
    members = Stacked(cfgs, torch.device("cpu"), impl="vmap")
    members.module().to(META)
    members.hp = {k: v.to(META) for k, v in members.hp.items()}
    members.device = META
    step = Step(members, make_optimizers(members, cfgs[0]))
    noise = {"eps": torch.empty(2, 4, 3, device=META)}
    with HostTraffic() as mode:
        step(torch.empty(2, 4, 1, 64, 64, device=META), noise)
    assert mode.found == []


def test_unplaced_shapes3d_batches_are_coloured_on_the_device_without_a_sync(monkeypatch):
    """procedural 3D Shapes that does not fit on the GPU colours each batch there from its geometry tables:
    they are copied to the device once, indexed there (no host read of the indices, no 6 MB copy a batch)."""
    from disentkit.data.shapes3d_procedural import Shapes3DProcedural

    ds = Shapes3DProcedural(cache_path=None)
    tables = torch.zeros(480, 3, 64, 64), torch.zeros(480, 3, 64, 64)
    monkeypatch.setattr(ds, "geometry", lambda: tables)      # the ray casting is not under test
    gen = torch.Generator(device="cpu").manual_seed(0)
    index = ds.sample_training_indices(16, gen).to(META)
    ds.images_at(index, check=False)                         # the first batch copies the tables over
    with HostTraffic() as mode:
        batch = ds.images_at(index, check=False)
    assert mode.found == [] and batch.device.type == "meta" and tuple(batch.shape) == (16, 3, 64, 64)


@pytest.mark.parametrize("model", FUSABLE)
def test_a_compiled_ensemble_loss_is_one_graph(model):
    """``--compile`` of a fused ensemble compiles its vmapped phase whole: per-member hyperparameters are swapped
    in as buffers with the weights, and no module is made inside the traced region. (They were set as
    attributes in a context manager, and dynamo skipped the whole frame: the ensemble ran uncompiled.)"""
    torch._dynamo.reset()     # every test compiles the same member function: start from an empty cache
    cfgs = [{**_cfg(model), "seed": s} for s in (0, 1)]
    members = Stacked(cfgs, torch.device("cpu"), impl="vmap")
    for phase in type(members.objective).phases:
        fn = torch.func.vmap(members._member_fn(phase.method), in_dims=(0, 0, 0, 0, 0, None, 0))
        backend = CountingBackend()
        compiled = torch.compile(fn, backend=backend, fullgraph=True)   # fullgraph: a graph break raises
        args = (members.vaes.params(), members.objectives.params(), members.hp, _images(members, 4),
                members.draw_noise(4), torch.tensor(0))
        carry = {}
        if phase is not type(members.objective).phases[0]:
            carry = members.run_phase(type(members.objective).phases[0], args[3], args[4], args[5], {}).carry
        out = compiled(*args, carry)
        eager = fn(*args, carry)
        assert backend.graphs == 1 and torch.allclose(out[0], eager[0])


def _images(members: Stacked, b: int) -> torch.Tensor:
    """A fused batch of 2 members: b images each, or b pairs (2b images) for an objective trained on pairs."""
    n = 2 * b if getattr(type(members.objective), "pairs", False) else b
    return torch.rand(2, n, 1, 64, 64).round()


@pytest.mark.parametrize("model", FUSABLE)
def test_every_fusable_objective_builds_stacked(model):
    cfgs = [{**_cfg(model), "seed": s} for s in (0, 1)]
    members = Stacked(cfgs, torch.device("cpu"))
    phase = type(members.objective).phases[0]
    noise = members.draw_noise(4)
    out = members.run_phase(phase, _images(members, 4), noise, torch.tensor(0), {})
    assert out.loss.shape == (2,)


def test_evaluate_takes_device_auto_and_names_a_missing_gpu(tiny_run, capsys):
    from disentkit.cli import main
    from disentkit.errors import DisentkitError
    from disentkit.train.run import resolve_device

    assert main(["evaluate", "--checkpoint", str(tiny_run), "--device", "auto", "--metrics", "mig", "--set",
                 "mig.num_train=500", "--threads", "1", "--out", str(tiny_run / "auto.json")]) == 0
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DisentkitError, match="no CUDA GPU is available"):
            resolve_device("cuda:1")
    with pytest.raises(DisentkitError, match="--device must be auto, cpu, cuda or cuda:N"):
        resolve_device("gpu0")
