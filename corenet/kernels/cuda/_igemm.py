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
``tx + TX*c``, so stores of consecutive threads are consecutive pixels). The shared tiles carry
one padding column, so the stores of threads that differ in ``k`` fall in different banks.

Index arithmetic stays out of the loads: each thread's B column (or, for grad-weight, its
reduction index) is decomposed once per tile (step); the ``k -> (channel, i, j)`` split of the
forward and grad-input B tiles comes from a shared k-table that ``TK`` threads fill for the next
step while the block multiplies the current one (double-buffered, no extra barrier); grad-weight
keeps its few B columns' offsets in registers for the whole tile. The grid is
``(column tiles, row tiles, groups * splits)`` with a block-level grid-stride loop over column
tiles. Accumulation is in the input dtype (float32 like cuDNN without TF32; float64 in tests).
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from ._runtime import SIM, cuda, dmin

if SIM:  # small tiles: the simulator runs one Python thread per CUDA thread; edges get exercised
    TM, TN, TK, TY, TX = 8, 8, 8, 4, 4
else:
    TM, TN, TK, TY, TX = 64, 64, 16, 16, 16
RM, RN = TM // TY, TN // TX
TM_PAD, TN_PAD = TM + 1, TN + 1  # shared tiles: one padding column (module constants: shapes must be literal)
NT = TY * TX  # threads per block
# Tile loads: thread ``tid`` loads A elements (k = tid % TK, rows tid // TK + A_STEP*q) and B
# elements (column tid % TN, k rows tid // TN + B_STEP*q), so its k or its column is fixed and
# decomposed once. That needs the block to divide evenly into the tile edges:
A_STEP, B_STEP = NT // TK, NT // TN
NQ = TN // A_STEP  # grad-weight: B columns per thread
assert NT % TK == 0 and NT % TN == 0 and TM % A_STEP == 0 and TK % B_STEP == 0 and TN % A_STEP == 0


@cuda.jit(device=True)
def _mma(As, Bs, acc, bv, ty, tx):
    """``acc[r, c] += sum_k As[k, ty + TY*r] * Bs[k, tx + TX*c]`` over the TK-deep tile: per k, the
    RN values of B go to the registers ``bv`` once, then an RM x RN outer product."""
    for kk in range(TK):
        for c in range(RN):
            bv[c] = Bs[kk, tx + TX * c]
        for r in range(RM):
            a = As[kk, ty + TY * r]
            for c in range(RN):
                acc[r, c] += a * bv[c]


@cuda.jit(device=True)
def _ktable(tab, slot, k0, K, kw, khkw, plane, dh, dw, t):
    """Row ``t`` of the k-table for the TK-step at ``k0``: ``k = k0 + t`` is ``(o, i, j)`` with
    ``k = o*kh*kw + i*kw + j``; stored as ``o*plane``, ``i*dh``, ``j*dw`` (the divisions happen here,
    once per block and step, instead of in every thread's tile loads)."""
    k = k0 + t
    if k < K:
        o = k // khkw
        i = (k - o * khkw) // kw
        tab[slot, 0, t] = o * plane
        tab[slot, 1, t] = i * dh
        tab[slot, 2, t] = (k - o * khkw - i * kw) * dw


@functools.cache
def kernels_for(dtype):
    """The three implicit-GEMM kernels compiled for ``dtype`` (float32 or float64)."""
    nbt = numba.from_dtype(np.dtype(dtype))

    @cuda.jit
    def forward(x, xf, w2, b, has_bias, groups, kh, kw, sh, sw, pt, pl, dh, dw, y):
        N, C_in, H, W = x.shape  # xf: the same input, flat
        C_out, K = w2.shape  # weights flattened to (C_out, cg*kh*kw)
        ho, wo = y.shape[2], y.shape[3]
        cog = C_out // groups
        cg = C_in // groups
        P = ho * wo
        ncol = N * P
        As = cuda.shared.array((TK, TM_PAD), nbt)
        Bs = cuda.shared.array((TK, TN_PAD), nbt)
        tab = cuda.shared.array((2, 3, TK), numba.int32)  # k-table, double-buffered
        acc = cuda.local.array((RM, RN), nbt)
        bv = cuda.local.array(RN, nbt)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * TX + tx
        g = cuda.blockIdx.z
        m0 = cuda.blockIdx.y * TM
        ka, ma = tid % TK, tid // TK  # A loads: fixed k, rows ma + A_STEP*q
        nb, kb = tid % TN, tid // TN  # B loads: fixed column, k rows kb + B_STEP*q
        for bx in range(cuda.blockIdx.x, (ncol + TN - 1) // TN, cuda.gridDim.x):
            n0 = bx * TN
            col = n0 + nb  # this thread's B column: (n, oh, ow), decomposed once per tile
            n, p = col // P, col % P
            ih0 = (p // wo) * sh - pt
            iw0 = (p % wo) * sw - pl
            xbase = (n * C_in + g * cg) * H * W + ih0 * W + iw0
            for r in range(RM):
                for c in range(RN):
                    acc[r, c] = 0
            if tid < TK:
                _ktable(tab, 0, 0, K, kw, kh * kw, H * W, dh, dw, tid)
            cuda.syncthreads()
            slot = 0
            for k0 in range(0, K, TK):
                k = k0 + ka
                for m in range(ma, TM, A_STEP):  # A: weight rows, contiguous along k
                    As[ka, m] = w2[g * cog + m0 + m, k] if m0 + m < cog and k < K else nbt(0)
                for kk in range(kb, TK, B_STEP):  # B: implicit im2col, contiguous along pixels
                    v = nbt(0)
                    if k0 + kk < K and col < ncol:
                        di, dj = tab[slot, 1, kk], tab[slot, 2, kk]
                        if ih0 + di >= 0 and ih0 + di < H and iw0 + dj >= 0 and iw0 + dj < W:
                            v = xf[xbase + tab[slot, 0, kk] + di * W + dj]
                    Bs[kk, nb] = v
                cuda.syncthreads()
                if tid < TK and k0 + TK < K:  # next step's table, while this step multiplies
                    _ktable(tab, 1 - slot, k0 + TK, K, kw, kh * kw, H * W, dh, dw, tid)
                _mma(As, Bs, acc, bv, ty, tx)
                cuda.syncthreads()
                slot = 1 - slot
            for c in range(RN):  # epilogue: each column decomposed once, rows below it
                col = n0 + tx + TX * c
                if col < ncol:
                    n, p = col // P, col % P
                    oh, ow = p // wo, p % wo
                    for r in range(RM):
                        m = m0 + ty + TY * r
                        if m < cog:
                            v = acc[r, c]
                            if has_bias:
                                v += b[g * cog + m]
                            y[n, g * cog + m, oh, ow] = v

    @cuda.jit
    def grad_input(gy, gyf, w, groups, sh, sw, pt, pl, dh, dw, gx):
        N, C_in, H, W = gx.shape  # gyf: the upstream gradient, flat
        C_out, cg, kh, kw = w.shape
        ho, wo = gy.shape[2], gy.shape[3]
        cog = C_out // groups
        khkw = kh * kw
        K = cog * khkw
        P = H * W
        ncol = N * P
        As = cuda.shared.array((TK, TM_PAD), nbt)
        Bs = cuda.shared.array((TK, TN_PAD), nbt)
        tab = cuda.shared.array((2, 3, TK), numba.int32)
        acc = cuda.local.array((RM, RN), nbt)
        bv = cuda.local.array(RN, nbt)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * TX + tx
        g = cuda.blockIdx.z
        m0 = cuda.blockIdx.y * TM
        ka, ma = tid % TK, tid // TK
        nb, kb = tid % TN, tid // TN
        for bx in range(cuda.blockIdx.x, (ncol + TN - 1) // TN, cuda.gridDim.x):
            n0 = bx * TN
            col = n0 + nb  # this thread's B column: input pixel (n, h, w)
            n, p = col // P, col % P
            th0 = p // W + pt
            tw0 = p % W + pl
            gybase = (n * C_out + g * cog) * ho * wo
            for r in range(RM):
                for c in range(RN):
                    acc[r, c] = 0
            if tid < TK:
                _ktable(tab, 0, 0, K, kw, khkw, ho * wo, dh, dw, tid)
            cuda.syncthreads()
            slot = 0
            for k0 in range(0, K, TK):
                k = k0 + ka  # A[m, (o, i, j)] = w[g*cog + o, m, i, j]
                o = k // khkw
                i = (k - o * khkw) // kw
                j = k - o * khkw - i * kw
                for m in range(ma, TM, A_STEP):
                    As[ka, m] = w[g * cog + o, m0 + m, i, j] if m0 + m < cg and k < K else nbt(0)
                for kk in range(kb, TK, B_STEP):  # B: gy at the outputs whose window covers (h, w)
                    v = nbt(0)
                    if k0 + kk < K and col < ncol:
                        th = th0 - tab[slot, 1, kk]
                        tw = tw0 - tab[slot, 2, kk]
                        if th >= 0 and tw >= 0:
                            ok = True
                            if sh != 1:
                                ok = th % sh == 0
                                th //= sh
                            if sw != 1:
                                ok = ok and tw % sw == 0
                                tw //= sw
                            if ok and th < ho and tw < wo:
                                v = gyf[gybase + tab[slot, 0, kk] + th * wo + tw]
                    Bs[kk, nb] = v
                cuda.syncthreads()
                if tid < TK and k0 + TK < K:
                    _ktable(tab, 1 - slot, k0 + TK, K, kw, khkw, ho * wo, dh, dw, tid)
                _mma(As, Bs, acc, bv, ty, tx)
                cuda.syncthreads()
                slot = 1 - slot
            for c in range(RN):
                col = n0 + tx + TX * c
                if col < ncol:
                    n, p = col // P, col % P
                    h, w_ = p // W, p % W
                    for r in range(RM):
                        m = m0 + ty + TY * r
                        if m < cg:
                            gx[n, g * cg + m, h, w_] = acc[r, c]

    @cuda.jit
    def grad_weight(x, xf, gy, groups, sh, sw, pt, pl, dh, dw, kh, kw, chunk, part):
        N, C_in, H, W = x.shape  # xf: the same input, flat
        C_out, ho, wo = gy.shape[1], gy.shape[2], gy.shape[3]
        cog = C_out // groups
        cg = C_in // groups
        khkw = kh * kw
        kcols = cg * khkw
        P = ho * wo
        R = N * P
        As = cuda.shared.array((TK, TM_PAD), nbt)
        Bs = cuda.shared.array((TK, TN_PAD), nbt)
        acc = cuda.local.array((RM, RN), nbt)
        bv = cuda.local.array(RN, nbt)
        c_off = cuda.local.array(NQ, numba.int64)  # this thread's B columns (cl, i, j), per tile
        c_di = cuda.local.array(NQ, numba.int64)
        c_dj = cuda.local.array(NQ, numba.int64)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * TX + tx
        g = cuda.blockIdx.z % groups
        s = cuda.blockIdx.z // groups
        m0 = cuda.blockIdx.y * TM
        r_lo = s * chunk
        r_hi = dmin(R, r_lo + chunk)
        ka, ma = tid % TK, tid // TK  # both operands: this thread's reduction index is k0 + ka
        for bx in range(cuda.blockIdx.x, (kcols + TN - 1) // TN, cuda.gridDim.x):
            n0 = bx * TN
            for q in range(NQ):
                cc = n0 + ma + A_STEP * q
                cl = cc // khkw
                i = (cc - cl * khkw) // kw
                c_off[q] = cl * H * W
                c_di[q] = i * dh
                c_dj[q] = (cc - cl * khkw - i * kw) * dw
            for r in range(RM):
                for c in range(RN):
                    acc[r, c] = 0
            for k0 in range(r_lo, r_hi, TK):
                rr = k0 + ka  # reduction index (n, oh, ow), decomposed once per step
                n, p = rr // P, rr % P
                ih0 = (p // wo) * sh - pt
                iw0 = (p % wo) * sw - pl
                xbase = (n * C_in + g * cg) * H * W + ih0 * W + iw0
                for m in range(ma, TM, A_STEP):  # A[m, r] = gy[n, g*cog + m, p], contiguous along p
                    As[ka, m] = gy[n, g * cog + m0 + m, p // wo, p % wo] \
                        if m0 + m < cog and rr < r_hi else nbt(0)
                for q in range(NQ):  # B[r, (cl, i, j)]: consecutive threads, consecutive r
                    nn = ma + A_STEP * q
                    v = nbt(0)
                    if rr < r_hi and n0 + nn < kcols:
                        di, dj = c_di[q], c_dj[q]
                        if ih0 + di >= 0 and ih0 + di < H and iw0 + dj >= 0 and iw0 + dj < W:
                            v = xf[xbase + c_off[q] + di * W + dj]
                    Bs[ka, nn] = v
                cuda.syncthreads()
                _mma(As, Bs, acc, bv, ty, tx)
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
