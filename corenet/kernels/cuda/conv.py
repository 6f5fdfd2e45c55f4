"""CUDA convolution: implicit GEMM in shared memory, and direct kernels for narrow groups.

Contract (as ``numba_cpu/conv.py``)::

    conv2d_forward(x, w, b, stride, padding4, dilation, groups) -> y
    conv2d_backward(x, w, gy, stride, padding4, dilation, groups, need_gx, need_gw, need_gb)
        -> (gx, gw, gb), None for what was not asked

Arrays may be numpy or numba device arrays; the results are of the kind ``x`` (forward) or
``gy`` (backward) is: numpy in, numpy out; device in, device out.

Paths
-----
- ``"gemm"`` (``_igemm.py``): every convolution whose groups have at least
  ``DIRECT_MAX_GROUP_CHANNELS`` input and output channels (all ungrouped ones included; 1x1 is
  the same kernel with ``K = C_in``). Forward, grad-input (gather form) and grad-weight (split
  reduction, partials summed in order) are tiled implicit GEMMs.
- ``"direct"``: depthwise and narrow grouped convolutions, where a GEMM tile would be mostly
  padding. Forward: one thread per output element. Grad-input: one thread per input element,
  gathering from the outputs whose window covers it. Grad-weight: one block per weight element,
  its threads striding over ``N*ho*wo`` and combining in a shared-memory tree.
- bias gradient: ``_reduce.channel_sums`` (two-stage tree).

Nothing uses atomics; every result is deterministic for a given shape.

Limits: an empty batch gives empty outputs and zero weight and bias gradients; the implicit
GEMM's k-table addresses one image's group with int32 offsets, so a group past 2**31 - 1
elements (channels per group x height x width) is refused before anything is copied.
"""

from __future__ import annotations

import numba
import numpy as np

from ...geometry import output_hw
from .._conv_paths import DIRECT_MAX_GROUP_CHANNELS
from . import _igemm, _reduce
from ._runtime import SIM, THREADS, cuda, dev, empty, grid, host_or_device

__all__ = ["conv2d_forward", "conv2d_backward", "choose_path"]

_GW_TARGET_BLOCKS = 4 if SIM else 512  # grad-weight: split the reduction until the grid fills the GPU
_GW_MIN_CHUNK = 2 * _igemm.TK if SIM else 512
_INT32_MAX = 2**31 - 1


def choose_path(w_shape, groups) -> str:
    C_out, cg = w_shape[0], w_shape[1]
    if groups > 1 and min(cg, C_out // groups) < DIRECT_MAX_GROUP_CHANNELS:
        return "direct"
    return "gemm"


# ---------------------------------------------------------------------- direct kernels


@cuda.jit
def _direct_forward(x, w, b, has_bias, groups, sh, sw, pt, pl, dh, dw, y):
    N, C_in, H, W = x.shape
    C_out, cg, kh, kw = w.shape
    ho, wo = y.shape[2], y.shape[3]
    cog = C_out // groups
    for e in range(cuda.grid(1), N * C_out * ho * wo, cuda.gridsize(1)):
        ow = e % wo
        oh = (e // wo) % ho
        co = (e // (ho * wo)) % C_out
        n = e // (C_out * ho * wo)
        c0 = (co // cog) * cg
        acc = 0.0  # float64: the direct kernels are memory-bound, the accuracy is free
        for cl in range(cg):
            for i in range(kh):
                ih = oh * sh - pt + i * dh
                if ih >= 0 and ih < H:
                    for j in range(kw):
                        iw = ow * sw - pl + j * dw
                        if iw >= 0 and iw < W:
                            acc += numba.float64(w[co, cl, i, j]) * x[n, c0 + cl, ih, iw]
        if has_bias:
            acc += b[co]
        y[n, co, oh, ow] = acc


@cuda.jit
def _direct_grad_input(gy, w, groups, sh, sw, pt, pl, dh, dw, gx):
    N, C_in, H, W = gx.shape
    C_out, cg, kh, kw = w.shape
    ho, wo = gy.shape[2], gy.shape[3]
    cog = C_out // groups
    for e in range(cuda.grid(1), N * C_in * H * W, cuda.gridsize(1)):
        iw = e % W
        ih = (e // W) % H
        c = (e // (H * W)) % C_in
        n = e // (C_in * H * W)
        g = c // cg
        cl = c - g * cg
        acc = 0.0
        for co in range(g * cog, (g + 1) * cog):
            for i in range(kh):
                th = ih + pt - i * dh
                if th >= 0 and th % sh == 0 and th // sh < ho:
                    for j in range(kw):
                        tw = iw + pl - j * dw
                        if tw >= 0 and tw % sw == 0 and tw // sw < wo:
                            acc += numba.float64(w[co, cl, i, j]) * gy[n, co, th // sh, tw // sw]
        gx[n, c, ih, iw] = acc


@cuda.jit
def _direct_grad_weight(x, gy, groups, sh, sw, pt, pl, dh, dw, gw):
    N, C_in, H, W = x.shape
    C_out, cg, kh, kw = gw.shape
    ho, wo = gy.shape[2], gy.shape[3]
    cog = C_out // groups
    P = ho * wo
    tid = cuda.threadIdx.x
    buf = cuda.shared.array(THREADS, numba.float64)
    for e in range(cuda.blockIdx.x, C_out * cg * kh * kw, cuda.gridDim.x):  # one weight per block
        j = e % kw
        i = (e // kw) % kh
        cl = (e // (kh * kw)) % cg
        co = e // (cg * kh * kw)
        c = (co // cog) * cg + cl
        acc = 0.0
        for r in range(tid, N * P, THREADS):
            n, p = r // P, r % P
            ih = (p // wo) * sh - pt + i * dh
            iw = (p % wo) * sw - pl + j * dw
            if ih >= 0 and ih < H and iw >= 0 and iw < W:
                acc += numba.float64(gy[n, co, p // wo, p % wo]) * x[n, c, ih, iw]
        buf[tid] = acc
        cuda.syncthreads()
        stride = THREADS // 2
        while stride > 0:
            if tid < stride:
                buf[tid] += buf[tid + stride]
            cuda.syncthreads()
            stride //= 2
        if tid == 0:
            gw[co, cl, i, j] = buf[0]
        cuda.syncthreads()  # buf is reused by the next weight


@cuda.jit
def _cast(src, dst):
    for e in range(cuda.grid(1), dst.size, cuda.gridsize(1)):
        dst[e] = src[e]


# ---------------------------------------------------------------------- entry points


def _check_table_range(op, x_shape, w_shape, gy_hw, groups):
    """The implicit GEMM's k-table holds int32 offsets ``o * plane`` within one image's group
    (forward: ``plane = H*W`` over the group's ``cg`` input channels; grad-input: ``plane = ho*wo``
    over its ``C_out/groups`` output channels). Refuse shapes whose offsets would wrap, before
    anything is copied to the device. The direct path has no table."""
    C_out, cg = w_shape[0], w_shape[1]
    if choose_path(w_shape, groups) == "direct":
        return
    spans = {"input": cg * x_shape[2] * x_shape[3], "upstream gradient": (C_out // groups) * gy_hw[0] * gy_hw[1]}
    for what, n in spans.items():
        if n > _INT32_MAX:
            raise ValueError(
                f"{op} (cuda): one image's group of the {what} spans {n} elements (channels per group x "
                f"height x width; x.shape={tuple(x_shape)}, w.shape={tuple(w_shape)}, groups={groups}), past the "
                f"2**31 - 1 the implicit GEMM's int32 offsets address; use smaller images or more groups, "
                f"or the CPU backend")


def conv2d_forward(x, w, b, stride, padding4, dilation, groups):
    """``y (N, C_out, ho, wo)``: grouped cross-correlation plus bias (see the module docstring)."""
    ho, wo = output_hw(x.shape, w.shape[2:], stride, padding4, dilation)
    _check_table_range("conv2d_forward", x.shape, w.shape, (ho, wo), groups)
    dx, dwt = dev(x), dev(w)
    db = dev(b) if b is not None else empty(1, x.dtype)
    N = x.shape[0]
    C_out, cg, kh, kw = w.shape
    (sh, sw), (dh, dw_), (pt, _, pl, _) = stride, dilation, padding4
    y = empty((N, C_out, ho, wo), x.dtype)
    if choose_path(w.shape, groups) == "direct":
        _direct_forward[grid(y.size)](dx, dwt, db, b is not None, groups, sh, sw, pt, pl, dh, dw_, y)
    else:
        fwd = _igemm.kernels_for(x.dtype)[0]
        _igemm.launch(fwd, -(-N * ho * wo // _igemm.TN), C_out // groups, groups,
                      dx, dx.reshape(-1), dwt.reshape(C_out, cg * kh * kw), db, b is not None, groups, kh, kw,
                      sh, sw, pt, pl, dh, dw_, y)
    return host_or_device(y, x)


def conv2d_backward(x, w, gy, stride, padding4, dilation, groups, need_gx, need_gw, need_gb):
    """``(gx, gw, gb)`` for upstream ``gy``; ``None`` for what was not asked."""
    _check_table_range("conv2d_backward", x.shape, w.shape, gy.shape[2:], groups)
    dgy = dev(gy)
    N, C_in, H, W = x.shape
    C_out, cg, kh, kw = w.shape
    ho, wo = gy.shape[2], gy.shape[3]
    (sh, sw), (dh, dw_), (pt, _, pl, _) = stride, dilation, padding4
    direct = choose_path(w.shape, groups) == "direct"
    gx = gw = gb = None
    if need_gb:
        s1, _ = _reduce.channel_sums(dgy.reshape(N, C_out, ho * wo), None, None, _reduce.SUM)
        gb = empty(C_out, gy.dtype)
        _cast[grid(C_out)](s1, gb)
    if need_gx:
        dwt = dev(w)
        gx = empty((N, C_in, H, W), gy.dtype)
        if direct:
            _direct_grad_input[grid(gx.size)](dgy, dwt, groups, sh, sw, pt, pl, dh, dw_, gx)
        else:
            gin = _igemm.kernels_for(gy.dtype)[1]
            _igemm.launch(gin, -(-N * H * W // _igemm.TN), cg, groups,
                          dgy, dgy.reshape(-1), dwt, groups, sh, sw, pt, pl, dh, dw_, gx)
    if need_gw:
        dx = dev(x)
        gw = empty(w.shape, gy.dtype)
        if direct:
            n_w = int(np.prod(w.shape))
            _direct_grad_weight[max(1, min(n_w, 4 if SIM else 65535)), THREADS](
                dx, dgy, groups, sh, sw, pt, pl, dh, dw_, gw)
        else:
            R = N * ho * wo
            kcols = cg * kh * kw
            tiles = -(-kcols // _igemm.TN) * -(-(C_out // groups) // _igemm.TM) * groups
            splits = max(1, min(-(-_GW_TARGET_BLOCKS // tiles), -(-R // _GW_MIN_CHUNK)))
            chunk = -(-R // splits)
            chunk = max(_igemm.TK, -(-chunk // _igemm.TK) * _igemm.TK)  # an empty batch: one split of zeros
            splits = max(1, -(-R // chunk))
            part = empty((splits, C_out, kcols), gy.dtype)
            gwk = _igemm.kernels_for(gy.dtype)[2]
            _igemm.launch(gwk, -(-kcols // _igemm.TN), C_out // groups, groups * splits,
                          dx, dx.reshape(-1), dgy, groups, sh, sw, pt, pl, dh, dw_, kh, kw, chunk, part)
            _reduce.sum_splits(part, gw.reshape(C_out, kcols))
    return host_or_device(gx, gy), host_or_device(gw, gy), host_or_device(gb, gy)
