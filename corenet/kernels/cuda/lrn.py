"""CUDA local response normalization: across channels and within a channel, forward and backward.

Contract: exactly ``numba_cpu/lrn.py``'s names, signatures and semantics (read its docstring;
``alpha`` arrives already divided by the window size when the convention asks for it). OUT
arrays (``y``, ``scale``, ``gx``) are preallocated by the caller, numpy or device; an empty
``(0, 0, 0, 0)`` ``scale`` means "not needed".

Design
------
Across channels: one thread per ``(image, pixel)`` (grid-stride over ``N*H*W``; consecutive
threads take consecutive pixels, so every channel plane is read coalesced). Each thread walks
the channels with the CPU kernel's float64 running window sum: forward adds channel ``c + hi``
and removes ``c - lo - 1`` (clamped at 0); backward keeps the running sum of
``t = gy * x * s**(-beta) / s`` and, instead of a per-thread ring buffer, recomputes the leaving
channel's ``t`` from global memory (the same arithmetic, hence the same value). Each step costs
O(1) whatever the window size.

Within a channel: one thread per output pixel; the box sum is evaluated rows first, then the row
sums in ascending order (the CPU kernel's order of additions); the backward sums ``t`` over the
reversed window the same way. Sums run in float64; the two backends agree to rounding.
"""

from __future__ import annotations

import math

import numba

from ._runtime import cuda, dev, dmax, dmin, grid, out_pair

__all__ = ["lrn_across_forward", "lrn_across_backward", "lrn_within_forward", "lrn_within_backward"]


@cuda.jit(device=True)
def _rpow(s, beta):
    """``s ** -beta`` for ``s > 0`` (square roots for the common exponents, as the CPU kernel)."""
    if beta == 0.75:
        return 1.0 / math.sqrt(s * math.sqrt(s))
    if beta == 0.5:
        return 1.0 / math.sqrt(s)
    if beta == 1.0:
        return 1.0 / s
    return s ** (-beta)


@cuda.jit(device=True)
def _t(x, scale, gy, n, c, h, w, beta):
    """``gy * x * s**-beta / s`` at one element, float64."""
    s = numba.float64(scale[n, c, h, w])
    return numba.float64(gy[n, c, h, w]) * x[n, c, h, w] * _rpow(s, beta) / s


@cuda.jit
def _across_forward(x, y, scale, keep, size, alpha, beta, k):
    N, C, H, W = x.shape
    lo = size // 2
    hi = (size - 1) // 2
    for e in range(cuda.grid(1), N * H * W, cuda.gridsize(1)):
        n = e // (H * W)
        h = (e // W) % H
        w = e % W
        acc = 0.0
        for c in range(dmin(hi, C)):  # channels that enter before c = 0
            v = numba.float64(x[n, c, h, w])
            acc += v * v
        for c in range(C):
            if c + hi < C:
                v = numba.float64(x[n, c + hi, h, w])
                acc += v * v
            if c - lo - 1 >= 0:
                v = numba.float64(x[n, c - lo - 1, h, w])
                acc = dmax(acc - v * v, 0.0)
            s = k + alpha * acc
            if keep:
                scale[n, c, h, w] = s
            y[n, c, h, w] = numba.float64(x[n, c, h, w]) * _rpow(s, beta)


@cuda.jit
def _across_backward(x, scale, gy, gx, size, alpha, beta):
    N, C, H, W = x.shape
    lo = size // 2
    hi = (size - 1) // 2
    coef = 2.0 * alpha * beta
    for q in range(cuda.grid(1), N * H * W, cuda.gridsize(1)):
        n = q // (H * W)
        h = (q // W) % H
        w = q % W
        acc = 0.0
        for j in range(-lo, C):
            e = j + lo  # entering channel; e - size (= j - hi - 1) leaves
            if e < C:
                if e - size >= 0:
                    acc -= _t(x, scale, gy, n, e - size, h, w, beta)
                acc += _t(x, scale, gy, n, e, h, w, beta)
            elif j - hi - 1 >= 0:
                acc -= _t(x, scale, gy, n, j - hi - 1, h, w, beta)
            if j >= 0:
                pj = _rpow(numba.float64(scale[n, j, h, w]), beta)
                gx[n, j, h, w] = numba.float64(gy[n, j, h, w]) * pj - coef * numba.float64(x[n, j, h, w]) * acc


@cuda.jit
def _within_forward(x, y, scale, keep, size, alpha, beta, k):
    N, C, H, W = x.shape
    lo = size // 2
    hi = (size - 1) // 2
    for e in range(cuda.grid(1), N * C * H * W, cuda.gridsize(1)):
        w = e % W
        h = (e // W) % H
        p = e // (H * W)
        n, c = p // C, p % C
        box = 0.0
        for u in range(dmax(h - lo, 0), dmin(h + hi + 1, H)):
            row = 0.0
            for v in range(dmax(w - lo, 0), dmin(w + hi + 1, W)):
                a = numba.float64(x[n, c, u, v])
                row += a * a
            box += row
        s = k + alpha * box
        if keep:
            scale[n, c, h, w] = s
        y[n, c, h, w] = numba.float64(x[n, c, h, w]) * _rpow(s, beta)


@cuda.jit
def _within_backward(x, scale, gy, gx, size, alpha, beta):
    N, C, H, W = x.shape
    lo = size // 2
    hi = (size - 1) // 2
    coef = 2.0 * alpha * beta
    for e in range(cuda.grid(1), N * C * H * W, cuda.gridsize(1)):
        w = e % W
        h = (e // W) % H
        p = e // (H * W)
        n, c = p // C, p % C
        box = 0.0
        for u in range(dmax(h - hi, 0), dmin(h + lo + 1, H)):  # the reversed window
            row = 0.0
            for v in range(dmax(w - hi, 0), dmin(w + lo + 1, W)):
                row += _t(x, scale, gy, n, c, u, v, beta)
            box += row
        pw = _rpow(numba.float64(scale[n, c, h, w]), beta)
        gx[n, c, h, w] = numba.float64(gy[n, c, h, w]) * pw - coef * numba.float64(x[n, c, h, w]) * box


# ---------------------------------------------------------------------- entry points


def _forward(kernel, threads, x, y, scale, size, alpha, beta, k):
    keep = scale.shape[0] != 0
    dy, fin_y = out_pair(y)
    ds, fin_s = out_pair(scale) if keep else (dy, lambda: None)  # unused when not kept
    kernel[grid(threads)](dev(x), dy, ds, keep, int(size), float(alpha), float(beta), float(k))
    fin_y()
    fin_s()


def lrn_across_forward(x, y, scale, size, alpha, beta, k):
    N, _, H, W = x.shape
    _forward(_across_forward, N * H * W, x, y, scale, size, alpha, beta, k)


def lrn_across_backward(x, scale, gy, gx, size, alpha, beta):
    N, _, H, W = x.shape
    dg, fin = out_pair(gx)
    _across_backward[grid(N * H * W)](dev(x), dev(scale), dev(gy), dg, int(size), float(alpha), float(beta))
    fin()


def lrn_within_forward(x, y, scale, size, alpha, beta, k):
    _forward(_within_forward, x.size, x, y, scale, size, alpha, beta, k)


def lrn_within_backward(x, scale, gy, gx, size, alpha, beta):
    dg, fin = out_pair(gx)
    _within_backward[grid(x.size)](dev(x), dev(scale), dev(gy), dg, int(size), float(alpha), float(beta))
    fin()
