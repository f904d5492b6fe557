"""Depth-limited regression trees grown exactly as scikit-learn grows them, many trees at once (torch).

The trees of the DCI probes (:mod:`.gbt`): split rules of scikit-learn 1.9 (``tree/_splitter.pyx``,
``_criterion.pyx``, ``_tree.pyx``): float32 inputs, midpoint thresholds, values within ``FEATURE_THRESHOLD``
tied, ``impurity ≤ EPS`` leaves, min 1 sample a leaf, impurity-decrease importances.

Speed comes from vectorising: every tree of a stage (all classes of all factors) and every node of a
level is grown at once. Each (tree, feature) row holds the samples grouped by node and sorted by the
feature (presorted once; a stable counting partition carries the rows to the next level), so all
candidate splits of all nodes are read off one prefix sum of the residuals. sklearn 1.9 grows its
trees with the ``squared_error`` proxy S_L²/n_L + S_R²/n_R, which orders splits exactly as the
``friedman_mse`` proxy (n_R S_L − n_L S_R)²/(n_L n_R); we maximise the root of the latter.

Ties deviate: where splits are equally good, sklearn keeps the first of its random feature order
(``random_state``) or whichever float rounding favours; we take, among candidates within a relative
1e-9 of the best, the feature of highest seeded random priority, then the lowest threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

#: sklearn's ``FEATURE_THRESHOLD`` (float32): sorted neighbours closer than this are one value
FEATURE_THRESHOLD = np.float32(1e-7)
#: sklearn's ``EPSILON``: a node with impurity ≤ EPS is a leaf
EPS = float(np.finfo(np.float64).eps)
TIE_RTOL = 1e-9  # candidates within this relative distance of the best are ties
ZERO_RTOL = 1e-10  # a best split below ZERO_RTOL·n·sqrt(impurity) counts as zero gain


@dataclass
class Presorted:
    """The float32-rounded training features, sorted once per feature, and their near-ties."""

    x: torch.Tensor  # (D, N) float32: the values sklearn sees
    xd: torch.Tensor  # (D, N) the same values as float64
    order: torch.Tensor  # (D, N) int64: stable argsort of each feature
    tie_f: torch.Tensor  # (M,) feature, sample and rank of every sorted position whose successor
    tie_s: torch.Tensor  # lies within FEATURE_THRESHOLD (no split there; deeper nodes recheck it)
    tie_k: torch.Tensor

    @classmethod
    def build(cls, x: torch.Tensor) -> "Presorted":
        xt = x.t().contiguous().to(torch.float32)
        order = torch.argsort(xt, dim=1, stable=True)
        sv = xt.gather(1, order)
        f, k = (sv[:, 1:] <= sv[:, :-1] + _ft(x.device)).nonzero(as_tuple=True)
        return cls(xt, xt.double(), order, f, order[f, k], k)


def _ft(device: torch.device) -> torch.Tensor:
    return torch.tensor(FEATURE_THRESHOLD, device=device)


@dataclass
class Trees:
    """One depth-``depth`` tree per row: node ``s`` of level ``L`` is heap node ``2**L - 1 + s``."""

    feature: torch.Tensor  # (T, 2**depth - 1) int64 split feature (0 where the node does not split)
    threshold: torch.Tensor  # (T, 2**depth - 1) float64: go left iff x <= threshold (+inf: no split)
    leaf: torch.Tensor  # (T, N) int64 leaf (node index at level ``depth``) of each training sample
    importance: torch.Tensor  # (T, D) float64 unnormalised impurity decrease per feature / N
    leaf_stats: torch.Tensor  # (T, 2**depth, 3): count, sum of residuals, sum of squared residuals


def _impurity(stats: torch.Tensor) -> torch.Tensor:
    """sklearn's MSE node impurity Σr²/n − (Σr/n)² from (…, [count, Σr, Σr²]) (0 for empty nodes)."""
    n = stats[..., 0].clamp(min=1)
    return stats[..., 2] / n - (stats[..., 1] / n) ** 2


BLOCK = 128  # node segments start at multiples of BLOCK positions, so segment maxima are block maxima


class Work:
    """Buffers for growing up to ``c`` trees at once, reused from stage to stage.

    Row (tree t, feature f) holds sample ids ``t·N + n`` grouped by node, each node sorted by feature
    f and starting at a multiple of BLOCK; gaps hold the id ``PAD = c·N`` of a zero residual, and the
    last position of a row is never used (the partition dumps padding there)."""

    def __init__(self, ps: Presorted, c: int, depth: int) -> None:
        d, n = ps.x.shape
        dev = ps.x.device
        npad = -(-(n + BLOCK * 2 ** (depth - 1) + 1) // BLOCK) * BLOCK
        self.c, self.d, self.n, self.np, self.nb = c, d, n, npad, npad // BLOCK
        self.pos = torch.arange(npad, device=dev, dtype=torch.int32).view(1, self.nb, BLOCK)
        self.posb = self.pos.double()
        self.rows = torch.arange(c, device=dev)[:, None] * n
        order = torch.cat([ps.order, ps.order.new_full((d, npad - n), -1)], 1)
        self.perm0 = torch.where(order[None] < 0, c * n, order[None] + self.rows[:, :, None]).int().contiguous()
        self.perm = [torch.empty_like(self.perm0), torch.empty_like(self.perm0)]
        self.r, self.r2 = (torch.zeros(c * n + 1, dtype=torch.float64, device=dev) for _ in range(2))
        self.left = torch.zeros(c * n + 1, dtype=torch.int32, device=dev)
        # the per-position passes run SUB trees at a time so that their buffers stay in the CPU cache
        self.sub = c if dev.type != "cpu" else max(1, min(c, 300_000 // (d * npad)))
        self.z = torch.empty(self.sub, d, npad, dtype=torch.float64, device=dev)
        self.z12 = torch.empty(2, c, npad, dtype=torch.float64, device=dev)  # r, r² in feature 0's order
        self.g, self.cs, self.u = (torch.empty(self.sub, d, npad, dtype=torch.int32, device=dev) for _ in range(3))
        self.idx = torch.empty(self.sub, d, npad, dtype=torch.long, device=dev)
        self.bm = torch.empty(c, d, self.nb, dtype=torch.float64, device=dev)  # block maxima of |objective|
        self.bcs = torch.empty(c, d, self.nb, dtype=torch.float64, device=dev)  # prefix sums at block ends
        self.bad = torch.zeros(c, d * npad, dtype=torch.bool, device=dev)  # near-tie positions of this level
        self.tie = (ps.tie_f * npad + ps.tie_k)[None].expand(c, -1)  # flat (feature, position) of ties
        n_l = self.posb.view(-1) + 1  # the root's weights 1/sqrt(n_l n_r) are the same every stage
        self.w0 = torch.rsqrt((n_l * (n - n_l)).clamp(min=1.0)) * (n_l < n)
        self.nlw0 = n_l * self.w0


def _blocks(cnt: torch.Tensor, nb: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First position of each node (c, S) and node of each block (c, nb) in the padded layout."""
    nblk = -(-cnt // BLOCK)
    bst = torch.cumsum(nblk, 1) - nblk
    return bst * BLOCK, (torch.arange(nb, device=cnt.device)[None, None] >= bst[:, 1:, None]).sum(1)


def _per_block(table: torch.Tensor, blockseg: torch.Tensor) -> torch.Tensor:
    """(c, nb, 1) value of the block's node, to broadcast against positions (1, nb, BLOCK)."""
    return table.gather(1, blockseg)[:, :, None]


def _first_valid(ps: Presorted, perm: torch.Tensor, prio: torch.Tensor, t: int, a: int, b: int
                 ) -> tuple[int, int] | None:
    """Feature of highest priority with a valid split inside positions [a, b) of tree t, and its
    first valid position (sklearn: the first feature visited, the first split with a finite proxy)."""
    vals = ps.x.gather(1, perm[t, :, a:b].long() - t * ps.x.shape[1])
    ok = vals[:, 1:] > vals[:, :-1] + _ft(vals.device)
    has = ok.any(1)
    if not bool(has.any()):
        return None
    f = int(torch.where(has, prio, -1.0).argmax())
    return f, a + int(ok[f].to(torch.uint8).argmax())


def _route(x: torch.Tensor, feat: torch.Tensor, thr: torch.Tensor, node: torch.Tensor) -> torch.Tensor:
    """Go-left flags of columns of ``x`` (D, M) at their current ``node`` (c, M) of one level's splits
    (each column's own split looked up: (c, M) work, not (c, S, M))."""
    if feat.shape[1] == 1:
        return torch.index_select(x, 0, feat[:, 0]) <= thr
    return torch.gather(x, 0, feat.gather(1, node)) <= thr.gather(1, node)


def grow(r: torch.Tensor, ps: Presorted, prio: torch.Tensor, depth: int, wk: Work) -> Trees:
    """Grow one regression tree per row of residuals ``r`` (c, N), all rows and nodes at once.

    ``prio`` (c, D, 2**depth - 1) ranks equally good features (sklearn: its random feature order)."""
    c, (d, n, npad, nb) = r.shape[0], (wk.d, wk.n, wk.np, wk.nb)
    dev, rows, sub, bm = r.device, wk.rows[:c], wk.sub, wk.bm[:c]
    z1, z2 = wk.z12[0, :c], wk.z12[1, :c]
    wk.r[:c * n], wk.r2[:c * n] = r.reshape(-1), (r * r).reshape(-1)
    node = torch.zeros(c, n, dtype=torch.long, device=dev)
    perm, other, tie = wk.perm0[:c], 0, wk.tie[:c]
    active = torch.ones(c, 1, dtype=torch.bool, device=dev)
    feature = torch.zeros(c, 2 ** depth - 1, dtype=torch.long, device=dev)
    threshold = torch.full((c, 2 ** depth - 1), float("inf"), dtype=torch.float64, device=dev)
    splits = []  # per level: (feature (c, S), is split (c, S))
    cnt = torch.full((c, 1), n, dtype=torch.long, device=dev)
    start, blockseg = _blocks(cnt, nb)
    for level in range(depth):
        s_ = 2 ** level
        row0 = perm[:, 0].reshape(-1)
        torch.index_select(wk.r, 0, row0, out=z1.view(-1))
        torch.index_select(wk.r2, 0, row0, out=z2.view(-1))
        wk.z12[:, :c].cumsum_(2)
        edge = torch.cat([start - 1, start + cnt - 1], 1).clamp(min=0)  # prefix sums before / at the end
        sums = torch.stack([z1.gather(1, edge), z2.gather(1, edge)], 2)
        sums[:, :s_] *= (start > 0)[..., None]
        st = torch.cat([cnt[..., None].double(), (sums[:, s_:] - sums[:, :s_]) * (cnt > 0)[..., None]], 2)
        imp = _impurity(st)
        active = active & (cnt >= 2) & (imp > EPS)
        if level == 0:
            nw, kw = (n * wk.w0).expand(c, npad), torch.outer(-st[:, 0, 1], wk.nlw0)
        else:
            n_a = _per_block(torch.where(active, st[..., 0], 0.0), blockseg)
            n_l = wk.posb + _per_block(1.0 - start, blockseg)  # position in the node, from 1
            n_r = n_a - n_l
            w = torch.rsqrt((n_l * n_r).clamp_(min=1.0)).mul_(n_r > 0)
            c1 = _per_block(st[..., 0] * sums[:, :s_, 0] + (1.0 - start) * st[..., 1], blockseg)
            kw = torch.addcmul(c1, wk.posb, _per_block(st[..., 1], blockseg)).mul_(w).neg_().view(c, npad)
            nw = (n_a * w).view(c, npad)
        if tie.shape[1]:  # near-tied neighbours (c, M): no split between them; deeper, recheck the pair
            if level:
                nxt = perm.reshape(c, -1).gather(1, (tie + 1).clamp(max=d * npad - 1)).long() - rows
                xf = ps.x.view(-1)
                keep = xf[ps.tie_f * n + nxt.clamp(0, n - 1)] > xf[ps.tie_f * n + ps.tie_s] + _ft(dev)
            else:
                keep = torch.zeros_like(tie, dtype=torch.bool)
            wk.bad[:c].scatter_(1, tie, ~keep)
            keep = keep.double()
        for a in range(0, c, sub):  # residuals in each row's order, prefix sums, |objective|, block maxima
            b = min(a + sub, c)
            z = wk.z[:b - a]
            torch.index_select(wk.r, 0, perm[a:b].reshape(-1), out=z.view(-1))
            z.cumsum_(2)
            wk.bcs[a:b] = z.view(b - a, d, nb, BLOCK)[..., -1]
            torch.addcmul(kw[a:b, None], z, nw[a:b, None], out=z).abs_()  # |n·S_l − n_l·S| / √(n_l n_r)
            if tie.shape[1]:
                zf, tt = z.view(b - a, -1), tie[a:b]
                zf.scatter_(1, tt, zf.gather(1, tt).mul_(keep[a:b]))
            torch.amax(z.view(b - a, d, nb, BLOCK), 3, out=bm[a:b])
        m = z.new_zeros(c, d, s_).scatter_reduce_(2, blockseg[:, None, :].expand(c, d, nb), bm, "amax")
        best = m.amax(1)  # (c, S)
        fast = active & (best > ZERO_RTOL * st[..., 0] * imp.clamp(min=0).sqrt())
        thr = best * (1 - TIE_RTOL)
        lp = prio[:, :, s_ - 1:2 * s_ - 1]
        dstar = torch.where(m >= thr[:, None, :], 1 + lp, 0.0).argmax(1)
        bsel = bm.gather(1, dstar[:, :, None].expand(c, s_, nb))
        inseg = blockseg[:, None, :] == torch.arange(s_, device=dev)[None, :, None]
        bstar = ((bsel >= thr[..., None]) & inseg).to(torch.uint8).argmax(2)
        # the chosen block again, exactly: its prefix sums continue from the stored one before it
        first = (bstar * BLOCK)[..., None] + torch.arange(BLOCK, device=dev)  # (c, S, BLOCK) positions
        at = (dstar * npad)[..., None] + first
        rv = wk.r[perm.reshape(c, -1).gather(1, at.view(c, -1)).long()].view(c, s_, BLOCK)
        base = torch.where(bstar > 0, wk.bcs[:c].view(c, -1).gather(1, dstar * nb + (bstar - 1).clamp(min=0)), 0.0)
        zb = torch.cat([base[..., None], rv], 2).cumsum(2)[..., 1:]
        zb = torch.addcmul(kw.gather(1, first.view(c, -1)).view(c, s_, BLOCK), zb,
                           nw.gather(1, first.view(c, -1)).view(c, s_, BLOCK)).abs_()
        if tie.shape[1]:
            zb.masked_fill_(wk.bad[:c].gather(1, at.view(c, -1)).view(c, s_, BLOCK), 0.0)
            wk.bad[:c].scatter_(1, tie, False)  # ties move with the partition: clear this level's marks
        pstar = bstar * BLOCK + (zb >= thr[..., None]).to(torch.uint8).argmax(2)
        split = fast.clone()
        for t, s in (active & ~fast).nonzero().tolist():  # zero-gain nodes: first valid split (rare)
            a = int(start[t, s])
            hit = _first_valid(ps, perm, lp[t, :, s], t, a, a + int(cnt[t, s]))
            if hit is not None:
                dstar[t, s], pstar[t, s] = hit
                split[t, s] = True
        at = dstar * npad + pstar.clamp(max=npad - 2)
        lo = (perm.reshape(c, -1).gather(1, at).long() - rows).clamp(0, n - 1)
        hi = (perm.reshape(c, -1).gather(1, at + 1).long() - rows).clamp(0, n - 1)
        thr_node = torch.where(split, ps.xd[dstar, lo] / 2.0 + ps.xd[dstar, hi] / 2.0, float("inf"))
        feat_node = torch.where(split, dstar, 0)
        feature[:, s_ - 1:2 * s_ - 1], threshold[:, s_ - 1:2 * s_ - 1] = feat_node, thr_node
        splits.append((feat_node, split))
        left = _route(ps.xd, feat_node, thr_node, node)
        n_left = torch.where(split, pstar - start + 1, cnt)
        ccnt = torch.stack([n_left, cnt - n_left], 2).view(c, 2 * s_)
        if level + 1 < depth:  # stable partition of every node's segment into its two children
            nstart, nblockseg = _blocks(ccnt, nb)
            before = torch.cumsum(n_left, 1) - n_left  # lefts in the nodes laid out before
            pad = wk.pos - _per_block(start, blockseg) >= _per_block(cnt, blockseg)
            e = _per_block(nstart[:, 1::2] + before - start, blockseg).int() + wk.pos  # right: e − #left
            rgt = e + pad * (_per_block(npad - 1 + before + n_left, blockseg).int() - e)  # padding: last
            ab = (_per_block(nstart[:, 0::2] - before - 1, blockseg).int() - rgt).view(c, 1, npad)
            wk.left[:c * n] = left.reshape(-1)
            nxt_perm = wk.perm[other][:c].fill_(wk.c * n)  # the padding id
            rgt = rgt.view(c, 1, npad)
            ties = []
            for a in range(0, c, sub):
                b = min(a + sub, c)
                g, cs, u, idx = wk.g[:b - a], wk.cs[:b - a], wk.u[:b - a], wk.idx[:b - a]
                torch.index_select(wk.left, 0, perm[a:b].reshape(-1), out=g.view(-1))
                torch.cumsum(g, 2, out=cs)
                torch.sub(rgt[a:b], cs, out=u)
                torch.add(ab[a:b], cs, alpha=2, out=cs)
                torch.addcmul(u, g, cs, out=cs)  # left: start + #left so far − 1; right: likewise
                idx.copy_(cs)
                nxt_perm[a:b].scatter_(2, idx, perm[a:b])
                ties.append((tie[a:b] // npad) * npad + idx.view(b - a, -1).gather(1, tie[a:b]))
            tie = torch.cat(ties)
            perm, other = nxt_perm, 1 - other
            start, blockseg = nstart, nblockseg
        node = 2 * node + (~left).long()
        cnt = ccnt
        active = split[:, :, None].expand(-1, -1, 2).reshape(c, 2 * s_)
    idx = (node + torch.arange(c, device=dev)[:, None] * 2 ** depth).view(-1)
    leaf = torch.stack([torch.bincount(idx, w, minlength=c * 2 ** depth).double()
                        for w in (None, wk.r[:c * n], wk.r2[:c * n])], 1).view(c, -1, 3)
    importance = r.new_zeros(c, d)
    for level, (feat_node, split) in enumerate(splits):
        parent = leaf.view(c, 2 ** level, -1, 3).sum(2)
        child = leaf.view(c, 2 ** level, 2, -1, 3).sum(3)
        gain = parent[..., 0] * _impurity(parent) - (child[..., 0] * _impurity(child)).sum(2)
        importance.scatter_add_(1, feat_node, torch.where(split, gain, 0.0))
    return Trees(feature, threshold, node, importance / n, leaf)


def apply(trees: Trees, x: torch.Tensor, depth: int = 3) -> torch.Tensor:
    """(T, M) leaf of each column of ``x`` (D, M) in every tree (sklearn ``apply``; x float64 of float32)."""
    node = torch.zeros(trees.feature.shape[0], x.shape[1], dtype=torch.long, device=x.device)
    for level in range(depth):
        heap = slice(2 ** level - 1, 2 ** (level + 1) - 1)
        node = 2 * node + (~_route(x, trees.feature[:, heap], trees.threshold[:, heap], node)).long()
    return node
