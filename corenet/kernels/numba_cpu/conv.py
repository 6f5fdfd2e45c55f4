"""Numba CPU convolution: im2col/col2im in the transposed layout and a direct grouped kernel.

Primitives (the Cython backend, ``corenet/_ext/conv.pyx``, reproduces these names and signatures
exactly; every array is C-contiguous, float32 or float64, one dtype per call; every scalar an int;
outputs are overwritten, never accumulated into; kernels check nothing)::

    im2col(x, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, col)
        IN  x   (N, C, H, W)
        OUT col (C*kh*kw, N*ho*wo)      row (c*kh + i)*kw + j, column (n*ho + oh)*wo + ow;
                                        col[r, p] = x[n, c, oh*sh - pt + i*dh, ow*sw - pl + j*dw]
                                        or 0 where that falls in the padding

    col2im(col, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, gx)
        IN  col (C*kh*kw, N*ho*wo)      same layout as im2col
        OUT gx  (N, C, H, W)            the adjoint of im2col: every column entry summed back
                                        into the pixel it was copied from (padding dropped)

    direct_forward(x, w, b, groups, sh, sw, pt, pl, dh, dw, y)
        IN  x (N, C_in, H, W), w (C_out, C_in/groups, kh, kw), b (C_out,) (zeros when no bias)
        OUT y (N, C_out, ho, wo)        grouped cross-correlation plus bias

    direct_backward_input(gy, w, groups, sh, sw, pt, pl, dh, dw, gx)
        IN  gy (N, C_out, ho, wo), w (C_out, C_in/groups, kh, kw)
        OUT gx (N, C_in, H, W)

    direct_backward_weight(x, gy, groups, sh, sw, pt, pl, dh, dw, gw)
        IN  x (N, C_in, H, W), gy (N, C_out, ho, wo)
        OUT gw (C_out, C_in/groups, kh, kw)

(``pt``/``pl``: top/left padding; bottom/right padding is implied by ``ho``/``wo``.)

Races: im2col writes one column row per task; col2im and ``direct_backward_input`` own one
(image, channel) plane of ``gx`` per task; ``direct_forward`` owns one (image, output channel)
plane of ``y``; ``direct_backward_weight`` owns one output channel of ``gw`` and sums over the
batch in a fixed order, so results do not depend on the thread count at all.

The contract functions ``conv2d_forward`` / ``conv2d_backward`` (what ``corenet.functional``
calls) are the shared orchestration of ``corenet/kernels/_cpu_conv.py`` bound to these primitives.
"""

from __future__ import annotations

import sys

import numpy as np
from numba import prange, uint64

from .. import _cpu_conv
from ._jit import helper, kernel

__all__ = [
    "im2col",
    "col2im",
    "direct_forward",
    "direct_backward_input",
    "direct_backward_weight",
    "conv2d_forward",
    "conv2d_backward",
]


# Row helpers. Inner loops index with unsigned integers: with signed ones Numba must handle
# negative (wrap-around) indices on every access, which keeps LLVM from vectorising the loop
# (im2col ran 3-5x slower than a memcpy of the same bytes; unsigned, it matches the memcpy).


@helper
def _valid(off, stride, size, n_out):
    """Output positions ``[lo, hi)`` whose input index ``o*stride + off`` lies in ``[0, size)``."""
    lo = 0
    if off < 0:
        lo = (-off + stride - 1) // stride
        if lo > n_out:  # padding wider than the whole output row
            lo = n_out
    hi = 0
    if size - 1 - off >= 0:
        hi = (size - 1 - off) // stride + 1
    if hi > n_out:
        hi = n_out
    if hi < lo:
        hi = lo
    return lo, hi


@helper
def _fill0(dst, d0, count):
    """``dst[d0 : d0 + count] = 0``."""
    d = uint64(d0)
    for t in range(uint64(count)):
        dst[d + t] = 0


@helper
def _copy(dst, d0, src, s0, s_step, count):
    """``dst[d0 + t] = src[s0 + t*s_step]`` for ``t < count``."""
    d, s, n = uint64(d0), uint64(s0), uint64(count)
    if s_step == 1:
        for t in range(n):
            dst[d + t] = src[s + t]
    else:
        step = uint64(s_step)
        for t in range(n):
            dst[d + t] = src[s + t * step]


@helper
def _add(dst, d0, d_step, src, s0, count):
    """``dst[d0 + t*d_step] += src[s0 + t]`` for ``t < count``."""
    d, s, n = uint64(d0), uint64(s0), uint64(count)
    if d_step == 1:
        for t in range(n):
            dst[d + t] += src[s + t]
    else:
        step = uint64(d_step)
        for t in range(n):
            dst[d + t * step] += src[s + t]


@helper
def _axpy(dst, d0, d_step, a, src, s0, s_step, count):
    """``dst[d0 + t*d_step] += a * src[s0 + t*s_step]`` for ``t < count`` (one step is always 1)."""
    d, s, n = uint64(d0), uint64(s0), uint64(count)
    if d_step == 1 and s_step == 1:
        for t in range(n):
            dst[d + t] += a * src[s + t]
    elif d_step == 1:
        step = uint64(s_step)
        for t in range(n):
            dst[d + t] += a * src[s + t * step]
    else:
        step = uint64(d_step)
        for t in range(n):
            dst[d + t * step] += a * src[s + t]


@helper
def _dot_acc(acc, d0, a, a0, b, b0, b_step, count):
    """``acc[d0 + t] += a[a0 + t] * b[b0 + t*b_step]`` for ``t < count`` (elementwise, so it vectorises)."""
    d, sa, sb, n = uint64(d0), uint64(a0), uint64(b0), uint64(count)
    if b_step == 1:
        for t in range(n):
            acc[d + t] += a[sa + t] * b[sb + t]
    else:
        step = uint64(b_step)
        for t in range(n):
            acc[d + t] += a[sa + t] * b[sb + t * step]


@helper
def _shifted_plane(dst, base, src, s_base, di, off_w, lo, hi, H, W, ho):
    """One im2col segment of a stride-1 convolution whose output rows are as wide as the input's
    (``wo == W``): output pixel ``q = oh*W + ow`` reads input pixel ``q + di*W + off_w`` of the
    plane at ``s_base``, so the band of valid rows is one flat copy; the few pixels of it that
    wrapped around a row edge (``ow`` outside ``[lo, hi)``) and the rows outside it are zeroed.
    At W = 8 this is ~5x faster than a row at a time."""
    P = ho * W
    oh_lo = -di if di < 0 else 0
    oh_hi = H - di if H - di < ho else ho
    if oh_hi <= oh_lo or hi <= lo:
        _fill0(dst, base, P)
        return
    q0 = oh_lo * W + lo
    q1 = (oh_hi - 1) * W + hi
    _fill0(dst, base, q0)
    _copy(dst, base + q0, src, s_base + q0 + di * W + off_w, 1, q1 - q0)
    _fill0(dst, base + q1, P - q1)
    if lo > 0 or hi < W:
        for oh in range(oh_lo, oh_hi):
            row = base + oh * W
            if oh > oh_lo:
                _fill0(dst, row, lo)
            if oh < oh_hi - 1:
                _fill0(dst, row + hi, W - hi)


@kernel
def im2col(x, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, col):
    N, C, H, W = x.shape
    K = C * kh * kw
    flat = sh == 1 and sw == 1 and wo == W  # rows of col and of x line up: one copy per plane
    xf = x.reshape(N * C * H * W)
    for r in prange(K):  # one row of col per task (disjoint writes); its (c, i, j) split once
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        off_w = j * dw - pl
        lo, hi = _valid(off_w, sw, W, wo)
        dst = col[r]
        for n in range(N):
            if flat:
                _shifted_plane(dst, n * ho * wo, xf, (n * C + c) * H * W, i * dh - pt, off_w, lo, hi, H, W, ho)
                continue
            for oh in range(ho):
                base = (n * ho + oh) * wo
                ih = oh * sh - pt + i * dh
                if ih < 0 or ih >= H:
                    _fill0(dst, base, wo)
                    continue
                _fill0(dst, base, lo)
                _copy(dst, base + lo, x[n, c, ih], lo * sw + off_w, sw, hi - lo)
                _fill0(dst, base + hi, wo - hi)


@kernel
def col2im(col, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, gx):
    N, C, H, W = gx.shape
    for task in prange(N * C):  # one (image, channel) plane of gx per task: no races
        n = task // C
        c = task - n * C
        plane = gx[n, c]
        plane[:, :] = 0
        for i in range(kh):
            for j in range(kw):
                src = col[(c * kh + i) * kw + j]
                off_w = j * dw - pl
                lo, hi = _valid(off_w, sw, W, wo)
                for oh in range(ho):
                    ih = oh * sh - pt + i * dh
                    if ih >= 0 and ih < H:
                        _add(plane[ih], lo * sw + off_w, sw, src, (n * ho + oh) * wo + lo, hi - lo)


@kernel
def direct_forward(x, w, b, groups, sh, sw, pt, pl, dh, dw, y):
    N, C_in, H, W = x.shape
    C_out, cg, kh, kw = w.shape
    _, _, ho, wo = y.shape
    cog = C_out // groups
    for task in prange(N * C_out):  # one (image, output channel) plane of y per task
        n = task // C_out
        co = task - n * C_out
        out = y[n, co]
        out[:, :] = b[co]
        c0 = (co // cog) * cg
        for cl in range(cg):
            for i in range(kh):
                for j in range(kw):
                    wv = w[co, cl, i, j]
                    off_w = j * dw - pl
                    lo, hi = _valid(off_w, sw, W, wo)
                    for oh in range(ho):
                        ih = oh * sh - pt + i * dh
                        if ih >= 0 and ih < H:
                            _axpy(out[oh], lo, 1, wv, x[n, c0 + cl, ih], lo * sw + off_w, sw, hi - lo)


@kernel
def direct_backward_input(gy, w, groups, sh, sw, pt, pl, dh, dw, gx):
    N, C_in, H, W = gx.shape
    C_out, cg, kh, kw = w.shape
    _, _, ho, wo = gy.shape
    cog = C_out // groups
    for task in prange(N * C_in):  # one (image, input channel) plane of gx per task
        n = task // C_in
        c = task - n * C_in
        plane = gx[n, c]
        plane[:, :] = 0
        g = c // cg
        cl = c - g * cg
        for co in range(g * cog, (g + 1) * cog):
            for i in range(kh):
                for j in range(kw):
                    wv = w[co, cl, i, j]
                    off_w = j * dw - pl
                    lo, hi = _valid(off_w, sw, W, wo)
                    for oh in range(ho):
                        ih = oh * sh - pt + i * dh
                        if ih >= 0 and ih < H:
                            _axpy(plane[ih], lo * sw + off_w, sw, wv, gy[n, co, oh], lo, 1, hi - lo)


@kernel
def direct_backward_weight(x, gy, groups, sh, sw, pt, pl, dh, dw, gw):
    N, C_in, H, W = x.shape
    C_out, cg, kh, kw = gw.shape
    _, _, ho, wo = gy.shape
    cog = C_out // groups
    for co in prange(C_out):  # one output channel of gw per task, batch summed in a fixed order
        c0 = (co // cog) * cg
        acc = np.empty(wo, dtype=np.float64)  # per-task row of partial sums: vectorises, no races
        for cl in range(cg):
            for i in range(kh):
                for j in range(kw):
                    acc[:] = 0.0
                    off_w = j * dw - pl
                    lo, hi = _valid(off_w, sw, W, wo)
                    for n in range(N):
                        for oh in range(ho):
                            ih = oh * sh - pt + i * dh
                            if ih >= 0 and ih < H:
                                _dot_acc(acc, lo, gy[n, co, oh], lo, x[n, c0 + cl, ih], lo * sw + off_w, sw, hi - lo)
                    gw[co, cl, i, j] = acc.sum()


conv2d_forward, conv2d_backward = _cpu_conv.bind(sys.modules[__name__])  # the shared orchestration
