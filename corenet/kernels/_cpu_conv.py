"""Convolution orchestration shared by the CPU backends (``numba_cpu`` and ``cython_cpu``).

Design
------
A backend supplies the primitives documented at the top of ``numba_cpu/conv.py`` (``im2col``,
``col2im``, ``direct_forward``, ``direct_backward_input``, ``direct_backward_weight``); this
module turns them into a convolution with BLAS GEMMs through numpy ``matmul``. The paths:

- ``"simd"``: a backend whose primitives include ``simd_forward``/``simd_wgrad`` (the compiled
  direct convolution of ``corenet/_ext/simd_conv.h``) takes every ungrouped convolution, 1x1
  included: register-tiled, no column matrix. The input gradient of a stride-1 layer is a
  ``simd_forward`` of ``gy`` with the flipped, swapped kernel (``gx_forward_padding``); a layer
  strided by up to 2 x 2 takes one per stride phase (``strided_input_gradient``), a larger
  stride the GEMM and col2im.
- ``"simd_dw"``: depthwise (one input and one output channel per group) on a backend with
  ``simd_dw_forward``/``simd_dw_wgrad``: the same packed input, vectors along the output rows,
  one channel plane at a time; a stride-1 input gradient is a ``simd_dw_forward`` of ``gy``
  with each channel's kernel flipped, a strided one takes the direct kernel.
- ``"simd_dwc"``: depthwise on small maps (``DWC_MAX_PIXELS*``) on a backend with
  ``simd_dwc_forward``/``simd_dwc_backward_input``/``simd_dwc_wgrad``: channels as the vector
  lanes (blocks of 16 channels of one image transposed pixel-major,
  ``corenet/_ext/simd_conv_dwc_*.h``), any stride; the input gradient is the transposed
  correlation, computed directly.
- ``"1x1"``: 1x1 kernel, stride 1, no padding, one group. The input already is the column
  matrix of each image: ``y[n] = W @ x[n]`` with no im2col at all; on small maps the batch is
  folded into the columns (one GEMM on a transposed copy; on 1x1 maps ``x (N, C)`` itself). A
  backend with the simd path sends only small maps here (``FOLD_1X1_MAX_PIXELS*``).
- ``"direct"``: grouped convolution whose groups are too narrow for a GEMM to pay off
  (depthwise above all); a direct loop kernel, parallel over (image, channel) planes.
- ``"gemm"``: everything else. The batch is processed in chunks of ``nb`` images so that the
  column matrix ``(C_in*kh*kw, nb*ho*wo)`` stays under ``config.get_workspace_bytes()`` (one
  image per chunk at least). The column matrix is laid out channel-major, contiguous along
  output pixels, so one GEMM per group covers the whole chunk:
  ``yT (C_out, nb*ho*wo) = W (C_out, C_in*kh*kw) @ col``; forward then transposes ``yT`` into
  NCHW while adding the bias (one pass). Backward reuses the column buffer: first ``col`` from
  im2col feeds ``gw += gyT @ col.T``, then ``W.T @ gyT`` overwrites it and col2im folds it into
  ``gx``. A stride-1 input gradient is instead a forward convolution of ``gy`` with the flipped,
  in/out-swapped kernel (``gx_forward_padding``): im2col is a copy, col2im a scattered accumulation.

Arguments arrive validated and normalised by ``corenet.functional.conv``: C-contiguous arrays
of one float dtype, ``stride``/``dilation`` as ``(h, w)``, ``padding4`` as
``(top, bottom, left, right)``.
"""

from __future__ import annotations

import threading

import numpy as np

from .. import _blas, config
from ..geometry import output_hw
from ._conv_paths import DIRECT_MAX_GROUP_CHANNELS

try:
    from .._ext import simd_conv as _simd
except ImportError:  # the compiled extension is not built: gemm() takes _blas.matmul
    _simd = None

# A strided layer's input gradient goes through one direct convolution per stride phase up to
# this many phases (2 x 2), through GEMM + col2im beyond (see choose_path).
MAX_GX_PHASES = 4


# A 1x1, stride-1, unpadded convolution on a map of at most this many pixels takes the "1x1" path
# (a GEMM with the batch folded into the columns, split over OpenMP threads by gemm()) instead of
# the direct SIMD kernel, whose vectors run along output rows: a 1x1 map (squeeze-excitation) fills
# 1 of 16 lanes. Measured (2 threads, batch 16, us forward / forward + both gradients, simd against
# 1x1): EfficientNet's SE 1152 -> 48 on 1x1 830 / 2200 against 27 / 82; 96 -> 576 on 4x4 162 / 558
# against 203 / 354; 64 -> 384 on 4x4 88 / 318 against 131 / 213; 192 -> 32 on 8x8 120 / 226
# against 156 / 241 (no longer, either way).
FOLD_1X1_MAX_PIXELS = 4  # forward
FOLD_1X1_MAX_PIXELS_BACKWARD = 16


# A depthwise convolution with about this many output pixels or fewer (input pixels / stride
# area) takes "simd_dwc", channels as the vector lanes, instead of "simd_dw", vectors along output
# rows. Measured (batch 16, us forward / input gradient / weight gradient, simd_dw on the thread
# count it picks, simd_dwc on 2 threads): 3x3 960 channels of 2x2 906 / 906 / 589 against
# 47 / 51 / 51; 3x3 192 of 8x8 305 / 304 / 311 against 103 / 108 / 97; 3x3 144 of 16x16 213 / 214 /
# 253 against 263 / 289 / 342 (no longer); strided, 3x3 s2 96 of 32x32 860 / 773 / 963 against
# 440 / 470 / 496, the strided input gradient of simd_dw being the plain direct kernel.
DWC_MAX_PIXELS = 64
DWC_MAX_PIXELS_STRIDED = 256


def is_pointwise(w_shape, stride, padding4, groups) -> bool:
    """A 1x1, stride-1, unpadded, ungrouped convolution: the input is its own column matrix."""
    return groups == 1 and tuple(w_shape[2:]) == (1, 1) and tuple(stride) == (1, 1) and \
        tuple(padding4) == (0, 0, 0, 0)


def choose_path(x_shape, w_shape, stride, padding4, groups, prims=None, backward=False) -> str:
    """``"simd"``, ``"simd_dw"``, ``"simd_dwc"``, ``"1x1"``, ``"direct"`` or ``"gemm"`` (see the module
    docstring).

    Measured (``python benchmarks/bench_ops.py``-style loops, 2 threads, this session's machine,
    ms for the forward / input gradient / weight gradient): the direct kernels beat the GEMM paths
    on every ungrouped shape tried, the 1x1 ones included now that BLAS runs on one thread
    (ResNet-50's 256->64 bottleneck at 16x16, batch 32: 1.0 / 1.5 / 3.4 against the 1x1 GEMM's
    1.4 / 2.4 / 4.9), except the input gradient of a layer strided by more than 2 x 2: AlexNet's
    11x11 stride-4 first layer has 16 phases of 3x3 or smaller sub-kernels (47 ms against 17 for
    GEMM + col2im), so ``strided_input_gradient`` is used up to 4 phases (``MAX_GX_PHASES``).
    """
    C_out, cg, kh, kw = w_shape
    pointwise = is_pointwise(w_shape, stride, padding4, groups)
    tiny = FOLD_1X1_MAX_PIXELS_BACKWARD if backward else FOLD_1X1_MAX_PIXELS
    if groups == 1 and getattr(prims, "simd_forward", None) is not None and not (
            pointwise and x_shape[2] * x_shape[3] <= tiny):
        return "simd"
    if pointwise:
        return "1x1"
    if groups > 1 and cg == 1 and C_out == groups and getattr(prims, "simd_dw_forward", None) is not None:
        out_pixels = x_shape[2] * x_shape[3] // (stride[0] * stride[1])
        if getattr(prims, "simd_dwc_forward", None) is not None and (
                out_pixels <= DWC_MAX_PIXELS or (out_pixels <= DWC_MAX_PIXELS_STRIDED and stride != (1, 1))):
            return "simd_dwc"
        return "simd_dw"
    if groups > 1 and min(cg, C_out // groups) < DIRECT_MAX_GROUP_CHANNELS:
        return "direct"
    return "gemm"


def chunk_images(n_images: int, bytes_per_image: int) -> int:
    """Images per chunk: as many as fit the workspace limit, spread evenly over the chunks."""
    fit = max(1, config.get_workspace_bytes() // max(1, bytes_per_image))
    n_chunks = max(1, -(-n_images // fit))
    return max(1, -(-n_images // n_chunks))


_scratch = threading.local()  # per calling thread: kernels release the GIL, callers may be threads


def workspace(slot: int, shape, dtype) -> np.ndarray:
    """A scratch array for one call, reused across calls when it fits the workspace limit.

    A fresh 40 MB buffer costs ~10k page faults (several ms) on every call, as much as im2col
    itself; buffers up to ``config.get_workspace_bytes()`` are therefore kept, one per ``slot``
    and calling thread. Larger ones (a single image beyond the limit) are allocated per call.
    Callers never return a view of a workspace.
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if nbytes > config.get_workspace_bytes():
        return np.empty(shape, dtype=dtype)
    bufs = getattr(_scratch, "bufs", None)
    if bufs is None:
        bufs = _scratch.bufs = {}
    buf = bufs.get(slot)
    if buf is None or buf.size < nbytes:
        buf = bufs[slot] = np.empty(nbytes, dtype=np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


def conv2d_forward(prims, x, w, b, stride, padding4, dilation, groups):
    """``y (N, C_out, ho, wo)`` from ``x (N, C_in, H, W)``, ``w (C_out, C_in/groups, kh, kw)``, ``b``."""
    N, C_in, H, W = x.shape
    C_out, cg, kh, kw = w.shape
    sh, sw = stride
    pt, _, pl, _ = padding4
    dh, dw = dilation
    ho, wo = output_hw(x.shape, w.shape[2:], stride, padding4, dilation)
    y = np.empty((N, C_out, ho, wo), dtype=x.dtype)
    path = choose_path(x.shape, w.shape, stride, padding4, groups, prims)

    if path == "simd":
        prims.simd_forward(x, w, b, stride, padding4, dilation, y)
        return y
    if path == "simd_dw":
        prims.simd_dw_forward(x, w, b, stride, padding4, dilation, y)
        return y
    if path == "simd_dwc":
        prims.simd_dwc_forward(x, w, b, stride, padding4, dilation, y)
        return y

    if path == "1x1":
        pointwise_forward(x, w, b, y)
        return y

    if path == "direct":
        bias = b if b is not None else np.zeros(C_out, dtype=x.dtype)
        prims.direct_forward(x, w, bias, groups, sh, sw, pt, pl, dh, dw, y)
        return y

    P = ho * wo
    K = C_in * kh * kw
    kg, cog = K // groups, C_out // groups
    nt = config.get_num_threads()
    nb = chunk_images(N, K * P * x.itemsize)
    col_buf = workspace(0, K * nb * P, x.dtype)
    yT_buf = workspace(1, C_out * nb * P, x.dtype)
    w2 = w.reshape(C_out, kg)  # (C_out, C_in/groups*kh*kw); group g owns rows g*cog:(g+1)*cog
    y3 = y.reshape(N, C_out, P)
    for n0 in range(0, N, nb):
        m = min(nb, N - n0)
        col = col_buf[: K * m * P].reshape(K, m * P)  # (C_in*kh*kw, m*ho*wo)
        prims.im2col(x[n0 : n0 + m], kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, col)
        yT = yT_buf[: C_out * m * P].reshape(C_out, m * P)  # (C_out, m*ho*wo)
        for g in range(groups):
            _blas.matmul(w2[g * cog : (g + 1) * cog], col[g * kg : (g + 1) * kg], out=yT[g * cog : (g + 1) * cog],
                         threads=nt)
        yT3 = yT.reshape(C_out, m, P).transpose(1, 0, 2)  # (m, C_out, ho*wo) view
        if b is None:
            y3[n0 : n0 + m] = yT3
        else:
            np.add(yT3, b[:, None], out=y3[n0 : n0 + m])
    return y


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


def gx_forward_padding(x_shape, w_shape, stride, padding4, dilation, any_channels=False):
    """The padding of the forward convolution of ``gy`` that gives the input gradient, or ``None``
    where the input gradient is better taken by col2im.

    For stride 1, ``gx[c, h, w] = sum_{o,i,j} gy[o, h + pt - i*dh, w + pl - j*dw] * w[o, c, i, j]``
    is a cross-correlation of ``gy`` with ``rotated_weights(w)`` and padding ``span - pad`` per side:
    im2col of ``gy`` (a strided copy, fast) replaces col2im (a scattered accumulation, ~2x slower),
    and the GEMM has the forward's shape. Worth it while ``gy`` has no more channels than ``x`` (its
    column matrix is the bigger one; ``any_channels`` lifts that for the direct kernel, which has no
    column matrix) and no side is padded beyond the kernel's span (the flipped padding would be
    negative)."""
    if tuple(stride) != (1, 1) or (w_shape[0] > x_shape[1] and not any_channels):
        return None
    span_h, span_w = dilation[0] * (w_shape[2] - 1), dilation[1] * (w_shape[3] - 1)
    t, b, l, r = padding4
    pads = (span_h - t, span_h - b, span_w - l, span_w - r)
    return pads if min(pads) >= 0 else None


def _phase_taps(size, k, s, d, pad, q):
    """One axis of a strided layer's input gradient, for the input positions ``i`` with
    ``(i + pad) % s == q``: ``(taps, first, count, gy_offset, dil)`` such that for ``a < count``
    ``gx[first + s*a] = sum_u gy[a + gy_offset + u*dil] * w[taps[u]]`` (gy zero outside its range);
    ``None`` when no position or no tap has this phase.

    From ``gx[i] = sum over (o, j) with o*s - pad + j*d == i of gy[o] * w[j]``: a tap ``j`` reaches
    phase ``q`` when ``j*d % s == q``, and then ``o = a + a_lo + (q - j*d)/s``. Taken in descending
    ``j`` the offsets rise by ``d / gcd(d, s)``: a stride-1 correlation with that dilation."""
    taps = [j for j in range(k - 1, -1, -1) if (j * d) % s == q]
    a_lo = -((q - pad) // s)  # ceil((pad - q) / s): the first a with q - pad + s*a >= 0
    a_hi = -((q - pad - size) // s)  # ceil((size + pad - q) / s)
    if not taps or a_hi <= a_lo:
        return None
    dil = d // np.gcd(d, s)
    return taps, q - pad + s * a_lo, a_hi - a_lo, a_lo + (q - taps[0] * d) // s, dil


def strided_input_gradient(prims, w, gy, stride, padding4, dilation, gx):
    """OUT gx (N, C_in, H, W): the input gradient of a strided, ungrouped convolution as one stride-1
    ``simd_forward`` per phase of the stride (polyphase): each input pixel phase ``(qh, qw)`` is a
    correlation of ``gy`` with the flipped, swapped sub-kernel of the taps that reach it. Every
    multiply-add is one of the gradient's own; no column matrix, no scattered accumulation."""
    kh, kw = w.shape[2:]
    C_in = gx.shape[1]
    (sh, sw), (pt, _, pl, _), (dh, dw) = stride, padding4, dilation
    H, W = gx.shape[2:]
    for qh in range(sh):
        ph = _phase_taps(H, kh, sh, dh, pt, qh)
        if ph is None:  # no tap reaches these rows (or there are none): their gradient is 0
            gx[:, :, (qh - pt) % sh :: sh, :] = 0
            continue
        th, fh, nh, oh, dh2 = ph
        for qw in range(sw):
            pw = _phase_taps(W, kw, sw, dw, pl, qw)
            if pw is None:
                gx[:, :, fh::sh, (qw - pl) % sw :: sw] = 0
                continue
            tw, fw, nw, ow, dw2 = pw
            # (C_in, C_out, len(th), len(tw)): sub-kernel, flipped, input/output channels swapped
            ws = np.ascontiguousarray(w[:, :, th][:, :, :, tw].transpose(1, 0, 2, 3))
            # output (a, b) reads gy[a + oh + u*dh2, b + ow + v*dw2]: a padding of -oh, -ow (the
            # direct kernel's packing takes a negative padding as an offset into gy, no copy)
            out = np.empty((gy.shape[0], C_in, nh, nw), dtype=gy.dtype)
            prims.simd_forward(gy, ws, None, (1, 1), (-oh, 0, -ow, 0), (dh2, dw2), out)
            gx[:, :, fh::sh, fw::sw] = out


def rotated_weights(w, groups):
    """``w (C_out, C_in/groups, kh, kw)`` -> ``(C_in, C_out/groups, kh, kw)``: per group, input and
    output channels swapped and both spatial axes flipped."""
    C_out, cg, kh, kw = w.shape
    cog = C_out // groups
    wr = w.reshape(groups, cog, cg, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    return np.ascontiguousarray(wr).reshape(groups * cg, cog, kh, kw)


def conv2d_backward(prims, x, w, gy, stride, padding4, dilation, groups, need_gx, need_gw, need_gb):
    """``(gx, gw, gb)`` for upstream ``gy (N, C_out, ho, wo)``; ``None`` for what was not asked."""
    N, C_in, H, W = x.shape
    C_out, cg, kh, kw = w.shape
    sh, sw = stride
    pt, _, pl, _ = padding4
    dh, dw = dilation
    ho, wo = gy.shape[2:]
    P = ho * wo
    gb = gy.sum(axis=(0, 2, 3), dtype=np.float64).astype(gy.dtype) if need_gb else None
    gw = np.empty_like(w) if need_gw else None
    path = choose_path(x.shape, w.shape, stride, padding4, groups, prims, True)
    # the gemm and simd paths may take gx as conv2d_forward's output instead (gx_forward_padding)
    gx_pads = None
    if need_gx and path in ("gemm", "simd", "simd_dw"):
        gx_pads = gx_forward_padding(x.shape, w.shape, stride, padding4, dilation, any_channels=path != "gemm")
    gx = np.empty_like(x) if need_gx and gx_pads is None else None
    if not (need_gx or need_gw):
        return gx, gw, gb

    if path == "simd":
        if need_gw:
            prims.simd_wgrad(x, gy, stride, padding4, dilation, gw)
        if not need_gx:
            return gx, gw, gb
        if gx_pads is not None:
            gx = np.empty_like(x)
            prims.simd_forward(gy, rotated_weights(w, groups), None, (1, 1), gx_pads, dilation, gx)
            return gx, gw, gb
        if sh * sw <= MAX_GX_PHASES:
            strided_input_gradient(prims, w, gy, stride, padding4, dilation, gx)  # gx allocated above
            return gx, gw, gb
        need_gw = False  # done; the input gradient continues on the GEMM path below

    if path == "simd_dw":
        if need_gw:
            prims.simd_dw_wgrad(x, gy, stride, padding4, dilation, gw)
        if need_gx:
            gx = np.empty_like(x)
            if gx_pads is not None:  # each channel's kernel flipped: (C, 1, kh, kw)
                wf = np.ascontiguousarray(w[:, :, ::-1, ::-1])
                prims.simd_dw_forward(gy, wf, None, (1, 1), gx_pads, dilation, gx)
            else:
                prims.direct_backward_input(gy, w, groups, sh, sw, pt, pl, dh, dw, gx)
        return gx, gw, gb

    if path == "simd_dwc":
        if need_gw:
            prims.simd_dwc_wgrad(x, gy, stride, padding4, dilation, gw)
        if need_gx:
            prims.simd_dwc_backward_input(gy, w, stride, padding4, dilation, gx)
        return gx, gw, gb

    if path == "1x1":
        pointwise_backward(x, w, gy, gx, gw)
        return gx, gw, gb

    if path == "direct":
        if need_gx:
            prims.direct_backward_input(gy, w, groups, sh, sw, pt, pl, dh, dw, gx)
        if need_gw:
            prims.direct_backward_weight(x, gy, groups, sh, sw, pt, pl, dh, dw, gw)
        return gx, gw, gb

    if gx_pads is not None:
        gx = conv2d_forward(prims, gy, rotated_weights(w, groups), None, (1, 1), gx_pads, dilation, groups)
        need_gx = False
        if not need_gw:
            return gx, gw, gb

    K = C_in * kh * kw
    kg, cog = K // groups, C_out // groups
    nt = config.get_num_threads()
    nb = chunk_images(N, K * P * x.itemsize)
    col_buf = workspace(0, K * nb * P, x.dtype)
    gyT_buf = workspace(1, C_out * nb * P, x.dtype)
    w2 = w.reshape(C_out, kg)
    gw2 = gw.reshape(C_out, kg) if need_gw else None
    part = np.empty((cog, kg), dtype=x.dtype) if need_gw and N > nb else None
    if need_gw and N == 0:
        gw[...] = 0
    gy3 = gy.reshape(N, C_out, P)
    for n0 in range(0, N, nb):
        m = min(nb, N - n0)
        col = col_buf[: K * m * P].reshape(K, m * P)  # (C_in*kh*kw, m*ho*wo)
        gyT = gyT_buf[: C_out * m * P].reshape(C_out, m * P)  # (C_out, m*ho*wo)
        gyT.reshape(C_out, m, P)[...] = gy3[n0 : n0 + m].transpose(1, 0, 2)
        if need_gw:
            prims.im2col(x[n0 : n0 + m], kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, col)
            for g in range(groups):
                rows, cols = slice(g * cog, (g + 1) * cog), slice(g * kg, (g + 1) * kg)
                if n0 == 0:
                    _blas.matmul(gyT[rows], col[cols].T, out=gw2[rows], threads=nt)
                else:
                    _blas.matmul(gyT[rows], col[cols].T, out=part, threads=nt)
                    gw2[rows] += part
        if need_gx:
            for g in range(groups):
                rows, cols = slice(g * cog, (g + 1) * cog), slice(g * kg, (g + 1) * kg)
                _blas.matmul(w2[rows].T, gyT[rows], out=col[cols], threads=nt)  # (kg, cog) @ (cog, m*P)
            prims.col2im(col, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, gx[n0 : n0 + m])
    return gx, gw, gb


def bind(prims):
    """The contract entry points ``(conv2d_forward, conv2d_backward)`` of a CPU backend whose
    primitives are the module ``prims``: each backend's ``conv.py`` ends with
    ``conv2d_forward, conv2d_backward = _cpu_conv.bind(sys.modules[__name__])``."""

    def conv2d_forward_bound(x, w, b, stride, padding4, dilation, groups):
        return conv2d_forward(prims, x, w, b, stride, padding4, dilation, groups)

    def conv2d_backward_bound(x, w, gy, stride, padding4, dilation, groups, need_gx, need_gw, need_gb):
        return conv2d_backward(prims, x, w, gy, stride, padding4, dilation, groups, need_gx, need_gw, need_gb)

    name = prims.__name__.rsplit(".", 2)[-2]  # numba_cpu / cython_cpu
    for fn, target in ((conv2d_forward_bound, conv2d_forward), (conv2d_backward_bound, conv2d_backward)):
        fn.__name__ = fn.__qualname__ = target.__name__
        fn.__module__ = prims.__name__
        fn.__doc__ = f"Contract entry point: ``_cpu_conv.{target.__name__}`` on the {name} primitives."
    return conv2d_forward_bound, conv2d_backward_bound
