"""Batch-normalisation kernels (Numba CPU).

Design
------
Inputs arrive as ``(N, C, L)`` C-contiguous views (``L = H*W``, or 1 for ``(N, C)`` input).
Work is split into the ``N*C`` contiguous blocks ``x[n, c, :]``; each block is reduced serially
by one thread into float64 partials, and the partials of a channel are combined serially in
``n`` order. Results therefore do not depend on the thread count at all, not even in rounding.
For ``L == 1`` the kernels switch to a row/column layout instead (see ``_column_stats``).

Statistics use the shifted-data method per block (shift = the block's first element, so the
sum of squares does not cancel catastrophically when ``|mean| >> std``) and Chan et al.'s
pairwise update to combine blocks.

Full-size outputs are allocated by the caller (numpy, huge pages) and passed last; see act.py.

Forward (training): ``bn_stats`` (one read of x), ``bn_prepare`` (the ``(C,)`` step) then ``bn_affine``
(read x, write y). Backward: ``bn_backward_reduce`` (read gy and x), ``bn_backward_coeffs`` (``(C,)``)
then ``bn_backward_gx`` (read gy and x, write gx). The two ``(C,)`` steps are plain numpy, shared with
the Cython backend (``kernels/_norm_coeffs.py``); the cuda backend runs them on the device.
"""

import numba
import numpy as np
from numba import prange

from ... import config
from .._norm_coeffs import bn_backward_coeffs, bn_prepare  # noqa: F401  (the (C,) steps, plain numpy)
from ._jit import kernel
from ._threads import sized

__all__ = ["bn_stats", "bn_affine", "bn_backward_reduce", "bn_backward_gx", "bn_scale_gx", "bn_prepare",
           "bn_backward_coeffs"]

# The per-block sums may be reassociated: LLVM then vectorises them (about 3x faster; fastmath
# is otherwise off, and a float reduction stays a serial chain). The order is still fixed at
# compile time, so results remain independent of the thread count. No other fastmath flag:
# NaN and inf must propagate.
_FM = True if config.get_fastmath() else {"reassoc"}
# (compiled on its own, not inlined at the Numba IR level, so the flags stay on its instructions)
reduction = numba.njit(cache=True, nogil=True, fastmath=_FM)


@reduction
def _block_shifted_sums(xb, shift):
    """``(sum(x - shift), sum((x - shift)^2))`` of a 1-D block, in float64."""
    s1 = 0.0
    s2 = 0.0
    for i in range(xb.shape[0]):
        d = np.float64(xb[i]) - shift
        s1 += d
        s2 += d * d
    return s1, s2

# (N, C) input (L == 1): one value per block would make every block a task of one element, so
# the channels are reduced as columns instead, vectorised along the contiguous channel axis,
# in chunks of _COLS channels per task. Same shifted-data method (shift = the first row).
_COLS = 256


@kernel
def _column_stats(x2):
    N, C = x2.shape
    mean = np.empty(C, np.float64)
    var = np.empty(C, np.float64)
    for ch in prange((C + _COLS - 1) // _COLS):
        j0 = ch * _COLS
        j1 = min(C, j0 + _COLS)
        k = np.empty(j1 - j0, np.float64)
        s1 = np.zeros(j1 - j0, np.float64)
        s2 = np.zeros(j1 - j0, np.float64)
        for j in range(j0, j1):
            k[j - j0] = x2[0, j]
        for n in range(N):
            for j in range(j1 - j0):
                d = np.float64(x2[n, j0 + j]) - k[j]
                s1[j] += d
                s2[j] += d * d
        for j in range(j1 - j0):
            mean[j0 + j] = k[j] + s1[j] / N
            var[j0 + j] = max(s2[j] - s1[j] * s1[j] / N, 0.0) / N
    return mean, var


@kernel
def _column_grad_sums(gy2, x2, mean):
    N, C = x2.shape
    sg = np.empty(C, np.float64)
    sgx = np.empty(C, np.float64)
    for ch in prange((C + _COLS - 1) // _COLS):
        j0 = ch * _COLS
        j1 = min(C, j0 + _COLS)
        a = np.zeros(j1 - j0, np.float64)
        p = np.zeros(j1 - j0, np.float64)
        for n in range(N):
            for j in range(j1 - j0):
                g = np.float64(gy2[n, j0 + j])
                a[j] += g
                p[j] += g * (np.float64(x2[n, j0 + j]) - mean[j0 + j])
        for j in range(j1 - j0):
            sg[j0 + j] = a[j]
            sgx[j0 + j] = p[j]
    return sg, sgx


@sized(1)
@kernel
def bn_stats(x):
    """Per-channel mean and biased variance of ``x (N, C, L)``, both float64 ``(C,)``."""
    N, C, L = x.shape
    if L == 1:
        return _column_stats(x.reshape(N, C))
    bmean = np.empty((N, C), np.float64)
    bm2 = np.empty((N, C), np.float64)
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        shift = np.float64(x[n, c, 0])
        s1, s2 = _block_shifted_sums(x[n, c], shift)
        bmean[n, c] = shift + s1 / L
        bm2[n, c] = max(s2 - s1 * s1 / L, 0.0)
    mean = np.empty(C, np.float64)
    var = np.empty(C, np.float64)
    for c in prange(C):
        m = bmean[0, c]
        m2 = bm2[0, c]
        for n in range(1, N):
            # Chan et al.: merge a block of L samples into the n*L seen so far
            delta = bmean[n, c] - m
            m += delta / (n + 1)
            m2 += bm2[n, c] + delta * delta * (n * L) / (n + 1)
        mean[c] = m
        var[c] = m2 / (N * L)
    return mean, var


@sized(1)
@kernel
def bn_affine(x, mean, scale, shift, y):
    """``y = (x - mean[c]) * scale[c] + shift[c]``; ``mean, scale, shift`` have x's dtype."""
    N, C, L = x.shape
    if L == 1:  # (N, C): vectorise along the channels
        x2 = x.reshape(N, C)
        y2 = y.reshape(N, C)
        for n in prange(N):
            for c in range(C):
                y2[n, c] = (x2[n, c] - mean[c]) * scale[c] + shift[c]
        return y
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        m = mean[c]
        s = scale[c]
        b = shift[c]
        xb = x[n, c]
        yb = y[n, c]
        for i in range(L):
            yb[i] = (xb[i] - m) * s + b
    return y


@reduction
def _block_grad_sums(gb, xb, m):
    """``(sum(gy), sum(gy * (x - m)))`` of one block, in float64."""
    a = 0.0
    p = 0.0
    for i in range(gb.shape[0]):
        g = np.float64(gb[i])
        a += g
        p += g * (np.float64(xb[i]) - m)
    return a, p


@sized(1)
@kernel
def bn_backward_reduce(gy, x, mean):
    """Per-channel ``sum(gy)`` and ``sum(gy * (x - mean))`` as float64 ``(C,)``; mean is float64."""
    N, C, L = x.shape
    if L == 1:
        return _column_grad_sums(gy.reshape(N, C), x.reshape(N, C), mean)
    bg = np.empty((N, C), np.float64)
    bgx = np.empty((N, C), np.float64)
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        bg[n, c], bgx[n, c] = _block_grad_sums(gy[n, c], x[n, c], mean[c])
    sg = np.empty(C, np.float64)
    sgx = np.empty(C, np.float64)
    for c in prange(C):
        a = 0.0
        b = 0.0
        for n in range(N):
            a += bg[n, c]
            b += bgx[n, c]
        sg[c] = a
        sgx[c] = b
    return sg, sgx


@sized(1)
@kernel
def bn_backward_gx(gy, x, mean, a, b, d, gx):
    """``gx = a[c] * gy + b[c] * (x - mean[c]) + d[c]``; coefficient arrays have x's dtype."""
    N, C, L = x.shape
    if L == 1:
        g2 = gy.reshape(N, C)
        x2 = x.reshape(N, C)
        o2 = gx.reshape(N, C)
        for n in prange(N):
            for c in range(C):
                o2[n, c] = a[c] * g2[n, c] + b[c] * (x2[n, c] - mean[c]) + d[c]
        return gx
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        m = mean[c]
        ac = a[c]
        bc = b[c]
        dc = d[c]
        gb = gy[n, c]
        xb = x[n, c]
        ob = gx[n, c]
        for i in range(L):
            ob[i] = ac * gb[i] + bc * (xb[i] - m) + dc
    return gx


@sized(1)
@kernel
def bn_scale_gx(gy, a, gx):
    """``gx = a[c] * gy`` (eval-mode backward, where the statistics are constants)."""
    N, C, L = gy.shape
    if L == 1:
        g2 = gy.reshape(N, C)
        o2 = gx.reshape(N, C)
        for n in prange(N):
            for c in range(C):
                o2[n, c] = a[c] * g2[n, c]
        return gx
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        ac = a[c]
        gb = gy[n, c]
        ob = gx[n, c]
        for i in range(L):
            ob[i] = ac * gb[i]
    return gx
