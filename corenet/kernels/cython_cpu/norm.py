"""Cython CPU batch normalisation: the kernels of ``corenet/_ext/norm.pyx`` under the contract names.

Same names, signatures and return values as ``corenet/kernels/numba_cpu/norm.py``: full-size
outputs are allocated by the caller, passed last, filled and returned; the small float64
statistics (and their ``(N, C)`` per-block partials) are allocated here. Each wrapper adds the
thread count (one thread for small inputs, ``corenet._ext.threads_for``).
"""

from __future__ import annotations

import numpy as np

from ..._ext import norm as _norm
from ..._ext import threads_for
from .._norm_coeffs import bn_backward_coeffs, bn_prepare  # noqa: F401  (the (C,) steps, plain numpy)

__all__ = ["bn_stats", "bn_affine", "bn_backward_reduce", "bn_backward_gx", "bn_scale_gx", "bn_prepare",
           "bn_backward_coeffs"]


def bn_stats(x):
    """Per-channel mean and biased variance of ``x (N, C, L)``, both float64 ``(C,)``."""
    N, C, _ = x.shape
    mean, var = np.empty(C, np.float64), np.empty(C, np.float64)
    _norm.bn_stats(x, np.empty((N, C), np.float64), np.empty((N, C), np.float64), mean, var, threads_for(x.size))
    return mean, var


def bn_affine(x, mean, scale, shift, y):
    """``y = (x - mean[c]) * scale[c] + shift[c]``; ``mean, scale, shift`` have x's dtype."""
    _norm.bn_affine(x, mean, scale, shift, y, threads_for(x.size))
    return y


def bn_backward_reduce(gy, x, mean):
    """Per-channel ``sum(gy)`` and ``sum(gy * (x - mean))`` as float64 ``(C,)``; mean is float64."""
    N, C, _ = x.shape
    sg, sgx = np.empty(C, np.float64), np.empty(C, np.float64)
    _norm.bn_backward_reduce(gy, x, mean, np.empty((N, C), np.float64), np.empty((N, C), np.float64),
                             sg, sgx, threads_for(gy.size))
    return sg, sgx


def bn_backward_gx(gy, x, mean, a, b, d, gx):
    """``gx = a[c] * gy + b[c] * (x - mean[c]) + d[c]``; coefficient arrays have x's dtype."""
    _norm.bn_backward_gx(gy, x, mean, a, b, d, gx, threads_for(gy.size))
    return gx


def bn_scale_gx(gy, a, gx):
    """``gx = a[c] * gy`` (eval-mode backward, where the statistics are constants)."""
    _norm.bn_scale_gx(gy, a, gx, threads_for(gy.size))
    return gx
