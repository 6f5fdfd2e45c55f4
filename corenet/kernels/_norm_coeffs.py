"""Batch normalisation's per-channel ``(C,)`` arithmetic on the host, shared by the CPU backends.

``numba_cpu/norm.py`` and ``cython_cpu/norm.py`` export these two functions under the contract
names; ``cuda/norm.py`` has the same two as one-thread-per-channel kernels (so a device-resident
batch norm never copies its statistics to the host). ``corenet.functional.norm`` calls them on every
backend alike: ``bn_stats`` -> ``bn_prepare`` -> ``bn_affine`` forward, ``bn_backward_reduce`` ->
``bn_backward_coeffs`` -> ``bn_backward_gx``/``bn_scale_gx`` backward. The vectors are ``(C,)``, so
plain numpy (float64) is all they need.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bn_prepare", "bn_backward_coeffs"]


def bn_prepare(mean, var, gamma, beta, running_mean, running_var, use_running, update, momentum, M, eps, dtype):
    """The forward's ``(C,)`` step: optionally update the running statistics **in place** (PyTorch's
    rule, unbiased variance ``var * M / (M - 1)``), then ``invstd = 1/sqrt(var + eps)``.

    ``mean``/``var`` (float64, biased) are the batch statistics, ignored when ``use_running`` (the
    running ones are used instead); ``gamma``, ``beta`` and the running statistics may be None.
    Returns ``(mean64, invstd, mean, scale, shift)``: the float64 mean and invstd for the backward,
    and ``bn_affine``'s coefficients ``y = (x - mean) * scale + shift`` in ``dtype``.
    """
    if use_running:
        mean = running_mean.astype(np.float64)
        var = running_var.astype(np.float64)
    elif update:
        running_mean *= 1.0 - momentum
        running_mean += momentum * mean
        running_var *= 1.0 - momentum
        running_var += momentum * var * (M / max(M - 1, 1))
    C = mean.shape[0]
    invstd = 1.0 / np.sqrt(var + eps)  # float64 (C,)
    g64 = gamma.astype(np.float64) if gamma is not None else np.ones(C)
    scale = g64 * invstd
    shift = beta if beta is not None else np.zeros(C, dtype)
    return mean, invstd, mean.astype(dtype), scale.astype(dtype), np.ascontiguousarray(shift, dtype)


def bn_backward_coeffs(sg, sgx, gamma, invstd, mean64, M, batch_stats, dtype):
    """The backward's ``(C,)`` step from ``bn_backward_reduce``'s sums ``sg = sum(gy)``,
    ``sgx = sum(gy * (x - mean))`` (both None when they were not computed).

    Returns ``(a, b, d, mean, ggamma, gbeta)`` in ``dtype``, with ``gx = a*gy + b*(x - mean) + d``:
    ``a = gamma * invstd``; with batch statistics ``b = -a * invstd * sum(gy*xhat) / M`` and
    ``d = -a * sum(gy) / M`` (None otherwise: ``gx = a*gy``); ``ggamma = sum(gy * xhat)`` and
    ``gbeta = sum(gy)`` (None without the sums).
    """
    C = invstd.shape[0]
    g64 = gamma.astype(np.float64) if gamma is not None else np.ones(C)
    a = g64 * invstd  # float64 (C,)
    b = d = ggamma = gbeta = None
    if sg is not None:
        sgx = sgx * invstd  # = sum(gy * xhat)
        if batch_stats:
            b = (-a * invstd * sgx / M).astype(dtype)
            d = (-a * sg / M).astype(dtype)
        ggamma = sgx.astype(dtype)
        gbeta = sg.astype(dtype)
    return a.astype(dtype), b, d, mean64.astype(dtype), ggamma, gbeta
