"""Deterministic per-channel reductions (no atomics): block tree sums, then a fixed-order finish.

Design
------
A per-channel reduction over ``(N, C, L)`` runs in two kernels. ``_partials`` launches a grid of
``(C, S)`` blocks (channels on grid.x, whose limit is 2**31 - 1, so a Linear layer's bias gradient
with more than 65535 outputs is a valid launch; ``S <= MAX_BLOCKS`` on grid.y): block ``(c, s)``
walks its contiguous share ``[s*chunk, (s+1)*chunk)`` of the channel's ``M = N*L`` values with a
block-stride loop (consecutive threads read consecutive pixels), each thread keeps two float64
running sums, and the block combines its threads' sums with a shared-memory tree (halving strides,
``THREADS`` a power of two). ``_finish`` then adds the ``S`` block results of a channel in split
order. Launch shapes depend only on the array shape, so every run gives bit-identical results;
nothing uses atomics.

Modes (``a``, ``b`` are ``(N, C, L)``; ``center`` a float64 ``(C,)`` vector)::

    STATS  s1 = sum(a - a[0, c, 0]),  s2 = sum((a - a[0, c, 0])**2)
           finish: out1 = mean, out2 = biased variance (shifted-data formula, no cancellation
           when |mean| >> std)
    GRAD   s1 = sum(a),  s2 = sum(a * (b - center[c]))       (batch-norm backward)
    SUM    s1 = sum(a)                                        (conv bias gradient)

``sum_splits`` adds grad-weight partial tiles ``(S, R, K)`` over ``S`` in order (float64).
"""

from __future__ import annotations

import numba
import numpy as np

from ._runtime import MAX_BLOCKS, SIM, THREADS, cuda, dmax, dmin, empty

STATS, GRAD, SUM = 0, 1, 2
_TARGET_BLOCKS = 4 if SIM else 1024


@cuda.jit(device=True)
def block_sum(buf, tid, value):
    """The sum of ``value`` over the ``THREADS`` threads of a block, returned to every thread:
    ``buf`` is a shared float64 ``(THREADS,)`` array, combined by a halving tree (a fixed order:
    the same bits on every run). Every thread of the block must call it; ``buf`` may be reused after."""
    buf[tid] = value
    cuda.syncthreads()
    stride = THREADS // 2
    while stride > 0:
        if tid < stride:
            buf[tid] += buf[tid + stride]
        cuda.syncthreads()
        stride //= 2
    total = buf[0]
    cuda.syncthreads()
    return total


@cuda.jit(device=True)
def block_max(buf, tid, value):
    """As :func:`block_sum`, the maximum (a NaN anywhere makes it NaN, as numpy's max)."""
    buf[tid] = value
    cuda.syncthreads()
    stride = THREADS // 2
    while stride > 0:
        if tid < stride:
            o = buf[tid + stride]
            if o > buf[tid] or o != o:
                buf[tid] = o
        cuda.syncthreads()
        stride //= 2
    total = buf[0]
    cuda.syncthreads()
    return total


@cuda.jit
def _partials(a, b, center, mode, chunk, part):
    N, C, L = a.shape
    c = cuda.blockIdx.x
    s = cuda.blockIdx.y
    tid = cuda.threadIdx.x
    M = N * L
    shift = 0.0
    if mode == STATS:
        shift = numba.float64(a[0, c, 0])
    elif mode == GRAD:
        shift = center[c]
    s1 = 0.0
    s2 = 0.0
    for e in range(s * chunk + tid, dmin(M, (s + 1) * chunk), THREADS):
        n, l = e // L, e % L
        v = numba.float64(a[n, c, l])
        if mode == STATS:
            d = v - shift
            s1 += d
            s2 += d * d
        elif mode == GRAD:
            s1 += v
            s2 += v * (numba.float64(b[n, c, l]) - shift)
        else:
            s1 += v
    sh1 = cuda.shared.array(THREADS, numba.float64)
    sh2 = cuda.shared.array(THREADS, numba.float64)
    sh1[tid] = s1
    sh2[tid] = s2
    cuda.syncthreads()
    stride = THREADS // 2
    while stride > 0:
        if tid < stride:
            sh1[tid] += sh1[tid + stride]
            sh2[tid] += sh2[tid + stride]
        cuda.syncthreads()
        stride //= 2
    if tid == 0:
        part[c, s, 0] = sh1[0]
        part[c, s, 1] = sh2[0]


@cuda.jit
def _finish(part, a, mode, M, out1, out2):
    for c in range(cuda.grid(1), part.shape[0], cuda.gridsize(1)):
        s1 = 0.0
        s2 = 0.0
        for s in range(part.shape[1]):
            s1 += part[c, s, 0]
            s2 += part[c, s, 1]
        if mode == STATS:
            out1[c] = numba.float64(a[0, c, 0]) + s1 / M
            out2[c] = dmax(s2 - s1 * s1 / M, 0.0) / M
        else:
            out1[c] = s1
            out2[c] = s2


def partials_grid(C: int, M: int) -> tuple[tuple[int, int], int]:
    """``((C, splits), chunk)``: ``_partials``' grid for ``C`` channels of ``M`` values each."""
    splits = max(1, min(-(-_TARGET_BLOCKS // max(C, 1)), -(-M // (4 * THREADS)), MAX_BLOCKS))
    return (C, splits), max(1, -(-M // splits))


def channel_sums(a, b, center, mode):
    """Two float64 ``(C,)`` device vectors per the mode table above; ``a``/``b`` device ``(N, C, L)``.
    With no values (``N*L == 0``) the sums are 0 and the statistics NaN (nothing is read)."""
    N, C, L = a.shape
    M = N * L
    if M == 0 or C == 0:
        fill = np.nan if mode == STATS else 0.0
        return cuda.to_device(np.full(C, fill)), cuda.to_device(np.full(C, fill))
    blocks, chunk = partials_grid(C, M)
    part = empty((C, blocks[1], 2), np.float64)
    b = a if b is None else b
    center = empty(1, np.float64) if center is None else center
    _partials[blocks, THREADS](a, b, center, mode, chunk, part)
    out1, out2 = empty(C, np.float64), empty(C, np.float64)
    _finish[max(1, min(MAX_BLOCKS, -(-C // THREADS))), THREADS](part, a, mode, M, out1, out2)
    return out1, out2


@cuda.jit
def _sum_splits(part, out):
    S, R, K = part.shape
    for e in range(cuda.grid(1), R * K, cuda.gridsize(1)):
        r, k = e // K, e % K
        acc = 0.0
        for s in range(S):
            acc += part[s, r, k]
        out[r, k] = acc


def sum_splits(part, out):
    """``out (R, K) = sum over s of part[s]`` in split order, float64 accumulation."""
    n = out.shape[0] * out.shape[1]
    _sum_splits[max(1, min(MAX_BLOCKS, -(-n // THREADS))), THREADS](part, out)
