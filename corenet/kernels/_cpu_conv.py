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

The pieces live beside this module: ``_cpu_pointwise.py`` (the "1x1" path and its threaded GEMM),
``_cpu_input_grad.py`` (input gradients as forward convolutions: flipped padding, stride phases)
and ``_cpu_workspace.py`` (per-thread scratch buffers, image chunks under the workspace limit).

Arguments arrive validated and normalised by ``corenet.functional.conv``: C-contiguous arrays
of one float dtype, ``stride``/``dilation`` as ``(h, w)``, ``padding4`` as
``(top, bottom, left, right)``.
"""

from __future__ import annotations

import numpy as np

from .. import _blas, config
from ..geometry import output_hw
from ._conv_paths import DIRECT_MAX_GROUP_CHANNELS
from ._cpu_input_grad import gx_forward_padding, rotated_weights, strided_input_gradient
from ._cpu_pointwise import pointwise_backward, pointwise_forward
from ._cpu_workspace import chunk_images, workspace

# A strided layer's input gradient goes through one direct convolution per stride phase up to
# this many phases (2 x 2), through GEMM + col2im beyond (see choose_path).
MAX_GX_PHASES = 4


# A 1x1, stride-1, unpadded convolution on a map of at most this many pixels takes the "1x1" path
# (a GEMM with the batch folded into the columns, split over OpenMP threads by _cpu_pointwise.gemm) instead of
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
