"""The metrics API: determinism, shared evaluation, external encoders, parameters, CLI and callback."""

import json
import math

import numpy as np
import pytest
import torch
from disentkit.testing import IdentityDataset

from disentkit.cli import main
from disentkit.data import get_dataset
from disentkit.errors import DisentkitError
from disentkit.metrics import METRICS, SPECS, CodeSource, evaluate, factor_vae_score, mig, sap

SMALL = {"mig": dict(num_train=1000), "im": dict(num_train=1000), "sap": dict(num_train=500, num_test=200),
         "dci": dict(num_train=100, num_test=100, n_jobs=1, n_estimators=5), "irs": dict(num_train=1000),
         "factor_vae_score": dict(num_variance_estimate=500, num_train=100, num_eval=50),
         "beta_vae_score": dict(num_train=100, num_eval=50), "modularity": dict(num_train=500, num_test=200),
         "unsupervised": dict(num_train=1000)}


def noisy(x):
    v = x.flatten(1)
    return v + 0.7 * torch.randn(v.shape, generator=torch.Generator().manual_seed(int(v.sum()) + len(v)))


@pytest.fixture(scope="module")
def small_ds():
    return IdentityDataset(sizes=(3, 4, 5))


def test_every_metric_registered_with_headline_and_params(small_ds):
    assert set(METRICS) == set(SPECS) == {"mig", "im", "sap", "dci", "factor_vae_score", "beta_vae_score",
                                          "modularity", "irs", "unsupervised", "recombination", "downstream_task",
                                          "infomec", "dci_es", "chen_mig"}
    assert {m: METRICS[m].group for m in METRICS if METRICS[m].group != "all"} == {
        "recombination": "named", "downstream_task": "extended", "infomec": "extended", "dci_es": "extended",
        "chen_mig": "extended"}     # recombination needs holes
    res = evaluate(noisy, small_ds, "all", seed=1, params=SMALL)
    for name, out in res.items():
        assert isinstance(out[name], float), name
        assert out["params"]["seed"] == 1 and all(k in out["params"] for k in SMALL[name] if k != "n_jobs")
        json.dumps(out)  # JSON-serializable


def test_same_seed_same_value_and_seed_matters(small_ds):
    a = evaluate(noisy, small_ds, "all", seed=5, params=SMALL)
    b = evaluate(noisy, small_ds, "all", seed=5, params=SMALL)
    assert a == b
    c = factor_vae_score(noisy, small_ds, seed=6, **SMALL["factor_vae_score"])
    assert c["train_votes"] != a["factor_vae_score"]["train_votes"]


def test_shared_evaluation_equals_separate_calls(small_ds):
    shared = evaluate(noisy, small_ds, ["mig", "sap", "factor_vae_score"], seed=2, params=SMALL)
    assert shared["mig"] == mig(noisy, small_ds, seed=2, **SMALL["mig"])
    assert shared["sap"] == sap(noisy, small_ds, seed=2, **SMALL["sap"])
    assert shared["factor_vae_score"] == factor_vae_score(noisy, small_ds, seed=2, **SMALL["factor_vae_score"])


def test_each_distinct_image_is_encoded_once(small_ds):
    calls = []

    def enc(x):
        calls.append(len(x))
        return x.flatten(1)

    source = CodeSource(enc, small_ds)
    from disentkit.metrics.utils import run_metrics
    run_metrics([SPECS["factor_vae_score"], SPECS["beta_vae_score"]], enc, small_ds, 0,
                {"factor_vae_score": SMALL["factor_vae_score"], "beta_vae_score": SMALL["beta_vae_score"]}, source)
    assert sum(calls) == source.num_encoded <= small_ds.num_images == 60


def test_external_plain_function_on_dsprites():
    """Any function images -> codes is an encoder (here: the sprite's centre of mass and its size)."""
    ds = get_dataset("dsprites_procedural")
    grid = torch.linspace(0, 1, 64)

    def encode(x):
        m = x[:, 0].sum((1, 2)).clamp_min(1)
        cx = (x[:, 0].sum(1) * grid).sum(1) / m
        cy = (x[:, 0].sum(2) * grid).sum(1) / m
        return np.stack([cx.numpy(), cy.numpy(), m.numpy()], 1)  # numpy output is accepted too

    res = evaluate(encode, ds, "mig,irs", seed=0, params={"mig": {"num_train": 2000}, "irs": {"num_train": 2000}})
    per = res["mig"]["mig_per_factor"]
    assert per["posX"] > 0.5 and per["posY"] > 0.5 and per["scale"] > 0.05
    assert 0 < res["irs"]["irs"] <= 1


def test_bad_parameters_are_clear_errors(small_ds):
    with pytest.raises(DisentkitError, match="no parameter"):
        mig(noisy, small_ds, num_trian=10)
    with pytest.raises(DisentkitError, match="num_train must be an integer"):
        sap(noisy, small_ds, num_train=0)
    with pytest.raises(DisentkitError, match="unknown metric"):
        evaluate(noisy, small_ds, "mig,nope")


def test_cli_evaluate_all(tiny_run, capsys, tmp_path):
    tiny = {**SMALL, "factor_vae_score": dict(num_variance_estimate=200, num_train=10, num_eval=5),
            "beta_vae_score": dict(num_train=10, num_eval=5)}  # each group is 64 images: keep them few
    sets = [f"{m}.{k}={v}" for m, kw in tiny.items() for k, v in kw.items()]
    out = tmp_path / "m.json"
    args = ["evaluate", "--checkpoint", str(tiny_run), "--metrics", "all", "--threads", "1", "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    printed = capsys.readouterr().out
    rec = json.loads(out.read_text())
    in_all = [m for m in METRICS if METRICS[m].group == "all"]
    assert set(rec["results"]) == set(in_all)
    assert rec["results"]["dci"]["params"]["num_train"] == 100
    for name in in_all:
        assert name in printed and not math.isnan(rec["results"][name][name])
    assert main(["evaluate", "--checkpoint", str(tiny_run), "--set", "mig.num_train"]) == 2


def test_metrics_callback_logs_during_training(tmp_path):
    from disentkit.train import TrainConfig, fit

    out = tmp_path / "run"
    fit(TrainConfig(steps=4, batch_size=8, out=str(out), log_every=1, threads=1, progress=False,
                    eval_every=2, eval_metrics="mig,irs", hparams={"beta": 1.0},
                    eval_params={"mig": {"num_train": 1000}, "irs": {"num_train": 1000}}))
    lines = (out / "csv" / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert "metrics/mig" in header and "metrics/irs" in header
    col = header.index("metrics/mig")
    values = [float(r.split(",")[col]) for r in lines[1:] if r.split(",")[col]]
    assert len(values) == 2 and all(0 <= v <= 1 for v in values)
