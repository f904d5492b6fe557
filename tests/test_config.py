"""Configs that round-trip: a run's config.yaml reproduces the run; values convert by their declared types;
a wrong type, an unknown key or another model's flag is one line and exit status 2, in train and sweep."""

from __future__ import annotations

import pytest
import torch
import yaml
from safetensors.torch import load_file

from disentkit.cli import main
from disentkit.errors import DisentkitError
from disentkit.train import TrainConfig, fit


def test_config_yaml_reproduces_the_run(tmp_path):
    first = fit(TrainConfig(model="factor_vae", steps=5, batch_size=8, latent_dim=3, seed=4, lr=1e-3, threads=1,
                            progress=False, log_every=1, out=str(tmp_path / "a"), split=[0.9, 0.1, 0.0], val_every=2,
                            val_batches=1, hparams={"gamma": 20.0, "disc_hidden": 16, "disc_layers": 1}))
    assert main(["train", "--config", str(first / "config.yaml"), "--out", str(tmp_path / "b")]) == 0
    a, b = load_file(first / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    saved = yaml.safe_load((first / "config.yaml").read_text())
    assert saved["hparams"]["gamma"] == 20.0 and saved["split"] == [0.9, 0.1, 0.0]
    assert TrainConfig.from_dict(saved) == TrainConfig.from_dict(yaml.safe_load(TrainConfig.from_dict(saved).to_yaml()))


def test_an_ensemble_members_config_reproduces_it_as_a_single_run(tmp_path):
    ens = fit(TrainConfig(steps=3, batch_size=8, latent_dim=2, threads=1, progress=False, out=str(tmp_path / "e"),
                          ensemble=["seed=1,2"], hparams={"beta": 2.0}))
    member = ens / "m01-seed2"
    assert main(["train", "--config", str(member / "config.yaml"), "--out", str(tmp_path / "s")]) == 0
    a, b = load_file(member / "model.safetensors"), load_file(tmp_path / "s" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-7)
    assert main(["train", "--config", str(ens / "config.yaml"), "--out", str(tmp_path / "e2")]) == 0   # the ensemble's own
    assert (tmp_path / "e2" / "m01-seed2" / "model.safetensors").is_file()


@pytest.mark.parametrize("value", ["1e-4", 1e-4, "0.0001", 0.0001])
def test_values_convert_by_declared_type(value):
    cfg = TrainConfig.from_dict({"lr": value, "steps": "1e4", "epochs": 2.0, "channels_last": "true",
                                 "split": "0.8,0.1,0.1", "beta": "4"}).validate()
    assert cfg.lr == pytest.approx(1e-4) and isinstance(cfg.lr, float)
    assert cfg.steps == 10_000 and isinstance(cfg.steps, int) and cfg.epochs == 2
    assert cfg.channels_last is True and cfg.split == [0.8, 0.1, 0.1] and cfg.hparams == {"beta": 4.0}


def test_old_config_files_with_recorded_dataset_facts_still_load():
    """Before the one-engine change a run's config.yaml also held channels, factor_names and num_images."""
    cfg = TrainConfig.from_dict({"model": "beta_vae", "channels": 1, "factor_names": ["a"], "num_images": 10,
                                 "hparams": {"beta": 2}}).validate()
    assert cfg.hparams == {"beta": 2.0}


@pytest.mark.parametrize("yaml_text, needle", [
    ("steps: many\n", "--steps (steps) expects an integer, got 'many'"),
    ("lr: [1, 2]\n", "--lr (lr) expects a number, got [1, 2]"),
    ("steps: 2.5\n", "--steps (steps) expects an integer, got 2.5"),
    ("channels_last: maybe\n", "--channels-last (channels_last) expects true or false"),
    ("betta: 4\n", "--betta (betta) is neither a `disentkit train` option nor a hyperparameter of any model; "
                   "beta_vae takes: --beta"),
    ("gamma: 20\n", "--gamma (gamma) is a hyperparameter of"),
    ("model: factor_vae\nbeta: 2\n", "not of factor_vae; factor_vae takes: --gamma, --permutation, --disc-lr"),
    ("beta: four\n", "--beta (beta) expects a number, got 'four'"),
    ("split: 0.5,0.6,0.1\n", "--split needs three fractions"),
    ("early_stopping_patience: 3\n", "--early-stopping-patience needs a validation split"),
])
def test_bad_config_values_are_one_line_exit_2(tmp_path, capsys, yaml_text, needle):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_another_models_flag_is_refused_in_train_and_sweep(tmp_path, capsys):
    assert main(["train", "--model", "beta_vae", "--gamma", "20", "--out", str(tmp_path / "r")]) == 2
    train_err = capsys.readouterr().err
    assert "--gamma (gamma) is a hyperparameter of" in train_err and "beta_vae takes: --beta" in train_err
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\nstages:\n  - model: beta_vae\n    grid: {gamma: [20]}\n")
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "sw")]) == 2
    sweep_err = capsys.readouterr().err
    assert "gamma" in sweep_err and "beta_vae" in sweep_err and len(sweep_err.strip().splitlines()) == 1


@pytest.mark.parametrize("defaults, needle", [("{steps: many}", "--steps (steps) expects an integer, got 'many'"),
                                              ("{lr: fast}", "--lr (lr) expects a number, got 'fast'"),
                                              ("{betta: 2}", "'betta' is neither a `disentkit train` option")])
def test_a_sweep_reports_a_wrong_type_or_unknown_key_in_one_line(tmp_path, capsys, defaults, needle):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"name: s\ndefaults: {defaults}\nstages:\n  - model: beta_vae\n")
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "sw")]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "sw").exists()


def test_print_config_prints_the_merged_config_and_trains_nothing(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: beta_tcvae\nlr: 1e-4\nsteps: 10\n")
    out = tmp_path / "r"
    assert main(["train", "--config", str(cfg), "--steps", "20", "--out", str(out), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"] == "beta_tcvae" and printed["steps"] == 20 and printed["lr"] == 1e-4
    assert printed["hparams"] == {"beta": 6.0, "estimator": "mws"} and not out.exists()
    assert TrainConfig.from_dict(printed).validate() == TrainConfig.from_dict(printed)


def test_help_comes_from_the_config_fields(capsys):
    import dataclasses

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(TrainConfig):
        if f.metadata.get("cli", True):
            assert "--" + f.name.replace("_", "-") in out
            assert " ".join(f.metadata["help"].split()[:3]) in out, f.name
    for flag in ("--resume", "--print-config", "--no-progress", "--channels-last", "--gamma"):
        assert flag in out


def test_validation_errors_of_python_configs():
    with pytest.raises(DisentkitError, match="--subsample must be ≥ 0"):
        TrainConfig(subsample=-1).validate()
    with pytest.raises(DisentkitError, match="exclude each other"):
        TrainConfig(split=[0.8, 0.1, 0.1], val_fraction=0.1).validate()
    with pytest.raises(DisentkitError, match="cannot capture 16-mixed"):
        TrainConfig(cuda_graphs=True, precision="16-mixed").validate()
    with pytest.raises(DisentkitError, match="--conv-impl must be one of auto, torch"):
        TrainConfig(conv_impl="fast").validate()
