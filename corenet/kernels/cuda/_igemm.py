"""Implicit-GEMM convolution kernels: forward, grad-input and grad-weight, tiled in shared memory.

Design
------
Each of the three products is a GEMM ``C (M, Ncol) = A (M, K) @ B (K, Ncol)`` per group whose
``B`` operand (and for grad-weight also ``A``) is never materialised: tiles of it are gathered
from the NCHW tensors straight into shared memory, with zeros where a tap falls in the padding.
No im2col buffer exists in global memory.

===========  ==========================  ==============================  =======================
product      A (M rows, K)               B (K, Ncol columns)             C
===========  ==========================  ==============================  =======================
forward      w[g*cog + m, (cl, i, j)]    x[n, g*cg + cl, ih, iw]         y[n, g*cog + m, oh, ow]
             M = cog, K = cg*kh*kw       column (n, oh, ow)              (+ bias)
grad-input   w[g*cog + o, m, i, j]       gy[n, g*cog + o, oh, ow] where  gx[n, g*cg + m, h, w]
             M = cg, K = cog*kh*kw       oh*sh = h + pt - i*dh (else 0)
                                         column (n, h, w)
grad-weight  gy[n, g*cog + m, oh, ow]    x[n, g*cg + cl, ih, iw]         partial[s, co, (cl,i,j)]
             M = cog, K = one split of   column (cl, i, j)
             the N*ho*wo reduction
===========  ==========================  ==============================  =======================

Grad-input is the gather form of the transposed convolution (every input pixel pulls from the
outputs whose window covers it), so it needs no scattering and no atomics. Grad-weight splits
its long reduction (``N*ho*wo``) over ``S`` blocks that write partial tiles; the caller sums them
in split order (``_reduce.sum_splits``), so the result is deterministic.

Tiling: a block of ``TY x TX`` threads owns a ``TM x TN`` tile of ``C`` and walks ``K`` in steps of
``TK``: every thread loads a strided share of the A and B tiles (consecutive threads read
consecutive addresses: along ``k`` of a weight row, along output pixels of an activation row),
synchronises, then accumulates an ``RM x RN`` register micro-tile (rows ``ty + TY*r``, columns
``tx + TX*c``, so stores of consecutive threads are consecutive pixels). The grid is
``(column tiles, row tiles, groups * splits)`` with a block-level grid-stride loop over column
tiles. Accumulation is in the input dtype (float32 like cuDNN without TF32; float64 in tests).
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from ._runtime import SIM, cuda

if SIM:  # small tiles: the simulator runs one Python thread per CUDA thread; edges get exercised
    TM, TN, TK, TY, TX = 8, 8, 8, 4, 4
else:
    TM, TN, TK, TY, TX = 64, 64, 16, 16, 16
RM, RN = TM // TY, TN // TX
NT = TY * TX  # threads per block


@functools.cache
def kernels_for(dtype):
    """The three implicit-GEMM kernels compiled for ``dtype`` (float32 or float64)."""
    nbt = numba.from_dtype(np.dtype(dtype))

    @cuda.jit(device=True, inline=True)
    def mma(As, Bs, acc, ty, tx):
        """``acc[r, c] += sum_k As[k, ty + TY*r] * Bs[k, tx + TX*c]`` over the TK-deep tile."""
        for kk in range(TK):
            for r in range(RM):
                a = As[kk, ty + TY * r]
                for c in range(RN):
                    acc[r, c] += a * Bs[kk, tx + TX * c]

    @cuda.jit
    def forward(x, w, b, has_bias, groups, sh, sw, pt, pl, dh, dw, y):
        N, C_in, H, W = x.shape
        C_out, cg, kh, kw = w.shape
        ho, wo = y.shape[2], y.shape[3]
        cog = C_out // groups
        K = cg * kh * kw
        P = ho * wo
        ncol = N * P
        As = cuda.shared.array((TK, TM), nbt)
        Bs = cuda.shared.array((TK, TN), nbt)
        acc = cuda.local.array((RM, RN), nbt)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * TX + tx
        g = cuda.blockIdx.z
        m0 = cuda.blockIdx.y * TM
        for bx in range(cuda.blockIdx.x, (ncol + TN - 1) // TN, cuda.gridDim.x):
            n0 = bx * TN
            for r in range(RM):
                for c in range(RN):
                    acc[r, c] = 0
            for k0 in range(0, K, TK):
                for e in range(tid, TM * TK, NT):  # A: weight rows, contiguous along k
                    m, kk = e // TK, e % TK
                    k = k0 + kk
                    As[kk, m] = w[g * cog + m0 + m, k // (kh * kw), (k // kw) % kh, k % kw] \
                        if m0 + m < cog and k < K else nbt(0)
                for e in range(tid, TK * TN, NT):  # B: implicit im2col, contiguous along pixels
                    kk, nn = e // TN, e % TN
                    k, col = k0 + kk, n0 + nn
                    v = nbt(0)
                    if k < K and col < ncol:
                        n, p = col // P, col % P
                        ih = (p // wo) * sh - pt + ((k // kw) % kh) * dh
                        iw = (p % wo) * sw - pl + (k % kw) * dw
                        if ih >= 0 and ih < H and iw >= 0 and iw < W:
                            v = x[n, g * cg + k // (kh * kw), ih, iw]
                    Bs[kk, nn] = v
                cuda.syncthreads()
                mma(As, Bs, acc, ty, tx)
                cuda.syncthreads()
            for r in range(RM):
                m = m0 + ty + TY * r
                if m < cog:
                    co = g * cog + m
                    for c in range(RN):
                        col = n0 + tx + TX * c
                        if col < ncol:
                            p = col % P
                            v = acc[r, c]
                            if has_bias:
                                v += b[co]
                            y[col // P, co, p // wo, p % wo] = v

    @cuda.jit
    def grad_input(gy, w, groups, sh, sw, pt, pl, dh, dw, gx):
        N, C_in, H, W = gx.shape
        C_out, cg, kh, kw = w.shape
        ho, wo = gy.shape[2], gy.shape[3]
        cog = C_out // groups
        K = cog * kh * kw
        P = H * W
        ncol = N * P
        As = cuda.shared.array((TK, TM), nbt)
        Bs = cuda.shared.array((TK, TN), nbt)
        acc = cuda.local.array((RM, RN), nbt)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * TX + tx
        g = cuda.blockIdx.z
        m0 = cuda.blockIdx.y * TM
        for bx in range(cuda.blockIdx.x, (ncol + TN - 1) // TN, cuda.gridDim.x):
            n0 = bx * TN
            for r in range(RM):
                for c in range(RN):
                    acc[r, c] = 0
            for k0 in range(0, K, TK):
                for e in range(tid, TM * TK, NT):  # A[m, (o, i, j)] = w[g*cog + o, m, i, j]
                    m, kk = e // TK, e % TK
                    k = k0 + kk
                    As[kk, m] = w[g * cog + k // (kh * kw), m0 + m, (k // kw) % kh, k % kw] \
                        if m0 + m < cg and k < K else nbt(0)
                for e in range(tid, TK * TN, NT):  # B: gy at the outputs whose window covers (h, w)
                    kk, nn = e // TN, e % TN
                    k, col = k0 + kk, n0 + nn
                    v = nbt(0)
                    if k < K and col < ncol:
                        n, p = col // P, col % P
                        th = p // W + pt - ((k // kw) % kh) * dh
                        tw = p % W + pl - (k % kw) * dw
                        if th >= 0 and tw >= 0 and th % sh == 0 and tw % sw == 0:
                            oh, ow = th // sh, tw // sw
                            if oh < ho and ow < wo:
                                v = gy[n, g * cog + k // (kh * kw), oh, ow]
                    Bs[kk, nn] = v
                cuda.syncthreads()
                mma(As, Bs, acc, ty, tx)
                cuda.syncthreads()
            for r in range(RM):
                m = m0 + ty + TY * r
                if m < cg:
                    for c in range(RN):
                        col = n0 + tx + TX * c
                        if col < ncol:
                            p = col % P
                            gx[col // P, g * cg + m, p // W, p % W] = acc[r, c]

    @cuda.jit
    def grad_weight(x, gy, groups, sh, sw, pt, pl, dh, dw, kh, kw, chunk, part):
        N, C_in, H, W = x.shape
        C_out, ho, wo = gy.shape[1], gy.shape[2], gy.shape[3]
        cog = C_out // groups
        cg = C_in // groups
        kcols = cg * kh * kw
        P = ho * wo
        R = N * P
        As = cuda.shared.array((TK, TM), nbt)
        Bs = cuda.shared.array((TK, TN), nbt)
        acc = cuda.local.array((RM, RN), nbt)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * TX + tx
        g = cuda.blockIdx.z % groups
        s = cuda.blockIdx.z // groups
        m0 = cuda.blockIdx.y * TM
        r_lo = s * chunk
        r_hi = min(R, r_lo + chunk)
        for bx in range(cuda.blockIdx.x, (kcols + TN - 1) // TN, cuda.gridDim.x):
            n0 = bx * TN
            for r in range(RM):
                for c in range(RN):
                    acc[r, c] = 0
            for k0 in range(r_lo, r_hi, TK):
                for e in range(tid, TM * TK, NT):  # A[m, r] = gy[n, g*cog + m, p], contiguous along p
                    m, kk = e // TK, e % TK
                    rr = k0 + kk
                    As[kk, m] = gy[rr // P, g * cog + m0 + m, (rr % P) // wo, rr % wo] \
                        if m0 + m < cog and rr < r_hi else nbt(0)
                for e in range(tid, TK * TN, NT):  # B[r, (cl, i, j)]: consecutive threads, consecutive r
                    nn, kk = e // TK, e % TK
                    rr, col = k0 + kk, n0 + nn
                    v = nbt(0)
                    if rr < r_hi and col < kcols:
                        n, p = rr // P, rr % P
                        ih = (p // wo) * sh - pt + ((col // kw) % kh) * dh
                        iw = (p % wo) * sw - pl + (col % kw) * dw
                        if ih >= 0 and ih < H and iw >= 0 and iw < W:
                            v = x[n, g * cg + col // (kh * kw), ih, iw]
                    Bs[kk, nn] = v
                cuda.syncthreads()
                mma(As, Bs, acc, ty, tx)
                cuda.syncthreads()
            for r in range(RM):
                m = m0 + ty + TY * r
                if m < cog:
                    for c in range(RN):
                        col = n0 + tx + TX * c
                        if col < kcols:
                            part[s, g * cog + m, col] = acc[r, c]

    return forward, grad_input, grad_weight


def launch(kernel, ncol_tiles, rows, z, *args):
    """Launch ``kernel`` over ``(column tiles, row tiles of rows, z)`` with ``TY x TX`` threads."""
    grid = (max(1, min(ncol_tiles, 4 if SIM else 65535)), -(-rows // TM), z)
    kernel[grid, (TX, TY)](*args)
