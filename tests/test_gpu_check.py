"""The GPU check and the reproduction script run their logic on a CPU: every row of ``benchmarks/gpu_check.py``
(``--device cpu --quick``; the CPU compared with itself, ``--cuda-graphs`` uncaptured, the vmap ensemble against
the member loop) and ``benchmarks/reproduce.py --quick``. What they measure on a GPU is in docs/benchmarks.md."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import gpu_check  # noqa: E402
import gpu_speed  # noqa: E402
import reproduce  # noqa: E402

from disentkit.models import OBJECTIVES  # noqa: E402
from disentkit.train import TrainConfig  # noqa: E402


@pytest.mark.slow
def test_gpu_check_passes_on_the_cpu(capsys):
    assert gpu_check.main(["--device", "cpu", "--quick", "--skip", "compile"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("## gpu_check"):]
    for model in OBJECTIVES:
        assert f"| fp32 | {model} eager | PASS |" in table and f"| fp32 | {model} --cuda-graphs | PASS |" in table
    for row in ("beta_vae vmap ensemble M=4 vs CPU loop", "factor_vae vmap ensemble M=4 --cuda-graphs",
                "factor_vae killed after its checkpoint, resumed", "real-format dsprites file:corr(posX,posY,0.4)",
                "--metrics all on the device vs the CPU"):
        assert f"| {row} | PASS |" in table
    assert "| speed | beta_vae ensemble M=2 |  |" in table and "steps/s" in table and "| FAIL |" not in table


def test_a_crashing_row_is_a_fail_not_a_crash(capsys):
    check = gpu_check.Check(gpu_check.torch.device("cpu"), quick=True)
    check.run("x", "raises", lambda: 1 / 0)
    check.run("x", "passes", lambda: (True, "fine"))
    assert [r.ok for r in check.rows] == [False, True] and "ZeroDivisionError" in check.rows[0].detail


def test_a_device_run_that_drifts_fails_the_comparison():
    cfgs = [gpu_check.member_cfg("beta_vae")]
    batches, noises = gpu_check.inputs(cfgs, 2, 8)
    ref = gpu_check.train_steps(cfgs, gpu_check.torch.device("cpu"), batches, noises)
    shifted = [{k: v + 0.5 for k, v in n.items()} for n in noises]        # other noise: another run
    other = gpu_check.train_steps(cfgs, gpu_check.torch.device("cpu"), batches, shifted)
    assert gpu_check.compare(ref, ref, gpu_check.FP32_TOL)[0] is True
    assert gpu_check.compare(ref, other, 1e-6, 1e-9)[0] is False


def test_the_activation_traffic_bound_of_the_locatello_vae():
    """100,884 floats an image (input, 4 convolutions, 4 linear layers, 4 transposed convolutions): on an H200's
    4.8 TB/s, ≈ 3.0M training images/s at 4 passes over the fp32 activations."""
    cfg = {**TrainConfig().validate().to_dict(), "channels": 1}
    assert gpu_speed.activation_elements(cfg) == 100_884
    assert gpu_speed.traffic_bound("NVIDIA H200", cfg) == pytest.approx(4.8e12 / (100_884 * 16))
    assert gpu_speed.traffic_bound("some other GPU", cfg) is None


@pytest.mark.slow
def test_reproduce_writes_its_table(tmp_path, capsys):
    doc = tmp_path / "reproductions.md"
    assert reproduce.main(["--device", "cpu", "--quick", "--out", str(tmp_path / "runs"), "--doc", str(doc),
                           "--threads", "2"]) == 0
    text = doc.read_text()
    assert text.startswith("# Reproductions") and "20 steps, batch 64" in text and "below the protocol" in text
    rows = [line for line in text.splitlines() if line.startswith("| beta_vae |")]
    assert [r.split(" | ")[1] for r in rows] == ["beta = 1", "beta = 4"]
    assert all(r.split(" | ")[2] == "2" for r in rows)                          # two seeds a setting
    cells = rows[0].split(" | ")[3:3 + len(reproduce.HEADLINES)]
    assert all(c.count("[") == 1 for c in cells)                                 # median [min, max] per metric
