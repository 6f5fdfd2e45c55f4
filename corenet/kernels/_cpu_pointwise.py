"""The CPU convolutions' ``"1x1"`` path: a 1x1, stride-1, unpadded convolution is a GEMM with the
input as its column matrix (no im2col); on small maps the batch is folded into the columns (one
GEMM on a transposed copy), split over OpenMP threads by :func:`gemm` in the compiled extension.
"""

from __future__ import annotations

import numpy as np

from .. import _blas, config
from ._cpu_workspace import workspace

try:
    from .._ext import simd_conv as _simd
except ImportError:  # the compiled extension is not built: gemm() takes _blas.matmul
    _simd = None

# Up to this many pixels per map the "1x1" path folds the batch into the GEMM's columns (one GEMM
# on a transposed copy); beyond, one GEMM per image on x itself (a batch of right-hand sides).
FOLD_MAX_PIXELS = 256


# cblas_?gemm entry points of the BLAS numpy loaded, for gemm(): (name, 64-bit sizes), first found wins
_CBLAS_NAMES = {"s": (("scipy_cblas_sgemm64_", True), ("cblas_sgemm64_", True), ("scipy_cblas_sgemm", False)),
                "d": (("scipy_cblas_dgemm64_", True), ("cblas_dgemm64_", True), ("scipy_cblas_dgemm", False))}
_cblas: dict = {}


def _cblas_entry(kind):
    """``(address, ilp64)`` of the loaded BLAS's cblas_sgemm (``kind`` "s") or cblas_dgemm ("d"), or ``None``."""
    if kind not in _cblas:
        import ctypes

        _cblas[kind] = None
        for path, _ in _blas._loaded_blas():
            lib = ctypes.CDLL(path)
            for name, ilp64 in _CBLAS_NAMES[kind]:
                fn = getattr(lib, name, None)
                if fn is not None:
                    _cblas[kind] = (ctypes.cast(fn, ctypes.c_void_p).value, ilp64)
                    return _cblas[kind]
    return _cblas[kind]


def _blas_layout(a):
    """``(transposed, leading dimension)`` of a 2-D array contiguous along one axis, or ``None``."""
    item = a.itemsize
    if a.strides[1] == item and a.strides[0] >= max(1, a.shape[1]) * item:
        return False, a.strides[0] // item
    if a.strides[0] == item and a.strides[1] >= max(1, a.shape[0]) * item:
        return True, a.strides[1] // item
    return None


def gemm(a, b, out, threads):
    """OUT out (M, N) = a (M, K) @ b (K, N): split over ``threads`` OpenMP threads in the compiled
    extension (``simd_conv.gemm_rows``) when it is big enough (``_blas.SPLIT_MACS``) and the BLAS's
    cblas entry point is found; otherwise ``_blas.matmul`` (its Python-thread split). ``a`` and ``b``
    may be transposed views; ``out`` is C-contiguous."""
    M, K = a.shape
    N = b.shape[1]
    if threads < 2 or M * K * N < _blas.SPLIT_MACS or _simd is None or a.dtype != b.dtype or a.dtype != out.dtype \
            or a.dtype.char not in "fd" or not out.flags.c_contiguous:
        return _blas.matmul(a, b, out=out, threads=threads)
    entry = _cblas_entry("s" if a.dtype.char == "f" else "d")
    la, lb = _blas_layout(a), _blas_layout(b)
    if entry is None or la is None or lb is None:
        return _blas.matmul(a, b, out=out, threads=threads)
    _simd.gemm_rows(entry[0], entry[1], a.dtype.char == "d", la[0], lb[0], M, N, K, a.ctypes.data, la[1],
                    b.ctypes.data, lb[1], out.ctypes.data, max(1, N), threads)
    return out


def _folded(a3, slot):
    """``a3 (N, C, P)`` as ``(C, N*P)``: itself when ``P == 1`` is handled by the caller, else a copy
    into workspace ``slot``."""
    N, C, P = a3.shape
    t = workspace(slot, (C, N, P), a3.dtype)
    t[...] = a3.transpose(1, 0, 2)
    return t.reshape(C, N * P)


def pointwise_forward(x, w, b, y):
    """OUT y (N, C_out, H, W) of a 1x1, stride-1, unpadded convolution: ``y[n] = W @ x[n] + b``."""
    N, C_in, H, W = x.shape
    C_out, P, nt = w.shape[0], H * W, config.get_num_threads()
    w2 = w.reshape(C_out, C_in)
    if P == 1:  # (N, C_in) @ (C_in, C_out): the squeeze-excitation case
        y2 = y.reshape(N, C_out)
        np.matmul(x.reshape(N, C_in), w2.T, out=y2)
        if b is not None:
            y2 += b
        return
    y3 = y.reshape(N, C_out, P)
    if P > FOLD_MAX_PIXELS:
        _blas.matmul(w2, x.reshape(N, C_in, P), out=y3, threads=nt)  # (C_out, C) @ (N, C, HW)
        if b is not None:
            y3 += b[:, None]
        return
    yT = workspace(1, (C_out, N * P), x.dtype)
    gemm(w2, _folded(x.reshape(N, C_in, P), 0), yT, nt)
    yT3 = yT.reshape(C_out, N, P).transpose(1, 0, 2)
    if b is None:
        y3[...] = yT3
    else:
        np.add(yT3, b[:, None], out=y3)


def pointwise_backward(x, w, gy, gx, gw):
    """OUT gx (or ``None``), gw (or ``None``) of :func:`pointwise_forward` for upstream ``gy``."""
    N, C_in, H, W = x.shape
    C_out, P, nt = w.shape[0], H * W, config.get_num_threads()
    w2 = w.reshape(C_out, C_in)
    if P == 1:
        x2, gy2 = x.reshape(N, C_in), gy.reshape(N, C_out)
        if gx is not None:
            np.matmul(gy2, w2, out=gx.reshape(N, C_in))
        if gw is not None:
            np.matmul(gy2.T, x2, out=gw.reshape(C_out, C_in))
        return
    x3, gy3 = x.reshape(N, C_in, P), gy.reshape(N, C_out, P)
    if P > FOLD_MAX_PIXELS:
        if gx is not None:
            _blas.matmul(np.ascontiguousarray(w2.T), gy3, out=gx.reshape(N, C_in, P), threads=nt)
        if gw is not None:
            gw.reshape(C_out, C_in)[...] = np.tensordot(gy3, x3, axes=([0, 2], [0, 2]))  # sum_n gy[n] @ x[n].T
        return
    gyT = _folded(gy3, 1)  # (C_out, N*P)
    if gw is not None:
        gemm(gyT, _folded(x3, 0).T, gw.reshape(C_out, C_in), nt)
    if gx is not None:
        gxT = workspace(0, (C_in, N * P), x.dtype)  # x's fold is no longer needed
        gemm(w2.T, gyT, gxT, nt)
        gx.reshape(N, C_in, P)[...] = gxT.reshape(C_in, N, P).transpose(1, 0, 2)
