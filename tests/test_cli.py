"""The command line: errors are one line with exit 2; train -> evaluate -> report end to end."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from disentkit.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "disentkit.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("args, needle", [
    (["train", "--model", "nope"], "unknown model 'nope'"),
    (["train", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["train", "--beta", "-1"], "--beta must be ≥ 0"),
    (["train", "--latent-dim", "0"], "--latent-dim must be in 1..4096"),
    (["train", "--config", "/nonexistent.yaml"], "config '/nonexistent.yaml' not found: not a file"),
    (["evaluate", "--checkpoint", "/nonexistent.safetensors"], "checkpoint not found"),
    (["evaluate", "--checkpoint", "/nonexistent_dir/"], "checkpoint not found"),
    (["evaluate", "--checkpoint", "x", "--metrics", "bogus"], "unknown metric"),
])
def test_bad_input_gives_one_line_and_exit_2(args, needle, tmp_path, capsys):
    code = main([*args, *(["--out", str(tmp_path / "r")] if args[0] == "train" else [])])
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_real_process_exit_status_and_no_traceback(tmp_path):
    res = run_cli("train", "--beta", "-1", "--out", str(tmp_path / "r"))
    assert res.returncode == 2
    assert "--beta must be ≥ 0" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_wrong_file_as_checkpoint(tmp_path, capsys):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint at all")
    assert main(["evaluate", "--checkpoint", str(junk)]) == 2
    assert "not a readable safetensors checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_malformed_yaml_is_one_line_naming_where(command, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: beta_vae\nhparams: {beta: [4\n")
    args = ["train", "--config", str(bad), "--out", str(tmp_path / "r")] if command == "train" else ["sweep", str(bad)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"config file {bad} is not valid YAML at line 3" in err
    assert len(err.strip().splitlines()) == 1


def test_help_shows_defaults_only_where_there_is_one(capsys):
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in out and "(default: first-seed)" in out


def test_yaml_config_with_cli_override(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: beta_vae\nbeta: 2\nsteps: 4\nbatch_size: 8\nseed: 1\nthreads: 1\nlog_every: 2\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--beta", "3", "--out", str(out), "--no-progress"]) == 0
    saved = json.loads(json.dumps(__import__("yaml").safe_load((out / "config.yaml").read_text())))
    assert saved["hparams"]["beta"] == 3.0 and saved["steps"] == 4 and saved["batch_size"] == 8


def test_train_evaluate_report_end_to_end(tiny_run, capsys):
    assert main(["evaluate", "--checkpoint", str(tiny_run), "--baseline", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "mig" in printed and "untrained" in printed
    rec = json.loads((tiny_run / "metrics.json").read_text())
    assert 0 <= rec["results"]["mig"]["mig"] <= 1 and "mig" in rec["untrained"]
    assert rec["results"]["mig"]["params"]["num_train"] == 10_000
    assert main(["report", "--checkpoint", str(tiny_run)]) == 0
    assert Image.open(tiny_run / "reconstructions.png").size[0] > 8 * 64
    tr = Image.open(tiny_run / "traversals.png")
    assert tr.size[1] > 10 * 64                      # one row per latent
    gif = Image.open(tiny_run / "traversals.gif")
    assert gif.n_frames == 12                        # 7 of the 10 steps forward, 5 back (GIF_STEPS)
    html = (tiny_run / "report.html").read_text()
    assert "data:image/gif;base64" in html and "mig" in html and "value from −2 to +2" in html
    elsewhere = tiny_run.parent / "report_elsewhere"
    assert main(["report", "--checkpoint", str(tiny_run), "--out", str(elsewhere), "--limit", "3", "--steps", "4"]) == 0
    html = (elsewhere / "report.html").read_text()
    assert "value from −3 to +3" in html and "not evaluated yet" not in html  # the run's metrics.json, not --out's


def test_help_lists_models_and_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--model", "--beta", "--dataset", "--seed", "--steps", "--batch-size", "--lr", "--latent-dim",
                 "--val-fraction", "--config", "beta_vae"):
        assert flag in out


def test_evaluate_adds_up_one_evaluation_and_keeps_another_aside(tiny_run, tmp_path, capsys):
    """Metrics evaluated one at a time add up in metrics.json; a later evaluation of another kind (here
    another seed) starts a new record and keeps the earlier file, results intact, as metrics.previous.json."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("metrics*.json"))
    args = ["evaluate", "--checkpoint", str(run), "--threads", "1", "--set", "mig.num_train=2000"]
    assert main([*args, "--metrics", "mig"]) == 0
    assert main([*args, "--metrics", "irs", "--set", "irs.num_train=2000"]) == 0
    first = json.loads((run / "metrics.json").read_text())
    assert sorted(first["results"]) == ["irs", "mig"] and first["seed"] == 0
    assert len(first["checkpoint_sha256"]) == 64
    capsys.readouterr()
    assert main([*args, "--metrics", "mig", "--seed", "1"]) == 0
    assert "kept them as" in capsys.readouterr().err
    now = json.loads((run / "metrics.json").read_text())
    assert sorted(now["results"]) == ["mig"] and now["seed"] == 1
    assert json.loads((run / "metrics.previous.json").read_text()) == first


def test_same_evaluation_needs_the_same_checkpoint_bytes():
    from disentkit.metrics.record import same_evaluation

    ctx = dict(checkpoint="r/model.safetensors", checkpoint_sha256="a" * 64, model="beta_vae",
               dataset="dsprites_procedural", seed=0, representation="mean")
    assert same_evaluation(dict(ctx), ctx)
    assert not same_evaluation({**ctx, "checkpoint_sha256": "b" * 64}, ctx)   # retrained in place
    assert not same_evaluation({**ctx, "representation": "sampled"}, ctx)
    legacy = {k: v for k, v in ctx.items() if k != "checkpoint_sha256"}     # written before hashes were kept
    assert same_evaluation(legacy, ctx) and not same_evaluation({**legacy, "checkpoint": "other"}, ctx)


def test_version_flag_and_attribute():
    """``disentkit --version`` prints the installed version, the same as ``disentkit.__version__``."""
    import disentkit

    out = run_cli("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"disentkit {disentkit.__version__}"
    assert disentkit.__version__[0].isdigit() and disentkit.__doc__


def test_sweep_modules_import_without_fcntl(monkeypatch, tmp_path):
    """The sweep's file lock imports ``fcntl`` only when it locks, so ``disentkit.sweep`` imports where it
    does not exist (Windows); a second lock on the same folder is refused in one line."""
    import builtins
    import importlib

    import disentkit.sweep.folders as folders
    from disentkit.errors import DisentkitError

    real = builtins.__import__

    def no_fcntl(name, *args, **kwargs):
        if name == "fcntl":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_fcntl)
    monkeypatch.delitem(sys.modules, "fcntl", raising=False)
    importlib.reload(folders)  # no module-level fcntl
    monkeypatch.setattr(builtins, "__import__", real)
    importlib.reload(folders)
    with folders.sweep_lock(tmp_path):
        with pytest.raises(DisentkitError, match="another `disentkit sweep` is running"):
            with folders.sweep_lock(tmp_path):
                pass


def test_shipped_configs_resolve_by_name(tmp_path, capsys):
    """`--config demo`, a model's name and a clone's `configs/...` path all find the packaged YAML; a
    name that is none of them is one line listing the choices."""
    from disentkit.configs import HERE, bundled, resolve_config

    assert resolve_config("demo") == HERE / "demo.yaml" == resolve_config("configs/demo.yaml")
    assert resolve_config("factor_vae") == HERE / "models" / "factor_vae.yaml" == resolve_config("models/factor_vae")
    assert resolve_config("quick", "sweeps") == HERE / "sweeps" / "quick.yaml" == resolve_config(
        "configs/sweeps/quick.yaml", "sweeps")
    mine = tmp_path / "demo.yaml"
    mine.write_text("steps: 5\n")
    assert resolve_config(mine) == mine  # an existing file wins over a shipped name
    assert {"demo", "models/beta_vae", "sweeps/quick"} <= set(bundled()) and "quick" in bundled("sweeps")
    assert main(["train", "--config", "demo", "--steps", "7", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "model: beta_tcvae" in out and "steps: 7" in out
    assert main(["train", "--config", "nonesuch", "--print-config"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config 'nonesuch' not found" in err[0] and "demo" in err[0]
    assert main(["sweep", "quick", "--steps", "20", "--dry-run"]) == 0
    assert "runs (config hash" in capsys.readouterr().out


def test_top_level_help_is_fast_and_imports_no_torch():
    """`disentkit --help` and the other commands' help build no model registry (torch: ≈ 2 s)."""
    code = ("import sys\nfrom disentkit.cli import main\n"
            "for argv in (['--help'], ['evaluate', '--help'], ['sweep', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0\n"
            "assert 'torch' not in sys.modules, 'help imported torch'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "train     train one model" in out.stdout and "--json" in out.stdout and "quick" in out.stdout


def test_evaluate_json(tiny_run, capsys):
    assert main(["evaluate", "--checkpoint", str(tiny_run), "--metrics", "mig", "--set", "mig.num_train=500",
                 "--json", "--out", str(tiny_run / "m.json")]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["results"]["mig"]["params"]["num_train"] == 500
    assert record == json.loads((tiny_run / "m.json").read_text())
