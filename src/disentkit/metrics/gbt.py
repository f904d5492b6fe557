"""scikit-learn's ``GradientBoostingClassifier()`` (its defaults) re-implemented exactly, CPU and CUDA.

The DCI probes: per factor, log-loss gradient boosting (multinomial, one regression tree per class
per stage, for K ≥ 3 classes; binomial, one tree per stage, for 2), prior initialisation, learning
rate 0.1, 100 stages, depth-3 trees over all features (grown by :mod:`.trees` with sklearn's split
rules), Newton leaf values with the (K−1)/K factor, and sklearn's ``feature_importances_`` (checked
against scikit-learn 1.9's ``_gb.py``). The boosting (residuals, raw scores) is torch; the trees are
grown by one of two engines with the same rules: the compiled CPU kernel of :mod:`.trees_cpu` (numba),
or torch's :mod:`.trees`, every tree of a stage at once (the CUDA path). Ties between equally good
splits are broken by a seeded priority (:mod:`.trees`).
"""

from __future__ import annotations

import importlib.util
import queue
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DisentkitError
from .trees import EPS, TIE_RTOL, ZERO_RTOL, Presorted, Work, apply, grow


@dataclass
class Probe:
    """One factor's boosted probe: its impurity importances per latent and train/test accuracy."""

    importance: np.ndarray  # (D,) sklearn ``feature_importances_`` (zeros for a constant factor)
    train_accuracy: float
    test_accuracy: float
    train_pred: np.ndarray  # predicted labels (sklearn ``predict``)
    test_pred: np.ndarray


def _classes(y: np.ndarray, y_test: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training classes, and labels as their indices (-1 for a test class never trained on)."""
    classes, idx = np.unique(y, return_inverse=True)
    where = np.clip(np.searchsorted(classes, y_test), 0, len(classes) - 1)
    return classes, idx.ravel(), np.where(classes[where] == y_test, where, -1).ravel()


def _init_scores(factors: list, n: int, dev: torch.device) -> tuple[list, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tree rows of each factor (factor, first row, trees, K), one-hot targets and initial raw scores
    (sklearn's DummyClassifier prior: centred log priors, or the log-odds for 2 classes), and each
    row's leaf-value factor (K−1)/K (1 for binomial)."""
    blocks, rows = [], 0
    for f, (classes, _, _) in enumerate(factors):
        if len(classes) >= 2:
            m = 1 if len(classes) == 2 else len(classes)
            blocks.append((f, rows, m, len(classes)))
            rows += m
    target, raw = (torch.zeros(rows, n, dtype=torch.float64, device=dev) for _ in range(2))
    scale = torch.ones(rows, 1, dtype=torch.float64, device=dev)
    for f, r0, m, k in blocks:
        onehot = torch.nn.functional.one_hot(torch.as_tensor(factors[f][1], device=dev), k).t().double()
        prior = (onehot.sum(1) / n).clamp(EPS, 1 - EPS)
        if k == 2:
            target[r0], raw[r0] = onehot[1], torch.log(prior[1] / (1 - prior[1]))
        else:
            logp = torch.log(prior)
            target[r0:r0 + m], raw[r0:r0 + m] = onehot, (logp - logp.mean())[:, None]
            scale[r0:r0 + m] = (k - 1) / k
    return blocks, target, raw, scale


def fit_probes(x: np.ndarray, labels: list[np.ndarray], x_test: np.ndarray, labels_test: list[np.ndarray],
               device: str | torch.device = "cpu", n_estimators: int = 100, learning_rate: float = 0.1,
               max_depth: int = 3, seed: int = 0, chunk: int | None = None, engine: str = "auto") -> list[Probe]:
    """``GradientBoostingClassifier(n_estimators, learning_rate, max_depth)`` per factor, all at once;
    ``seed`` only decides between equally good features (as sklearn's ``random_state``). ``engine``:
    ``compiled`` (the CPU default: :mod:`.trees_cpu`, one tree at a time per thread) or ``torch`` (the
    CUDA default: every tree of a stage at once, ``chunk`` trees a thread on a CPU, ≤ 64)."""
    dev = torch.device(device)
    if engine == "auto":  # without numba (a dependency, but absent on some bare GPU machines): torch's engine
        engine = "compiled" if dev.type == "cpu" and importlib.util.find_spec("numba") is not None else "torch"
    if engine not in ("compiled", "torch") or (engine == "compiled" and dev.type != "cpu"):
        raise ValueError(f"engine must be 'torch', or 'compiled' on the CPU; got {engine!r} on {dev}")
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same tie-breaks on every device
    xs = torch.as_tensor(np.asarray(x, dtype=np.float32), device=dev)
    xs_test = torch.as_tensor(np.asarray(x_test, dtype=np.float32), device=dev)
    n = len(xs)
    ps = Presorted.build(xs)
    factors = [_classes(np.asarray(y), np.asarray(yt)) for y, yt in zip(labels, labels_test)]
    blocks, target, raw, scale = _init_scores(factors, n, dev)
    rows = len(raw)
    raw_test = raw[:, :1].expand(rows, len(xs_test)).clone()
    xt_test = xs_test.t().double().contiguous()
    importance = torch.zeros(rows, xs.shape[1], dtype=torch.float64, device=dev)
    resid = torch.empty_like(raw)
    prio = torch.empty(rows, xs.shape[1], 2 ** max_depth - 1, dtype=torch.float64, device=dev)
    # CPU: one chunk of trees per torch thread, each grown by its own Python thread with single-threaded
    # ops (fewer, larger ops than chunks of a few trees; no intra-op barriers); at most 64 trees a chunk
    small = rows * n * xs.shape[1] < 200_000  # threads only pay off beyond this (a 1,000-point DCI: 1.3x)
    workers = 1 if dev.type != "cpu" or small else max(1, min(torch.get_num_threads(), rows))
    size = rows if dev.type != "cpu" else max(1, chunk or min(64, -(-rows // workers)))
    if engine == "compiled":  # whole trees per call: share them out evenly, one call per thread
        size = max(1, -(-rows // workers))
    workers = min(workers, -(-rows // size)) if rows else 1
    pool = queue.SimpleQueue()
    for _ in range(workers if engine == "torch" else 0):
        pool.put(Work(ps, size, max_depth))
    if engine == "compiled":
        try:
            from .trees_cpu import inverse_roots, root_weights, stage
        except ImportError as e:
            raise DisentkitError(f"the compiled DCI engine needs numba ({e}): pip install numba, or use "
                                 "engine='torch'") from None
        order, rs = ps.order.int().numpy(), inverse_roots(n)
        arrays = (resid.numpy(), target.numpy(), scale.view(-1).numpy(), prio.numpy(), order, ps.x.numpy(),
                  xt_test.numpy(), raw.numpy(), raw_test.numpy(), importance.numpy(), rs,
                  root_weights(order, ps.x.numpy(), rs))

    def fit_compiled(a: int) -> None:
        stage(a, min(a + size, rows), *arrays, learning_rate, max_depth, EPS, TIE_RTOL, ZERO_RTOL)

    def fit_chunk(a: int) -> None:  # one stage of trees a..a+size: grow, Newton leaf values, update
        wk = pool.get()
        try:
            sl = slice(a, min(a + size, rows))
            trees = grow(resid[sl], ps, prio[sl], max_depth, wk)
            c = trees.leaf.shape[0]
            p = target[sl] - resid[sl]  # sklearn recovers the probability from the negative gradient
            idx = (trees.leaf + torch.arange(c, device=dev)[:, None] * 2 ** max_depth).view(-1)
            hess = torch.bincount(idx, (p * (1 - p)).view(-1), minlength=c * 2 ** max_depth).view(c, -1)
            cnt = trees.leaf_stats[..., 0].clamp(min=1)
            num, den = scale[sl] * trees.leaf_stats[..., 1] / cnt, hess / cnt
            value = torch.where(den.abs() < 1e-150, 0.0, num / torch.where(den == 0, 1.0, den))
            raw[sl] += learning_rate * value.gather(1, trees.leaf)
            raw_test[sl] += learning_rate * value.gather(1, apply(trees, xt_test, max_depth))
            importance[sl] += trees.importance
        finally:
            pool.put(wk)

    threads = torch.get_num_threads()
    torch.set_num_threads(1 if workers > 1 or small else threads)  # parallel over chunks, not inside ops
    ex = ThreadPoolExecutor(workers) if workers > 1 else None
    try:
        for _ in range(n_estimators if rows else 0):
            for f, r0, m, k in blocks:
                if k == 2:
                    torch.sub(target[r0], torch.sigmoid(raw[r0]), out=resid[r0])
                else:  # softmax over the classes (dim 0), written out: torch.softmax is slow on dim 0
                    e = torch.exp(raw[r0:r0 + m] - raw[r0:r0 + m].amax(0))
                    torch.sub(target[r0:r0 + m], e.div_(e.sum(0)), out=resid[r0:r0 + m])
            prio.copy_(torch.rand(prio.shape, generator=gen, dtype=torch.float64))
            list((ex.map if ex else map)(fit_chunk if engine == "torch" else fit_compiled, range(0, rows, size)))
    finally:
        torch.set_num_threads(threads)
        if ex:
            ex.shutdown()
    out = []
    for f, (classes, y, y_test) in enumerate(factors):
        block = [b for b in blocks if b[0] == f]
        if not block:  # one class: nothing to predict
            out.append(Probe(np.zeros(xs.shape[1]), 1.0, 1.0, classes[y], classes[np.zeros(len(y_test), int)]))
            continue
        _, r0, m, k = block[0]
        imp = importance[r0:r0 + m].sum(0)  # trees without a split add zeros, so the mean's count cancels
        imp = imp / imp.sum() if imp.sum() > 0 else imp
        preds = [((sc[0] >= 0).long() if k == 2 else sc.argmax(0)).cpu().numpy()
                 for sc in (raw[r0:r0 + m], raw_test[r0:r0 + m])]
        out.append(Probe(imp.cpu().numpy(), float(np.mean(preds[0] == y)), float(np.mean(preds[1] == y_test)),
                         classes[preds[0]], classes[preds[1]]))
    return out
