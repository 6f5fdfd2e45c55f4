"""CUDA batch-normalisation kernels: statistics and gradient sums by deterministic tree reductions.

Contract: exactly ``numba_cpu/norm.py``'s names, signatures and return values (read its
docstring): inputs are ``(N, C, L)`` views; ``bn_stats`` and ``bn_backward_reduce`` return float64
``(C,)`` vectors; the elementwise kernels fill and return the output passed last (when it is
omitted, they return a new array). numpy in, numpy out; device arrays in, device arrays out.

Design
------
Per-channel sums (``bn_stats``: shifted sums for the mean and biased variance; the backward's
``sum(gy)`` and ``sum(gy * (x - mean))``) run in ``_reduce.channel_sums``: a ``(splits, C)``
grid of blocks, each reducing a contiguous share of the channel in float64 with a shared-memory
tree, then a fixed-order sum over the splits. No atomics, the same bits on every run. The shift
for the statistics is the channel's first element (float64), so the variance does not cancel
when ``|mean| >> std``; the CPU backend shifts per (image, channel) block and merges with Chan's
formula, so the two agree to rounding, not to the bit.

Elementwise kernels (``bn_affine``, ``bn_backward_gx``, ``bn_scale_gx``): grid-stride over the
flat ``N*C*L`` elements, channel ``(i // L) % C``, arithmetic in the array dtype as on the CPU.
"""

from __future__ import annotations

from . import _reduce
from ._runtime import cuda, dev, empty, grid, host_or_device, out_pair

__all__ = ["bn_stats", "bn_affine", "bn_backward_reduce", "bn_backward_gx", "bn_scale_gx"]


@cuda.jit
def _affine(x, mean, scale, shift, y):
    N, C, L = x.shape
    for e in range(cuda.grid(1), N * C * L, cuda.gridsize(1)):
        n, r = e // (C * L), e % (C * L)
        c, i = r // L, r % L
        y[n, c, i] = (x[n, c, i] - mean[c]) * scale[c] + shift[c]


@cuda.jit
def _backward_gx(gy, x, mean, a, b, d, gx):
    N, C, L = x.shape
    for e in range(cuda.grid(1), N * C * L, cuda.gridsize(1)):
        n, r = e // (C * L), e % (C * L)
        c, i = r // L, r % L
        gx[n, c, i] = a[c] * gy[n, c, i] + b[c] * (x[n, c, i] - mean[c]) + d[c]


@cuda.jit
def _scale_gx(gy, a, gx):
    N, C, L = gy.shape
    for e in range(cuda.grid(1), N * C * L, cuda.gridsize(1)):
        n, r = e // (C * L), e % (C * L)
        c, i = r // L, r % L
        gx[n, c, i] = a[c] * gy[n, c, i]


def bn_stats(x):
    """Per-channel mean and biased variance of ``x (N, C, L)``, both float64 ``(C,)``."""
    mean, var = _reduce.channel_sums(dev(x), None, None, _reduce.STATS)
    return host_or_device(mean, x), host_or_device(var, x)


def _fill(kernel, like, out, *args):
    """Run ``kernel(*args, out)``; ``out`` (numpy or device) is filled and returned, or, when
    omitted, a new array of ``like``'s shape and kind is."""
    if out is None:
        d = empty(like.shape, like.dtype)
        kernel[grid(d.size)](*args, d)
        return host_or_device(d, like)
    d, finish = out_pair(out)
    kernel[grid(d.size)](*args, d)
    finish()
    return out


def bn_affine(x, mean, scale, shift, y=None):
    """``y = (x - mean[c]) * scale[c] + shift[c]``; ``mean, scale, shift`` have x's dtype."""
    return _fill(_affine, x, y, dev(x), dev(mean), dev(scale), dev(shift))


def bn_backward_reduce(gy, x, mean):
    """Per-channel ``sum(gy)`` and ``sum(gy * (x - mean))`` as float64 ``(C,)``; mean is float64."""
    sg, sgx = _reduce.channel_sums(dev(gy), dev(x), dev(mean), _reduce.GRAD)
    return host_or_device(sg, gy), host_or_device(sgx, gy)


def bn_backward_gx(gy, x, mean, a, b, d, gx=None):
    """``gx = a[c] * gy + b[c] * (x - mean[c]) + d[c]``; coefficient arrays have x's dtype."""
    return _fill(_backward_gx, gy, gx, dev(gy), dev(x), dev(mean), dev(a), dev(b), dev(d))


def bn_scale_gx(gy, a, gx=None):
    """``gx = a[c] * gy`` (eval-mode backward, where the statistics are constants)."""
    return _fill(_scale_gx, gy, gx, dev(gy), dev(a))
