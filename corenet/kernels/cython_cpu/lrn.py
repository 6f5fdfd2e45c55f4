"""Cython CPU local response normalisation: the kernels of ``corenet/_ext/lrn.pyx``.

The names, signatures and semantics are the contract documented at the top of
``corenet/kernels/numba_cpu/lrn.py``; each wrapper only appends the thread count for the
OpenMP ``prange`` of the compiled kernel: ``corenet.config``'s, or one thread for small calls
(``corenet._ext.threads_for``, with the per-element costs of the Numba backend's ``@sized``).
"""

from __future__ import annotations

from ..._ext import lrn as _lrn
from ..._ext import threads_for

__all__ = ["lrn_across_forward", "lrn_across_backward", "lrn_within_forward", "lrn_within_backward"]


def lrn_across_forward(x, y, scale, size, alpha, beta, k):
    _lrn.lrn_across_forward(x, y, scale, size, alpha, beta, k, threads_for(x.size, 8))


def lrn_across_backward(x, scale, gy, gx, size, alpha, beta):
    _lrn.lrn_across_backward(x, scale, gy, gx, size, alpha, beta, threads_for(x.size, 8))


def lrn_within_forward(x, y, scale, size, alpha, beta, k):
    _lrn.lrn_within_forward(x, y, scale, size, alpha, beta, k, threads_for(x.size, 16))


def lrn_within_backward(x, scale, gy, gx, size, alpha, beta):
    _lrn.lrn_within_backward(x, scale, gy, gx, size, alpha, beta, threads_for(x.size, 16))
