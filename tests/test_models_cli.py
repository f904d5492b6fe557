"""Every method trains from the command line and from its YAML example, and shows in --help."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from disentkit.cli import main
from disentkit.models import OBJECTIVES
from disentkit.train import TrainConfig, load_checkpoint
from disentkit.train.config import load_yaml

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "disentkit" / "configs" / "models"
MODELS = ["beta_vae", "factor_vae", "lambda_beta_vae", "annealed_vae", "beta_tcvae", "dip_vae_i", "dip_vae_ii",
          "learnable_beta_vae", "adaptive_beta_vae", "hfs_vae", "hfs_tcvae", "ada_gvae", "ada_ml_vae",
          "pairwise_adaptive_vae"]
QUICK = ["--steps", "2", "--batch-size", "4", "--threads", "1", "--log-every", "1", "--no-progress"]


def test_help_lists_every_model_and_its_flags(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())      # argparse wraps lines
    for name in MODELS:
        assert name in text
        for p in OBJECTIVES[name].hparams:
            assert p.flag in text, p.flag
    assert "annealed_vae 1000.0, factor_vae 10.0" in text    # a shared flag shows each model's default


@pytest.mark.parametrize("name", MODELS)
def test_every_method_has_a_valid_yaml_example(name):
    data = load_yaml(CONFIGS / f"{name}.yaml")
    assert data["model"] == name
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    declared = {p.name for p in OBJECTIVES[name].hparams}
    assert set(data) <= fields | declared, set(data) - fields - declared   # no key silently ignored
    cfg = TrainConfig.from_dict(data).validate()
    assert set(cfg.hparams) == declared


@pytest.mark.parametrize("name", [m for m in MODELS if m != "beta_vae"])
def test_every_method_trains_from_cli_flags(name, tmp_path):
    extra = {"factor_vae": ["--gamma", "5", "--disc-hidden", "32"], "annealed_vae": ["--c-max", "5"],
             "dip_vae_i": ["--lambda-od", "2"], "lambda_beta_vae": ["--lam", "2"],
             "learnable_beta_vae": ["--beta-init", "2"], "adaptive_beta_vae": ["--kappa", "0.5"],
             "beta_tcvae": ["--estimator", "mss"], "dip_vae_ii": [], "hfs_vae": ["--gamma", "3"],
             "hfs_tcvae": ["--num-latent-pairs", "2"], "ada_gvae": ["--k", "2"], "ada_ml_vae": ["--k", "1"],
             "pairwise_adaptive_vae": ["--kappa", "0.5"]}[name]
    out = tmp_path / name
    assert main(["train", "--model", name, *extra, "--out", str(out), *QUICK]) == 0
    ck = load_checkpoint(out)
    assert ck.config["model"] == name and ck.meta["step"] == "2"
    if extra:
        key = extra[0][2:].replace("-", "_")
        assert str(ck.config["hparams"][key]) in (extra[1], f"{extra[1]}.0")


@pytest.mark.parametrize("name", ["factor_vae", "adaptive_beta_vae"])
def test_trains_from_yaml_with_flag_overrides(name, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--config", str(CONFIGS / f"{name}.yaml"), "--out", str(out), *QUICK]
    if name == "factor_vae":
        args += ["--disc-hidden", "32", "--gamma", "20"]
    assert main(args) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"] == name and saved["steps"] == 2
    if name == "factor_vae":
        assert saved["hparams"]["gamma"] == 20.0 and saved["hparams"]["permutation"] == "same_batch"
    else:
        assert saved["hparams"]["beta_warmup"] == 1000 and saved["hparams"]["beta"] == 4.0
    state = load_checkpoint(out).state
    prefix = "objective.discriminator." if name == "factor_vae" else "objective.betas"
    assert any(k.startswith(prefix) for k in state)


@pytest.mark.parametrize("args, needle", [
    (["--model", "factor_vae", "--permutation", "shuffled"], "--permutation must be one of same_batch, second_batch"),
    (["--model", "beta_tcvae", "--estimator", "exact"], "--estimator must be one of mws, mss"),
    (["--model", "annealed_vae", "--c-max", "-1"], "--c-max must be ≥ 0"),
    (["--model", "dip_vae_i", "--lambda-od", "-2"], "--lambda-od must be ≥ 0"),
])
def test_bad_hyperparameters_are_one_line_errors(args, needle, tmp_path, capsys):
    assert main(["train", *args, "--out", str(tmp_path / "r"), *QUICK]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_factor_vae_second_batch_permutation_trains(tmp_path):
    """The paper's variant: half of each batch trains the VAE, the other half feeds q̄(z) to D."""
    out = tmp_path / "fv2"
    assert main(["train", "--model", "factor_vae", "--permutation", "second_batch", "--disc-hidden", "32",
                 "--out", str(out), *QUICK]) == 0
    ck = load_checkpoint(out)
    assert ck.config["hparams"]["permutation"] == "second_batch" and ck.meta["step"] == "2"
