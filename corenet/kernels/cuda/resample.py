"""CUDA resampling: nearest and bilinear upsampling, forward and backward.

Contract: exactly ``numba_cpu/resample.py``'s names, signatures and semantics (read its
docstring): OUT arrays are preallocated by the caller, numpy or device; a numpy OUT array is
filled by copying the device result back into it. The tables may be numpy or device arrays.

Design
------
Forward kernels give one output element per thread (grid-stride loop over ``N*C*Ho*Wo``).
Backward kernels gather instead of scattering: one thread per INPUT element walks the output
rows and columns that read it, ascending, and adds their contributions in the CPU scatter's order
(taps in the contract's order), so there are no atomics and no races, and results equal the CPU
backends' bit for bit. The tables are monotone (PyTorch's source index never decreases with the
output index), so the outputs that read input row ``h`` form one range ``[lo[h], hi[h])``,
found on the host with ``searchsorted`` when the tables are numpy (the functional layer's case).
"""

from __future__ import annotations

import numpy as np

from ._runtime import cuda, dev, grid, is_device, out_pair

__all__ = ["nearest_forward", "nearest_backward", "bilinear_forward", "bilinear_backward"]


@cuda.jit
def _nearest_f(x, ih, iw, y):
    N, C, Ho, Wo = y.shape
    for e in range(cuda.grid(1), N * C * Ho * Wo, cuda.gridsize(1)):
        ow = e % Wo
        oh = (e // Wo) % Ho
        p = e // (Ho * Wo)
        n, c = p // C, p % C
        y[n, c, oh, ow] = x[n, c, ih[oh], iw[ow]]


@cuda.jit
def _nearest_b(gy, ih, iw, rh, rw, gx):
    N, C, H, W = gx.shape
    for e in range(cuda.grid(1), N * C * H * W, cuda.gridsize(1)):
        w = e % W
        h = (e // W) % H
        p = e // (H * W)
        n, c = p // C, p % C
        gx[n, c, h, w] = 0
        for oh in range(rh[h, 0], rh[h, 1]):
            for ow in range(rw[w, 0], rw[w, 1]):
                gx[n, c, h, w] += gy[n, c, oh, ow]


@cuda.jit
def _bilinear_f(x, h0, h1, lh, w0, w1, lw, y):
    N, C, Ho, Wo = y.shape
    for e in range(cuda.grid(1), N * C * Ho * Wo, cuda.gridsize(1)):
        ow = e % Wo
        oh = (e // Wo) % Ho
        p = e // (Ho * Wo)
        n, c = p // C, p % C
        a0, a1 = lh[oh, 0], lh[oh, 1]
        b0, b1 = lw[ow, 0], lw[ow, 1]
        r0, r1, j0, j1 = h0[oh], h1[oh], w0[ow], w1[ow]
        y[n, c, oh, ow] = (a0 * (b0 * x[n, c, r0, j0] + b1 * x[n, c, r0, j1])
                           + a1 * (b0 * x[n, c, r1, j0] + b1 * x[n, c, r1, j1]))


@cuda.jit
def _bilinear_b(gy, h0, h1, lh, w0, w1, lw, rh, rw, gx):
    N, C, H, W = gx.shape
    for e in range(cuda.grid(1), N * C * H * W, cuda.gridsize(1)):
        w = e % W
        h = (e // W) % H
        p = e // (H * W)
        n, c = p // C, p % C
        gx[n, c, h, w] = 0
        for oh in range(rh[h, 0], rh[h, 1]):
            a0, a1 = lh[oh, 0], lh[oh, 1]
            top, bottom = h0[oh] == h, h1[oh] == h
            for ow in range(rw[w, 0], rw[w, 1]):
                b0, b1 = lw[ow, 0], lw[ow, 1]
                left, right = w0[ow] == w, w1[ow] == w
                g = gy[n, c, oh, ow]
                if top and left:
                    gx[n, c, h, w] += a0 * b0 * g
                if top and right:
                    gx[n, c, h, w] += a0 * b1 * g
                if bottom and left:
                    gx[n, c, h, w] += a1 * b0 * g
                if bottom and right:
                    gx[n, c, h, w] += a1 * b1 * g


def _ranges(first, last, size):
    """``(size, 2)`` int64: per input index ``i``, the outputs ``[lo, hi)`` whose taps
    ``first[o] <= ... <= last[o]`` include ``i`` (both tables nondecreasing)."""
    first = first.copy_to_host() if is_device(first) else np.asarray(first)
    last = last.copy_to_host() if is_device(last) else np.asarray(last)
    i = np.arange(size)
    return np.stack([np.searchsorted(last, i, "left"), np.searchsorted(first, i, "right")], axis=1).astype(np.int64)


def nearest_forward(x, ih, iw, y):
    dy, fin = out_pair(y)
    _nearest_f[grid(dy.size)](dev(x), dev(ih), dev(iw), dy)
    fin()


def nearest_backward(gy, ih, iw, gx):
    dg, fin = out_pair(gx)
    H, W = gx.shape[2], gx.shape[3]
    if gy.size == 0:
        cuda.to_device(np.zeros(gx.shape, gx.dtype), to=dg)
    else:
        _nearest_b[grid(dg.size)](dev(gy), dev(ih), dev(iw), dev(_ranges(ih, ih, H)), dev(_ranges(iw, iw, W)), dg)
    fin()


def bilinear_forward(x, h0, h1, lh, w0, w1, lw, y):
    dy, fin = out_pair(y)
    _bilinear_f[grid(dy.size)](dev(x), dev(h0), dev(h1), dev(lh), dev(w0), dev(w1), dev(lw), dy)
    fin()


def bilinear_backward(gy, h0, h1, lh, w0, w1, lw, gx):
    dg, fin = out_pair(gx)
    H, W = gx.shape[2], gx.shape[3]
    if gy.size == 0:
        cuda.to_device(np.zeros(gx.shape, gx.dtype), to=dg)
    else:
        _bilinear_b[grid(dg.size)](dev(gy), dev(h0), dev(h1), dev(lh), dev(w0), dev(w1), dev(lw),
                                   dev(_ranges(h0, h1, H)), dev(_ranges(w0, w1, W)), dg)
    fin()
