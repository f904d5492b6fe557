"""Recombination (Montero et al., ICLR 2021, "The role of disentanglement in generalisation"): how a model
trained with held-out factor combinations (``dataset:holes(...)``, :mod:`disentkit.data.holes`) does on
them, against the combinations it saw.

``num_images`` images are drawn uniformly (with replacement) from the hole and as many from the training
images; each is encoded (the run's representation) and decoded from its code. Reported per side:

- ``bce_*``: Bernoulli reconstruction NLL, summed over pixels, averaged over images (the training loss's
  reconstruction term); ``mse_*``: squared error of the sigmoid reconstruction, summed over pixels;
- ``mig_*``: MIG (as :mod:`~disentkit.metrics.mig`, 20 bins) on that side's codes, averaged over the factors
  that vary within it (a factor the hole fixes, e.g. its shape, has no information to capture there);
- ``bce_gap`` = held-out − seen (the headline, ``recombination``), and ``bce_ratio`` = held-out / seen: above
  0 and 1 where the held-out combinations are reconstructed worse. Montero et al. report the held-out
  reconstruction itself.

Not part of ``--metrics all`` (it needs holes and a decoder): ``--metrics all,recombination``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data import FactorDataset
from ..errors import DisentkitError
from .mig import mig_from_codes
from .utils import METRICS, EncodeFn, MetricSpec, run_metric

SIDES = ("held_out", "seen")
CHUNK = 1024


def _sample(dataset: FactorDataset, rng: np.random.Generator, num_images: int, **_) -> dict[str, np.ndarray]:
    if not hasattr(dataset, "held_out_images"):
        raise DisentkitError(f"the recombination metric needs a dataset with held-out combinations; '{dataset.name}' "
                             "has none: train and evaluate on e.g. 'dsprites_procedural:holes(recombination_to_range)'")
    pools = {"held_out": dataset.held_out_images(), "seen": dataset.training_images()}
    return {side: dataset.index_to_factors(pool[rng.integers(0, len(pool), size=num_images)])
            for side, pool in pools.items()}


def reconstruction_errors(decode, codes: np.ndarray, images: torch.Tensor) -> tuple[float, float]:
    """(mean BCE, mean MSE) over images of the reconstructions decoded from ``codes``, in chunks."""
    bce = mse = 0.0
    for i in range(0, len(codes), CHUNK):
        z = torch.as_tensor(codes[i:i + CHUNK], dtype=torch.float32)
        logits = decode(z).float()
        x = images[i:i + CHUNK].to(logits.device)
        bce += F.binary_cross_entropy_with_logits(logits, x, reduction="sum").item()
        mse += (torch.sigmoid(logits) - x).square().sum().item()
    return bce / len(codes), mse / len(codes)


def _score(codes: dict, factors: dict, dataset: FactorDataset, num_bins: int, decode=None, **_) -> dict:
    if decode is None:
        raise DisentkitError("the recombination metric reconstructs images: score a trained model (disentkit "
                             "evaluate, or disentkit.load(run)), not an encoder alone")
    out: dict = {"holes": dataset.expression, "kind": dataset.kind,
                 "held_out_images": int(len(dataset.held_out_images()))}
    for side in SIDES:
        images = dataset.sample_observations_from_factors(factors[side])
        out[f"bce_{side}"], out[f"mse_{side}"] = reconstruction_errors(decode, codes[side], images)
        m = mig_from_codes(codes[side], factors[side], num_bins)
        varies = [i for i in range(dataset.num_factors) if len(np.unique(factors[side][:, i])) > 1]
        per = dict(zip(dataset.factor_names, m["mig_per_factor"]))
        out[f"mig_{side}"] = float(np.mean([m["mig_per_factor"][i] for i in varies])) if varies else 0.0
        out[f"mig_per_factor_{side}"] = {dataset.factor_names[i]: per[dataset.factor_names[i]] for i in varies}
    out["recombination"] = out["bce_gap"] = out["bce_held_out"] - out["bce_seen"]
    out["bce_ratio"] = out["bce_held_out"] / out["bce_seen"] if out["bce_seen"] > 0 else float("inf")
    return out


SPEC = METRICS.register(MetricSpec("recombination", _sample, _score, {"num_images": 10_000, "num_bins": 20},
                                   paper="Montero et al. 2021, The role of disentanglement in generalisation",
                                   group="named", applies=lambda ds: hasattr(ds, "held_out_images")))


def recombination(encode_fn: EncodeFn, dataset: FactorDataset, seed: int = 0, **params) -> dict:
    """Reconstruction and MIG on a dataset's held-out combinations against its seen ones (defaults:
    num_images=10,000 per side, num_bins=20). ``encode_fn`` must decode too: a loaded model.

    Example:

        >>> import disentkit
        >>> from disentkit.data import get_dataset
        >>> from disentkit.metrics import recombination
        >>> from disentkit.models import GaussianVAE
        >>> ds = get_dataset("dsprites_procedural:holes(shape=square & posX>0.5)")
        >>> result = recombination(GaussianVAE(latent_dim=4), ds, num_images=200)   # untrained: no gap yet
        >>> result["kind"], result["recombination"] == result["bce_held_out"] - result["bce_seen"]
        ('recombination-to-range', True)
    """
    return run_metric(SPEC, encode_fn, dataset, seed, **params)
