"""Cython CPU local response normalisation: the kernels of ``corenet/_ext/lrn.pyx``.

The names, signatures and semantics are the contract documented at the top of
``corenet/kernels/numba_cpu/lrn.py``; each wrapper only appends the thread count from
``corenet.config`` (read once per call) for the OpenMP ``prange`` of the compiled kernel.
"""

from __future__ import annotations

from ..._ext import lrn as _lrn
from ...config import get_num_threads

__all__ = ["lrn_across_forward", "lrn_across_backward", "lrn_within_forward", "lrn_within_backward"]


def lrn_across_forward(x, y, scale, size, alpha, beta, k):
    _lrn.lrn_across_forward(x, y, scale, size, alpha, beta, k, get_num_threads())


def lrn_across_backward(x, scale, gy, gx, size, alpha, beta):
    _lrn.lrn_across_backward(x, scale, gy, gx, size, alpha, beta, get_num_threads())


def lrn_within_forward(x, y, scale, size, alpha, beta, k):
    _lrn.lrn_within_forward(x, y, scale, size, alpha, beta, k, get_num_threads())


def lrn_within_backward(x, scale, gy, gx, size, alpha, beta):
    _lrn.lrn_within_backward(x, scale, gy, gx, size, alpha, beta, get_num_threads())
