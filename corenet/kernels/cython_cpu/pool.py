"""Cython CPU pooling: the kernels of ``corenet/_ext/pool.pyx`` under the contract names.

The names, signatures and semantics are the contract documented at the top of
``corenet/kernels/numba_cpu/pool.py``; each wrapper only appends the thread count for the
OpenMP ``prange`` of the compiled kernel: ``corenet.config``'s, or one thread for small calls
(``corenet._ext.threads_for``, with the per-element costs of the Numba backend's ``@sized``).
The argmax scatter takes no window geometry, so ``extreme_pool_backward`` drops it and
``adaptive_max_pool_backward`` calls the same compiled scatter.
"""

from __future__ import annotations

from ..._ext import pool as _pool
from ..._ext import threads_for

__all__ = [
    "extreme_pool_forward",
    "extreme_pool_backward",
    "avg_pool_forward",
    "avg_pool_backward",
    "adaptive_avg_pool_forward",
    "adaptive_avg_pool_backward",
    "adaptive_max_pool_forward",
    "adaptive_max_pool_backward",
]


def extreme_pool_forward(x, y, idx, kh, kw, sh, sw, pt, pl, dh, dw, find_min):
    _pool.extreme_pool_forward(x, y, idx, kh, kw, sh, sw, pt, pl, dh, dw, find_min, threads_for(x.size, 4))


def extreme_pool_backward(gy, idx, gx, kh, kw, sh, sw, pt, pl, dh, dw):
    _pool.extreme_pool_backward(gy, idx, gx, threads_for(gy.size, 2))


def avg_pool_forward(x, y, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, count_include_pad, divisor):
    _pool.avg_pool_forward(x, y, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, count_include_pad, divisor,
                           threads_for(x.size, 2))


def avg_pool_backward(gy, gx, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, count_include_pad, divisor):
    _pool.avg_pool_backward(gy, gx, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, count_include_pad, divisor,
                            threads_for(gy.size, 2))


def adaptive_avg_pool_forward(x, y):
    _pool.adaptive_avg_pool_forward(x, y, threads_for(x.size, 1))


def adaptive_avg_pool_backward(gy, gx):
    _pool.adaptive_avg_pool_backward(gy, gx, threads_for(gy.size, 2))


def adaptive_max_pool_forward(x, y, idx):
    _pool.adaptive_max_pool_forward(x, y, idx, threads_for(x.size, 4))


def adaptive_max_pool_backward(gy, idx, gx):
    _pool.extreme_pool_backward(gy, idx, gx, threads_for(gy.size, 2))
