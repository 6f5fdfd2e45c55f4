"""CUDA pooling: max/min with argmax, average/sum, adaptive average and max; forward and backward.

Contract: exactly ``numba_cpu/pool.py``'s names, signatures and semantics (read its docstring):
OUT arrays (``y``, ``idx``, ``gx``) are preallocated by the caller, numpy or device; a numpy OUT
array is filled by copying the device result back into it.

Design
------
Forward kernels give one output element per thread (grid-stride loop over ``N*C*Ho*Wo``;
consecutive threads take consecutive ``ow``, so reads and writes coalesce). Max/min pooling finds
the value and its argmax in one pass with the CPU backend's rule: strict comparison in row-major
window order keeps the FIRST extremal tap; a NaN tap wins and the first NaN stays.

Global pooling (the window is the whole plane, ``1 x 1`` output): one block per plane instead,
its threads sharing the plane and combining with a fixed-order tree (sum: float64; max/min: the
first extremum, as above), so the average agrees with the CPU's to rounding, not to the bit.

Backward kernels are gathers, not scatters: one thread per INPUT element walks the outputs whose
window covers it, in ascending ``(oh, ow)`` order (taps ``i``/``j`` descending), and adds their
contributions straight into its ``gx`` element. That is the CPU backend's order of additions for
every element, so there are no atomics, no races, and results equal the CPU backend's bit for bit
(sums and quotients in float64 where the CPU kernels promote; checked under the simulator).
``extreme_pool_backward`` reads the window geometry of the contract for that gather (the CPU
kernels scatter from ``idx`` and ignore it); ``adaptive_max_pool_backward`` gathers over the
adaptive bins, which the shapes alone determine.
"""

from __future__ import annotations

import math

import numba

from ...geometry import tap_range
from ._reduce import block_sum
from ._runtime import MAX_BLOCKS, THREADS, cuda, dev, dmin, grid, out_pair

__all__ = [
    "extreme_pool_forward",
    "extreme_pool_backward",
    "avg_pool_forward",
    "avg_pool_backward",
    "adaptive_avg_pool_forward",
    "adaptive_avg_pool_backward",
    "adaptive_max_pool_forward",
    "adaptive_max_pool_backward",
]


_tap_range = cuda.jit(device=True)(tap_range)


@cuda.jit(device=True)
def _divisor(h0, w0, H, W, kh, kw, dh, dw, pt, pb, pl, pr, count_include_pad, divisor):
    """The average's divisor for the window starting at ``(h0, w0)`` (see the contract)."""
    if divisor > 0:
        return divisor
    i0, i1 = _tap_range(h0, kh, dh, H)
    j0, j1 = _tap_range(w0, kw, dw, W)
    if count_include_pad:
        a0, a1 = _tap_range(h0 + pt, kh, dh, H + pt + pb)
        b0, b1 = _tap_range(w0 + pl, kw, dw, W + pl + pr)
        return float((a1 - a0) * (b1 - b0))
    return float((i1 - i0) * (j1 - j0))


@cuda.jit
def _extreme_forward(x, y, idx, kh, kw, sh, sw, pt, pl, dh, dw, find_min):
    N, C, H, W = x.shape
    Ho, Wo = y.shape[2], y.shape[3]
    sign = -1.0 if find_min else 1.0
    for e in range(cuda.grid(1), N * C * Ho * Wo, cuda.gridsize(1)):
        ow = e % Wo
        oh = (e // Wo) % Ho
        p = e // (Ho * Wo)
        n, c = p // C, p % C
        h0 = oh * sh - pt
        w0 = ow * sw - pl
        i0, i1 = _tap_range(h0, kh, dh, H)
        j0, j1 = _tap_range(w0, kw, dw, W)
        if i0 == i1 or j0 == j1:
            y[n, c, oh, ow] = -sign * math.inf
            idx[n, c, oh, ow] = -1
            continue
        bh = h0 + i0 * dh
        bw = w0 + j0 * dw
        best = sign * x[n, c, bh, bw]
        besti = bh * W + bw
        for i in range(i0, i1):
            h = h0 + i * dh
            for j in range(j0, j1):
                w = w0 + j * dw
                v = sign * x[n, c, h, w]
                if v > best or (v != v and best == best):  # first extremum; first NaN wins
                    best = v
                    besti = h * W + w
        y[n, c, oh, ow] = sign * best
        idx[n, c, oh, ow] = besti


@cuda.jit
def _extreme_backward(gy, idx, kh, kw, sh, sw, pt, pl, dh, dw, gx):
    N, C, H, W = gx.shape
    Ho, Wo = gy.shape[2], gy.shape[3]
    for e in range(cuda.grid(1), N * C * H * W, cuda.gridsize(1)):
        w = e % W
        h = (e // W) % H
        p = e // (H * W)
        n, c = p // C, p % C
        gx[n, c, h, w] = 0
        me = h * W + w
        for i in range(kh - 1, -1, -1):  # oh ascending
            th = h + pt - i * dh
            if th < 0 or th % sh != 0 or th // sh >= Ho:
                continue
            oh = th // sh
            for j in range(kw - 1, -1, -1):  # ow ascending
                tw = w + pl - j * dw
                if tw >= 0 and tw % sw == 0 and tw // sw < Wo and idx[n, c, oh, tw // sw] == me:
                    gx[n, c, h, w] += gy[n, c, oh, tw // sw]


@cuda.jit
def _avg_forward(x, y, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, count_include_pad, divisor):
    N, C, H, W = x.shape
    Ho, Wo = y.shape[2], y.shape[3]
    for e in range(cuda.grid(1), N * C * Ho * Wo, cuda.gridsize(1)):
        ow = e % Wo
        oh = (e // Wo) % Ho
        p = e // (Ho * Wo)
        n, c = p // C, p % C
        h0 = oh * sh - pt
        w0 = ow * sw - pl
        i0, i1 = _tap_range(h0, kh, dh, H)
        j0, j1 = _tap_range(w0, kw, dw, W)
        d = _divisor(h0, w0, H, W, kh, kw, dh, dw, pt, pb, pl, pr, count_include_pad, divisor)
        s = 0.0
        for i in range(i0, i1):
            for j in range(j0, j1):
                s += numba.float64(x[n, c, h0 + i * dh, w0 + j * dw])
        y[n, c, oh, ow] = s / d if d > 0 else 0.0


@cuda.jit
def _plane_avg(x, y, d):
    """Global average (sum when ``d == 1``): one block per ``(n, c)`` plane (block-stride over the
    planes), strided shares of the plane per thread in float64, the block's fixed-order tree."""
    N, C, H, W = x.shape
    tid = cuda.threadIdx.x
    buf = cuda.shared.array(THREADS, numba.float64)
    for p in range(cuda.blockIdx.x, N * C, cuda.gridDim.x):
        n, c = p // C, p % C
        s = 0.0
        for e in range(tid, H * W, THREADS):
            s += numba.float64(x[n, c, e // W, e % W])
        s = block_sum(buf, tid, s)
        if tid == 0:
            y[n, c, 0, 0] = s / d


@cuda.jit
def _plane_extreme(x, y, idx, find_min):
    """Global max/min with argmax, one block per plane: each thread scans its strided share in
    ascending order, then the tree keeps the better of two candidates, the lower index on a tie
    (so the FIRST extremum wins, and the first NaN, as in ``_extreme_forward``)."""
    N, C, H, W = x.shape
    tid = cuda.threadIdx.x
    val = cuda.shared.array(THREADS, numba.float64)
    pos = cuda.shared.array(THREADS, numba.int64)
    sign = -1.0 if find_min else 1.0
    L = H * W
    for p in range(cuda.blockIdx.x, N * C, cuda.gridDim.x):
        n, c = p // C, p % C
        best = -math.inf
        besti = L  # past every index: loses every tie
        for e in range(tid, L, THREADS):
            v = sign * numba.float64(x[n, c, e // W, e % W])
            if besti == L or v > best or (v != v and best == best):
                best = v
                besti = e
        val[tid] = best
        pos[tid] = besti
        cuda.syncthreads()
        stride = THREADS // 2
        while stride > 0:
            if tid < stride:
                a, ai = val[tid], pos[tid]
                b, bi = val[tid + stride], pos[tid + stride]
                if bi < L and (ai == L or (b != b and (a == a or bi < ai)) or (a == a and b > a)
                               or (b == a and bi < ai)):
                    val[tid] = b
                    pos[tid] = bi
            cuda.syncthreads()
            stride //= 2
        if tid == 0:
            y[n, c, 0, 0] = sign * val[0]
            idx[n, c, 0, 0] = pos[0]
        cuda.syncthreads()


def _whole_plane(x, y, kh, kw, pt, pl, dh, dw, pb=0, pr=0):
    """The window is the whole plane (global pooling): one block per plane instead of one thread."""
    return (y.shape[2] == y.shape[3] == 1 and kh == x.shape[2] and kw == x.shape[3]
            and pt == pl == pb == pr == 0 and dh == dw == 1)


@cuda.jit
def _avg_backward(gy, gx, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, count_include_pad, divisor):
    N, C, H, W = gx.shape
    Ho, Wo = gy.shape[2], gy.shape[3]
    for e in range(cuda.grid(1), N * C * H * W, cuda.gridsize(1)):
        w = e % W
        h = (e // W) % H
        p = e // (H * W)
        n, c = p // C, p % C
        gx[n, c, h, w] = 0
        for i in range(kh - 1, -1, -1):
            th = h + pt - i * dh
            if th < 0 or th % sh != 0 or th // sh >= Ho:
                continue
            oh = th // sh
            for j in range(kw - 1, -1, -1):
                tw = w + pl - j * dw
                if tw >= 0 and tw % sw == 0 and tw // sw < Wo:
                    ow = tw // sw
                    d = _divisor(oh * sh - pt, ow * sw - pl, H, W, kh, kw, dh, dw, pt, pb, pl, pr,
                                 count_include_pad, divisor)
                    if d > 0:
                        gx[n, c, h, w] += numba.float64(gy[n, c, oh, ow]) / d


@cuda.jit
def _adaptive_forward(x, y):
    N, C, H, W = x.shape
    Ho, Wo = y.shape[2], y.shape[3]
    for e in range(cuda.grid(1), N * C * Ho * Wo, cuda.gridsize(1)):
        ow = e % Wo
        oh = (e // Wo) % Ho
        p = e // (Ho * Wo)
        n, c = p // C, p % C
        h0 = (oh * H) // Ho
        h1 = -((-(oh + 1) * H) // Ho)
        w0 = (ow * W) // Wo
        w1 = -((-(ow + 1) * W) // Wo)
        s = 0.0
        for h in range(h0, h1):
            for w in range(w0, w1):
                s += numba.float64(x[n, c, h, w])
        y[n, c, oh, ow] = s / ((h1 - h0) * (w1 - w0))


@cuda.jit
def _adaptive_backward(gy, gx):
    N, C, H, W = gx.shape
    Ho, Wo = gy.shape[2], gy.shape[3]
    for e in range(cuda.grid(1), N * C * H * W, cuda.gridsize(1)):
        w = e % W
        h = (e // W) % H
        p = e // (H * W)
        n, c = p // C, p % C
        gx[n, c, h, w] = 0
        # bins containing h: floor(oh*H/Ho) <= h < ceil((oh+1)*H/Ho), i.e. oh in [lo, hi)
        for oh in range((h * Ho) // H, dmin(Ho, -((-(h + 1) * Ho) // H))):
            h0 = (oh * H) // Ho
            h1 = -((-(oh + 1) * H) // Ho)
            if h < h0 or h >= h1:
                continue
            for ow in range((w * Wo) // W, dmin(Wo, -((-(w + 1) * Wo) // W))):
                w0 = (ow * W) // Wo
                w1 = -((-(ow + 1) * W) // Wo)
                if w0 <= w and w < w1:
                    gx[n, c, h, w] += numba.float64(gy[n, c, oh, ow]) / ((h1 - h0) * (w1 - w0))


@cuda.jit
def _adaptive_max_forward(x, y, idx):
    N, C, H, W = x.shape
    Ho, Wo = y.shape[2], y.shape[3]
    for e in range(cuda.grid(1), N * C * Ho * Wo, cuda.gridsize(1)):
        ow = e % Wo
        oh = (e // Wo) % Ho
        p = e // (Ho * Wo)
        n, c = p // C, p % C
        h0 = (oh * H) // Ho
        h1 = -((-(oh + 1) * H) // Ho)
        w0 = (ow * W) // Wo
        w1 = -((-(ow + 1) * W) // Wo)
        best = x[n, c, h0, w0]
        besti = h0 * W + w0
        for h in range(h0, h1):
            for w in range(w0, w1):
                v = x[n, c, h, w]
                if v > best or (v != v and best == best):  # first maximum; first NaN wins
                    best = v
                    besti = h * W + w
        y[n, c, oh, ow] = best
        idx[n, c, oh, ow] = besti


@cuda.jit
def _adaptive_max_backward(gy, idx, gx):
    N, C, H, W = gx.shape
    Ho, Wo = gy.shape[2], gy.shape[3]
    for e in range(cuda.grid(1), N * C * H * W, cuda.gridsize(1)):
        w = e % W
        h = (e // W) % H
        p = e // (H * W)
        n, c = p // C, p % C
        gx[n, c, h, w] = 0
        me = h * W + w
        # the bins that can hold (h, w), in ascending (oh, ow) order: the CPU scatter's order
        for oh in range((h * Ho) // H, dmin(Ho, -((-(h + 1) * Ho) // H))):
            for ow in range((w * Wo) // W, dmin(Wo, -((-(w + 1) * Wo) // W))):
                if idx[n, c, oh, ow] == me:
                    gx[n, c, h, w] += gy[n, c, oh, ow]


# ---------------------------------------------------------------------- entry points


def extreme_pool_forward(x, y, idx, kh, kw, sh, sw, pt, pl, dh, dw, find_min):
    dy, fin_y = out_pair(y)
    di, fin_i = out_pair(idx)
    if _whole_plane(x, y, kh, kw, pt, pl, dh, dw):
        _plane_extreme[max(1, min(y.size, MAX_BLOCKS)), THREADS](dev(x), dy, di, bool(find_min))
    else:
        _extreme_forward[grid(y.size)](dev(x), dy, di, kh, kw, sh, sw, pt, pl, dh, dw, bool(find_min))
    fin_y()
    fin_i()


def extreme_pool_backward(gy, idx, gx, kh, kw, sh, sw, pt, pl, dh, dw):
    dg, fin = out_pair(gx)
    _extreme_backward[grid(gx.size)](dev(gy), dev(idx), kh, kw, sh, sw, pt, pl, dh, dw, dg)
    fin()


def avg_pool_forward(x, y, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, count_include_pad, divisor):
    dy, fin = out_pair(y)
    if _whole_plane(x, y, kh, kw, pt, pl, dh, dw, pb, pr):
        d = float(divisor) if divisor > 0 else float(kh * kw)
        _plane_avg[max(1, min(y.size, MAX_BLOCKS)), THREADS](dev(x), dy, d)
    else:
        _avg_forward[grid(y.size)](dev(x), dy, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw,
                                   bool(count_include_pad), float(divisor))
    fin()


def avg_pool_backward(gy, gx, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, count_include_pad, divisor):
    dg, fin = out_pair(gx)
    _avg_backward[grid(gx.size)](dev(gy), dg, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw,
                                 bool(count_include_pad), float(divisor))
    fin()


def adaptive_avg_pool_forward(x, y):
    dy, fin = out_pair(y)
    _adaptive_forward[grid(y.size)](dev(x), dy)
    fin()


def adaptive_avg_pool_backward(gy, gx):
    dg, fin = out_pair(gx)
    _adaptive_backward[grid(gx.size)](dev(gy), dg)
    fin()


def adaptive_max_pool_forward(x, y, idx):
    dy, fin_y = out_pair(y)
    di, fin_i = out_pair(idx)
    _adaptive_max_forward[grid(y.size)](dev(x), dy, di)
    fin_y()
    fin_i()


def adaptive_max_pool_backward(gy, idx, gx):
    dg, fin = out_pair(gx)
    _adaptive_max_backward[grid(gx.size)](dev(gy), dev(idx), dg)
    fin()
