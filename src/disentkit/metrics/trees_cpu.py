"""One boosting stage of the DCI probes on the CPU, compiled (numba): the trees of :mod:`.trees`, one by one.

Same split rules, tie-breaks and leaf values as the torch version (:func:`.trees.grow` and
:func:`.gbt.fit_probes`), which stays the path for CUDA. On a CPU the torch version is a chain of
memory-bound eager passes (gathers, prefix sums, scatters: ≈ 10 a position and level); here each
(node, feature) is one branch-free sweep over the node's samples in feature order with a running
sum (the classic exact presorted algorithm), and a stable partition carries every feature's order
to the children.

A candidate split of node k after its first j samples in feature order (the next sample's value
more than sklearn's ``FEATURE_THRESHOLD`` above) scores |n_k·S_l − j·S_k| / √(j·(n_k − j)), the root
of sklearn's ``friedman_mse`` proxy; the weight 1/√(j·(n_k − j)), 0 where no split is allowed, is
stored per position (for the root once per fit; for children by the partition). Among candidates
within ``tie_rtol`` of the node's best, the feature of highest priority wins, then its first such
position (a second sweep of that feature finds it).
"""

from __future__ import annotations

import numba
import numpy as np

FT = np.float32(1e-7)  # sklearn's FEATURE_THRESHOLD (float32), as trees.FEATURE_THRESHOLD


def inverse_roots(n: int) -> np.ndarray:
    """1/√m for m = 0..n, with 0 at m = 0 (no split leaves a side empty)."""
    rs = np.zeros(n + 1)
    rs[1:] = 1.0 / np.sqrt(np.arange(1, n + 1))
    return rs


@numba.njit(cache=True, nogil=True)
def _sweep(ids, w, r, sk):
    """Best score over the candidate splits of one node: samples ``ids`` in feature order, their
    weights ``w``, node sum ``sk``; 0 if there is none. Branch-free."""
    nk = len(ids)
    sl, top = r[ids[0]], 0.0
    for j in range(1, nk):
        top = max(top, abs(nk * sl - j * sk) * w[j])
        sl += r[ids[j]]
    return top


@numba.njit(cache=True, nogil=True)
def _first(ids, w, r, sk, band):
    """Samples left of the first candidate scoring ≥ band (band ≤ 0: of the first one), −1 if none."""
    nk = len(ids)
    sl = r[ids[0]]
    for j in range(1, nk):
        if w[j] > 0.0 and (band <= 0.0 or abs(nk * sl - j * sk) * w[j] >= band):
            return j
        sl += r[ids[j]]
    return -1


@numba.njit(cache=True, nogil=True)
def _partition(src, left, dst, a0, nl):
    """Stable partition of one node's samples ``src`` (one feature's order) into its children at
    ``dst[a0:]`` (left: the ``nl`` first)."""
    a, b = a0, a0 + nl
    for p in range(len(src)):
        i = src[p]
        g = left[i]
        dst[a if g else b] = i
        a += g
        b += 1 - g


@numba.njit(cache=True, nogil=True)
def _weights(ids, x32f, rs, dw):
    """A child's candidate weights from its samples ``ids`` in feature order: 1/√(j·(n − j)), 0 where
    the values ``x32f`` tie. Branch-free: collapsed latents tie at random positions (4x faster there)."""
    n = len(ids)
    if n == 0:
        return
    dw[0] = 0.0
    prev = x32f[ids[0]]
    for j in range(1, n):
        xv = x32f[ids[j]]
        dw[j] = rs[j] * rs[n - j] * (xv > prev + FT)
        prev = xv


@numba.njit(cache=True, nogil=True)
def root_weights(order, x32, rs):
    """(D, N) weight of the root's candidate after j samples of each feature's order (0: tied)."""
    w = np.empty(order.shape)
    for f in range(order.shape[0]):
        _weights(order[f], x32[f], rs, w[f])
    return w


@numba.njit(cache=True, nogil=True, inline="always")
def _impurity(n, s1, s2):
    """sklearn's MSE impurity Σr²/n − (Σr/n)² (n clamped to 1, as trees._impurity)."""
    n = max(n, 1.0)
    return s2 / n - (s1 / n) ** 2


@numba.njit(cache=True, nogil=True)
def stage(a, b, resid, target, scale, prio, order, x32, xtest, raw, raw_test, importance, rs, w0,
          lr, depth, eps, tie_rtol, zero_rtol):
    """Grow trees a..b-1 of one stage on their residuals and add their Newton leaf values to the
    train and test raw scores and their impurity decreases (/ N) to ``importance``, in place.

    resid, target, raw (T, N) float64; scale (T,); prio (T, D, 2**depth − 1); order (D, N) int32 stable
    argsort of the float32 features ``x32`` (D, N); xtest (D, M) float64; raw_test (T, M);
    importance (T, D); rs = inverse_roots(N); w0 = root_weights(order, x32, rs)."""
    d, n = order.shape
    m = xtest.shape[1]
    nodes, leaves = 2 ** depth - 1, 2 ** depth
    node = np.empty(n, np.int64)
    left = np.empty(n, np.uint8)  # 1 where the sample goes to the left child (bytes: stays in L1)
    bufs = (np.empty((d, n), np.int32), np.empty((d, n), np.int32))  # samples by node, sorted
    wbufs = (np.empty((d, n)), np.empty((d, n)))  # their candidates' weights
    top = np.empty((leaves, d))
    st, cnt, nlft = np.empty(leaves, np.int64), np.empty(leaves, np.int64), np.empty(leaves, np.int64)
    s1, s2 = np.empty(leaves), np.empty(leaves)
    act = np.empty(leaves, np.bool_)
    feature, threshold = np.empty(nodes, np.int64), np.empty(nodes)
    split = np.empty(nodes, np.bool_)
    lc, l1, l2, lh, value = np.empty(leaves), np.empty(leaves), np.empty(leaves), np.empty(leaves), np.empty(leaves)
    for t in range(a, b):
        r = resid[t]
        node[:] = 0
        feature[:] = 0
        threshold[:] = np.inf
        split[:] = False
        src, w = order, w0
        st[0], cnt[0] = 0, n
        level = 0
        for level in range(depth):
            s_, h0 = 2 ** level, 2 ** level - 1
            s1[:s_] = 0.0
            s2[:s_] = 0.0
            for i in range(n):
                k = node[i]
                s1[k] += r[i]
                s2[k] += r[i] * r[i]
            anyact = False
            for k in range(s_):
                parent = True if level == 0 else split[2 ** (level - 1) - 1 + k // 2]
                act[k] = parent and cnt[k] >= 2 and _impurity(cnt[k], s1[k], s2[k]) > eps
                anyact = anyact or act[k]
            if not anyact:
                break
            for k in range(s_):
                if act[k]:
                    for f in range(d):
                        top[k, f] = _sweep(src[f, st[k]:st[k] + cnt[k]], w[f, st[k]:st[k] + cnt[k]], r, s1[k])
            for k in range(s_):
                if not act[k]:
                    continue
                h = h0 + k
                best = top[k].max()
                band = best * (1 - tie_rtol)
                fast = best > zero_rtol * cnt[k] * np.sqrt(max(_impurity(cnt[k], s1[k], s2[k]), 0.0))
                fs, j = -1, -1
                for f in range(d):  # the feature of highest priority among the tied best (or any valid)
                    if fs >= 0 and prio[t, f, h] <= prio[t, fs, h]:
                        continue
                    if fast and top[k, f] >= band:
                        fs = f
                    elif not fast:
                        q = _first(src[f, st[k]:st[k] + cnt[k]], w[f, st[k]:st[k] + cnt[k]], r, s1[k], 0.0)
                        if q >= 0:
                            fs, j = f, q
                if fs < 0:
                    continue
                ids = src[fs, st[k]:st[k] + cnt[k]]
                if fast:  # its first position within the band
                    j = _first(ids, w[fs, st[k]:st[k] + cnt[k]], r, s1[k], band)
                split[h], feature[h] = True, fs
                threshold[h] = np.float64(x32[fs, ids[j - 1]]) / 2.0 + np.float64(x32[fs, ids[j]]) / 2.0
            nlft[:s_] = 0
            for i in range(n):  # route: a node that does not split sends everything to its left child
                k = node[i]
                h = h0 + k
                g = 1 if np.float64(x32[feature[h], i]) <= threshold[h] else 0
                left[i] = g
                nlft[k] += g
                node[i] = 2 * k + 1 - g
            if level + 1 < depth:  # stable partition of every node's samples into its two children
                dst, dw = bufs[level % 2], wbufs[level % 2]
                for f in range(d):
                    for k in range(s_):
                        a0, e = st[k], st[k] + cnt[k]
                        mid = a0 + nlft[k]
                        _partition(src[f, a0:e], left, dst[f], a0, nlft[k])
                        _weights(dst[f, a0:mid], x32[f], rs, dw[f, a0:mid])
                        _weights(dst[f, mid:e], x32[f], rs, dw[f, mid:e])
                for k in range(s_ - 1, -1, -1):
                    st[2 * k + 1], cnt[2 * k + 1] = st[k] + nlft[k], cnt[k] - nlft[k]
                    st[2 * k], cnt[2 * k] = st[k], nlft[k]
                src, w = dst, dw
        if not anyact:  # stopped early: carry the nodes down to the leaf level (left children)
            for i in range(n):
                node[i] <<= depth - level
        lc[:] = 0.0
        l1[:] = 0.0
        l2[:] = 0.0
        lh[:] = 0.0
        tg = target[t]
        for i in range(n):
            k = node[i]
            p_ = tg[i] - r[i]  # sklearn recovers the probability from the negative gradient
            lc[k] += 1.0
            l1[k] += r[i]
            l2[k] += r[i] * r[i]
            lh[k] += p_ * (1.0 - p_)
        for level in range(depth):  # impurity decrease of each split, from its leaves' sums
            w = 2 ** (depth - level)
            for k in range(2 ** level):
                h = 2 ** level - 1 + k
                if not split[h]:
                    continue
                pc = pp1 = pp2 = 0.0
                gain = 0.0
                for half in range(2):
                    c0 = c1 = c2 = 0.0
                    for q in range(k * w + half * w // 2, k * w + (half + 1) * w // 2):
                        c0 += lc[q]
                        c1 += l1[q]
                        c2 += l2[q]
                    gain -= c0 * _impurity(c0, c1, c2)
                    pc, pp1, pp2 = pc + c0, pp1 + c1, pp2 + c2
                importance[t, feature[h]] += (gain + pc * _impurity(pc, pp1, pp2)) / n
        for q in range(leaves):  # Newton step with the (K−1)/K factor in ``scale``
            c = max(lc[q], 1.0)
            den = lh[q] / c
            value[q] = 0.0 if abs(den) < 1e-150 else scale[t] * l1[q] / c / den
        for i in range(n):
            raw[t, i] += lr * value[node[i]]
        for j in range(m):
            k = 0
            for level in range(depth):
                h = 2 ** level - 1 + k
                k = 2 * k + (0 if xtest[feature[h], j] <= threshold[h] else 1)
            raw_test[t, j] += lr * value[k]
