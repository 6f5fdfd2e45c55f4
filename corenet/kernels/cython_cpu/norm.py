"""Cython CPU batch normalisation: the kernels of ``corenet/_ext/norm.pyx`` under the contract names.

Same names, signatures and return values as ``corenet/kernels/numba_cpu/norm.py``. The compiled
kernels fill OUT arrays; the wrappers allocate them (and the ``(N, C)`` float64 per-block
partials), pass the thread count from ``corenet.config`` and return what the Numba kernels return.
"""

from __future__ import annotations

import numpy as np

from ..._ext import norm as _norm
from ...config import get_num_threads

__all__ = ["bn_stats", "bn_affine", "bn_backward_reduce", "bn_backward_gx", "bn_scale_gx"]


def bn_stats(x):
    """Per-channel mean and biased variance of ``x (N, C, L)``, both float64 ``(C,)``."""
    N, C, _ = x.shape
    mean, var = np.empty(C, np.float64), np.empty(C, np.float64)
    _norm.bn_stats(x, np.empty((N, C), np.float64), np.empty((N, C), np.float64), mean, var, get_num_threads())
    return mean, var


def bn_affine(x, mean, scale, shift):
    """``y = (x - mean[c]) * scale[c] + shift[c]``; ``mean, scale, shift`` have x's dtype."""
    y = np.empty_like(x)
    _norm.bn_affine(x, mean, scale, shift, y, get_num_threads())
    return y


def bn_backward_reduce(gy, x, mean):
    """Per-channel ``sum(gy)`` and ``sum(gy * (x - mean))`` as float64 ``(C,)``; mean is float64."""
    N, C, _ = x.shape
    sg, sgx = np.empty(C, np.float64), np.empty(C, np.float64)
    _norm.bn_backward_reduce(gy, x, mean, np.empty((N, C), np.float64), np.empty((N, C), np.float64),
                             sg, sgx, get_num_threads())
    return sg, sgx


def bn_backward_gx(gy, x, mean, a, b, d):
    """``gx = a[c] * gy + b[c] * (x - mean[c]) + d[c]``; coefficient arrays have x's dtype."""
    gx = np.empty_like(gy)
    _norm.bn_backward_gx(gy, x, mean, a, b, d, gx, get_num_threads())
    return gx


def bn_scale_gx(gy, a):
    """``gx = a[c] * gy`` (eval-mode backward, where the statistics are constants)."""
    gx = np.empty_like(gy)
    _norm.bn_scale_gx(gy, a, gx, get_num_threads())
    return gx
