"""Cython CPU fused epilogues: the kernels of ``corenet/_ext/fused.pyx`` under the contract names of
``corenet/kernels/numba_cpu/fused.py`` (batch norm + ReLU or ReLU6, add + ReLU in one pass each). Each
wrapper allocates the small float64 work arrays, passes the caller's outputs and adds the thread
count (one thread for small inputs, ``corenet._ext.threads_for``)."""

from __future__ import annotations

import numpy as np

from ..._ext import fused as _fused
from ..._ext import threads_for
from . import act, norm

__all__ = ["bn_relu_forward", "bn_relu_backward_reduce", "bn_relu_backward_gx", "bn_relu_scale_gx",
           "add_relu_forward", "bn_relu6_forward", "bn_relu6_backward_reduce", "bn_relu6_backward_gx",
           "bn_relu6_scale_gx"]


def bn_relu_forward(x, mean, scale, shift, y):
    _fused.bn_relu_forward(x, mean, scale, shift, y, threads_for(x.size))
    return y


def bn_relu_backward_reduce(gy, y, x, mean):
    """The ReLU's gradient is formed by relu_backward, then reduced by the batch norm's own kernel:
    a mask inside the compiled sums became a data-dependent branch per element (GCC turns the
    select, and a multiply by the 0/1 mask, into one), mispredicted half the time: ~8x slower
    than these two passes."""
    g = act.relu_backward(gy.reshape(-1), y.reshape(-1), np.empty(gy.size, gy.dtype)).reshape(gy.shape)
    return norm.bn_backward_reduce(g, x, mean)


def bn_relu_backward_gx(gy, y, x, mean, a, b, d, gx):
    _fused.bn_relu_backward_gx(gy, y, x, mean, a, b, d, gx, threads_for(gy.size, 2))
    return gx


def bn_relu_scale_gx(gy, y, a, gx):
    _fused.bn_relu_scale_gx(gy, y, a, gx, threads_for(gy.size))
    return gx


def add_relu_forward(a, b, y):
    _fused.add_relu_forward(a, b, y, threads_for(a.size, 2))
    return y


def bn_relu6_forward(x, mean, scale, shift, y):
    _fused.bn_relu6_forward(x, mean, scale, shift, y, threads_for(x.size))
    return y


def bn_relu6_backward_reduce(gy, y, x, mean):
    """relu6_backward, then the batch norm's reduction (as ``bn_relu_backward_reduce``)."""
    g = act.relu6_backward(gy.reshape(-1), y.reshape(-1), np.empty(gy.size, gy.dtype)).reshape(gy.shape)
    return norm.bn_backward_reduce(g, x, mean)


def bn_relu6_backward_gx(gy, y, x, mean, a, b, d, gx):
    _fused.bn_relu6_backward_gx(gy, y, x, mean, a, b, d, gx, threads_for(gy.size, 2))
    return gx


def bn_relu6_scale_gx(gy, y, a, gx):
    _fused.bn_relu6_scale_gx(gy, y, a, gx, threads_for(gy.size))
    return gx
