"""The act family's CUDA kernels for the mobile architectures, re-exported by ``act.py``.

Contract: exactly ``numba_cpu/_act_mobile.py``'s names and signatures (relu6, hardsigmoid,
hardswish, silu forward/backward on flat arrays; ``drop_path_*`` on ``(N, L)`` views with one
uint8 keep flag per sample; ``channel_shuffle`` from ``(N, A, B, L)`` into ``(N, B, A, L)``); the
output comes last (named ``y`` or ``gx``, as on the CPU), is filled and returned.

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

from ._runtime import cuda, dev, grid, out_pair

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


def _run(kernel, out, *args):
    """Launch ``kernel(*args, out)`` over the elements of ``out`` (numpy or device), fill it, return it."""
    d, finish = out_pair(out)
    kernel[grid(math.prod(out.shape))](*args, d)
    finish()
    return out


def relu6_forward(x, y):
    return _run(_relu6_f, y, dev(x))


def relu6_backward(gy, y, gx):
    return _run(_relu6_b, gx, dev(gy), dev(y))


def hardsigmoid_forward(x, y):
    return _run(_hardsigmoid_f, y, dev(x))


def hardsigmoid_backward(gy, x, gx):
    return _run(_hardsigmoid_b, gx, dev(gy), dev(x))


def hardswish_forward(x, y):
    return _run(_hardswish_f, y, dev(x))


def hardswish_backward(gy, x, gx):
    return _run(_hardswish_b, gx, dev(gy), dev(x))


def silu_forward(x, y):
    return _run(_silu_f, y, dev(x))


def silu_backward(gy, x, gx):
    return _run(_silu_b, gx, dev(gy), dev(x))


def drop_path_forward(x, keep, scale, y):
    """``y[n] = x[n] * scale`` where ``keep[n]`` (uint8) is 1, else 0; ``x (N, L)``."""
    return _run(_drop_path, y, dev(x), dev(keep), scale)


def drop_path_backward(gy, keep, scale, gx):
    return _run(_drop_path, gx, dev(gy), dev(keep), scale)


def channel_shuffle(x, y):
    """``y[n, b, a, :] = x[n, a, b, :]`` for ``x (N, A, B, L)``, ``y (N, B, A, L)``."""
    return _run(_shuffle, y, dev(x))
