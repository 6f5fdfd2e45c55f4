"""Cython CPU pooling: the kernels of ``corenet/_ext/pool.pyx`` under the contract names.

The names, signatures and semantics are the contract documented at the top of
``corenet/kernels/numba_cpu/pool.py``; each wrapper only appends the thread count from
``corenet.config`` (read once per call) for the OpenMP ``prange`` of the compiled kernel.
"""

from __future__ import annotations

from ..._ext import pool as _pool
from ...config import get_num_threads

__all__ = [
    "extreme_pool_forward",
    "extreme_pool_backward",
    "avg_pool_forward",
    "avg_pool_backward",
    "adaptive_avg_pool_forward",
    "adaptive_avg_pool_backward",
]


def extreme_pool_forward(x, y, idx, kh, kw, sh, sw, pt, pl, dh, dw, find_min):
    _pool.extreme_pool_forward(x, y, idx, kh, kw, sh, sw, pt, pl, dh, dw, find_min, get_num_threads())


def extreme_pool_backward(gy, idx, gx):
    _pool.extreme_pool_backward(gy, idx, gx, get_num_threads())


def avg_pool_forward(x, y, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, count_include_pad, divisor):
    _pool.avg_pool_forward(x, y, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, count_include_pad, divisor,
                           get_num_threads())


def avg_pool_backward(gy, gx, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, count_include_pad, divisor):
    _pool.avg_pool_backward(gy, gx, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, count_include_pad, divisor,
                            get_num_threads())


def adaptive_avg_pool_forward(x, y):
    _pool.adaptive_avg_pool_forward(x, y, get_num_threads())


def adaptive_avg_pool_backward(gy, gx):
    _pool.adaptive_avg_pool_backward(gy, gx, get_num_threads())
