"""2-D transposed convolution forward and backward, through the convolution kernel contract.

Design
------
A transposed convolution is the adjoint of a convolution: with ``w (C_in, C_out/G, kH, kW)`` read
as the weight of a convolution ``conv(z) : (N, C_out, H_out, W_out) -> (N, C_in, H, W)`` (same
stride, padding, dilation, groups), ``conv_transpose2d(x) = conv^T(x)``. So

- the forward is that convolution's input gradient, with ``x`` in the place of ``gy``;
- the input gradient is that convolution's forward applied to ``gy``;
- the weight gradient is that convolution's weight gradient with input ``gy`` and upstream ``x``.

All three go through the backends' ``conv.conv2d_backward`` / ``conv.conv2d_forward`` contract
entry points (im2col + GEMM, the SIMD direct kernels, the depthwise kernels, cuda's implicit
GEMM), so there is no separate transposed-convolution loop. The convolution's input gradient reads
only the shape and dtype of its forward input, so the forward passes a zero-stride stand-in for it.

``output_padding`` adds rows at the bottom (columns at the right). Per axis the output is the
window ``[top, top + H_out)`` of the full scatter of length ``(H - 1)*s + d*(k - 1) + 1``, so the
bottom padding of the equivalent convolution is ``bottom - output_padding`` where that is >= 0;
where it is negative the rows past the full scatter receive nothing, and they are appended as
zeros (``extra``) after a convolution with bottom padding 0.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..geometry import padding4, pair
from .conv import check_operands
from .device import backend_for, empty, is_device
from .validation import as_float_array, check_elements, check_state, positive_int, same_dtype, shape_arg

__all__ = ["conv_transpose2d", "conv_transpose2d_backward", "conv_transpose_output_shape", "ConvTranspose2dState"]


_W_LAYOUT = "(C_in, C_out/groups, kH, kW)"


class ConvTranspose2dState(NamedTuple):
    """What :func:`conv_transpose2d_backward` needs from the forward pass."""

    x: np.ndarray
    w: np.ndarray
    has_bias: bool
    stride: tuple[int, int]
    conv_padding: tuple[int, int, int, int]  # (top, bottom, left, right) of the equivalent convolution
    extra: tuple[int, int]  # zero rows / columns appended after the convolution's extent
    dilation: tuple[int, int]
    groups: int
    y_shape: tuple[int, int, int, int]


def _geometry(op, x_shape, w_shape, stride, padding, output_padding, dilation, groups):
    """Validate; return ``(stride, conv_pads4, extra, dilation, groups, y_shape)``."""
    received = check_operands(op, x_shape, w_shape, _W_LAYOUT)
    groups = positive_int(op, "groups", groups)
    N, C_in, H, W = x_shape
    wc_in, cog, kh, kw = w_shape
    if C_in != wc_in:
        raise ValueError(f"{op}: input has {C_in} channels but weight expects {wc_in} (w.shape[0]). {received}")
    if C_in % groups:
        raise ValueError(f"{op}: groups={groups} must divide the input channels ({C_in}). {received}")
    stride = pair(op, "stride", stride, minimum=1)
    dilation = pair(op, "dilation", dilation, minimum=1)
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int, (ph, pw) or ((top, bottom), (left, right)), "
                         f"received {padding!r}")
    pads = padding4(op, padding, (kh, kw), stride, dilation, (H, W))
    opad = pair(op, "output_padding", output_padding, minimum=0)
    for a in range(2):
        if opad[a] >= max(stride[a], dilation[a]):
            raise ValueError(f"{op}: output_padding must be smaller than stride or dilation, received "
                             f"output_padding={opad}, stride={stride}, dilation={dilation}")
    out, conv_pads, extra = [], [], []
    for a, (size, k) in enumerate(((H, kh), (W, kw))):
        before, after = pads[2 * a], pads[2 * a + 1]
        full = (size - 1) * stride[a] + dilation[a] * (k - 1) + 1  # the whole scatter, uncropped
        o = full - before - after + opad[a]
        if o < 1 or full - before < 1:
            raise ValueError(f"{op}: padding {pads} leaves no output (full extent {full} along axis {2 + a}). "
                             f"{received}")
        out.append(o)
        conv_pads += [before, max(0, after - opad[a])]
        extra.append(max(0, opad[a] - after))
    y_shape = (N, cog * groups, out[0], out[1])
    check_elements(op, y_shape)
    return stride, tuple(conv_pads), tuple(extra), dilation, groups, y_shape


def conv_transpose_output_shape(x_shape, w_shape, stride=1, padding=0, output_padding=0, groups=1,
                                dilation=1) -> tuple[int, int, int, int]:
    """Output shape ``(N, C_out, H_out, W_out)`` of :func:`conv_transpose2d`; raises its errors.

    ``H_out = (H - 1)*stride - pad_top - pad_bottom + dilation*(kH - 1) + output_padding + 1``.

    Examples
    --------
    >>> conv_transpose_output_shape((1, 4, 7, 7), (4, 2, 3, 3), stride=2, padding=1, output_padding=1)
    (1, 2, 14, 14)
    """
    op = "conv_transpose_output_shape"
    x_shape = shape_arg(op, "x_shape", x_shape)
    w_shape = shape_arg(op, "w_shape", w_shape, 4, _W_LAYOUT)
    return _geometry(op, x_shape, w_shape, stride, padding, output_padding, dilation, groups)[5]


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                     return_state=False):
    """2-D transposed convolution (PyTorch's ``conv_transpose2d``: the adjoint of ``conv2d``).

    .. math::

        y[n, g C_{out}/G + c_l, h, w] = b[\\cdot] + \\sum_{c_i \\in g} \\sum_{i, j}
            x[n, c_i, h_i, w_j]\\; w[c_i, c_l, i, j]
            \\quad\\text{over } h_i s_h - p_t + i d_h = h,\\; w_j s_w - p_l + j d_w = w,

    i.e. every input pixel scatters its kernel-weighted copy into a ``stride``-spaced grid, and the
    result is cropped by the padding. Output size per axis:
    ``H_out = (H - 1)*s_h - pad_top - pad_bottom + d_h*(kH - 1) + output_padding_h + 1``.

    Parameters
    ----------
    x : ndarray, shape (N, C_in, H, W), float32 or float64
    w : ndarray, shape (C_in, C_out/groups, kH, kW), same dtype (PyTorch's layout)
    b : ndarray, shape (C_out,), optional
    stride, dilation : int or (int, int)
    padding : int, (ph, pw) or ((top, bottom), (left, right))
        Rows/columns removed from each side of the full result (no 'same'/'valid').
    output_padding : int or (int, int)
        Extra rows/columns at the bottom/right; each must be smaller than the stride or the
        dilation of its axis (PyTorch's rule) so that the output size stays unambiguous.
    groups : int
        Must divide ``C_in``; ``C_out = groups * w.shape[1]``.
    return_state : bool
        Also return the state :func:`conv_transpose2d_backward` needs.

    Returns
    -------
    y : ndarray, shape (N, C_out, H_out, W_out), dtype of ``x``
    state : ConvTranspose2dState, only when ``return_state`` is true

    Notes
    -----
    Computed as the input gradient of the convolution it transposes (see the module docstring);
    Dumoulin & Visin, "A guide to convolution arithmetic for deep learning" (2016), section 4.

    Examples
    --------
    >>> conv_transpose2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)), stride=2)[0, 0]
    array([[1., 1., 1., 1.],
           [1., 1., 1., 1.],
           [1., 1., 1., 1.],
           [1., 1., 1., 1.]])
    """
    op = "conv_transpose2d"
    x = as_float_array(op, "x", x)
    w = as_float_array(op, "w", w)
    stride, cpads, extra, dilation, groups, y_shape = _geometry(
        op, x.shape, w.shape, stride, padding, output_padding, dilation, groups)
    if b is not None:
        b = as_float_array(op, "b", b)
        if tuple(b.shape) != (y_shape[1],):
            raise ValueError(f"{op}: bias must have shape ({y_shape[1]},) (one per output channel), received "
                             f"b.shape={tuple(b.shape)}. Received: x.shape={x.shape}, w.shape={w.shape}")
    same_dtype(op, x=x, w=w, b=b)
    N, C_out, Ho, Wo = y_shape
    z_shape = (N, C_out, Ho - extra[0], Wo - extra[1])
    stand_in = np.broadcast_to(np.zeros((), x.dtype), z_shape)  # only its shape and dtype are read
    z = backend_for(x).conv.conv2d_backward(stand_in, w, x, stride, cpads, dilation, groups, True, False, False)[0]
    y = _pad_end(z, extra)
    if b is not None:
        _add_bias(y, b)
    if not return_state:
        return y
    return y, ConvTranspose2dState(x, w, b is not None, stride, cpads, extra, dilation, groups, y_shape)


def conv_transpose2d_backward(gy, state, need_gx=True, need_gw=True, need_gb=True):
    """Gradients of :func:`conv_transpose2d` with respect to its input, weight and bias.

    ``gx = conv2d(gy, w, stride, padding, dilation, groups)`` (the convolution it transposes),
    ``gw[c_i, c_l, i, j] = sum_{n,h,w} x[n, c_i, h, w] * gy[n, c_o, h s_h - p_t + i d_h, w s_w - p_l + j d_w]``
    (a convolution weight gradient with the roles of input and upstream gradient swapped) and
    ``gb = sum_{n,h,w} gy``.

    Parameters
    ----------
    gy : ndarray, shape (N, C_out, H_out, W_out)
    state : ConvTranspose2dState
        From ``conv_transpose2d(..., return_state=True)``.
    need_gx, need_gw, need_gb : bool

    Returns
    -------
    gx : (N, C_in, H, W) or None
    gw : (C_in, C_out/groups, kH, kW) or None
    gb : (C_out,) or None (also when the forward had no bias)
    """
    op = "conv_transpose2d_backward"
    check_state(op, state, ConvTranspose2dState, "conv_transpose2d")
    gy = as_float_array(op, "gy", gy)
    if tuple(gy.shape) != state.y_shape:
        raise ValueError(f"{op}: gy must have the forward output's shape {state.y_shape}, received gy.shape={gy.shape}")
    same_dtype(op, gy=gy, x=state.x)
    gb = _bias_grad(gy) if need_gb and state.has_bias else None
    gx = gw = None
    if need_gx or need_gw:
        conv = backend_for(gy).conv
        gz = _crop_end(gy, state.extra)
        args = (state.stride, state.conv_padding, state.dilation, state.groups)
        if need_gx:
            gx = conv.conv2d_forward(gz, state.w, None, *args)
        if need_gw:
            gw = conv.conv2d_backward(gz, state.w, state.x, *args, False, True, False)[1]
    return gx, gw, gb


# ------------------------------------------------------------------ numpy or device helpers
def _pad_end(z, extra):
    """``z`` with ``extra`` zero rows/columns appended at the bottom/right."""
    if extra == (0, 0):
        return z
    return backend_for(z).ops.pad2d(z, 0, extra[0], 0, extra[1])


def _crop_end(g, extra):
    """The adjoint of :func:`_pad_end`."""
    if extra == (0, 0):
        return g
    return backend_for(g).ops.crop2d(g, 0, extra[0], 0, extra[1])


def _add_bias(y, b):
    """``y += b[c]`` in place."""
    if not is_device(y):
        y += b[:, None, None]
        return
    N, C = y.shape[:2]
    y3 = y.reshape(N, C, y.size // max(1, N * C))
    zeros, ones = np.zeros(C, y.dtype), np.ones(C, y.dtype)
    backend_for(y).norm.bn_affine(y3, zeros, ones, b, y3)


def _bias_grad(gy):
    """``sum_{n,h,w} gy`` per channel, accumulated in float64, in ``gy``'s dtype and kind."""
    if not is_device(gy):
        return gy.sum(axis=(0, 2, 3), dtype=np.float64).astype(gy.dtype)
    N, C = gy.shape[:2]
    norm = backend_for(gy).norm
    g3 = gy.reshape(N, C, gy.size // max(1, N * C))
    sums = norm.bn_backward_reduce(g3, g3, np.zeros(C, np.float64))[0]  # float64 (C,) on the device
    gb = empty((1, C, 1), gy.dtype, gy)
    zeros, ones = np.zeros(C, np.float64), np.ones(C, np.float64)
    norm.bn_affine(sums.reshape(1, C, 1), zeros, ones, zeros, gb)  # the cast to gy's dtype
    return gb.reshape(C)


def _warmup(dtype) -> None:
    """Forward and backward once on tiny inputs (compiles the convolution paths they take)."""
    rng = np.random.default_rng(0)
    for s, g in ((2, 1), (1, 2)):
        x = rng.standard_normal((2, 2, 3, 3)).astype(dtype)
        w = rng.standard_normal((2, 3 if g == 1 else 1, 3, 3)).astype(dtype)
        y, st = conv_transpose2d(x, w, np.zeros(w.shape[1] * g, dtype), stride=s, padding=1, groups=g,
                                 return_state=True)
        conv_transpose2d_backward(np.ones_like(y), st)
