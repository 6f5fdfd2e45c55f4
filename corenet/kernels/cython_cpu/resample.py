"""Cython CPU resampling: the kernels of ``corenet/_ext/resample.pyx`` under the contract names.

The names, signatures and semantics are the contract documented at the top of
``corenet/kernels/numba_cpu/resample.py``; each wrapper only appends the thread count for the
OpenMP ``prange`` of the compiled kernel (``corenet._ext.threads_for``, with the per-element
costs of the Numba backend's ``@sized``).
"""

from __future__ import annotations

from ..._ext import resample as _resample
from ..._ext import threads_for

__all__ = ["nearest_forward", "nearest_backward", "bilinear_forward", "bilinear_backward"]


def nearest_forward(x, ih, iw, y):
    _resample.nearest_forward(x, ih, iw, y, threads_for(x.size, 1))


def nearest_backward(gy, ih, iw, gx):
    _resample.nearest_backward(gy, ih, iw, gx, threads_for(gy.size, 2))


def bilinear_forward(x, h0, h1, lh, w0, w1, lw, y):
    _resample.bilinear_forward(x, h0, h1, lh, w0, w1, lw, y, threads_for(x.size, 4))


def bilinear_backward(gy, h0, h1, lh, w0, w1, lw, gx):
    _resample.bilinear_backward(gy, h0, h1, lh, w0, w1, lw, gx, threads_for(gy.size, 4))
