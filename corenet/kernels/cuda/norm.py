"""CUDA batch-normalisation kernels: statistics and gradient sums by deterministic tree reductions.

Contract: exactly ``numba_cpu/norm.py``'s names, signatures and return values (read its
docstring): inputs are ``(N, C, L)`` views; ``bn_stats`` and ``bn_backward_reduce`` return float64
``(C,)`` vectors; the elementwise kernels fill and return the output passed last. numpy in, numpy
out; device arrays in, device arrays out. ``bn_prepare`` and ``bn_backward_coeffs`` (the ``(C,)``
steps between the reductions and the elementwise kernels) are here as one-thread-per-channel
kernels; the CPU backends have them in plain numpy (``kernels/_norm_coeffs.py``).

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

import math

import numba
import numpy as np

from . import _reduce
from ._runtime import cuda, dev, empty, grid, host_or_device, out_pair

__all__ = ["bn_stats", "bn_affine", "bn_backward_reduce", "bn_backward_gx", "bn_scale_gx", "bn_prepare",
           "bn_backward_coeffs"]


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


def bn_affine(x, mean, scale, shift, y):
    """``y = (x - mean[c]) * scale[c] + shift[c]``; ``mean, scale, shift`` have x's dtype."""
    return _fill(_affine, x, y, dev(x), dev(mean), dev(scale), dev(shift))


def bn_backward_reduce(gy, x, mean):
    """Per-channel ``sum(gy)`` and ``sum(gy * (x - mean))`` as float64 ``(C,)``; mean is float64."""
    sg, sgx = _reduce.channel_sums(dev(gy), dev(x), dev(mean), _reduce.GRAD)
    return host_or_device(sg, gy), host_or_device(sgx, gy)


def bn_backward_gx(gy, x, mean, a, b, d, gx):
    """``gx = a[c] * gy + b[c] * (x - mean[c]) + d[c]``; coefficient arrays have x's dtype."""
    return _fill(_backward_gx, gy, gx, dev(gy), dev(x), dev(mean), dev(a), dev(b), dev(d))


def bn_scale_gx(gy, a, gx):
    """``gx = a[c] * gy`` (eval-mode backward, where the statistics are constants)."""
    return _fill(_scale_gx, gy, gx, dev(gy), dev(a))


# ------------------------------------------------------------ per-channel (C,) arithmetic on device
# The functional layer's numpy (C,) steps (running-statistics update, invstd, the affine and the
# backward coefficients) as one-thread-per-channel kernels, so a device-resident batch norm never
# copies its statistics to the host. Each follows functional/norm.py's formula and order of
# operations (float64, with the running statistics' own dtype where numpy uses it), so the two
# agree to rounding.


@cuda.jit
def _prepare(mean, var, gamma, beta, rmean, rvar, use_running, update, momentum, omm, unbias, eps, has_gamma,
             has_beta, mean64, invstd, mean_dt, scale_dt, shift_dt):
    for c in range(cuda.grid(1), mean64.shape[0], cuda.gridsize(1)):
        if use_running:
            m = numba.float64(rmean[c])
            v = numba.float64(rvar[c])
        else:
            m = mean[c]
            v = var[c]
            if update:
                rmean[c] = rmean[c] * omm + momentum * m
                rvar[c] = rvar[c] * omm + momentum * v * unbias
        s = 1.0 / math.sqrt(v + eps)
        mean64[c] = m
        invstd[c] = s
        g = numba.float64(gamma[c]) if has_gamma else 1.0
        mean_dt[c] = m
        scale_dt[c] = g * s
        shift_dt[c] = beta[c] if has_beta else 0.0


def bn_prepare(mean, var, gamma, beta, running_mean, running_var, use_running, update, momentum, M, eps, dtype):
    """Device (C,) step of the batch-norm forward: optionally update the running statistics in
    place (PyTorch's rule, unbiased variance), then ``invstd = 1/sqrt(var + eps)``.
    Returns ``(mean64, invstd, mean, scale, shift)``: float64 mean and invstd for the backward,
    and ``bn_affine``'s coefficients in ``dtype``. ``mean``/``var`` (float64) are ignored when
    ``use_running``; ``gamma``, ``beta`` and the running statistics may be None."""
    ref = running_mean if use_running else mean
    C = ref.shape[0]
    dummy = empty(1, np.float64)
    rdt = running_mean.dtype.type if running_mean is not None else np.float64
    mean64, invstd = empty(C, np.float64), empty(C, np.float64)
    mean_dt, scale_dt, shift_dt = empty(C, dtype), empty(C, dtype), empty(C, dtype)
    _prepare[grid(C)](dummy if use_running else mean, dummy if use_running else var,
                      dummy if gamma is None else gamma, dummy if beta is None else beta,
                      dummy if running_mean is None else running_mean, dummy if running_var is None else running_var,
                      bool(use_running), bool(update), float(momentum), rdt(1.0 - momentum),
                      float(M / max(M - 1, 1)), float(eps), gamma is not None, beta is not None,
                      mean64, invstd, mean_dt, scale_dt, shift_dt)
    return mean64, invstd, mean_dt, scale_dt, shift_dt


@cuda.jit
def _coeffs(sg, sgx, gamma, has_gamma, invstd, mean64, M, batch_stats, have_sums, a_dt, b_dt, d_dt, mean_dt,
            ggamma, gbeta):
    for c in range(cuda.grid(1), invstd.shape[0], cuda.gridsize(1)):
        s = invstd[c]
        a = (numba.float64(gamma[c]) if has_gamma else 1.0) * s
        a_dt[c] = a
        mean_dt[c] = mean64[c]
        if have_sums:
            g = sg[c]
            gx = sgx[c] * s
            ggamma[c] = gx
            gbeta[c] = g
            if batch_stats:
                b_dt[c] = -a * s * gx / M
                d_dt[c] = -a * g / M


def bn_backward_coeffs(sg, sgx, gamma, invstd, mean64, M, batch_stats, dtype):
    """Device (C,) step of the batch-norm backward. ``sg, sgx``: ``bn_backward_reduce``'s sums
    (None when not computed). Returns ``(a, b, d, mean, ggamma, gbeta)`` in ``dtype`` with
    ``a = gamma * invstd``, ``b = -a * invstd * sum(gy*xhat) / M``, ``d = -a * sum(gy) / M``,
    ``ggamma = sum(gy * xhat)``, ``gbeta = sum(gy)`` (the last four None without the sums)."""
    C = invstd.shape[0]
    have = sg is not None
    dummy = empty(1, np.float64)
    out = [empty(C, dtype) for _ in range(4)]
    gg, gb = (empty(C, dtype), empty(C, dtype)) if have else (dummy, dummy)
    _coeffs[grid(C)](sg if have else dummy, sgx if have else dummy, dummy if gamma is None else gamma,
                     gamma is not None, invstd, mean64, float(M), bool(batch_stats), have, *out, gg, gb)
    a, b, d, mean_dt = out
    return a, b, d, mean_dt, (gg if have else None), (gb if have else None)
