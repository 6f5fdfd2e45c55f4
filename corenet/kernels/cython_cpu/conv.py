"""Cython CPU convolution: the primitives of ``corenet/_ext/conv.pyx`` under the contract names.

The signatures are exactly those documented at the top of ``corenet/kernels/numba_cpu/conv.py``;
each wrapper only appends the thread count from ``corenet.config`` (read once per call) for the
OpenMP ``prange`` of the compiled kernel. ``conv2d_forward`` / ``conv2d_backward`` are the shared
GEMM orchestration of ``corenet/kernels/_cpu_conv.py`` bound to these primitives.
"""

from __future__ import annotations

import sys

import numpy as np

from ..._ext import conv as _conv
from ..._ext import simd_conv as _simd
from ...config import get_num_threads, get_parallel_threshold
from .. import _cpu_conv, _cpu_workspace

__all__ = [
    "im2col",
    "col2im",
    "direct_forward",
    "direct_backward_input",
    "direct_backward_weight",
    "simd_forward",
    "simd_wgrad",
    "simd_dw_forward",
    "simd_dw_wgrad",
    "simd_dwc_forward",
    "simd_dwc_backward_input",
    "simd_dwc_wgrad",
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


# A direct convolution below 128 x the parallel threshold in multiply-adds (4 M by default, ~20 us
# on one core) runs on one thread: waking a second one costs about as much (a ResNet-20 layer at
# batch 1 is 2.4 M). ``config.set_parallel_threshold(0)`` forces the threads, as for every kernel.
SIMD_MACS_PER_WORK = 128


def _threads(y, w):
    return get_num_threads() if y.size * w[0].size >= SIMD_MACS_PER_WORK * get_parallel_threshold() else 1


def simd_forward(x, w, b, stride, padding4, dilation, y):
    """OUT y (N, C_out, ho, wo) = conv(x (N, C_in, H, W), w (C_out, C_in, kh, kw)) + b; groups = 1.

    The register-tiled direct convolution of ``corenet/_ext/simd_conv.h`` (no column matrix)."""
    nt = _threads(y, w)
    (sh, sw), (pt, _, pl, _), (dh, dw) = stride, padding4, dilation
    need = _simd.forward_workspace(x.shape, w.shape, sh, sw, dh, dw, y.shape[2], y.shape[3], x.itemsize, nt)
    _simd.forward(x, w, b, sh, sw, pt, pl, dh, dw, y, _cpu_workspace.workspace(2, need, np.uint8), nt)


def simd_wgrad(x, gy, stride, padding4, dilation, gw):
    """OUT gw (C_out, C_in, kh, kw): the weight gradient of :func:`simd_forward` for upstream ``gy``."""
    nt = _threads(gy, gw)
    (sh, sw), (pt, _, pl, _), (dh, dw) = stride, padding4, dilation
    need = _simd.wgrad_workspace(x.shape, gw.shape, sh, sw, dh, dw, gy.shape[2], gy.shape[3], x.itemsize, nt)
    _simd.wgrad(x, gy, sh, sw, pt, pl, dh, dw, gw, _cpu_workspace.workspace(2, need, np.uint8), nt)


def simd_dw_forward(x, w, b, stride, padding4, dilation, y):
    """OUT y (N, C, ho, wo): depthwise convolution, ``w (C, 1, kh, kw)``, one channel per group."""
    nt = _threads(y, w)
    (sh, sw), (pt, _, pl, _), (dh, dw) = stride, padding4, dilation
    need = _simd.dw_forward_workspace(x.shape, w.shape, sh, sw, dh, dw, y.shape[2], y.shape[3], x.itemsize, nt)
    _simd.dw_forward(x, w, b, sh, sw, pt, pl, dh, dw, y, _cpu_workspace.workspace(2, need, np.uint8), nt)


def simd_dw_wgrad(x, gy, stride, padding4, dilation, gw):
    """OUT gw (C, 1, kh, kw): the weight gradient of :func:`simd_dw_forward` for upstream ``gy``."""
    nt = _threads(gy, gw)
    (sh, sw), (pt, _, pl, _), (dh, dw) = stride, padding4, dilation
    need = _simd.dw_wgrad_workspace(x.shape, gw.shape, sh, sw, dh, dw, gy.shape[2], gy.shape[3], x.itemsize, nt)
    _simd.dw_wgrad(x, gy, sh, sw, pt, pl, dh, dw, gw, _cpu_workspace.workspace(2, need, np.uint8), nt)


# The channel-vectorised depthwise kernels take a second thread from 4 x the parallel threshold in
# multiply-adds (128 K by default; an OpenMP team wakes in a few us): MobileNetV2's 3x3 stride-2
# layer on 576 channels of 4x4 at batch 16 (0.33 M) runs in 107 us on one thread, 52 us on two.
DWC_MACS_PER_WORK = 4


def _dwc_call(fn, args, x_shape, w_shape, out_hw, stride, padding4, dilation, itemsize):
    """``fn(*args[:-1], sh, sw, pt, pl, dh, dw, args[-1], workspace, threads)`` (``args[-1]``: the output)."""
    macs = x_shape[0] * x_shape[1] * out_hw[0] * out_hw[1] * w_shape[2] * w_shape[3]
    nt = get_num_threads() if macs >= DWC_MACS_PER_WORK * get_parallel_threshold() else 1
    (sh, sw), (pt, _, pl, _), (dh, dw) = stride, padding4, dilation
    need = _simd.dwc_workspace(x_shape, w_shape, sh, sw, dh, dw, *out_hw, itemsize, nt)
    fn(*args[:-1], sh, sw, pt, pl, dh, dw, args[-1], _cpu_workspace.workspace(2, need, np.uint8), nt)


def simd_dwc_forward(x, w, b, stride, padding4, dilation, y):
    """OUT y (N, C, ho, wo): depthwise convolution with channels as the vector lanes (small maps)."""
    _dwc_call(_simd.dwc_forward, (x, w, b, y), x.shape, w.shape, y.shape[2:], stride, padding4, dilation,
              x.itemsize)


def simd_dwc_backward_input(gy, w, stride, padding4, dilation, gx):
    """OUT gx (N, C, H, W): the input gradient of :func:`simd_dwc_forward` for upstream ``gy``, any stride."""
    _dwc_call(_simd.dwc_backward_input, (gy, w, gx), gx.shape, w.shape, gy.shape[2:], stride, padding4, dilation,
              gy.itemsize)


def simd_dwc_wgrad(x, gy, stride, padding4, dilation, gw):
    """OUT gw (C, 1, kh, kw): the weight gradient of :func:`simd_dwc_forward` for upstream ``gy``."""
    _dwc_call(_simd.dwc_wgrad, (x, gy, gw), x.shape, gw.shape, gy.shape[2:], stride, padding4, dilation,
              x.itemsize)


conv2d_forward, conv2d_backward = _cpu_conv.bind(sys.modules[__name__])  # the shared orchestration
