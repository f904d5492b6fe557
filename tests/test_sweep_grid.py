"""Sweep configs -> runs: grid products, chained stages, stable ids, --steps scaling, lazy validation."""

from pathlib import Path

import pytest
import yaml

from disentkit.errors import DisentkitError
from disentkit.sweep import expand, load_sweep, validate_runs
from disentkit.sweep.folders import prepare_sweep_dir

REPO = Path(__file__).resolve().parents[1]
SWEEPS = sorted((REPO / "src" / "disentkit" / "configs" / "sweeps").glob("*.yaml"))

CHAINED = {
    "name": "chain",
    "defaults": {"steps": 300, "batch_size": 8, "lr": "1e-3"},
    "seeds": [0, 1],
    "datasets": ["dsprites_procedural"],
    "metrics": {"mig": {"num_train": 500}},
    "stages": [
        {"name": "b", "model": "beta_vae", "grid": {"beta": [1, 8], "latent_dim": [4, 6]}},
        {"name": "c", "model": "beta_vae", "init_from": "b", "steps": 100, "grid": {"lr": [1e-4, 2e-4]}},
    ],
}


def test_grid_product_seeds_and_chained_children():
    sw = expand(CHAINED)
    first = [r for r in sw.runs if r.stage == "b"]
    second = [r for r in sw.runs if r.stage == "c"]
    assert len(first) == 2 * 2 * 2 and len(second) == len(first) * 2
    assert {(r.hparams["beta"], r.train["latent_dim"], r.seed) for r in first} == {
        (b, d, s) for b in (1.0, 8.0) for d in (4, 6) for s in (0, 1)}
    assert first[0].train["lr"] == 1e-3 and isinstance(first[0].train["lr"], float)   # YAML's '1e-3' string
    by_id = {r.run_id: r for r in sw.runs}
    for child in second:
        parent = by_id[child.parent]
        # a child starts from the parent with the same dataset and seed, and inherits its settings
        assert (parent.stage, parent.dataset, parent.seed) == ("b", child.dataset, child.seed)
        assert child.train["hparams"]["beta"] == parent.train["hparams"]["beta"]
        assert child.train["latent_dim"] == parent.train["latent_dim"] and child.train["steps"] == 100
        assert child.hparams["beta"] == parent.hparams["beta"]            # shown: inherited β, then own grid
    assert [r.stage for r in sw.runs].index("c") > max(i for i, r in enumerate(sw.runs) if r.stage == "b")
    # seeds of one configuration share a group; different configurations do not
    groups = {}
    for r in first:
        groups.setdefault(r.group, set()).add(r.seed)
    assert len(groups) == 4 and all(s == {0, 1} for s in groups.values())


def test_ids_are_stable_and_follow_the_config():
    a, b = expand(CHAINED), expand(CHAINED)
    assert [r.run_id for r in a.runs] == [r.run_id for r in b.runs] and a.config_hash == b.config_hash
    assert len({r.run_id for r in a.runs}) == len(a.runs)
    changed = expand({**CHAINED, "defaults": {**CHAINED["defaults"], "batch_size": 16}})
    assert not {r.run_id for r in a.runs} & {r.run_id for r in changed.runs}
    # 4, 4.0 and '4' are one value; execution settings (threads, device) do not change ids
    same = expand({**CHAINED, "defaults": {**CHAINED["defaults"], "threads": 1, "device": "cpu"}})
    assert [r.run_id for r in same.runs] == [r.run_id for r in a.runs]
    one = expand({"name": "x", "model": "beta_vae", "grid": {"beta": [4]}})
    two = expand({"name": "x", "model": "beta_vae", "grid": {"beta": ["4.0"]}})
    assert one.runs[0].run_id == two.runs[0].run_id
    # a child's id depends on its parent's: changing the first stage changes every child
    other = expand({**CHAINED, "stages": [{**CHAINED["stages"][0], "lr": 3e-4}, CHAINED["stages"][1]]})
    assert not {r.run_id for r in a.runs if r.stage == "c"} & {r.run_id for r in other.runs if r.stage == "c"}


def test_steps_override_scales_stages_together():
    sw = expand(CHAINED, steps=30)
    assert {r.train["steps"] for r in sw.runs if r.stage == "b"} == {30}
    assert {r.train["steps"] for r in sw.runs if r.stage == "c"} == {10}
    assert expand(CHAINED, seeds=[5]).runs[0].seed == 5
    assert len(expand(CHAINED, seeds=[5]).runs) == 12


def test_lazy_validation_names_the_unknown_entries():
    sw = expand({"name": "z", "stages": [{"model": "no_such_model", "grid": {"gamma": [1, 2]}}],
                 "datasets": ["no_such_data"], "metrics": ["mig", "no_such_metric"]})
    assert len(sw.runs) == 2                                  # expanding does not need the registries
    with pytest.raises(DisentkitError) as e:
        validate_runs(sw.runs)
    for needle in ("no_such_model", "no_such_data", "no_such_metric", "registered"):
        assert needle in str(e.value)


@pytest.mark.parametrize("raw, needle", [
    ({"model": "beta_vae", "grid": {"betta": [1, 2]}}, "'betta' is neither"),
    ({"model": "beta_vae", "grid": {"beta": [-1]}}, "--beta must be ≥ 0"),
    ({"model": "beta_vae", "metrics": {"mig": {"num_trian": 10}}}, "has no parameter.s. num_trian"),
])
def test_validation_catches_typos_before_training(raw, needle):
    with pytest.raises(DisentkitError, match=needle):
        validate_runs(expand({"name": "t", **raw}).runs)


@pytest.mark.parametrize("raw, needle", [
    ({"stages": [{"model": "beta_vae", "init_from": "nope"}]}, "not an earlier stage"),
    ({"stages": [{"model": "beta_vae"}, {"model": "beta_vae"}]}, "two stages are named"),
    ({"model": "beta_vae", "grid": {"beta": []}}, "empty list"),
    ({"model": "beta_vae", "grid": [{"beta": 1}, {"beta": 1}]}, "repeat"),
    ({"model": "beta_vae", "stepz": 3}, "unknown key"),
    ({"model": "beta_vae", "seeds": "a..b"}, "range"),
    ({}, "'stages'"),
])
def test_bad_sweep_configs(raw, needle):
    with pytest.raises(DisentkitError, match=needle):
        expand({"name": "t", **raw})


def test_folder_refuses_another_config(tmp_path):
    a = expand(CHAINED)
    prepare_sweep_dir(a, tmp_path / "s")
    prepare_sweep_dir(a, tmp_path / "s")                     # the same sweep again: fine (resume)
    with pytest.raises(DisentkitError, match="another configuration"):
        prepare_sweep_dir(expand(CHAINED, steps=10), tmp_path / "s")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("mine")
    with pytest.raises(DisentkitError, match="not a sweep folder"):
        prepare_sweep_dir(a, tmp_path / "other")


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_every_ready_made_config_expands(path):
    """Each config in src/disentkit/configs/sweeps/ loads and expands; names not registered yet are listed, not fatal."""
    from disentkit.data import DATASETS
    from disentkit.metrics import METRICS
    from disentkit.models import OBJECTIVES

    raw = yaml.safe_load(path.read_text())
    assert raw.get("description"), f"{path.name} needs a description"
    sw = load_sweep(path, steps=20)
    assert sw.runs and all(r.train["steps"] <= 20 for r in sw.runs)
    from disentkit.data import split_variants

    missing = ({r.model for r in sw.runs} - set(OBJECTIVES)) \
        | ({split_variants(r.dataset)[0] for r in sw.runs} - set(DATASETS)) \
        | ({m for r in sw.runs for m in r.metrics} - set(METRICS))
    if missing:
        with pytest.raises(DisentkitError, match="unknown"):
            validate_runs(sw.runs)
        pytest.skip(f"{path.name}: not registered yet on this branch: {', '.join(sorted(missing))}")
    validate_runs(sw.runs)


def test_reference_grids():
    e1 = load_sweep(REPO / "src/disentkit/configs/sweeps/e1_beta_vs_factor_vae.yaml")
    assert sorted({r.hparams["beta"] for r in e1.runs if r.stage == "beta_vae"}) == [1, 2, 4, 8, 16, 32, 64]
    assert sorted({r.hparams["gamma"] for r in e1.runs if r.stage == "factor_vae"}) == [1, 2, 4, 8, 16, 32, 64]
    e2 = load_sweep(REPO / "src/disentkit/configs/sweeps/e2_lambda_beta_vae.yaml")
    lam = [r for r in e2.runs if r.stage == "lambda_beta_vae"]
    assert len(lam) == 5 * 5 * 10 * 2 and {r.train["steps"] for r in lam} == {50000}
    assert {tuple(sorted(r.hparams)) for r in lam} == {("beta", "lam")}
    study = load_sweep(REPO / "src/disentkit/configs/sweeps/locatello_study.yaml")
    assert len(study.runs) == 6 * 6 * 50
    dip1 = [r for r in study.runs if r.stage == "dip_vae_i"]
    assert sorted(r.hparams["lambda_od"] for r in dip1 if r.seed == 0) == [1, 2, 5, 10, 20, 50]
    assert all(r.train["hparams"]["lambda_d_factor"] == 10 for r in dip1)            # λ_d = 10·λ_od
    dip2 = [r for r in study.runs if r.stage == "dip_vae_ii"]
    assert all(r.train["hparams"]["lambda_d_factor"] == 1 for r in dip2)             # λ_d = λ_od


def test_the_correlated_benchmark_and_its_laptop_scaling():
    sw = load_sweep(REPO / "src/disentkit/configs/sweeps/correlated.yaml")
    assert len(sw.runs) == 7 * 5 * 5 and {r.train["steps"] for r in sw.runs} == {300000}
    assert {r.model for r in sw.runs} == {"beta_vae", "factor_vae", "beta_tcvae", "hfs_vae", "adaptive_beta_vae",
                                          "pairwise_adaptive_vae", "ada_gvae"}
    assert sorted({r.dataset for r in sw.runs})[-1] == "dsprites_procedural:holes(recombination_to_range)"
    cpu = load_sweep(REPO / "src/disentkit/configs/sweeps/correlated.yaml", steps=1000, seeds=[0],
                     metric_params={"dci": {"num_train": 2000, "num_test": 1000}})
    assert len(cpu.runs) == 35 and {r.train["steps"] for r in cpu.runs} == {1000}
    assert all(r.metrics["dci"] == {"num_train": 2000, "num_test": 1000} and r.metrics["mig"] == {} for r in cpu.runs)
    with pytest.raises(DisentkitError, match="'sap' is not one of this sweep's metrics \\(mig, dci, recombination\\)"):
        load_sweep(REPO / "src/disentkit/configs/sweeps/correlated.yaml", metric_params={"sap": {"num_train": 10}})


def test_dataset_lists_keep_commas_inside_variants():
    from disentkit.sweep.cli import split_top_level

    assert split_top_level("dsprites_procedural, dsprites_procedural:corr(posX,posY,0.2),shapes3d_procedural") == [
        "dsprites_procedural", "dsprites_procedural:corr(posX,posY,0.2)", "shapes3d_procedural"]


def test_eta_fits_fixed_and_per_step_cost():
    import time

    from disentkit.sweep.progress import Progress, _fit_cost

    assert _fit_cost([(100, 110.0), (25, 35.0)]) == pytest.approx((10.0, 1.0))
    assert _fit_cost([(100, 50.0), (100, 70.0)]) == pytest.approx((0.0, 0.6))
    p = Progress(4, workers=2, printer=lambda s: None, steps={"a": 100, "b": 25, "c": 100, "d": 25})
    assert p.eta() == "?"
    p.durations.update(a=110.0, b=35.0)
    p.finished.update({"a", "b"})
    p.running["c"] = time.time() - 10          # 100 s left of c, 35 s of d, on 2 workers
    assert p.eta() in ("1m07s", "1m08s")
    p.finished.update({"c", "d"})
    assert p.eta() == "0s"


@pytest.mark.parametrize("args, needle", [
    (["sweep", "/nonexistent.yaml"], "sweep config '/nonexistent.yaml' not found"),
    (["sweep", "{cfg}", "--set", "batch_size"], "--set expects KEY=VALUE"),
    (["sweep", "{cfg}", "--datasets", "nope_data"], "unknown dataset(s) nope_data"),
    (["aggregate", "/nonexistent_sweep"], "not a sweep folder"),
    (["report"], "needs --checkpoint RUN"),
])
def test_cli_errors_are_one_line(args, needle, tmp_path, capsys):
    from disentkit.cli import main

    cfg = tmp_path / "s.yaml"
    cfg.write_text("name: s\nmodel: beta_vae\ngrid: {beta: [1, 2]}\n")
    assert main([a.format(cfg=cfg) for a in args]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_cli_dry_run_lists_runs(tmp_path, capsys):
    from disentkit.cli import main

    assert main(["sweep", str(REPO / "src/disentkit/configs/sweeps/quick.yaml"), "--steps", "40", "--seeds", "3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "9 runs" in out and "steps=40" in out and "steps=10" in out and "-s3-" in out


def test_aggregate_reads_every_logged_term_and_held_out_losses(tmp_path):
    """λβ-VAE's `mse` (any logged term) becomes a column, kl_dim/* does not; val/test losses and the NLL over
    the last 5,000 steps are read where the run has them."""
    import json as _json

    from disentkit.sweep.aggregate import held_out_values, logged_terms, read_log

    (tmp_path / "csv").mkdir()
    lines = ["step,train/loss,train/reconstruction,train/mse,train/kl_dim/0,val/loss"]
    lines += [f"{s},{10 + s},{s},{2 * s},1," for s in range(0, 8000, 1000)] + ["7999,,,,,5.5"]
    (tmp_path / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "test_losses.json").write_text(_json.dumps({"test": {"loss": 4.25}}))
    log = read_log(tmp_path)
    assert logged_terms(log) == ["loss", "reconstruction", "mse"]
    held = held_out_values(tmp_path, log)
    assert held == {"val_loss": 5.5, "test_loss": 4.25, "nll_last5k": (3000 + 4000 + 5000 + 6000 + 7000) / 5}
