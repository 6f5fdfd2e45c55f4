"""Fused epilogues (Numba CPU): two ops in one pass over memory.

Design
------
The graph (``corenet/graph.py``) fuses a batch norm followed by a ReLU, and an ``Add`` followed by
a ReLU, when nothing else reads the intermediate. Each kernel here is the composition of the
unfused kernels with the intermediate kept in registers, written with the same arithmetic, so the
elementwise results are identical bit for bit and the reductions differ at most in how the
vectoriser groups their float64 partial sums (reassociation is allowed there, as in norm.py):

- ``bn_relu_forward``: ``y = relu((x - mean[c]) * scale[c] + shift[c])`` (``bn_affine`` + ``relu``).
- ``bn_relu_backward_reduce``: the per-channel sums of ``bn_backward_reduce`` taken over
  ``g = gy * (y > 0)`` (the ReLU's gradient) without writing ``g``.
- ``bn_relu_backward_gx``: ``gx = a[c] * g + b[c] * (x - mean[c]) + d[c]`` with the same ``g``.
- ``bn_relu_scale_gx``: ``gx = a[c] * g`` (eval-mode statistics).
- ``add_relu_forward``: ``y = relu(a + b)`` for two arrays of one shape.
- ``bn_relu6_*``: the same three steps for a batch norm followed by a ReLU6 (MobileNetV2's), with
  ``relu6_forward``'s clamp and ``g = gy * (0 < y < 6)``, relu6_backward's mask.

Layouts and races as in ``norm.py``: ``(N, C, L)`` views split into ``N*C`` blocks, one thread per
block, per-block float64 sums combined serially in ``n`` order (thread-count independent).
Full-size outputs are the caller's, passed last.
"""

import numba
import numpy as np
from numba import prange

from ... import config
from ._jit import kernel
from ._threads import sized

__all__ = ["bn_relu_forward", "bn_relu_backward_reduce", "bn_relu_backward_gx", "bn_relu_scale_gx",
           "add_relu_forward", "bn_relu6_forward", "bn_relu6_backward_reduce", "bn_relu6_backward_gx",
           "bn_relu6_scale_gx"]

# as norm.py: the per-block sums may be reassociated (vectorised); the order stays fixed
_FM = True if config.get_fastmath() else {"reassoc"}
reduction = numba.njit(cache=True, nogil=True, fastmath=_FM)


@sized(1)
@kernel
def bn_relu_forward(x, mean, scale, shift, y):
    """``y = relu((x - mean[c]) * scale[c] + shift[c])`` for ``x (N, C, L)``; vectors have x's dtype."""
    N, C, L = x.shape
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        m = mean[c]
        s = scale[c]
        b = shift[c]
        xb = x[n, c]
        yb = y[n, c]
        for i in range(L):
            v = (xb[i] - m) * s + b
            yb[i] = 0 if v <= 0 else v  # NaN propagates, as relu_forward
    return y


@reduction
def _masked_block_sums(gb, yb, xb, m):
    """``(sum(g), sum(g * (x - m)))`` of one block with ``g = gy * (y > 0)``, in float64."""
    a = 0.0
    p = 0.0
    for i in range(gb.shape[0]):
        g = np.float64(gb[i]) if yb[i] > 0 else 0.0
        a += g
        p += g * (np.float64(xb[i]) - m)
    return a, p


@sized(1)
@kernel
def bn_relu_backward_reduce(gy, y, x, mean):
    """Per-channel ``sum(g)`` and ``sum(g * (x - mean))``, ``g = gy * (y > 0)``, float64 ``(C,)``."""
    N, C, L = x.shape
    bg = np.empty((N, C), np.float64)
    bgx = np.empty((N, C), np.float64)
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        bg[n, c], bgx[n, c] = _masked_block_sums(gy[n, c], y[n, c], x[n, c], mean[c])
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
def bn_relu_backward_gx(gy, y, x, mean, a, b, d, gx):
    """``gx = a[c] * g + b[c] * (x - mean[c]) + d[c]`` with ``g = gy * (y > 0)``."""
    N, C, L = x.shape
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        m = mean[c]
        ac = a[c]
        bc = b[c]
        dc = d[c]
        gb = gy[n, c]
        yb = y[n, c]
        xb = x[n, c]
        ob = gx[n, c]
        for i in range(L):
            ob[i] = gb[i] if yb[i] > 0 else 0  # g in x's dtype, as relu_backward stores it
            ob[i] = ac * ob[i] + bc * (xb[i] - m) + dc
    return gx


@sized(1)
@kernel
def bn_relu_scale_gx(gy, y, a, gx):
    """``gx = a[c] * g`` with ``g = gy * (y > 0)`` (eval-mode statistics are constants)."""
    N, C, L = gy.shape
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        ac = a[c]
        gb = gy[n, c]
        yb = y[n, c]
        ob = gx[n, c]
        for i in range(L):
            ob[i] = gb[i] if yb[i] > 0 else 0
            ob[i] = ac * ob[i]
    return gx


@sized(2)
@kernel
def add_relu_forward(a, b, y):
    """``y = relu(a + b)`` for flat arrays of one length."""
    for i in prange(a.shape[0]):
        v = a[i] + b[i]
        y[i] = 0 if v <= 0 else v
    return y


# ------------------------------------------------------------------ batch norm + ReLU6


@sized(1)
@kernel
def bn_relu6_forward(x, mean, scale, shift, y):
    """``y = relu6((x - mean[c]) * scale[c] + shift[c])`` (``relu6_forward``'s clamp: NaN and -0 pass)."""
    N, C, L = x.shape
    zero, six = x.dtype.type(0.0), x.dtype.type(6.0)
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        m = mean[c]
        s = scale[c]
        b = shift[c]
        xb = x[n, c]
        yb = y[n, c]
        for i in range(L):
            v = (xb[i] - m) * s + b
            yb[i] = zero if v < zero else (six if v > six else v)
    return y


@reduction
def _relu6_masked_block_sums(gb, yb, xb, m):
    """``(sum(g), sum(g * (x - m)))`` of one block with ``g = gy * (0 < y < 6)``, in float64."""
    a = 0.0
    p = 0.0
    for i in range(gb.shape[0]):
        v = yb[i]
        g = np.float64(gb[i]) if (v > 0 and v < 6) else 0.0
        a += g
        p += g * (np.float64(xb[i]) - m)
    return a, p


@sized(1)
@kernel
def bn_relu6_backward_reduce(gy, y, x, mean):
    """Per-channel ``sum(g)`` and ``sum(g * (x - mean))``, ``g = gy * (0 < y < 6)``, float64 ``(C,)``."""
    N, C, L = x.shape
    bg = np.empty((N, C), np.float64)
    bgx = np.empty((N, C), np.float64)
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        bg[n, c], bgx[n, c] = _relu6_masked_block_sums(gy[n, c], y[n, c], x[n, c], mean[c])
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
def bn_relu6_backward_gx(gy, y, x, mean, a, b, d, gx):
    """``gx = a[c] * g + b[c] * (x - mean[c]) + d[c]`` with ``g = gy * (0 < y < 6)``."""
    N, C, L = x.shape
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        m = mean[c]
        ac = a[c]
        bc = b[c]
        dc = d[c]
        gb = gy[n, c]
        yb = y[n, c]
        xb = x[n, c]
        ob = gx[n, c]
        for i in range(L):
            v = yb[i]
            ob[i] = gb[i] if (v > 0 and v < 6) else 0  # g in x's dtype, as relu6_backward stores it
            ob[i] = ac * ob[i] + bc * (xb[i] - m) + dc
    return gx


@sized(1)
@kernel
def bn_relu6_scale_gx(gy, y, a, gx):
    """``gx = a[c] * g`` with ``g = gy * (0 < y < 6)`` (eval-mode statistics)."""
    N, C, L = gy.shape
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        ac = a[c]
        gb = gy[n, c]
        yb = y[n, c]
        ob = gx[n, c]
        for i in range(L):
            v = yb[i]
            ob[i] = gb[i] if (v > 0 and v < 6) else 0
            ob[i] = ac * ob[i]
    return gx
