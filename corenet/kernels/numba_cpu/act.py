"""Activation, dropout and softmax kernels (Numba CPU), forward and backward side by side.

Design
------
Elementwise kernels take flat C-contiguous 1-D views and one ``prange`` over the elements; the
body has no cross-iteration dependency and no branch, so LLVM vectorises it: exp, expm1, tanh and
erf come from ``_vmath.py`` (branch-free float32 versions; libm's are scalar calls), and where a
formula has two sides (sigmoid's sign, elu's ``x > 0``) both are computed, then selected.
Scalars (slopes, alphas) arrive already cast to the array dtype so float32 stays float32
throughout. Every output element is computed by exactly one iteration, so results do not depend
on the thread count.

Outputs are allocated by the caller and passed last (``out``); each kernel fills and returns it.
numpy's allocator asks for transparent huge pages on large arrays, while an allocation inside a
Numba kernel first-touches 4 KiB pages: for a 37 MB ReLU output that page faulting cost twice
the kernel itself.

The kernels of the mobile architectures (relu6, hardsigmoid, hardswish, silu, drop path, channel
shuffle) live in ``_act_mobile.py`` and are re-exported here.

Softmax kernels take ``(P, K, Q)`` views (``K`` = the softmax axis): ``prange`` over ``P`` and,
for each ``p``, loops with ``k`` outer and the contiguous ``q`` inner; the sums run in float64.
"""

import math

import numpy as np
from numba import prange

from ._act_mobile import (
    channel_shuffle,
    drop_path_backward,
    drop_path_forward,
    hardsigmoid_backward,
    hardsigmoid_forward,
    hardswish_backward,
    hardswish_forward,
    relu6_backward,
    relu6_forward,
    silu_backward,
    silu_forward,
)
from ._jit import kernel
from ._threads import sized
from ._vmath import verf, vexp, vexpm1_neg, vsigmoid, vtanh

__all__ = [
    "relu_forward",
    "relu_backward",
    "leaky_relu_forward",
    "leaky_relu_backward",
    "elu_forward",
    "elu_backward",
    "gelu_forward",
    "gelu_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "tanh_forward",
    "tanh_backward",
    "dropout_forward",
    "dropout_backward",
    "softmax_forward",
    "softmax_backward",
    "relu6_forward",
    "relu6_backward",
    "hardsigmoid_forward",
    "hardsigmoid_backward",
    "hardswish_forward",
    "hardswish_backward",
    "silu_forward",
    "silu_backward",
    "drop_path_forward",
    "drop_path_backward",
    "channel_shuffle",
]

# ------------------------------------------------------------------------------------- relu


@sized(1)
@kernel
def relu_forward(x, y):
    for i in prange(x.shape[0]):
        v = x[i]
        y[i] = 0 if v <= 0 else v  # NaN propagates (NaN <= 0 is False)
    return y


@sized(1)
@kernel
def relu_backward(gy, y, gx):
    for i in prange(gy.shape[0]):
        gx[i] = gy[i] if y[i] > 0 else 0
    return gx


@sized(1)
@kernel
def leaky_relu_forward(x, slope, y):
    for i in prange(x.shape[0]):
        v = x[i]
        y[i] = v if v > 0 else v * slope
    return y


@sized(1)
@kernel
def leaky_relu_backward(gy, x, slope, gx):
    for i in prange(gy.shape[0]):
        gx[i] = gy[i] if x[i] > 0 else gy[i] * slope
    return gx


# --------------------------------------------------------------------------- elu and selu


@sized(8)
@kernel
def elu_forward(x, alpha, scale, y):
    """``scale * (x if x > 0 else alpha * (exp(x) - 1))`` (SELU is ELU with fixed alpha, scale)."""
    zero = x.dtype.type(0.0)
    for i in prange(x.shape[0]):
        v = x[i]
        m = zero if v > 0 else v  # both sides computed, then selected (NaN kept): the loop vectorises
        e = scale * alpha * vexpm1_neg(m)
        r = scale * v
        y[i] = r if v > 0 else e
    return y


@sized(8)
@kernel
def elu_backward(gy, x, alpha, scale, gx):
    zero = x.dtype.type(0.0)
    for i in prange(gy.shape[0]):
        v = x[i]
        g = gy[i]
        m = zero if v > 0 else v
        e = g * (scale * alpha * vexp(m))
        r = g * scale
        gx[i] = r if v > 0 else e
    return gx


# ------------------------------------------------------------------------------------- gelu


@sized(8)
@kernel
def gelu_forward(x, tanh_approx, y):
    h = x.dtype.type(0.5)
    one = x.dtype.type(1.0)
    rsqrt2 = x.dtype.type(0.7071067811865476)
    k0 = x.dtype.type(0.7978845608028654)  # sqrt(2/pi)
    k1 = x.dtype.type(0.044715)
    if tanh_approx:
        for i in prange(x.shape[0]):
            v = x[i]
            y[i] = h * v * (one + vtanh(k0 * (v + k1 * v * v * v)))
    else:
        for i in prange(x.shape[0]):
            v = x[i]
            y[i] = h * v * (one + verf(v * rsqrt2))
    return y


@sized(8)
@kernel
def gelu_backward(gy, x, tanh_approx, gx):
    h = x.dtype.type(0.5)
    one = x.dtype.type(1.0)
    rsqrt2 = x.dtype.type(0.7071067811865476)
    rsqrt2pi = x.dtype.type(0.3989422804014327)  # 1/sqrt(2*pi)
    k0 = x.dtype.type(0.7978845608028654)
    k1 = x.dtype.type(0.044715)
    k3 = x.dtype.type(3 * 0.044715)
    if tanh_approx:
        for i in prange(x.shape[0]):
            v = x[i]
            t = vtanh(k0 * (v + k1 * v * v * v))
            d = h * (one + t) + h * v * (one - t * t) * k0 * (one + k3 * v * v)
            gx[i] = gy[i] * d
    else:
        for i in prange(x.shape[0]):
            v = x[i]
            d = h * (one + verf(v * rsqrt2)) + v * rsqrt2pi * vexp(-h * v * v)
            gx[i] = gy[i] * d
    return gx


# --------------------------------------------------------------------------- sigmoid, tanh


@sized(8)
@kernel
def sigmoid_forward(x, y):
    for i in prange(x.shape[0]):
        y[i] = vsigmoid(x[i])  # exp(-|x|) never overflows; branch-free (see _vmath.py)
    return y


@sized(1)
@kernel
def sigmoid_backward(gy, y, gx):
    one = y.dtype.type(1.0)
    for i in prange(gy.shape[0]):
        gx[i] = gy[i] * y[i] * (one - y[i])
    return gx


@sized(8)
@kernel
def tanh_forward(x, y):
    for i in prange(x.shape[0]):
        y[i] = vtanh(x[i])
    return y


@sized(1)
@kernel
def tanh_backward(gy, y, gx):
    one = y.dtype.type(1.0)
    for i in prange(gy.shape[0]):
        gx[i] = gy[i] * (one - y[i] * y[i])
    return gx


# ---------------------------------------------------------------------------------- dropout


@sized(1)
@kernel
def dropout_forward(x, keep, scale, y):
    """``y = x * scale`` where ``keep`` (uint8) is 1, else 0."""
    for i in prange(x.shape[0]):
        y[i] = x[i] * scale if keep[i] else 0
    return y


@sized(1)
@kernel
def dropout_backward(gy, keep, scale, gx):
    for i in prange(gy.shape[0]):
        gx[i] = gy[i] * scale if keep[i] else 0
    return gx


# ---------------------------------------------------------------------------------- softmax


@sized(8)
@kernel
def softmax_forward(x, log, y):
    """Softmax (or log-softmax when ``log``) over axis 1 of ``x (P, K, Q)``."""
    P, K, Q = x.shape
    for p in prange(P):
        m = np.full(Q, -np.inf, np.float64)
        for k in range(K):
            for q in range(Q):
                v = np.float64(x[p, k, q])
                if v > m[q]:
                    m[q] = v
        s = np.zeros(Q, np.float64)
        for k in range(K):
            for q in range(Q):
                e = math.exp(np.float64(x[p, k, q]) - m[q])
                s[q] += e
                if not log:
                    y[p, k, q] = e
        if log:
            for q in range(Q):
                s[q] = m[q] + math.log(s[q])
            for k in range(K):
                for q in range(Q):
                    y[p, k, q] = np.float64(x[p, k, q]) - s[q]
        else:
            for q in range(Q):
                s[q] = 1.0 / s[q]
            for k in range(K):
                for q in range(Q):
                    y[p, k, q] = y[p, k, q] * s[q]
    return y


@sized(8)
@kernel
def softmax_backward(gy, y, log, gx):
    """softmax: ``gx = y * (gy - sum_k gy*y)``; log-softmax: ``gx = gy - exp(y) * sum_k gy``."""
    P, K, Q = y.shape
    for p in prange(P):
        s = np.zeros(Q, np.float64)
        for k in range(K):
            for q in range(Q):
                if log:
                    s[q] += np.float64(gy[p, k, q])
                else:
                    s[q] += np.float64(gy[p, k, q]) * np.float64(y[p, k, q])
        for k in range(K):
            for q in range(Q):
                if log:
                    gx[p, k, q] = np.float64(gy[p, k, q]) - math.exp(np.float64(y[p, k, q])) * s[q]
                else:
                    gx[p, k, q] = np.float64(y[p, k, q]) * (np.float64(gy[p, k, q]) - s[q])
    return gx
