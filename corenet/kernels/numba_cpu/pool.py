"""Pooling kernels (Numba CPU): max/min, average/sum, adaptive average and max; forward and backward.

Contract (every backend defines exactly these names and signatures)
-------------------------------------------------------------------
All arrays are C-contiguous; ``x, y, gy, gx`` share one dtype (float32 or float64); ``idx`` is
int32. Outputs are preallocated by the caller and every element of them is overwritten. Window
geometry: output ``(oh, ow)`` reads the taps ``(oh*sh - pt + i*dh, ow*sw - pl + j*dw)`` for
``0 <= i < kh, 0 <= j < kw``; taps outside the input are padding.

``extreme_pool_forward(x, y, idx, kh, kw, sh, sw, pt, pl, dh, dw, find_min)``
    IN x (N, C, H, W); OUT y, idx (N, C, Ho, Wo); ints; ``find_min`` bool.
    ``y`` = max (min when ``find_min``) of the taps inside the input; padding (-inf, +inf for min)
    never wins. ``idx`` = flat index ``h*W + w`` into the input plane of the FIRST extremal tap in
    row-major window order (strict comparison). A NaN tap is extremal: the first NaN wins. A window
    with no tap inside the input gives the padding value and ``idx = -1``.
``extreme_pool_backward(gy, idx, gx, kh, kw, sh, sw, pt, pl, dh, dw)``
    IN gy, idx (N, C, Ho, Wo); OUT gx (N, C, H, W): zeroed, then ``gx.flat[plane][idx] += gy``
    for every output with ``idx >= 0``, outputs in row-major order. The window geometry is that
    of the forward call: the CPU kernels scatter from ``idx`` alone and do not read it; the cuda
    kernel uses it to gather, one thread per input element, without atomics.
``avg_pool_forward(x, y, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, count_include_pad, divisor)``
    IN x; OUT y. ``y = (sum of taps inside the input, accumulated in float64) / d``.
    ``d = divisor`` when ``divisor > 0``
    (``divisor_override``; sum pooling passes 1.0); otherwise ``d = cnt_h * cnt_w`` with ``cnt_h`` the
    number of row taps in ``[-pt, H + pb)`` (``count_include_pad``) or in ``[0, H)`` (not), likewise
    for columns: zero padding counts, the ceil-mode overhang beyond the padding never does.
    (Without dilation this is PyTorch's ``(hend - hstart) * (wend - wstart)``.) A zero count gives 0.
``avg_pool_backward(gy, gx, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, count_include_pad, divisor)``
    IN gy; OUT gx: zeroed, then ``gy / d`` added to every in-input tap of each window, outputs in
    row-major order, taps in row-major order.
``adaptive_avg_pool_forward(x, y)`` / ``adaptive_avg_pool_backward(gy, gx)``
    Output bin ``i`` of ``Ho`` covers rows ``[floor(i*H/Ho), ceil((i+1)*H/Ho))`` (PyTorch's rule),
    likewise columns; ``y`` is the bin mean and the backward spreads ``gy / area`` over the bin.
``adaptive_max_pool_forward(x, y, idx)``
    IN x (N, C, H, W); OUT y, idx (N, C, Ho, Wo): the bins above (never empty); ``y`` = the bin's
    maximum, ``idx`` = flat index ``h*W + w`` of its FIRST maximal element in row-major order
    (strict comparison; a NaN is maximal and the first NaN wins), as ``extreme_pool_forward``.
``adaptive_max_pool_backward(gy, idx, gx)``
    IN gy, idx (N, C, Ho, Wo); OUT gx (N, C, H, W): zeroed, then ``gy`` added at ``idx``, outputs
    in row-major order (``extreme_pool_backward``'s scatter; the cuda kernel gathers over the bins).

Parallel over the N*C planes (``prange``); each plane, including its backward scatter, belongs to
one thread, so there are no races and results do not depend on the thread count. ``@sized``
runs small calls on one thread (``_threads.py``); the kernels stay plain Numba dispatchers.
"""

import numpy as np
from numba import prange

from ...geometry import adaptive_bin, tap_range
from ._jit import helper, kernel
from ._threads import sized

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


_tap_range = helper(tap_range)
_bin = helper(adaptive_bin)


@helper
def _windows(n_out, stride, pad_before, pad_after, k, d, size):
    """Per output index: ``[t0, t1, cnt]``, the in-input taps ``[t0, t1)`` and the number of taps
    inside the padded input ``[-pad_before, size + pad_after)``. The same for every plane, so
    kernels compute it once per call."""
    r = np.empty((n_out, 3), np.int64)
    for o in range(n_out):
        start = o * stride - pad_before
        r[o, 0], r[o, 1] = _tap_range(start, k, d, size)
        c0, c1 = _tap_range(start + pad_before, k, d, size + pad_before + pad_after)
        r[o, 2] = c1 - c0
    return r


@helper
def _first_nan(xf, q0, i0, i1, j0, j1, rstep, dw):
    """Flat index of the first NaN tap of a window in row-major order, or -1."""
    for i in range(i0, i1):
        r = q0 + i * rstep
        for j in range(j0, j1):
            q = r + j * dw
            if xf[np.uint64(q)] != xf[np.uint64(q)]:
                return q
    return -1


@sized(4)
@kernel
def extreme_pool_forward(x, y, idx, kh, kw, sh, sw, pt, pl, dh, dw, find_min):
    N, C, H, W = x.shape
    Ho, Wo = y.shape[2], y.shape[3]
    rh = _windows(Ho, sh, pt, 0, kh, dh, H)
    rw = _windows(Wo, sw, pl, 0, kw, dw, W)
    rstep = dh * W
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        # flat plane, unsigned indices: no negative-index wraparound checks in the hot loop
        xf = x[n, c].reshape(H * W)
        yp = y[n, c]
        ip = idx[n, c]
        for oh in range(Ho):
            i0 = rh[oh, 0]
            i1 = rh[oh, 1]
            r0 = (oh * sh - pt) * W
            for ow in range(Wo):
                j0 = rw[ow, 0]
                j1 = rw[ow, 1]
                if i0 == i1 or j0 == j1:
                    yp[oh, ow] = np.inf if find_min else -np.inf
                    ip[oh, ow] = -1
                    continue
                q0 = r0 + ow * sw - pl  # flat index of tap (0, 0), maybe outside the plane
                besti = q0 + i0 * rstep + j0 * dw
                best = xf[np.uint64(besti)]
                total = best - best  # NaN iff some tap is NaN (or +inf and -inf meet)
                for i in range(i0, i1):
                    r = q0 + i * rstep
                    for j in range(j0, j1):
                        q = r + j * dw
                        v = xf[np.uint64(q)]
                        total += v
                        # strict comparison keeps the first extremum; selects, not branches
                        u = v < best if find_min else v > best
                        besti = q if u else besti
                        best = v if u else best
                if total != total:
                    first = _first_nan(xf, q0, i0, i1, j0, j1, rstep, dw)
                    if first >= 0:
                        besti = first
                        best = xf[np.uint64(first)]
                yp[oh, ow] = best
                ip[oh, ow] = besti


@helper
def _scatter_plane(g, gyp, ip):
    """``g`` (flat plane) zeroed, then ``gyp`` added at ``ip``, outputs in row-major order."""
    g[:] = 0
    for oh in range(gyp.shape[0]):
        for ow in range(gyp.shape[1]):
            k = ip[oh, ow]
            if k >= 0:
                g[k] += gyp[oh, ow]


@sized(2)
@kernel
def extreme_pool_backward(gy, idx, gx, kh, kw, sh, sw, pt, pl, dh, dw):
    N, C, H, W = gx.shape
    for p in prange(N * C):  # the geometry is not needed: scatter from the argmax
        n = p // C
        c = p - n * C
        _scatter_plane(gx[n, c].reshape(H * W), gy[n, c], idx[n, c])


@sized(2)
@kernel
def avg_pool_forward(x, y, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, count_include_pad, divisor):
    N, C, H, W = x.shape
    Ho, Wo = y.shape[2], y.shape[3]
    rh = _windows(Ho, sh, pt, pb, kh, dh, H)
    rw = _windows(Wo, sw, pl, pr, kw, dw, W)
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        xf = x[n, c].reshape(H * W)
        yp = y[n, c]
        for oh in range(Ho):
            r0 = (oh * sh - pt) * W
            i0 = rh[oh, 0]
            i1 = rh[oh, 1]
            cnt_h = rh[oh, 2] if count_include_pad else i1 - i0
            for ow in range(Wo):
                w0 = ow * sw - pl
                j0 = rw[ow, 0]
                j1 = rw[ow, 1]
                cnt_w = rw[ow, 2] if count_include_pad else j1 - j0
                d = divisor if divisor > 0 else float(cnt_h * cnt_w)
                q0 = r0 + w0
                s = 0.0
                for i in range(i0, i1):
                    r = q0 + i * dh * W
                    for j in range(j0, j1):
                        s += xf[np.uint64(r + j * dw)]
                yp[oh, ow] = s / d if d > 0 else 0.0


@sized(2)
@kernel
def avg_pool_backward(gy, gx, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, count_include_pad, divisor):
    N, C, H, W = gx.shape
    Ho, Wo = gy.shape[2], gy.shape[3]
    rh = _windows(Ho, sh, pt, pb, kh, dh, H)
    rw = _windows(Wo, sw, pl, pr, kw, dw, W)
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        g = gx[n, c].reshape(H * W)
        g[:] = 0
        gyp = gy[n, c]
        for oh in range(Ho):
            r0 = (oh * sh - pt) * W
            i0 = rh[oh, 0]
            i1 = rh[oh, 1]
            cnt_h = rh[oh, 2] if count_include_pad else i1 - i0
            for ow in range(Wo):
                w0 = ow * sw - pl
                j0 = rw[ow, 0]
                j1 = rw[ow, 1]
                cnt_w = rw[ow, 2] if count_include_pad else j1 - j0
                d = divisor if divisor > 0 else float(cnt_h * cnt_w)
                if d <= 0:
                    continue
                v = gyp[oh, ow] / d
                q0 = r0 + w0
                for i in range(i0, i1):
                    r = q0 + i * dh * W
                    for j in range(j0, j1):
                        g[np.uint64(r + j * dw)] += v


@sized(1)
@kernel
def adaptive_avg_pool_forward(x, y):
    N, C, H, W = x.shape
    Ho, Wo = y.shape[2], y.shape[3]
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        xp = x[n, c]
        yp = y[n, c]
        for oh in range(Ho):
            h0, h1 = _bin(oh, H, Ho)
            for ow in range(Wo):
                w0, w1 = _bin(ow, W, Wo)
                s = 0.0
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        s += xp[h, w]
                yp[oh, ow] = s / ((h1 - h0) * (w1 - w0))


@sized(2)
@kernel
def adaptive_avg_pool_backward(gy, gx):
    N, C, H, W = gx.shape
    Ho, Wo = gy.shape[2], gy.shape[3]
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        g = gx[n, c]
        g[:, :] = 0
        gyp = gy[n, c]
        for oh in range(Ho):
            h0, h1 = _bin(oh, H, Ho)
            for ow in range(Wo):
                w0, w1 = _bin(ow, W, Wo)
                v = gyp[oh, ow] / ((h1 - h0) * (w1 - w0))
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        g[h, w] += v


@sized(4)
@kernel
def adaptive_max_pool_forward(x, y, idx):
    N, C, H, W = x.shape
    Ho, Wo = y.shape[2], y.shape[3]
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        xf = x[n, c].reshape(H * W)
        yp = y[n, c]
        ip = idx[n, c]
        for oh in range(Ho):
            h0, h1 = _bin(oh, H, Ho)
            for ow in range(Wo):
                w0, w1 = _bin(ow, W, Wo)
                besti = h0 * W + w0
                best = xf[besti]
                total = best - best  # NaN iff some element is NaN (or +inf and -inf meet)
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        q = h * W + w
                        v = xf[q]
                        total += v
                        u = v > best  # strict: the first maximum stays
                        besti = q if u else besti
                        best = v if u else best
                if total != total:
                    first = _first_nan(xf, h0 * W + w0, 0, h1 - h0, 0, w1 - w0, W, 1)
                    if first >= 0:
                        besti = first
                        best = xf[first]
                yp[oh, ow] = best
                ip[oh, ow] = besti


@sized(2)
@kernel
def adaptive_max_pool_backward(gy, idx, gx):
    N, C, H, W = gx.shape
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        _scatter_plane(gx[n, c].reshape(H * W), gy[n, c], idx[n, c])
