"""Device-side glue for a training step that never leaves the GPU: the numpy one-liners of the
graph, layers and optimizer, as kernels.

The ``ops`` family of every backend (the CPU one, ``corenet/kernels/numba_cpu/ops.py``, is numpy):
the graph's ``g + gy``, the layers' ``np.copyto``/``+=``/``fill(0)``, ``np.concatenate``/``np.split``
and ``x @ w.T``, as kernels, so that a training step on device arrays never leaves the GPU. Above
``functional/`` they are reached through ``corenet.functional.tensor`` only.

``add(a, b, out=None)``                 ``a + b`` (fan-out gradient sums, the ``Add`` merge)
``accumulate(dst, src)``                ``dst += src`` in place (gradient accumulation)
``copy(dst, src)``                      ``dst[...] = src`` in place (the first gradient of an accumulation)
``fill(dst, value)``                    every element set to ``value`` (``zero_grad``)
``concat_channels(arrays, out=None)``   along axis 1 of (N, C_i, ...) arrays (``Concat``)
``split_channels(g, sizes)``            the adjoint: (N, C_i, ...) pieces of ``g``
``linear_forward(x, w, b)``             ``x (N, in) @ w.T (out, in) + b``, the implicit GEMM of a
                                        1x1 convolution on ``(N, in, 1, 1)``
``linear_backward(x, w, gy, need_gx, need_gw, need_gb)``  its ``(gx, gw, gb)``, likewise
``scale(a, s)``                         ``a *= s`` in place (loss weights)
``pad2d(x, t, b, l, r)``                zero padding of (N, C, H, W) (``ZeroPad2d``)
``crop2d(g, t, b, l, r)``               the adjoint: ``g[:, :, t:H-b, l:W-r]``, C-contiguous
``mul(a, b)``                           ``a * b`` (same shapes; the ``Multiply`` merge)
``mul_channels(a, g)``                  ``a (N, C, L) * g (N, C)[..., None]`` (squeeze-and-excitation gates)
``sum_mul_lanes(a, b)``                 ``sum_l a * b`` per ``(n, c)`` of two ``(N, C, L)`` arrays (the gates'
                                        gradient): one block per plane, a shared-memory tree

Arrays may be numpy or device arrays; results come back in the kind of the first array argument.
Elementwise kernels: grid-stride over flat views; each output element written by one thread.
"""

from __future__ import annotations

import numba
import numpy as np

from . import conv
from ._reduce import block_sum
from ._runtime import MAX_BLOCKS, THREADS, cuda, dev, empty, grid, host_or_device, is_device

__all__ = ["add", "accumulate", "copy", "fill", "concat_channels", "split_channels", "linear_forward",
           "linear_backward", "scale", "pad2d", "crop2d", "mul", "mul_channels", "sum_mul_lanes"]


@cuda.jit
def _add(a, b, out):
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = a[i] + b[i]


@cuda.jit
def _accumulate(dst, src):
    for i in range(cuda.grid(1), dst.shape[0], cuda.gridsize(1)):
        dst[i] += src[i]


@cuda.jit
def _fill(dst, value):
    for i in range(cuda.grid(1), dst.shape[0], cuda.gridsize(1)):
        dst[i] = value


@cuda.jit
def _copy_block(src, dst, c0):
    """``dst[n, c0 + c, l] = src[n, c, l]`` for ``src (N, C, L)`` into ``dst (N, C_total, L)``."""
    N, C, L = src.shape
    for e in range(cuda.grid(1), N * C * L, cuda.gridsize(1)):
        n, r = e // (C * L), e % (C * L)
        dst[n, c0 + r // L, r % L] = src[n, r // L, r % L]


@cuda.jit
def _take_block(src, dst, c0):
    """``dst[n, c, l] = src[n, c0 + c, l]`` (the adjoint of ``_copy_block``)."""
    N, C, L = dst.shape
    for e in range(cuda.grid(1), N * C * L, cuda.gridsize(1)):
        n, r = e // (C * L), e % (C * L)
        dst[n, r // L, r % L] = src[n, c0 + r // L, r % L]


def add(a, b, out=None):
    """``a + b`` (same shape and dtype)."""
    d = empty(a.shape, a.dtype) if out is None or not is_device(out) else out
    _add[grid(a.size)](dev(a).reshape(-1), dev(b).reshape(-1), d.reshape(-1))
    if out is not None and not is_device(out):
        out[...] = d.copy_to_host()
        return out
    return d if out is not None else host_or_device(d, a)


def accumulate(dst, src):
    """``dst += src`` in place (``dst`` numpy or device)."""
    d = dev(dst)
    _accumulate[grid(d.size)](d.reshape(-1), dev(src).reshape(-1))
    if not is_device(dst):
        dst[...] = d.copy_to_host()


def copy(dst, src):
    """``dst[...] = src`` in place (``dst`` numpy or device, ``src`` of ``dst``'s shape and dtype)."""
    if is_device(dst):
        dst.copy_to_device(src if is_device(src) else np.ascontiguousarray(src))
    else:
        dst[...] = src.copy_to_host() if is_device(src) else src


def fill(dst, value):
    """Set every element of ``dst`` (numpy or device) to ``value``."""
    if not is_device(dst):
        dst.fill(value)
        return
    _fill[grid(dst.size)](dst.reshape(-1), dst.dtype.type(value))


def _as3(a):
    return a.reshape(a.shape[0], a.shape[1], int(np.prod(a.shape[2:], dtype=np.int64)))


def concat_channels(arrays, out=None):
    """Concatenate ``(N, C_i, ...)`` arrays along axis 1."""
    first = arrays[0]
    shape = (first.shape[0], sum(a.shape[1] for a in arrays)) + tuple(first.shape[2:])
    d = empty(shape, first.dtype) if out is None or not is_device(out) else out
    c0 = 0
    for a in arrays:
        _copy_block[grid(a.size)](_as3(dev(a)), _as3(d), c0)
        c0 += a.shape[1]
    if out is not None and not is_device(out):
        out[...] = d.copy_to_host()
        return out
    return d if out is not None else host_or_device(d, first)


def split_channels(g, sizes):
    """The pieces ``g[:, c0:c0 + size]`` for consecutive ``sizes`` (each C-contiguous)."""
    dg = dev(g)
    pieces, c0 = [], 0
    for size in sizes:
        p = empty((g.shape[0], size) + tuple(g.shape[2:]), g.dtype)
        _take_block[grid(p.size)](_as3(dg), _as3(p), c0)
        pieces.append(host_or_device(p, g))
        c0 += size
    return pieces


_LINEAR_GEOMETRY = ((1, 1), (0, 0, 0, 0), (1, 1), 1)


def linear_forward(x, w, b=None):
    """``y (N, out) = x (N, in) @ w.T + b`` with ``w (out, in)`` (PyTorch layout)."""
    N, k = x.shape
    o = w.shape[0]
    y = conv.conv2d_forward(dev(x).reshape(N, k, 1, 1), dev(w).reshape(o, k, 1, 1), b, *_LINEAR_GEOMETRY)
    return host_or_device(y.reshape(N, o), x)


def linear_backward(x, w, gy, need_gx=True, need_gw=True, need_gb=True):
    """``(gx, gw, gb)`` of :func:`linear_forward`; ``None`` for what was not asked."""
    N, k = x.shape
    o = w.shape[0]
    gx, gw, gb = conv.conv2d_backward(dev(x).reshape(N, k, 1, 1), dev(w).reshape(o, k, 1, 1),
                                      dev(gy).reshape(N, o, 1, 1), *_LINEAR_GEOMETRY, need_gx, need_gw, need_gb)
    gx = host_or_device(gx.reshape(N, k), gy) if gx is not None else None
    gw = host_or_device(gw.reshape(o, k), gy) if gw is not None else None
    return gx, gw, host_or_device(gb, gy)


@cuda.jit
def _scale(a, s):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] *= s


def scale(a, s):
    """``a *= s`` in place on a device array (``s`` cast to ``a``'s dtype, as numpy's in-place multiply)."""
    _scale[grid(a.size)](a.reshape(-1), a.dtype.type(s))


@cuda.jit
def _pad(x, t, l, y):
    """Every output element written once: the input value inside the window, zero outside."""
    N, C, Ho, Wo = y.shape
    H, W = x.shape[2], x.shape[3]
    for e in range(cuda.grid(1), N * C * Ho * Wo, cuda.gridsize(1)):
        p, r = e // (Ho * Wo), e % (Ho * Wo)
        n, c, h, w = p // C, p % C, r // Wo - t, r % Wo - l
        y[n, c, r // Wo, r % Wo] = x[n, c, h, w] if 0 <= h < H and 0 <= w < W else 0


@cuda.jit
def _crop(g, t, l, gx):
    N, C, H, W = gx.shape
    for e in range(cuda.grid(1), N * C * H * W, cuda.gridsize(1)):
        p, r = e // (H * W), e % (H * W)
        gx[p // C, p % C, r // W, r % W] = g[p // C, p % C, r // W + t, r % W + l]


def pad2d(x, t, b, l, r):
    """``x (N, C, H, W)`` zero-padded to ``(N, C, H + t + b, W + l + r)`` (device in, device out)."""
    N, C, H, W = x.shape
    y = empty((N, C, H + t + b, W + l + r), x.dtype)
    _pad[grid(y.size)](dev(x), t, l, y)
    return host_or_device(y, x)


def crop2d(g, t, b, l, r):
    """The adjoint of :func:`pad2d`: ``g[:, :, t:H - b, l:W - r]`` as a new C-contiguous array."""
    N, C, H, W = g.shape
    gx = empty((N, C, H - t - b, W - l - r), g.dtype)
    _crop[grid(gx.size)](dev(g), t, l, gx)
    return host_or_device(gx, g)


@cuda.jit
def _mul(a, b, out):
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = a[i] * b[i]


@cuda.jit
def _mul_channels(a, g, out):
    N, C, L = a.shape
    for e in range(cuda.grid(1), N * C * L, cuda.gridsize(1)):
        p = e // L
        out[p // C, p % C, e % L] = a[p // C, p % C, e % L] * g[p // C, p % C]


@cuda.jit
def _sum_mul_lanes(a, b, out):
    """One block per (n, c) plane (block-stride over the planes): each thread adds a strided share
    of the L products in float64 (consecutive threads, consecutive lanes), then the block's tree
    (deterministic, no atomics)."""
    N, C, L = a.shape
    tid = cuda.threadIdx.x
    buf = cuda.shared.array(THREADS, numba.float64)
    for p in range(cuda.blockIdx.x, N * C, cuda.gridDim.x):
        n, c = p // C, p % C
        acc = 0.0
        for i in range(tid, L, THREADS):
            acc += numba.float64(a[n, c, i]) * b[n, c, i]
        total = block_sum(buf, tid, acc)
        if tid == 0:
            out[n, c] = total


def mul(a, b):
    """``a * b`` of two arrays of one shape and dtype."""
    d = empty(a.shape, a.dtype)
    _mul[grid(a.size)](dev(a).reshape(-1), dev(b).reshape(-1), d.reshape(-1))
    return host_or_device(d, a)


def mul_channels(a, g):
    """``a (N, C, ...) * g (N, C)`` broadcast over the trailing axes of ``a``."""
    d = empty(a.shape, a.dtype)
    _mul_channels[grid(a.size)](_as3(dev(a)), dev(g).reshape(a.shape[0], a.shape[1]), _as3(d))
    return host_or_device(d, a)


def sum_mul_lanes(a, b):
    """``(a * b).sum(over every axis after 1)`` as ``(N, C)`` of ``a``'s dtype (float64 sums)."""
    N, C = a.shape[0], a.shape[1]
    d = empty((N, C), a.dtype)
    _sum_mul_lanes[max(1, min(N * C, MAX_BLOCKS)), THREADS](_as3(dev(a)), _as3(dev(b)), d)
    return host_or_device(d, a)
