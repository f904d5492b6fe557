"""The sampling/representation interface every metric shares (the discrete information measures are in
:mod:`.measures`, re-exported here).

A *representation function* maps a float image batch (N, C, H, W) to codes (N, D). Metrics draw all
factors for a sample at once, gather all images, and encode them in large batches; every random
draw comes from an explicit ``np.random.Generator`` made from the metric's seed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Union

import numpy as np
import torch

from ..data import FactorDataset
from ..errors import DisentkitError
from ..registry import Registry
from .measures import (avg_diff_top_two, discrete_entropy, discrete_mutual_info, histogram_discretize,  # noqa: F401
                       logistic_regression, mutual_info, normalize_data, top_two_gaps)

EncodeFn = Callable[[torch.Tensor], Union[torch.Tensor, np.ndarray]]


#: CPU encoding works through a batch this many images at a time (a 4096-image batch's first layer alone is
#: 0.5 GB). With channels_last and in-place ReLUs, 10k images on the AVX-512 EPYC (docs/benchmarks.md,
#: 2026-12-02): 0.65 s idle / 1.28 s with both cores busy at 1,024, against 0.70 / 1.79 s at 256, 0.57 /
#: 1.12 s unchunked and 0.75 / 1.27 s for a plain forward. On the AVX2 EPYC with the heap kept as
#: ``disentkit evaluate`` keeps it (``benchmarks/bench_encode.py``): 1.35 / 2.99 s at 1,024, 1.68 / 3.82 s
#: at 256, 1.32 / 2.82 s at 2,048, 2.06 / 4.07 s plain. 1,024 is within 6 % of the best on both CPU kinds.
CPU_CHUNK = 1024


def representation_function(vae: torch.nn.Module, representation: str = "mean", seed: int = 0) -> EncodeFn:
    """Encode with a trained VAE: the posterior mean (dlib's default) or one posterior sample.

    For speed the encoder is copied once (the caller's model is left untouched) and run under
    ``torch.inference_mode``; on a CPU the copy uses channels_last layout and in-place ReLUs, and
    each batch is encoded :data:`CPU_CHUNK` images at a time. The mean representation is marked
    ``deterministic`` so metrics may encode each distinct image only once.

    Example:

        >>> import torch
        >>> from disentkit.metrics import representation_function
        >>> from disentkit.models import GaussianVAE
        >>> vae = GaussianVAE(latent_dim=4)                  # untrained here; normally disentkit.load(run).vae
        >>> encode = representation_function(vae)
        >>> encode(torch.zeros(2, 1, 64, 64)).shape, encode.deterministic
        (torch.Size([2, 4]), True)
        >>> representation_function(vae, "sampled", seed=1).deterministic
        False
    """
    if representation not in ("mean", "sampled"):
        raise DisentkitError(f"--representation must be 'mean' or 'sampled', got '{representation}'")
    device = next(vae.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    net = copy.deepcopy(vae).eval()  # a disentkit VAE or a user's (models/custom.py): both have encode()
    cpu = device.type == "cpu"
    if cpu:
        net = net.to(memory_format=torch.channels_last)
        for m in net.modules():
            if isinstance(m, torch.nn.ReLU):
                m.inplace = True  # the copy's activations are never reused: halves memory traffic
    for p in net.parameters():
        p.requires_grad_(False)
    encoder = net.encode

    def posterior(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not (cpu and x.ndim == 4):
            return encoder(x)
        parts = [encoder(x[i:i + CPU_CHUNK].contiguous(memory_format=torch.channels_last))
                 for i in range(0, len(x), CPU_CHUNK)]
        return torch.cat([m for m, _ in parts]), torch.cat([v for _, v in parts])

    @torch.inference_mode()
    def encode(x: torch.Tensor) -> torch.Tensor:
        mu, logvar = posterior(x.to(device))
        if representation == "mean":
            return mu
        return mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen, device=device)

    @torch.inference_mode()
    def decode(z: torch.Tensor) -> torch.Tensor:
        """Logits (N, C, H, W) of codes (N, D): what the recombination metric reconstructs from."""
        return net.decode(z.to(device))

    @torch.inference_mode()
    def posterior_of(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) (N, D) of images: what Chen et al.'s MIG estimates q(z_j) from."""
        return posterior(x.to(device))

    encode.device = device  # type: ignore[attr-defined]
    encode.deterministic = representation == "mean"  # type: ignore[attr-defined]
    encode.decode = decode  # type: ignore[attr-defined]
    encode.posterior = posterior_of  # type: ignore[attr-defined]
    return encode


def as_encode_fn(model: Any, representation: str = "mean") -> EncodeFn:
    """What metrics encode with, from what a user holds: a :class:`disentkit.Model` (``disentkit.load``), a
    checkpoint, a disentkit :class:`GaussianVAE` or a module with ``encode``/``decode`` (the VAE protocol of
    :mod:`disentkit.models.custom`; all by their ``representation``), any other ``nn.Module`` whose forward
    maps images (N, C, H, W) to codes (N, D) (or to a tuple whose first item is the codes, as an encoder's
    (μ, log σ²)), or a plain function doing so. Anything else is one clear error.

    Example:

        >>> import torch
        >>> from disentkit.metrics import as_encode_fn
        >>> encode = as_encode_fn(torch.nn.Flatten())          # a module mapping images to codes
        >>> encode(torch.zeros(2, 3, 4, 4)).shape
        torch.Size([2, 48])
        >>> as_encode_fn("runs/demo")
        Traceback (most recent call last):
        ...
        disentkit.errors.DisentkitError: metrics need an encoder: a disentkit model (disentkit.load(run)), ...
    """
    from ..models import GaussianVAE
    from ..models.custom import as_vae, follows_protocol

    vae = getattr(model, "vae", None)
    if isinstance(model, GaussianVAE) or isinstance(vae, GaussianVAE):
        return representation_function(model if isinstance(model, GaussianVAE) else vae, representation)
    if follows_protocol(model):  # a user's VAE with encode(x) -> (mu, logvar) and decode(z)
        return representation_function(as_vae(model), representation)
    if isinstance(model, torch.nn.Module):
        return _module_encoder(model)
    if callable(model):
        return model
    raise DisentkitError(f"metrics need an encoder: a disentkit model (disentkit.load(run)), an nn.Module mapping "
                         f"images (N, C, H, W) to codes (N, D), or a function doing so; got {type(model).__name__}")


def _module_encoder(module: torch.nn.Module) -> EncodeFn:
    """A user's module as an encode function: eval mode while it encodes (restored after), inference mode,
    the first item of a tuple output."""
    device = next((p.device for p in module.parameters()), torch.device("cpu"))

    @torch.inference_mode()
    def encode(x: torch.Tensor) -> torch.Tensor:
        was = module.training
        module.eval()
        try:
            out = module(x.to(device))
        finally:
            module.train(was)
        if isinstance(out, (tuple, list)) and out:
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise DisentkitError(f"the encoder {type(module).__name__} returned {type(out).__name__}, not a tensor "
                                 "of codes (N, D) (or a tuple starting with one)")
        return out

    encode.device = device  # type: ignore[attr-defined]
    return encode


def encode_images(encode_fn: EncodeFn, images: torch.Tensor, batch_size: int = 2048) -> np.ndarray:
    """Codes (N, D) as float64 numpy, encoding ``images`` in large batches."""
    out = [np.asarray(_to_numpy(encode_fn(images[i:i + batch_size]))) for i in range(0, len(images), batch_size)]
    codes = np.concatenate(out, 0).astype(np.float64)
    return codes.reshape(len(codes), -1)


def _to_numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def generate_batch_factor_code(encode_fn: EncodeFn, dataset: FactorDataset, num_points: int,
                               rng: np.random.Generator, batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """``num_points`` uniformly drawn factor classes (N, F) and the codes of their images (N, D).

    Same name and meaning as disentanglement_lib's ``utils.generate_batch_factor_code``, but all
    factors are drawn in one call and images are gathered and encoded in chunks of ``batch_size``.

    Example:

        >>> import numpy as np
        >>> from disentkit.metrics import generate_batch_factor_code
        >>> from disentkit.testing import IdentityDataset      # images = the factors
        >>> factors, codes = generate_batch_factor_code(lambda x: x.flatten(1), IdentityDataset((2, 3)), 5,
        ...                                             np.random.default_rng(0))
        >>> factors.shape, codes.shape, bool((codes == factors).all())
        ((5, 2), (5, 2), True)
    """
    if not dataset.has_factors:
        raise DisentkitError(f"dataset '{dataset.name}' has no ground-truth factors; "
                             "disentanglement metrics need a dataset with factors (e.g. dsprites_procedural)")
    factors = dataset.sample_factors(num_points, rng)
    device = getattr(encode_fn, "device", "cpu")
    codes = []
    for i in range(0, num_points, batch_size):
        imgs = dataset.sample_observations_from_factors(factors[i:i + batch_size], rng, device=device)
        codes.append(encode_images(encode_fn, imgs, batch_size))
    return factors, np.concatenate(codes, 0)


# --------------------------------------------------------------------------- shared sampling/encoding
class CodeSource:
    """Codes of factor-class arrays, encoding each *distinct* image at most once.

    Metrics first draw every factor array they need (any leading shape, last axis = factors), then
    ask for their codes. When the encoder is deterministic (the mean representation, or a plain
    function: ``encode_fn.deterministic`` defaults to True) the union of image indices is encoded
    once, in index order and in large batches, and codes are gathered per draw: FactorVAE/BetaVAE
    scores draw ~1-2 M images from dSprites' 737,280, so most draws repeat. A stochastic encoder
    (``deterministic = False``, the sampled representation) is called on every draw instead.

    Example:

        >>> import numpy as np
        >>> from disentkit.metrics import CodeSource
        >>> from disentkit.testing import IdentityDataset
        >>> source = CodeSource(lambda x: x.flatten(1), IdentityDataset((2, 3)))
        >>> source.codes(np.array([[1, 2], [1, 2], [0, 0]]))      # factor classes (..., F) -> codes (..., D)
        array([[1., 2.],
               [1., 2.],
               [0., 0.]])
        >>> source.num_encoded                                    # each distinct image once
        2
    """

    def __init__(self, encode_fn: EncodeFn, dataset: FactorDataset, batch_size: int = 4096,
                 dedupe: bool | None = None) -> None:
        if not dataset.has_factors:
            raise DisentkitError(f"dataset '{dataset.name}' has no ground-truth factors; "
                                 "disentanglement metrics need a dataset with factors (e.g. dsprites_procedural)")
        self.encode_fn, self.dataset, self.batch_size = encode_fn, dataset, batch_size
        self.dedupe = bool(getattr(encode_fn, "deterministic", True)) if dedupe is None else dedupe
        self.device = getattr(encode_fn, "device", "cpu")
        self._index = np.empty(0, dtype=np.int64)
        self._codes: np.ndarray | None = None
        self.num_encoded = 0  # images passed through the encoder (for benchmarks)

    def _flat_index(self, factors: np.ndarray) -> np.ndarray:
        return np.asarray(self.dataset.factors_to_index(factors.reshape(-1, self.dataset.num_factors)))

    def encode_index(self, index: np.ndarray) -> np.ndarray:
        """Codes (N, D) float64 of flat image indices, gathered and encoded in chunks."""
        out = []
        for i in range(0, len(index), self.batch_size):
            idx = torch.as_tensor(index[i:i + self.batch_size], device=self.device)
            codes = _to_numpy(self.encode_fn(self.dataset.images_at(idx)))
            if codes.ndim < 1 or codes.shape[0] != len(idx):
                raise DisentkitError(f"the encoder returned codes of shape {tuple(codes.shape)} for {len(idx)} images; "
                                     "it must return one code per image, (N, D)")
            out.append(codes.reshape(len(idx), -1))
        self.num_encoded += len(index)
        if not out:
            raise DisentkitError("a metric asked for the codes of zero images; use num_train > 0")
        codes = np.concatenate(out, 0).astype(np.float64)
        bad = int((~np.isfinite(codes)).any(1).sum())
        if bad:
            raise DisentkitError(f"the encoder returned non-finite codes (NaN or inf) for {bad} of {len(codes)} images "
                                 f"of {self.dataset.name}; check the model's weights (a diverged run?) and its input")
        return codes

    def prefetch(self, factor_arrays: list[np.ndarray]) -> None:
        """Encode every distinct image of these factor arrays not encoded yet (dedupe mode only)."""
        if not self.dedupe or not factor_arrays:
            return
        flat = np.concatenate([self._flat_index(f) for f in factor_arrays])
        size = int(self.dataset.num_images)
        if size <= 4 * len(flat) + (1 << 20):  # a mask over the images: O(N), where np.unique sorts (2.6 s of the suite)
            mask = np.zeros(size, dtype=bool)
            mask[flat] = True
            mask[self._index] = False
            new = np.flatnonzero(mask)  # sorted and distinct, as np.unique gives
        else:
            new = np.setdiff1d(np.unique(flat), self._index, assume_unique=True)
        if len(new) == 0:
            return
        codes = self.encode_index(new)
        if self._codes is None:
            self._index, self._codes = new, codes
        else:
            index = np.concatenate([self._index, new])
            order = np.argsort(index, kind="stable")
            self._index, self._codes = index[order], np.concatenate([self._codes, codes])[order]

    def codes(self, factors: np.ndarray) -> np.ndarray:
        """Codes of factor classes ``(..., F)`` -> ``(..., D)``."""
        flat = self._flat_index(factors)
        if self.dedupe:
            self.prefetch([factors])
            out = self._codes[np.searchsorted(self._index, flat)]  # type: ignore[index]
        else:
            out = self.encode_index(flat)
        return out.reshape(factors.shape[:-1] + (out.shape[-1],))


@dataclass(frozen=True)
class MetricSpec:
    """One metric: ``sample(dataset, rng, **params)`` draws all factor arrays it needs (no encoding);
    ``score(codes, factors, dataset=, seed=, **params)`` computes the result from their codes.

    Example:
        A new metric, the range of the codes, registered so that ``evaluate`` and the CLI know it:

        >>> from disentkit.metrics import METRICS, MetricSpec, evaluate
        >>> from disentkit.testing import IdentityDataset
        >>> def sample(dataset, rng, num_train, **_):
        ...     return {"train": dataset.sample_factors(num_train, rng)}
        >>> def score(codes, factors, **_):
        ...     return {"code_range": float(codes["train"].max() - codes["train"].min())}
        >>> spec = METRICS.register(MetricSpec("code_range", sample, score, {"num_train": 100}))
        >>> spec(lambda x: x.flatten(1), IdentityDataset((2, 3)))
        {'code_range': 2.0, 'params': {'num_train': 100, 'seed': 0}}
        >>> evaluate(lambda x: x.flatten(1), IdentityDataset((2, 3)), "code_range")["code_range"]["code_range"]
        2.0
        >>> METRICS.unregister("code_range")
        >>> METRICS["mig"].paper
        'Chen et al. 2018, Isolating Sources of Disentanglement in VAEs'
    """

    name: str
    sample: Callable[..., dict[str, np.ndarray]]
    score: Callable[..., dict]
    defaults: dict[str, Any]
    paper: str = ""
    #: parameters that only change how it runs (n_jobs), left out of the recorded ``params``
    runtime_params: tuple[str, ...] = field(default=())
    #: which ``--metrics`` word includes it: ``"all"`` (disentanglement_lib's suite), ``"extended"`` (``all``
    #: plus the newer scores), ``"named"`` (only by its name: a metric that needs holes)
    group: str = "all"
    #: whether it can score on a dataset (None: any); a sweep skips it, and says so, where it cannot
    applies: Callable[[FactorDataset], bool] | None = None

    def __call__(self, encode_fn: EncodeFn, dataset: FactorDataset, seed: int = 0, **params) -> dict:
        """The metric of one encoder on one dataset (same seed, same value)."""
        return run_metric(self, encode_fn, dataset, seed, **params)


#: every metric by name; each metric file registers its :class:`MetricSpec` (``METRICS.register(SPEC)``)
METRICS: Registry[MetricSpec] = Registry("metric", "or 'all' or 'extended'")


def check_params(spec: MetricSpec, params: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        raise DisentkitError(f"metric '{spec.name}' has no parameter(s) {', '.join(unknown)}; "
                             f"it takes: {', '.join(spec.defaults)}")
    merged = {**spec.defaults, **params}
    for k, v in merged.items():
        sizes = list(v) if isinstance(v, (list, tuple)) and v else [v]     # a list: several sizes (downstream)
        if (k.startswith("num_") or k == "batch_size") and not all(
                isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= 2 for x in sizes):
            raise DisentkitError(f"metric '{spec.name}': {k} must be an integer ≥ 2 (or a list of them), got {v!r}")
    return merged


def run_metrics(specs: list[MetricSpec], encode_fn: EncodeFn, dataset: FactorDataset, seed: int = 0,
                params: dict[str, dict[str, Any]] | None = None, source: CodeSource | None = None,
                ) -> dict[str, dict]:
    """Run metrics sharing one :class:`CodeSource`: every metric draws its own published sample from
    ``default_rng(seed)``; the union of images is encoded once; then each is scored."""
    params = params or {}
    encode_fn = as_encode_fn(encode_fn)
    source = source or CodeSource(encode_fn, dataset)
    merged = {s.name: check_params(s, params.get(s.name, {})) for s in specs}
    draws = {s.name: s.sample(dataset, np.random.default_rng(seed), **merged[s.name]) for s in specs}
    # keys starting with "_" are side data of a draw (e.g. each group's fixed factor), not images
    source.prefetch([f for d in draws.values() for k, f in d.items() if not k.startswith("_")])
    results = {}
    for s in specs:
        codes = {k: source.codes(f) for k, f in draws[s.name].items() if not k.startswith("_")}
        out = s.score(codes, draws[s.name], dataset=dataset, seed=seed, encoder_device=str(source.device),
                      decode=getattr(encode_fn, "decode", None), posterior=getattr(encode_fn, "posterior", None),
                      **merged[s.name])
        out["params"] = {**{k: v for k, v in merged[s.name].items() if k not in s.runtime_params}, "seed": seed}
        results[s.name] = out
    return results


def run_metric(spec: MetricSpec, encode_fn: EncodeFn, dataset: FactorDataset, seed: int = 0, **params) -> dict:
    """One metric on one encoder; same seed, same value."""
    return run_metrics([spec], encode_fn, dataset, seed, {spec.name: params})[spec.name]


def sample_grouped(dataset: FactorDataset, rng: np.random.Generator, num_groups: int, group_size: int,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``num_groups`` groups of ``group_size`` factor vectors sharing one random factor per group.

    Returns (fixed factor index per group (G,), factor classes (G, B, F)) — the FactorVAE-score
    sampling (dlib ``_generate_training_sample``) for all groups at once: factors drawn uniformly,
    then the chosen factor of every member set to the group's first member's value.
    """
    fixed = rng.integers(0, dataset.num_factors, size=num_groups)
    factors = dataset.sample_factors(num_groups * group_size, rng).reshape(num_groups, group_size, -1)
    g = np.arange(num_groups)
    factors[g[:, None], np.arange(group_size)[None, :], fixed[:, None]] = factors[g, 0, fixed][:, None]
    return fixed, factors
