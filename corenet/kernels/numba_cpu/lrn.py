"""Local response normalization kernels (Numba CPU): across channels and within a channel.

Contract (every backend defines exactly these names and signatures)
-------------------------------------------------------------------
``x, y, scale, gy, gx`` are C-contiguous (N, C, H, W) arrays of one dtype (float32/float64);
outputs are preallocated and fully overwritten. ``alpha`` is the EFFECTIVE coefficient: the
caller has already divided it by ``size`` (across) or ``size**2`` (within) when its convention
asks for that. ``lo = size // 2`` and ``hi = (size - 1) // 2``.

``lrn_across_forward(x, y, scale, size, alpha, beta, k)``
    ``scale[c] = k + alpha * sum_{c' = c-lo}^{c+hi} x[c']**2`` (channels clipped to ``[0, C)``),
    ``y = x * scale**(-beta)``. ``scale`` is OUT, or an empty ``(0, 0, 0, 0)`` array when the caller
    does not need it (inference). The window sum is a running sum over channels per pixel, in
    float64: channel ``c + hi`` is added, then channel ``c - lo - 1`` subtracted (clamped at 0).
``lrn_across_backward(x, scale, gy, gx, size, alpha, beta)``
    With ``d = scale**beta`` and ``t = gy * x / (d * scale)``:
    ``gx[j] = gy[j] / d[j] - 2 * alpha * beta * x[j] * sum_{c = j-hi}^{j+lo} t[c]`` (clipped),
    the sum again a float64 running sum over channels (``t[j+lo]`` added, ``t[j-hi-1]`` removed).
``lrn_within_forward(x, y, scale, size, alpha, beta, k)``
    ``scale[h, w] = k + alpha * sum x[h', w']**2`` over ``h' in [h-lo, h+hi], w' in [w-lo, w+hi]``
    (zero padding), ``y = x * scale**(-beta)``; ``scale`` may be empty as above. The box sum is
    separable: rows first (float64, taps in ascending order), then columns.
``lrn_within_backward(x, scale, gy, gx, size, alpha, beta)``
    ``gx = gy / d - 2 * alpha * beta * x * B(t)`` with ``B`` the box sum over the reversed
    window ``[h-hi, h+lo] x [w-hi, w+lo]``.

``d = scale**beta`` is computed in the input dtype, with square roots for ``beta`` in
{0.5, 0.75, 1} (``0.75`` is everyone's default and there is no vectorised ``pow`` here; a general
``beta`` costs a scalar ``pow`` per element, several times slower), and ``y = x / d``.

Parallel over (image, block of at most ``_BLOCK`` pixels) for the across kernels and over the N*C planes
for the within kernels. Every output element is computed by one thread in a fixed order, so
results are bit-identical for any thread count. ``@sized`` runs small calls on one thread
(``_threads.py``).
"""

import numpy as np
from numba import prange

from ._jit import helper, kernel
from ._threads import sized

__all__ = ["lrn_across_forward", "lrn_across_backward", "lrn_within_forward", "lrn_within_backward"]

_BLOCK = 1024  # at most this many pixels per task: the channel window of a block stays in L1/L2
_TASKS = 32  # a small batch is cut into smaller blocks so that there are at least this many tasks


@helper
def _block(N, P):
    """Pixels per task: up to ``_BLOCK``, smaller when a small batch would leave threads idle.
    (Every pixel is computed the same way whatever the block, so this never changes results.)"""
    per_image = (_TASKS + N - 1) // max(N, 1)
    return min(_BLOCK, max(64, (P + per_image - 1) // per_image))


@helper
def _pow_into(s, d, beta):
    """``d[q] = s[q] ** beta`` (1-D, in the dtype of ``d``); square roots for the common betas."""
    m = s.shape[0]
    if beta == 0.75:
        for q in range(m):
            d[q] = np.sqrt(s[q] * np.sqrt(s[q]))
    elif beta == 0.5:
        for q in range(m):
            d[q] = np.sqrt(s[q])
    elif beta == 1.0:
        for q in range(m):
            d[q] = s[q]
    else:
        for q in range(m):
            d[q] = s[q] ** beta


@sized(8)
@kernel
def lrn_across_forward(x, y, scale, size, alpha, beta, k):
    N, C, H, W = x.shape
    P = H * W
    keep = scale.shape[0] != 0
    xf = x.reshape(N, C, P)
    yf = y.reshape(N, C, P)
    sf = scale.reshape(scale.shape[0], scale.shape[1], scale.shape[2] * scale.shape[3])
    lo = size // 2
    hi = (size - 1) // 2
    blk = _block(N, P)
    nb = (P + blk - 1) // blk
    for task in prange(N * nb):
        n = task // nb
        p0 = (task - n * nb) * blk
        m = min(P - p0, blk)
        acc = np.zeros(m, np.float64)
        tmp = np.empty(m, x.dtype)
        for c in range(min(hi, C)):  # channels that enter before c = 0
            xe = xf[n, c, p0:p0 + m]
            for q in range(m):
                acc[q] += np.float64(xe[q]) * xe[q]
        for c in range(C):
            e = c + hi
            if e < C:
                xe = xf[n, e, p0:p0 + m]
                for q in range(m):
                    acc[q] += np.float64(xe[q]) * xe[q]
            o = c - lo - 1
            if o >= 0:
                xo = xf[n, o, p0:p0 + m]
                for q in range(m):
                    acc[q] = max(acc[q] - np.float64(xo[q]) * xo[q], 0.0)
            sc = sf[n, c, p0:p0 + m] if keep else tmp
            for q in range(m):
                sc[q] = k + alpha * acc[q]
            xc = xf[n, c, p0:p0 + m]
            yc = yf[n, c, p0:p0 + m]
            _pow_into(sc, yc, beta)  # yc = scale**beta, then divided into x in place
            for q in range(m):
                yc[q] = xc[q] / yc[q]


@sized(8)
@kernel
def lrn_across_backward(x, scale, gy, gx, size, alpha, beta):
    N, C, H, W = x.shape
    P = H * W
    xf = x.reshape(N, C, P)
    sf = scale.reshape(N, C, P)
    gyf = gy.reshape(N, C, P)
    gxf = gx.reshape(N, C, P)
    lo = size // 2
    hi = (size - 1) // 2
    coef = 2.0 * alpha * beta
    blk = _block(N, P)
    nb = (P + blk - 1) // blk
    for task in prange(N * nb):
        n = task // nb
        p0 = (task - n * nb) * blk
        m = min(P - p0, blk)
        acc = np.zeros(m, np.float64)
        # ring buffers of the last `size` entered channels: d = s**beta and t = gy*x/(d*s)
        dr = np.empty((size, m), x.dtype)
        tr = np.empty((size, m), x.dtype)
        for j in range(-lo, C):
            e = j + lo  # entering channel; the one leaving, e - size, shares its ring slot
            if e < C:
                slot = e % size
                ds = dr[slot]
                ts = tr[slot]
                if e - size >= 0:
                    for q in range(m):
                        acc[q] -= ts[q]
                se = sf[n, e, p0:p0 + m]
                _pow_into(se, ds, beta)
                xe = xf[n, e, p0:p0 + m]
                ge = gyf[n, e, p0:p0 + m]
                for q in range(m):
                    ts[q] = ge[q] * xe[q] / (ds[q] * se[q])
                for q in range(m):
                    acc[q] += ts[q]
            elif j - hi - 1 >= 0:  # no channel enters, one still leaves
                ts = tr[(j - hi - 1) % size]
                for q in range(m):
                    acc[q] -= ts[q]
            if j >= 0:
                dj = dr[j % size]
                xj = xf[n, j, p0:p0 + m]
                gj = gyf[n, j, p0:p0 + m]
                gxj = gxf[n, j, p0:p0 + m]
                for q in range(m):
                    gxj[q] = gj[q] / dj[q] - coef * xj[q] * acc[q]


@helper
def _box(src, dst, tmp, before, after):
    """``dst[h, w] = sum src[h', w']`` over ``[h-before, h+after] x [w-before, w+after]``, zero padded."""
    H, W = src.shape
    for h in range(H):
        for w in range(W):
            s = 0.0
            for v in range(max(w - before, 0), min(w + after + 1, W)):
                s += src[h, v]
            tmp[h, w] = s
    for h in range(H):
        for w in range(W):
            dst[h, w] = 0.0
        for u in range(max(h - before, 0), min(h + after + 1, H)):
            for w in range(W):
                dst[h, w] += tmp[u, w]


@sized(16)
@kernel
def lrn_within_forward(x, y, scale, size, alpha, beta, k):
    N, C, H, W = x.shape
    keep = scale.shape[0] != 0
    lo = size // 2
    hi = (size - 1) // 2
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        xp = x[n, c]
        sq = np.empty((H, W), np.float64)
        for h in range(H):
            for w in range(W):
                sq[h, w] = np.float64(xp[h, w]) * xp[h, w]
        tmp = np.empty((H, W), np.float64)
        box = np.empty((H, W), np.float64)
        _box(sq, box, tmp, lo, hi)
        sp = scale[n, c].reshape(H * W) if keep else np.empty(H * W, x.dtype)
        bf = box.reshape(H * W)
        for q in range(H * W):
            sp[q] = k + alpha * bf[q]
        xq = xp.reshape(H * W)
        yq = y[n, c].reshape(H * W)
        _pow_into(sp, yq, beta)
        for q in range(H * W):
            yq[q] = xq[q] / yq[q]


@sized(16)
@kernel
def lrn_within_backward(x, scale, gy, gx, size, alpha, beta):
    N, C, H, W = x.shape
    lo = size // 2
    hi = (size - 1) // 2
    coef = 2.0 * alpha * beta
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        xq = x[n, c].reshape(H * W)
        sq = scale[n, c].reshape(H * W)
        gq = gy[n, c].reshape(H * W)
        d = np.empty(H * W, x.dtype)
        _pow_into(sq, d, beta)
        t = np.empty((H, W), np.float64)
        tq = t.reshape(H * W)
        for q in range(H * W):
            tq[q] = gq[q] * xq[q] / (d[q] * sq[q])
        tmp = np.empty((H, W), np.float64)
        box = np.empty((H, W), np.float64)
        _box(t, box, tmp, hi, lo)
        bq = box.reshape(H * W)
        g = gx[n, c].reshape(H * W)
        for q in range(H * W):
            g[q] = gq[q] / d[q] - coef * xq[q] * bq[q]
