"""The act family's CUDA kernels for the mobile architectures, re-exported by ``act.py``.

Contract: exactly ``numba_cpu/_act_mobile.py``'s names and signatures (relu6, hardsigmoid,
hardswish, silu forward/backward on flat arrays; ``drop_path_*`` on ``(N, L)`` views with one
uint8 keep flag per sample; ``channel_shuffle`` from ``(N, A, B, L)`` into ``(N, B, A, L)``); the
output comes last, is filled and returned, or (``out=None``) a new array of the input's kind is.

Design
------
One grid-stride loop over the output elements (consecutive threads, consecutive addresses), each
element written by one thread. The activations evaluate in float64 and round once, as ``act.py``'s
transcendental kernels do: relu6 is exact either way; hardsigmoid, hardswish and silu agree with
the CPU kernels (which compute in the array dtype, as PyTorch) to float32 rounding. The branches at
the kinks and for NaN are PyTorch's, as on the CPU. Drop path and channel shuffle move or scale
values in the array dtype, so they equal the CPU results bit for bit.
"""

from __future__ import annotations

import math

import numba

from ._runtime import cuda, dev, empty, grid, host_or_device, out_pair

__all__ = [
    "relu6_forward", "relu6_backward", "hardsigmoid_forward", "hardsigmoid_backward",
    "hardswish_forward", "hardswish_backward", "silu_forward", "silu_backward",
    "drop_path_forward", "drop_path_backward", "channel_shuffle",
]


@cuda.jit
def _relu6_f(x, y):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = numba.float64(x[i])
        y[i] = 0.0 if v < 0.0 else (6.0 if v > 6.0 else v)  # NaN and -0 pass through


@cuda.jit
def _relu6_b(gy, y, gx):
    for i in range(cuda.grid(1), gy.shape[0], cuda.gridsize(1)):
        v = y[i]
        gx[i] = gy[i] if (v > 0 and v < 6) else 0  # NaN: 0


@cuda.jit
def _hardsigmoid_f(x, y):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        r = numba.float64(x[i]) + 3.0
        y[i] = (0.0 if r < 0.0 else (6.0 if r > 6.0 else r)) / 6.0


@cuda.jit
def _hardsigmoid_b(gy, x, gx):
    for i in range(cuda.grid(1), gy.shape[0], cuda.gridsize(1)):
        v = x[i]
        gx[i] = numba.float64(gy[i]) / 6.0 if (v > -3 and v < 3) else 0.0


@cuda.jit
def _hardswish_f(x, y):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = numba.float64(x[i])
        r = v + 3.0
        y[i] = v * (0.0 if r < 0.0 else (6.0 if r > 6.0 else r)) / 6.0


@cuda.jit
def _hardswish_b(gy, x, gx):
    for i in range(cuda.grid(1), gy.shape[0], cuda.gridsize(1)):
        v = numba.float64(x[i])
        if v <= -3.0:
            gx[i] = 0.0
        elif v >= 3.0:
            gx[i] = gy[i]
        else:
            gx[i] = numba.float64(gy[i]) * (v / 3.0 + 0.5)  # NaN: NaN


@cuda.jit
def _silu_f(x, y):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = numba.float64(x[i])
        y[i] = v / (1.0 + math.exp(-v))


@cuda.jit
def _silu_b(gy, x, gx):
    for i in range(cuda.grid(1), gy.shape[0], cuda.gridsize(1)):
        v = numba.float64(x[i])
        s = 1.0 / (1.0 + math.exp(-v))
        gx[i] = numba.float64(gy[i]) * s * (1.0 + v * (1.0 - s))


@cuda.jit
def _drop_path(x, keep, scale, y):
    N, L = x.shape
    for e in range(cuda.grid(1), N * L, cuda.gridsize(1)):
        n, j = e // L, e % L
        y[n, j] = x[n, j] * scale if keep[n] else 0


@cuda.jit
def _shuffle(x, y):
    N, A, B, L = x.shape
    for e in range(cuda.grid(1), N * A * B * L, cuda.gridsize(1)):
        j = e % L  # e walks y (N, B, A, L) in C order
        t = e // L
        a = t % A
        t //= A
        b = t % B
        n = t // B
        y[n, b, a, j] = x[n, a, b, j]


def _run(kernel, like, shape, out, *args):
    """Launch ``kernel(*args, out)`` over the ``prod(shape)`` output elements; ``out`` (numpy or
    device) is filled and returned, or a new ``shape`` array of ``like``'s kind."""
    n = math.prod(shape)
    if out is None:
        d = empty(shape, like.dtype)
        kernel[grid(n)](*args, d)
        return host_or_device(d, like)
    d, finish = out_pair(out)
    kernel[grid(n)](*args, d)
    finish()
    return out


def relu6_forward(x, out=None):
    return _run(_relu6_f, x, x.shape, out, dev(x))


def relu6_backward(gy, y, out=None):
    return _run(_relu6_b, gy, gy.shape, out, dev(gy), dev(y))


def hardsigmoid_forward(x, out=None):
    return _run(_hardsigmoid_f, x, x.shape, out, dev(x))


def hardsigmoid_backward(gy, x, out=None):
    return _run(_hardsigmoid_b, gy, gy.shape, out, dev(gy), dev(x))


def hardswish_forward(x, out=None):
    return _run(_hardswish_f, x, x.shape, out, dev(x))


def hardswish_backward(gy, x, out=None):
    return _run(_hardswish_b, gy, gy.shape, out, dev(gy), dev(x))


def silu_forward(x, out=None):
    return _run(_silu_f, x, x.shape, out, dev(x))


def silu_backward(gy, x, out=None):
    return _run(_silu_b, gy, gy.shape, out, dev(gy), dev(x))


def drop_path_forward(x, keep, scale, out=None):
    """``y[n] = x[n] * scale`` where ``keep[n]`` (uint8) is 1, else 0; ``x (N, L)``."""
    return _run(_drop_path, x, x.shape, out, dev(x), dev(keep), scale)


def drop_path_backward(gy, keep, scale, out=None):
    return _run(_drop_path, gy, gy.shape, out, dev(gy), dev(keep), scale)


def channel_shuffle(x, out=None):
    """``y[n, b, a, :] = x[n, a, b, :]`` for ``x (N, A, B, L)``, ``y (N, B, A, L)``."""
    N, A, B, L = x.shape
    return _run(_shuffle, x, (N, B, A, L), out, dev(x))
