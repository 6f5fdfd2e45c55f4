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
    With ``p = scale**(-beta)`` and ``t = gy * x * p / scale``:
    ``gx[j] = gy[j] * p[j] - 2 * alpha * beta * x[j] * sum_{c = j-hi}^{j+lo} t[c]`` (clipped),
    the sum again a float64 running sum over channels (``t[j+lo]`` added, ``t[j-hi-1]`` removed).
``lrn_within_forward(x, y, scale, size, alpha, beta, k)``
    ``scale[h, w] = k + alpha * sum x[h', w']**2`` over ``h' in [h-lo, h+hi], w' in [w-lo, w+hi]``
    (zero padding), ``y = x * scale**(-beta)``; ``scale`` may be empty as above. The box sum is
    separable: rows first (float64, taps in ascending order), then columns.
``lrn_within_backward(x, scale, gy, gx, size, alpha, beta)``
    ``gx = gy * p - 2 * alpha * beta * x * B(t)`` with ``B`` the box sum over the reversed
    window ``[h-hi, h+lo] x [w-hi, w+lo]``.

``scale**(-beta)`` is computed in float64 with square roots for ``beta`` in {0.5, 0.75, 1}
(``0.75`` is everyone's default and there is no vectorised ``pow`` here) and ``pow`` otherwise.

Parallel over (image, block of ``_BLOCK`` pixels) for the across kernels and over the N*C planes
for the within kernels. Every output element is computed by one thread in a fixed order, so
results are bit-identical for any thread count.
"""

import numpy as np
from numba import prange

from ._jit import helper, kernel

__all__ = ["lrn_across_forward", "lrn_across_backward", "lrn_within_forward", "lrn_within_backward"]

_BLOCK = 1024  # pixels per task: ~8 KiB of float64 running sums, the channel window stays in L1/L2


@helper
def _rpow(s, beta):
    """``s ** -beta`` for ``s > 0``."""
    if beta == 0.75:
        return 1.0 / np.sqrt(s * np.sqrt(s))
    if beta == 0.5:
        return 1.0 / np.sqrt(s)
    if beta == 1.0:
        return 1.0 / s
    return s ** (-beta)


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
    nb = (P + _BLOCK - 1) // _BLOCK
    for task in prange(N * nb):
        n = task // nb
        p0 = (task - n * nb) * _BLOCK
        m = min(P - p0, _BLOCK)
        acc = np.zeros(m, np.float64)
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
            xc = xf[n, c, p0:p0 + m]
            yc = yf[n, c, p0:p0 + m]
            if keep:
                sc = sf[n, c, p0:p0 + m]
                for q in range(m):
                    s = k + alpha * acc[q]
                    sc[q] = s
                    yc[q] = xc[q] * _rpow(s, beta)
            else:
                for q in range(m):
                    yc[q] = xc[q] * _rpow(k + alpha * acc[q], beta)


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
    nb = (P + _BLOCK - 1) // _BLOCK
    for task in prange(N * nb):
        n = task // nb
        p0 = (task - n * nb) * _BLOCK
        m = min(P - p0, _BLOCK)
        acc = np.zeros(m, np.float64)
        # ring buffers of the last `size` entered channels: t = gy*x*p/s and p = s**-beta
        tr = np.empty((size, m), np.float64)
        pr = np.empty((size, m), np.float64)
        for j in range(-lo, C):
            e = j + lo  # entering channel; the one leaving, e - size, shares its ring slot
            if e < C:
                slot = e % size
                ts = tr[slot]
                ps = pr[slot]
                if e - size >= 0:
                    for q in range(m):
                        acc[q] -= ts[q]
                xe = xf[n, e, p0:p0 + m]
                se = sf[n, e, p0:p0 + m]
                ge = gyf[n, e, p0:p0 + m]
                for q in range(m):
                    s = np.float64(se[q])
                    p = _rpow(s, beta)
                    t = np.float64(ge[q]) * xe[q] * p / s
                    ps[q] = p
                    ts[q] = t
                    acc[q] += t
            elif j - hi - 1 >= 0:  # no channel enters, one still leaves
                ts = tr[(j - hi - 1) % size]
                for q in range(m):
                    acc[q] -= ts[q]
            if j >= 0:
                pj = pr[j % size]
                xj = xf[n, j, p0:p0 + m]
                gj = gyf[n, j, p0:p0 + m]
                gxj = gxf[n, j, p0:p0 + m]
                for q in range(m):
                    gxj[q] = gj[q] * pj[q] - coef * xj[q] * acc[q]


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
        yp = y[n, c]
        sq = np.empty((H, W), np.float64)
        for h in range(H):
            for w in range(W):
                sq[h, w] = np.float64(xp[h, w]) * xp[h, w]
        tmp = np.empty((H, W), np.float64)
        box = np.empty((H, W), np.float64)
        _box(sq, box, tmp, lo, hi)
        for h in range(H):
            for w in range(W):
                s = k + alpha * box[h, w]
                if keep:
                    scale[n, c, h, w] = s
                yp[h, w] = xp[h, w] * _rpow(s, beta)


@kernel
def lrn_within_backward(x, scale, gy, gx, size, alpha, beta):
    N, C, H, W = x.shape
    lo = size // 2
    hi = (size - 1) // 2
    coef = 2.0 * alpha * beta
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        xp = x[n, c]
        sp = scale[n, c]
        gp = gy[n, c]
        pw = np.empty((H, W), np.float64)
        t = np.empty((H, W), np.float64)
        for h in range(H):
            for w in range(W):
                s = np.float64(sp[h, w])
                pw[h, w] = _rpow(s, beta)
                t[h, w] = np.float64(gp[h, w]) * xp[h, w] * pw[h, w] / s
        tmp = np.empty((H, W), np.float64)
        box = np.empty((H, W), np.float64)
        _box(t, box, tmp, hi, lo)
        g = gx[n, c]
        for h in range(H):
            for w in range(W):
                g[h, w] = gp[h, w] * pw[h, w] - coef * xp[h, w] * box[h, w]
