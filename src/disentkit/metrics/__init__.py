"""Disentanglement metrics: one file per metric, all on the interface in :mod:`.utils`.

Each registered metric is ``fn(model, dataset, seed=0, **params) -> dict`` whose dict holds the
headline value under the metric's own name plus detail and ``params`` (the values used). ``model`` is a
loaded disentkit model (``disentkit.load(run)``), any ``nn.Module`` or function mapping an image batch
(N, C, H, W) to codes (N, D) (:func:`as_encode_fn`), so models trained elsewhere can be scored:
``disentkit.metrics.mig(my_encoder, get_dataset("dsprites_procedural"))``.

Public names: the metrics (:func:`mig`, :func:`sap`, :func:`dci`, :func:`modularity`, :func:`irs`, :func:`im`,
:func:`unsupervised`, :func:`factor_vae_score`, :func:`beta_vae_score`), each with a ``*_from_codes`` twin
that scores codes and factor classes you already hold; :func:`evaluate` (several at once);
:data:`METRICS` (= :data:`SPECS`: name -> :class:`MetricSpec`); ``EncodeFn`` (the type of an encoder:
images (N, C, H, W) -> codes (N, D)), :func:`as_encode_fn`, :func:`representation_function`.

Example:
    A hand-made ``EncodeFn`` — each image's centre of mass — scored on procedural dSprites: its two
    latents capture posX and posY and nothing else. ``METRICS`` lists every registered metric:

    >>> import torch
    >>> from disentkit.data import get_dataset
    >>> from disentkit.metrics import METRICS, SPECS, mig
    >>> def centre(x):                          # an EncodeFn: images (N, 1, 64, 64) -> codes (N, 2)
    ...     grid = torch.linspace(0, 1, x.shape[-1])
    ...     mass = x.sum((1, 2, 3))
    ...     return torch.stack([(x.sum(2)[:, 0] * grid).sum(1), (x.sum(3)[:, 0] * grid).sum(1)], 1) / mass[:, None]
    >>> result = mig(centre, get_dataset("dsprites_procedural"), num_train=1000)
    >>> {factor: round(v, 1) for factor, v in result["mig_per_factor"].items()}
    {'shape': 0.0, 'scale': 0.0, 'orientation': 0.0, 'posX': 0.6, 'posY': 0.6}
    >>> list(METRICS)
    ['beta_vae_score', 'chen_mig', 'dci', 'dci_es', 'downstream_task', 'factor_vae_score', 'mig', 'im', 'infomec', 'irs', 'modularity', 'recombination', 'sap', 'unsupervised']
    >>> METRICS["mig"].defaults, SPECS is METRICS
    ({'num_train': 10000, 'num_bins': 20}, True)
"""

from __future__ import annotations

from typing import Any

from ..errors import DisentkitError
from ..registry import import_all
from .utils import (METRICS, CodeSource, EncodeFn, MetricSpec, as_encode_fn, generate_batch_factor_code,
                    representation_function, run_metrics)

import_all(__name__, __path__, skip=lambda name: name in ("utils", "record"))

from .beta_vae_score import beta_vae_score  # noqa: E402  (the API's names; registration happened above)
from .chen_mig import chen_mig, chen_mig_from_posterior  # noqa: E402
from .dci import completeness, dci, dci_from_codes, disentanglement  # noqa: E402
from .dci_es import dci_es  # noqa: E402
from .downstream import downstream_from_codes, downstream_task  # noqa: E402
from .factor_vae_score import factor_vae_from_codes, factor_vae_score  # noqa: E402
from .im import im, im_from_codes, im_from_mi  # noqa: E402
from .infomec import infomec, infomec_from_codes  # noqa: E402
from .irs import irs, irs_from_codes  # noqa: E402
from .mig import mig, mig_from_codes  # noqa: E402
from .modularity import modularity, modularity_from_codes, modularity_from_mi  # noqa: E402
from .recombination import recombination  # noqa: E402
from .sap import sap, sap_from_codes  # noqa: E402
from .unsupervised import unsupervised, unsupervised_from_codes  # noqa: E402

#: name -> the metric's specification (sampler, scorer, defaults, paper); the same registry as METRICS
SPECS = METRICS


def in_group(word: str) -> list[str]:
    """The metrics ``--metrics all`` (disentanglement_lib's suite) or ``--metrics extended`` (and newer) runs.

    Example:

        >>> from disentkit.metrics import in_group
        >>> "downstream_task" in in_group("extended"), "downstream_task" in in_group("all")
        (True, False)
    """
    groups = ("all",) if word == "all" else ("all", "extended")
    return [m for m in METRICS if METRICS[m].group in groups]


def resolve_metrics(spec: str | list[str]) -> list[str]:
    """'mig,sap', 'all' or 'extended' -> a list of registered metric names (unknown names are an error). 'all'
    is disentanglement_lib's suite, 'extended' adds the newer scores (downstream task, …); 'all,recombination'
    adds the one that needs holes.

    Example:

        >>> from disentkit.metrics import resolve_metrics
        >>> resolve_metrics("mig, sap")
        ['mig', 'sap']
        >>> resolve_metrics("all")
        ['beta_vae_score', 'dci', 'factor_vae_score', 'mig', 'im', 'irs', 'modularity', 'sap', 'unsupervised']
        >>> resolve_metrics("mig,all,recombination")[-2:]       # each once, in the order given
        ['unsupervised', 'recombination']
        >>> [m for m in resolve_metrics("extended") if m not in resolve_metrics("all")]
        ['chen_mig', 'dci_es', 'downstream_task', 'infomec']
        >>> resolve_metrics("mig,nig")
        Traceback (most recent call last):
        ...
        disentkit.registry.UnknownName: unknown metric 'nig'; choose one of: beta_vae_score, ... or 'all' or 'extended'
    """
    given = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for n in (n.strip() for n in given if n.strip()):
        if n == "udr":   # scores models against each other: not one encoder (metrics/udr.py)
            raise DisentkitError("udr ranks the runs of a sweep against the other seeds of their configuration, "
                                 "not one checkpoint: disentkit aggregate SWEEP_DIR --udr")
        for name in (in_group(n) if n in ("all", "extended") else [n]):
            METRICS[name]  # an unknown name is a one-line error naming the choices
            if name not in names:
                names.append(name)
    return names


#: sample sizes of ``--eval-every`` (metrics logged while training): a tenth to a fifth of dlib's, so that
#: monitoring costs a few percent of the training it interleaves with; the final ``evaluate`` uses dlib's
MONITORING = {"num_train": 2000, "num_test": 1000, "num_eval": 500, "num_variance_estimate": 2000}
MONITORING_VOTES = {"num_train": 200, "num_eval": 100}   # FactorVAE/BetaVAE scores: votes of 64 images each
#: DCI's probes cost ~1.7 ms a point (100 boosting stages; encoding is cheap): half the others' sample keeps
#: ``--eval-every 1000 --eval-metrics mig,sap,dci`` under 10 % of the training (docs/benchmarks.md)
MONITORING_PER_METRIC = {"dci": {"num_train": 1000, "num_test": 500}}


def monitoring_params(names: list[str], overrides: dict[str, dict[str, Any]] | None = None
                      ) -> dict[str, dict[str, Any]]:
    """Per-metric parameters for metrics computed during training: :data:`MONITORING` sizes where a
    metric has them (smaller ones stay; DCI: :data:`MONITORING_PER_METRIC`), then the user's
    ``--eval-params`` on top.

    Example:

        >>> from disentkit.metrics import monitoring_params
        >>> monitoring_params(["mig", "dci"])
        {'mig': {'num_train': 2000}, 'dci': {'num_train': 1000, 'num_test': 500}}
        >>> monitoring_params(["mig"], {"mig": {"num_bins": 10}})
        {'mig': {'num_train': 2000, 'num_bins': 10}}
    """
    out = {}
    for n in names:
        defaults = METRICS[n].defaults
        sizes = {**MONITORING, **(MONITORING_VOTES if "batch_size" in defaults else {}),
                 **MONITORING_PER_METRIC.get(n, {})}
        out[n] = {k: min(v, defaults[k]) for k, v in sizes.items() if k in defaults}
        out[n].update((overrides or {}).get(n, {}))
    for n, p in (overrides or {}).items():
        out.setdefault(n, dict(p))
    return out


def evaluate(encode_fn: EncodeFn, dataset, metrics: str | list[str] = "mig", seed: int = 0,
             params: dict[str, dict[str, Any]] | None = None) -> dict[str, dict]:
    """Run the named metrics; returns {metric: result dict}.

    Each metric draws exactly the sample it would draw alone (``default_rng(seed)``), but the images
    of all of them are encoded together, each distinct image once (deterministic encoders), so the
    values equal separate calls while shared images (MIG, I_m, SAP, DCI ... all start with the same
    10,000 draws) are not re-encoded. ``params`` overrides defaults per metric, e.g.
    ``{"dci": {"num_train": 2000}}``.

    Example:

        >>> from disentkit.metrics import evaluate, mig
        >>> from disentkit.testing import IdentityDataset        # images = the factors: a perfect code
        >>> encode, ds = (lambda x: x.flatten(1)), IdentityDataset()
        >>> results = evaluate(encode, ds, "mig,im", params={"mig": {"num_train": 1000}, "im": {"num_train": 1000}})
        >>> sorted(results), round(results["im"]["im_normalized"], 2)
        (['im', 'mig'], 1.0)
        >>> results["mig"]["mig"] == mig(encode, ds, num_train=1000)["mig"]      # as if run alone
        True
        >>> # every metric at its published sample sizes, for a trained run (a minute or so on a CPU):
        >>> import disentkit
        >>> from disentkit.data import get_dataset
        >>> evaluate(disentkit.load("runs/demo"), get_dataset("dsprites_procedural"), "all")  # doctest: +SKIP
    """
    names = resolve_metrics(metrics)
    unknown = sorted(set(params or {}) - set(METRICS))
    if unknown:  # a misspelt metric name would otherwise leave its defaults in force without a word
        raise DisentkitError(f"metric parameters given for unknown metric(s) {', '.join(unknown)}; the metrics "
                             f"are: {', '.join(sorted(METRICS))}")
    return run_metrics([SPECS[n] for n in names], encode_fn, dataset, seed, params)


__all__ = ["CodeSource", "METRICS", "MetricSpec", "SPECS", "EncodeFn", "as_encode_fn", "beta_vae_score", "chen_mig",
           "chen_mig_from_posterior", "completeness", "dci", "dci_es",
           "dci_from_codes", "disentanglement", "downstream_from_codes", "downstream_task", "in_group", "recombination", "evaluate", "factor_vae_from_codes", "factor_vae_score",
           "generate_batch_factor_code", "im", "im_from_codes", "im_from_mi", "infomec", "infomec_from_codes", "irs", "irs_from_codes", "mig", "mig_from_codes", "modularity",
           "modularity_from_codes", "modularity_from_mi", "monitoring_params", "representation_function",
           "resolve_metrics", "sap",
           "sap_from_codes", "unsupervised", "unsupervised_from_codes"]
