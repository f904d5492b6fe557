"""Pairs of images that share all but k factors, the weak supervision of Locatello et al. (ICML 2020,
"Weakly-Supervised Disentanglement Without Compromises", §5): the first image is a training draw, the
second differs from it in k factors chosen at random, each redrawn to a *different* value.

k is fixed, or ``k = -1``: drawn per pair uniformly from 1..F'−1 (F' the factors with more than one value),
as the paper's "k random". Everything runs on the generator's device in a few vectorized calls, so a pair
batch costs about two single batches. A dataset may redraw the changed factors its own way
(:meth:`FactorDataset.redraw_factors`): the correlated variants redraw them from their joint.

Deviation from disentanglement_lib's ``simple_dynamics``: it changes either 1 or k factors (a coin flip
between the two) and redraws values uniformly, so the "changed" factor may keep its value; here exactly k
factors differ, as the paper states.
"""

from __future__ import annotations

import torch

from ..errors import DisentkitError


def changed_factors(sizes: torch.Tensor, n: int, k: int, generator: torch.Generator,
                    free: int | None = None) -> torch.Tensor:
    """Bool (n, F): the factors each pair changes — ``k`` of those with more than one value (all of them
    if fewer), or for ``k = -1`` a count drawn per pair from 1..F'−1. ``sizes``: the factor sizes on the
    generator's device; ``free``: how many exceed 1, when the caller knows it on the host (else it is read
    back from the device: a sync, which training's batches avoid)."""
    device = generator.device
    movable = sizes > 1
    if free is None:
        free = int(movable.sum())
    if free == 0:
        raise DisentkitError("pairs need a factor with more than one value to change")
    if k == -1:
        count = torch.randint(1, max(free, 2), (n,), generator=generator, device=device)
    elif k >= 1:
        count = torch.full((n,), min(k, free), device=device)
    else:
        raise DisentkitError(f"k (factors that differ within a pair) must be ≥ 1 or -1 (random), got {k}")
    u = torch.rand(n, len(sizes), generator=generator, device=device)
    u = torch.where(movable, u, torch.full_like(u, 2.0))           # a one-value factor never changes
    rank = u.argsort(1).argsort(1)                                 # a uniformly random order of the factors
    return rank < count[:, None]


def redraw_uniform(factors: torch.Tensor, changed: torch.Tensor, sizes: torch.Tensor,
                   generator: torch.Generator) -> torch.Tensor:
    """``factors`` (n, F) with the ``changed`` ones replaced by another value, uniform over the others."""
    u = torch.rand(factors.shape, generator=generator, device=generator.device)
    step = 1 + (u * (sizes - 1).clamp_min(1)).long().clamp_max((sizes - 2).clamp_min(0))
    return torch.where(changed, (factors + step) % sizes, factors)


def partner_indices(dataset, first: torch.Tensor, k: int, generator: torch.Generator,
                    allowed: torch.Tensor | None = None, tries: int = 8) -> torch.Tensor:
    """Image indices (n,) of the partners of images ``first`` (n,): k factors changed, the rest kept.

    ``allowed`` (bool over the dataset's images) restricts partners to the training images (a split,
    holes): ``tries`` candidates are drawn per pair at once and the first allowed one kept; a pair with
    none allowed gets its own image as partner (all latents shared: β-VAE's loss on it), so a held-out
    image is never trained on. The generator draws the same amount either way (resume, ensembles).

    Example (``FactorDataset.sample_pairs`` draws the first images and calls this):

        >>> import torch
        >>> from disentkit.data import get_dataset
        >>> ds = get_dataset("dsprites_procedural")
        >>> a, b = ds.sample_pairs(1000, 2, torch.Generator().manual_seed(0))
        >>> (ds.index_to_factors(a) != ds.index_to_factors(b)).sum(1).unique().tolist()
        [2]
    """
    first = first.to(generator.device)
    t = 1 if allowed is None else tries
    factors = dataset.index_to_factors(first).repeat(t, 1)              # (t·n, F): try-major
    sizes = dataset._index_tables(factors.device)[1]
    changed = changed_factors(sizes, len(factors), k, generator, free=sum(s > 1 for s in dataset.factor_sizes))
    candidates = dataset.factors_to_index(dataset.redraw_factors(factors, changed, generator))
    if allowed is None:
        return candidates
    candidates = candidates.view(t, len(first))
    ok = allowed[candidates]                                            # (t, n)
    pick = ok.to(torch.uint8).argmax(0)                                 # the first allowed try (0 if none)
    chosen = candidates.gather(0, pick[None])[0]
    return torch.where(ok.any(0), chosen, first)
