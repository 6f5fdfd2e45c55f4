"""Resampling kernels (Numba CPU): nearest and bilinear upsampling, forward and backward.

Contract (every backend defines exactly these names and signatures)
-------------------------------------------------------------------
Resampling is separable: the caller (``corenet.functional.resample``) computes per axis, once per
call, which input rows (columns) each output row (column) reads and with what weight, by
PyTorch's coordinate rules; the kernels only gather and scatter. ``x, y, gy, gx`` are C-contiguous
and share one dtype (float32 or float64); index tables are int64, weight tables have x's dtype.
Outputs are preallocated by the caller and every element of them is overwritten.

``nearest_forward(x, ih, iw, y)``
    IN x (N, C, H, W), ih (Ho,), iw (Wo,); OUT y (N, C, Ho, Wo): ``y[..., oh, ow] = x[..., ih[oh], iw[ow]]``.
``nearest_backward(gy, ih, iw, gx)``
    IN gy (N, C, Ho, Wo); OUT gx (N, C, H, W): zeroed, then ``gy[..., oh, ow]`` added to
    ``gx[..., ih[oh], iw[ow]]``, outputs in row-major order.
``bilinear_forward(x, h0, h1, lh, w0, w1, lw, y)``
    IN x, row taps ``h0, h1`` (Ho,) and their weights ``lh`` (Ho, 2), column taps ``w0, w1`` (Wo,)
    and weights ``lw`` (Wo, 2); OUT y: with ``a = lh[oh]``, ``b = lw[ow]``,
    ``y = a[0]*(b[0]*x[h0, w0] + b[1]*x[h0, w1]) + a[1]*(b[0]*x[h1, w0] + b[1]*x[h1, w1])``
    (PyTorch's order of operations, in x's dtype).
``bilinear_backward(gy, h0, h1, lh, w0, w1, lw, gx)``
    IN gy; OUT gx: zeroed, then each ``gy`` times the four weights above added to the four taps,
    outputs in row-major order, taps in the order above.

Parallel over the N*C planes (``prange``): a plane's backward scatter belongs to one thread, so
no two threads write one element and results do not depend on the thread count.
"""

from numba import prange

from ._jit import kernel
from ._threads import sized

__all__ = ["nearest_forward", "nearest_backward", "bilinear_forward", "bilinear_backward"]


@sized(1)
@kernel
def nearest_forward(x, ih, iw, y):
    N, C = x.shape[0], x.shape[1]
    Ho, Wo = y.shape[2], y.shape[3]
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        xp = x[n, c]
        yp = y[n, c]
        for oh in range(Ho):
            xr = xp[ih[oh]]
            for ow in range(Wo):
                yp[oh, ow] = xr[iw[ow]]


@sized(2)
@kernel
def nearest_backward(gy, ih, iw, gx):
    N, C = gx.shape[0], gx.shape[1]
    Ho, Wo = gy.shape[2], gy.shape[3]
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        gp = gy[n, c]
        xp = gx[n, c]
        xp[:, :] = 0
        for oh in range(Ho):
            xr = xp[ih[oh]]
            for ow in range(Wo):
                xr[iw[ow]] += gp[oh, ow]


@sized(4)
@kernel
def bilinear_forward(x, h0, h1, lh, w0, w1, lw, y):
    N, C = x.shape[0], x.shape[1]
    Ho, Wo = y.shape[2], y.shape[3]
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        xp = x[n, c]
        yp = y[n, c]
        for oh in range(Ho):
            a0 = lh[oh, 0]
            a1 = lh[oh, 1]
            r0 = xp[h0[oh]]
            r1 = xp[h1[oh]]
            for ow in range(Wo):
                b0 = lw[ow, 0]
                b1 = lw[ow, 1]
                j0, j1 = w0[ow], w1[ow]
                yp[oh, ow] = a0 * (b0 * r0[j0] + b1 * r0[j1]) + a1 * (b0 * r1[j0] + b1 * r1[j1])


@sized(4)
@kernel
def bilinear_backward(gy, h0, h1, lh, w0, w1, lw, gx):
    N, C = gx.shape[0], gx.shape[1]
    Ho, Wo = gy.shape[2], gy.shape[3]
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        gp = gy[n, c]
        xp = gx[n, c]
        xp[:, :] = 0
        for oh in range(Ho):
            a0 = lh[oh, 0]
            a1 = lh[oh, 1]
            r0 = xp[h0[oh]]
            r1 = xp[h1[oh]]
            for ow in range(Wo):
                b0 = lw[ow, 0]
                b1 = lw[ow, 1]
                j0, j1 = w0[ow], w1[ow]
                g = gp[oh, ow]
                r0[j0] += a0 * b0 * g
                r0[j1] += a0 * b1 * g
                r1[j0] += a1 * b0 * g
                r1[j1] += a1 * b1 * g
