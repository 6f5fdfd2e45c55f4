"""CUDA activation, dropout and softmax kernels, forward and backward side by side.

Contract: exactly ``numba_cpu/act.py``'s names and signatures: elementwise kernels take flat 1-D
arrays, softmax ``(P, K, Q)`` views; the output array comes last (``y`` or ``gx``, numpy or
device), is filled and returned.

Design
------
Elementwise kernels: one grid-stride loop over the elements (consecutive threads, consecutive
addresses). relu/leaky-relu/sigmoid-backward/tanh-backward/dropout compute in the array dtype as
the CPU kernels do; the transcendental ones (elu/selu, gelu, sigmoid, tanh) evaluate in float64
and round once (the CPU kernels use the array dtype, so float32 results agree to rounding).

Softmax: one thread per ``(p, q)`` (consecutive threads take consecutive ``q``), three passes
over the softmax axis (max, sum of exponentials, write) with float64 sums, as the CPU kernel.
Rows of logits (``Q == 1``) get one block per row instead: the threads share the row's classes
and combine the max and the sums with the block's fixed-order tree.

Dropout: the keep mask is an input, as in the CPU contract. ``corenet.functional.dropout`` draws
it from the caller's ``np.random.Generator``, so for a given generator state the cuda backend
gives exactly the CPU backend's result. For device-resident training, :func:`dropout_keep_mask`
draws a mask on the device (xoroshiro128+ states from ``make_dropout_states``): reproducible for
a given seed and launch, but a different stream than numpy's, so not the CPU backend's mask.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._act_mobile import (  # the mobile architectures' kernels (relu6 ... channel shuffle)
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
from ._reduce import block_max, block_sum
from ._runtime import (
    MAX_BLOCKS,
    THREADS,
    create_xoroshiro128p_states,
    cuda,
    dev,
    grid,
    out_pair,
    xoroshiro128p_uniform_float32,
)

__all__ = [
    "relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
    "elu_forward", "elu_backward", "gelu_forward", "gelu_backward",
    "sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward",
    "dropout_forward", "dropout_backward", "softmax_forward", "softmax_backward",
    "make_dropout_states", "dropout_keep_mask",
    "relu6_forward", "relu6_backward", "hardsigmoid_forward", "hardsigmoid_backward",
    "hardswish_forward", "hardswish_backward", "silu_forward", "silu_backward",
    "drop_path_forward", "drop_path_backward", "channel_shuffle",
]

_RSQRT2 = 0.7071067811865476
_RSQRT2PI = 0.3989422804014327  # 1/sqrt(2*pi)
_K0 = 0.7978845608028654  # sqrt(2/pi)
_K1 = 0.044715


@cuda.jit
def _relu_f(x, y):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = x[i]
        y[i] = 0 if v <= 0 else v  # NaN propagates


@cuda.jit
def _relu_b(gy, y, gx):
    for i in range(cuda.grid(1), gy.shape[0], cuda.gridsize(1)):
        gx[i] = gy[i] if y[i] > 0 else 0


@cuda.jit
def _leaky_f(x, slope, y):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = x[i]
        y[i] = v if v > 0 else v * slope


@cuda.jit
def _leaky_b(gy, x, slope, gx):
    for i in range(cuda.grid(1), gy.shape[0], cuda.gridsize(1)):
        gx[i] = gy[i] if x[i] > 0 else gy[i] * slope


@cuda.jit
def _elu_f(x, alpha, scale, y):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = numba.float64(x[i])
        y[i] = scale * v if v > 0 else scale * alpha * math.expm1(v)


@cuda.jit
def _elu_b(gy, x, alpha, scale, gx):
    for i in range(cuda.grid(1), gy.shape[0], cuda.gridsize(1)):
        v = numba.float64(x[i])
        g = numba.float64(gy[i])
        gx[i] = g * scale if v > 0 else g * (scale * alpha * math.exp(v))


@cuda.jit
def _gelu_f(x, tanh_approx, y):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = numba.float64(x[i])
        if tanh_approx:
            y[i] = 0.5 * v * (1.0 + math.tanh(_K0 * (v + _K1 * v * v * v)))
        else:
            y[i] = 0.5 * v * (1.0 + math.erf(v * _RSQRT2))


@cuda.jit
def _gelu_b(gy, x, tanh_approx, gx):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = numba.float64(x[i])
        if tanh_approx:
            t = math.tanh(_K0 * (v + _K1 * v * v * v))
            d = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * _K0 * (1.0 + 3.0 * _K1 * v * v)
        else:
            d = 0.5 * (1.0 + math.erf(v * _RSQRT2)) + v * _RSQRT2PI * math.exp(-0.5 * v * v)
        gx[i] = numba.float64(gy[i]) * d


@cuda.jit
def _sigmoid_f(x, y):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = numba.float64(x[i])
        if v >= 0:
            y[i] = 1.0 / (1.0 + math.exp(-v))
        else:
            e = math.exp(v)  # no overflow for very negative v
            y[i] = e / (1.0 + e)


@cuda.jit
def _sigmoid_b(gy, y, gx):
    for i in range(cuda.grid(1), gy.shape[0], cuda.gridsize(1)):
        gx[i] = gy[i] * y[i] * (1 - y[i])


@cuda.jit
def _tanh_f(x, y):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        y[i] = math.tanh(numba.float64(x[i]))


@cuda.jit
def _tanh_b(gy, y, gx):
    for i in range(cuda.grid(1), gy.shape[0], cuda.gridsize(1)):
        gx[i] = gy[i] * (1 - y[i] * y[i])


@cuda.jit
def _dropout(x, keep, scale, y):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        y[i] = x[i] * scale if keep[i] else 0


@cuda.jit
def _softmax_f(x, log, y):
    P, K, Q = x.shape
    for e in range(cuda.grid(1), P * Q, cuda.gridsize(1)):
        p, q = e // Q, e % Q
        m = -math.inf
        for k in range(K):
            v = numba.float64(x[p, k, q])
            if v > m:
                m = v
        s = 0.0
        for k in range(K):
            s += math.exp(numba.float64(x[p, k, q]) - m)
        if log:
            lse = m + math.log(s)
            for k in range(K):
                y[p, k, q] = numba.float64(x[p, k, q]) - lse
        else:
            for k in range(K):
                y[p, k, q] = math.exp(numba.float64(x[p, k, q]) - m) / s


@cuda.jit
def _softmax_b(gy, y, log, gx):
    P, K, Q = y.shape
    for e in range(cuda.grid(1), P * Q, cuda.gridsize(1)):
        p, q = e // Q, e % Q
        s = 0.0
        for k in range(K):
            if log:
                s += numba.float64(gy[p, k, q])
            else:
                s += numba.float64(gy[p, k, q]) * y[p, k, q]
        for k in range(K):
            if log:
                gx[p, k, q] = numba.float64(gy[p, k, q]) - math.exp(numba.float64(y[p, k, q])) * s
            else:
                gx[p, k, q] = numba.float64(y[p, k, q]) * (numba.float64(gy[p, k, q]) - s)


@cuda.jit
def _softmax_rows_f(x, log, y):
    """Softmax over the K classes of each row of ``x (P, K, 1)``: one block per row (block-stride
    over the rows), strided shares of the row per thread, block max and sum (float64 trees)."""
    P, K = x.shape[0], x.shape[1]
    tid = cuda.threadIdx.x
    buf = cuda.shared.array(THREADS, numba.float64)
    for p in range(cuda.blockIdx.x, P, cuda.gridDim.x):
        m = -math.inf
        for k in range(tid, K, THREADS):
            v = numba.float64(x[p, k, 0])
            if v > m:
                m = v
        m = block_max(buf, tid, m)
        s = 0.0
        for k in range(tid, K, THREADS):
            s += math.exp(numba.float64(x[p, k, 0]) - m)
        s = block_sum(buf, tid, s)
        lse = m + math.log(s)
        for k in range(tid, K, THREADS):
            if log:
                y[p, k, 0] = numba.float64(x[p, k, 0]) - lse
            else:
                y[p, k, 0] = math.exp(numba.float64(x[p, k, 0]) - m) / s


@cuda.jit
def _softmax_rows_b(gy, y, log, gx):
    """The backward of :func:`_softmax_rows_f`, one block per row."""
    P, K = y.shape[0], y.shape[1]
    tid = cuda.threadIdx.x
    buf = cuda.shared.array(THREADS, numba.float64)
    for p in range(cuda.blockIdx.x, P, cuda.gridDim.x):
        s = 0.0
        for k in range(tid, K, THREADS):
            if log:
                s += numba.float64(gy[p, k, 0])
            else:
                s += numba.float64(gy[p, k, 0]) * y[p, k, 0]
        s = block_sum(buf, tid, s)
        for k in range(tid, K, THREADS):
            if log:
                gx[p, k, 0] = numba.float64(gy[p, k, 0]) - math.exp(numba.float64(y[p, k, 0])) * s
            else:
                gx[p, k, 0] = numba.float64(y[p, k, 0]) * (numba.float64(gy[p, k, 0]) - s)


def _run_rows(kernel, rows, out, *args):
    """Launch a one-block-per-row kernel over ``rows`` rows; ``out`` is filled and returned."""
    d, finish = out_pair(out)
    kernel[max(1, min(rows, MAX_BLOCKS)), THREADS](*args, d)
    finish()
    return out


def _run(kernel, n, out, *args):
    """Launch ``kernel(*args, out)`` over ``n`` items; ``out`` (the caller's OUT array, numpy or
    device) is filled and returned."""
    d, finish = out_pair(out)
    kernel[grid(n)](*args, d)
    finish()
    return out


def relu_forward(x, y):
    return _run(_relu_f, x.shape[0], y, dev(x))


def relu_backward(gy, y, gx):
    return _run(_relu_b, gy.shape[0], gx, dev(gy), dev(y))


def leaky_relu_forward(x, slope, y):
    return _run(_leaky_f, x.shape[0], y, dev(x), slope)


def leaky_relu_backward(gy, x, slope, gx):
    return _run(_leaky_b, gy.shape[0], gx, dev(gy), dev(x), slope)


def elu_forward(x, alpha, scale, y):
    return _run(_elu_f, x.shape[0], y, dev(x), float(alpha), float(scale))


def elu_backward(gy, x, alpha, scale, gx):
    return _run(_elu_b, gy.shape[0], gx, dev(gy), dev(x), float(alpha), float(scale))


def gelu_forward(x, tanh_approx, y):
    return _run(_gelu_f, x.shape[0], y, dev(x), bool(tanh_approx))


def gelu_backward(gy, x, tanh_approx, gx):
    return _run(_gelu_b, gy.shape[0], gx, dev(gy), dev(x), bool(tanh_approx))


def sigmoid_forward(x, y):
    return _run(_sigmoid_f, x.shape[0], y, dev(x))


def sigmoid_backward(gy, y, gx):
    return _run(_sigmoid_b, gy.shape[0], gx, dev(gy), dev(y))


def tanh_forward(x, y):
    return _run(_tanh_f, x.shape[0], y, dev(x))


def tanh_backward(gy, y, gx):
    return _run(_tanh_b, gy.shape[0], gx, dev(gy), dev(y))


def dropout_forward(x, keep, scale, y):
    """``y = x * scale`` where ``keep`` (uint8) is 1, else 0."""
    return _run(_dropout, x.shape[0], y, dev(x), dev(keep), scale)


def dropout_backward(gy, keep, scale, gx):
    return _run(_dropout, gy.shape[0], gx, dev(gy), dev(keep), scale)


def softmax_forward(x, log, y):
    """Softmax (or log-softmax when ``log``) over axis 1 of ``x (P, K, Q)``."""
    if x.shape[2] == 1:  # rows of logits: a block per row
        return _run_rows(_softmax_rows_f, x.shape[0], y, dev(x), bool(log))
    return _run(_softmax_f, x.shape[0] * x.shape[2], y, dev(x), bool(log))


def softmax_backward(gy, y, log, gx):
    """softmax: ``gx = y * (gy - sum_k gy*y)``; log-softmax: ``gx = gy - exp(y) * sum_k gy``."""
    if y.shape[2] == 1:
        return _run_rows(_softmax_rows_b, y.shape[0], gx, dev(gy), dev(y), bool(log))
    return _run(_softmax_b, y.shape[0] * y.shape[2], gx, dev(gy), dev(y), bool(log))


# ------------------------------------------------------------------ device-side dropout masks


def make_dropout_states(n_threads: int, seed: int):
    """xoroshiro128+ generator states for :func:`dropout_keep_mask` (one per thread, on the device)."""
    return create_xoroshiro128p_states(n_threads, seed=seed)


@cuda.jit
def _keep_mask(states, p, keep):
    t = cuda.grid(1)
    if t >= states.shape[0]:
        return
    for i in range(t, keep.shape[0], states.shape[0]):
        keep[i] = 1 if xoroshiro128p_uniform_float32(states, t) >= p else 0


def dropout_keep_mask(states, p: float, n: int):
    """A device uint8 mask of ``n`` draws, 1 with probability ``1 - p``. The grid has one thread
    per state (``len(states)`` threads), each striding over the mask, so a given seed and state
    count give the same mask on every run."""
    keep = cuda.device_array(n, dtype=np.uint8)
    threads = min(len(states), 256)
    _keep_mask[-(-len(states) // threads), threads](states, np.float32(p), keep)
    return keep
