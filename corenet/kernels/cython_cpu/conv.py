"""Cython CPU convolution: the primitives of ``corenet/_ext/conv.pyx`` under the contract names.

The signatures are exactly those documented at the top of ``corenet/kernels/numba_cpu/conv.py``;
each wrapper only appends the thread count from ``corenet.config`` (read once per call) for the
OpenMP ``prange`` of the compiled kernel. ``conv2d_forward`` / ``conv2d_backward`` are the shared
GEMM orchestration of ``corenet/kernels/_cpu_conv.py`` bound to these primitives.
"""

from __future__ import annotations

import sys

from ..._ext import conv as _conv
from ...config import get_num_threads
from .. import _cpu_conv

__all__ = [
    "im2col",
    "col2im",
    "direct_forward",
    "direct_backward_input",
    "direct_backward_weight",
    "conv2d_forward",
    "conv2d_backward",
]


def im2col(x, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, col):
    _conv.im2col(x, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, col, get_num_threads())


def col2im(col, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, gx):
    _conv.col2im(col, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, gx, get_num_threads())


def direct_forward(x, w, b, groups, sh, sw, pt, pl, dh, dw, y):
    _conv.direct_forward(x, w, b, groups, sh, sw, pt, pl, dh, dw, y, get_num_threads())


def direct_backward_input(gy, w, groups, sh, sw, pt, pl, dh, dw, gx):
    _conv.direct_backward_input(gy, w, groups, sh, sw, pt, pl, dh, dw, gx, get_num_threads())


def direct_backward_weight(x, gy, groups, sh, sw, pt, pl, dh, dw, gw):
    _conv.direct_backward_weight(x, gy, groups, sh, sw, pt, pl, dh, dw, gw, get_num_threads())


_PRIMS = sys.modules[__name__]


def conv2d_forward(x, w, b, stride, padding4, dilation, groups):
    """Contract entry point: ``_cpu_conv.conv2d_forward`` on the Cython primitives."""
    return _cpu_conv.conv2d_forward(_PRIMS, x, w, b, stride, padding4, dilation, groups)


def conv2d_backward(x, w, gy, stride, padding4, dilation, groups, need_gx, need_gw, need_gb):
    """Contract entry point: ``_cpu_conv.conv2d_backward`` on the Cython primitives."""
    return _cpu_conv.conv2d_backward(_PRIMS, x, w, gy, stride, padding4, dilation, groups,
                                     need_gx, need_gw, need_gb)
