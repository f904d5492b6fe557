"""The speed options change how a step runs, not what it computes: same seed, same (or close) losses."""

import csv

import pytest
import torch

from disentkit.errors import DisentkitError
from disentkit.train import TrainConfig, fit, load_checkpoint
from disentkit.train.fast import CapturedStep, make_adam

BASE = dict(steps=5, batch_size=8, log_every=1, threads=1, progress=False, latent_dim=4, seed=11,
            hparams={"beta": 4.0})


def _losses(run):
    with open(run / "csv" / "metrics.csv") as f:
        return [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return fit(TrainConfig(out=str(tmp_path_factory.mktemp("ref") / "r"), **BASE))


def test_captured_step_path_matches_plain_training(reference, tmp_path):
    """--cuda-graphs runs the step through CapturedStep (uncaptured on a CPU): identical training."""
    run = fit(TrainConfig(out=str(tmp_path / "g"), cuda_graphs=True, **BASE))
    assert _losses(run) == pytest.approx(_losses(reference), rel=1e-6)
    a, b = load_checkpoint(reference).state, load_checkpoint(run).state
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-7)


def test_channels_last_and_bf16_train_alike(reference, tmp_path):
    ref = _losses(reference)
    nhwc = _losses(fit(TrainConfig(out=str(tmp_path / "c"), channels_last=True, **BASE)))
    assert nhwc == pytest.approx(ref, rel=1e-4)
    bf16 = _losses(fit(TrainConfig(out=str(tmp_path / "b"), precision="bf16-mixed", **BASE)))
    assert len(bf16) == len(ref) and bf16 == pytest.approx(ref, rel=0.05)


def test_captured_step_object_steps_like_eager():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2)
    twin = torch.nn.Linear(3, 2)
    twin.load_state_dict(lin.state_dict())
    opt = make_adam(list(lin.parameters()), 0.1)

    def step_fn(x, noise):
        opt.zero_grad(set_to_none=False)
        loss = (lin(x) + noise["eps"]).square().mean()
        loss.backward()
        opt.step()
        return {"loss": loss, "out": lin(x).sum()}

    step = CapturedStep(step_fn, torch.zeros(4, 3), {"eps": torch.zeros(4, 2)}, list(lin.parameters()), [opt],
                        capture=False)
    ref_opt = make_adam(list(twin.parameters()), 0.1)
    for _ in range(3):
        x, eps = torch.randn(4, 3), torch.randn(4, 2)
        logs = step(x, {"eps": eps})
        ref_opt.zero_grad()
        ref = (twin(x) + eps).square().mean()
        ref.backward()
        ref_opt.step()
        assert torch.equal(logs["loss"], ref.detach()) and "out" in logs
    assert torch.equal(lin.weight, twin.weight)


def test_speed_flag_validation():
    with pytest.raises(DisentkitError, match="--precision"):
        TrainConfig(precision="fp8").validate()
    with pytest.raises(DisentkitError, match="--compile"):
        TrainConfig(compile="fastest").validate()
    with pytest.raises(DisentkitError, match="exclude each other"):
        TrainConfig(compile="default", cuda_graphs=True).validate()
    assert TrainConfig(compile=True).validate().compile == "default"


@pytest.mark.slow
def test_compiled_step_trains_alike(reference, tmp_path):
    """torch.compile of the loss (forward and backward through AOTAutograd) on the CPU."""
    run = fit(TrainConfig(out=str(tmp_path / "k"), compile="default", **BASE))
    assert _losses(run) == pytest.approx(_losses(reference), rel=1e-3)


def test_cpu_process_setup_keeps_heap_and_deterministic_without_nan_fill(tmp_path, monkeypatch):
    """What `disentkit train` does to a CPU process: glibc keeps freed memory (Linux); while a run trains,
    deterministic algorithms are on without NaN-filling new tensors, and both are restored afterwards;
    Adam runs its foreach kernels."""
    import platform

    from disentkit.train import session
    from disentkit.train.run import keep_freed_memory, setup_process

    setup_process(1)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert keep_freed_memory() is True
    seen = {}
    real_step = session.Session.step

    def spy(self, batch, noise):
        seen["deterministic"] = torch.are_deterministic_algorithms_enabled()
        seen["fill"] = torch.utils.deterministic.fill_uninitialized_memory
        return real_step(self, batch, noise)

    monkeypatch.setattr(session.Session, "step", spy)
    before = torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory
    fit(TrainConfig(out=str(tmp_path / "r"), **{**BASE, "steps": 1}))
    assert seen == {"deterministic": True, "fill": False}
    assert (torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory) == before
    opt = make_adam([torch.nn.Parameter(torch.zeros(3))], 1e-3)
    assert opt.defaults["foreach"] is True and not opt.defaults["fused"]
