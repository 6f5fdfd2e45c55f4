"""2-D convolution (cross-correlation) forward and backward, on the active backend."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..geometry import check_padded, check_window_fits, output_hw, padding4, pair
from .device import backend_for
from .validation import as_float_array, check_elements, check_state, positive_int, same_dtype, shape_arg

__all__ = ["conv2d", "conv2d_backward", "conv_output_shape", "Conv2dState"]


class Conv2dState(NamedTuple):
    """What :func:`conv2d_backward` needs from the forward pass (inputs and normalised arguments)."""

    x: np.ndarray
    w: np.ndarray
    has_bias: bool
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]  # (top, bottom, left, right)
    dilation: tuple[int, int]
    groups: int
    y_shape: tuple[int, int, int, int]


_GEOMETRY_CACHE: dict = {}
_GEOMETRY_CACHE_SIZE = 4096


def _geometry(op, x_shape, w_shape, stride, padding, dilation, groups):
    """Validate shapes and arguments; return normalised ``(stride, pads4, dilation, groups, y_shape)``.

    A network calls each layer with the same shapes and arguments at every step: valid
    combinations are remembered (about 20 us of checks per call, ~0.4 ms of a ResNet-20 forward at
    batch 1). The key is the arguments' ``repr``, which tells 1 from 1.0, True or np.int64(1), so a
    cached call is one whose arguments passed the checks exactly; errors are never cached.
    """
    key = repr((tuple(x_shape), tuple(w_shape), stride, padding, dilation, groups))
    hit = _GEOMETRY_CACHE.get(key)
    if hit is None:
        hit = _check_geometry(op, x_shape, w_shape, stride, padding, dilation, groups)
        if len(_GEOMETRY_CACHE) >= _GEOMETRY_CACHE_SIZE:
            _GEOMETRY_CACHE.clear()
        _GEOMETRY_CACHE[key] = hit
    return hit


def check_operands(op, x_shape, w_shape, w_layout="(C_out, C_in/groups, kH, kW)"):
    """``x (N, C, H, W)`` and a 4-D ``w`` with every size but the batch >= 1 (the convolution ops'
    first check); returns the ``Received: ...`` tail of their error messages."""
    received = f"Received: x.shape={tuple(x_shape)}, w.shape={tuple(w_shape)}"
    if len(x_shape) != 4:
        raise ValueError(f"{op}: x must be 4-D (N, C_in, H, W), received x.shape={tuple(x_shape)}")
    if len(w_shape) != 4:
        raise ValueError(f"{op}: w must be 4-D {w_layout}, received w.shape={tuple(w_shape)}")
    if min(x_shape[1:]) < 1 or min(w_shape) < 1:
        raise ValueError(f"{op}: channel, spatial and kernel sizes must be >= 1. {received}")
    return received


def _check_geometry(op, x_shape, w_shape, stride, padding, dilation, groups):
    received = check_operands(op, x_shape, w_shape)
    groups = positive_int(op, "groups", groups)
    N, C_in, H, W = x_shape
    C_out, cg, kh, kw = w_shape
    if C_in % groups or C_out % groups:
        raise ValueError(
            f"{op}: groups={groups} must divide both the input channels ({C_in}) and the output channels "
            f"({C_out}). {received}"
        )
    if C_in != cg * groups:
        raise ValueError(
            f"{op}: input has {C_in} channels but weight expects {cg * groups} (groups={groups}). {received}"
        )
    stride = pair(op, "stride", stride, minimum=1)
    dilation = pair(op, "dilation", dilation, minimum=1)
    pads = padding4(op, padding, (kh, kw), stride, dilation, (H, W))
    check_padded(op, (H, W), pads)
    check_window_fits(op, x_shape, (kh, kw), dilation, pads)
    ho, wo = output_hw(x_shape, (kh, kw), stride, pads, dilation)
    check_elements(op, (N, C_out, ho, wo))
    return stride, pads, dilation, groups, (N, C_out, ho, wo)


def conv_output_shape(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1) -> tuple[int, int, int, int]:
    """Output shape ``(N, C_out, H_out, W_out)`` of :func:`conv2d` for these shapes and arguments.

    ``H_out = floor((H + pad_top + pad_bottom - dilation_h*(kH - 1) - 1) / stride_h) + 1``, and
    likewise for ``W_out``. Raises the same errors as :func:`conv2d`.

    Examples
    --------
    >>> conv_output_shape((1, 3, 7, 7), (1, 3, 3, 3), stride=2)
    (1, 1, 3, 3)
    >>> conv_output_shape((1, 3, 32, 32), (10, 3, 5, 5), padding=2)
    (1, 10, 32, 32)
    """
    op = "conv_output_shape"
    x_shape = shape_arg(op, "x_shape", x_shape)
    w_shape = shape_arg(op, "w_shape", w_shape, 4, "(C_out, C_in/groups, kH, kW)")
    return _geometry(op, x_shape, w_shape, stride, padding, dilation, groups)[4]


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, return_state=False):
    """2-D convolution (cross-correlation, as every deep-learning framework computes it).

    .. math::

        y[n, c_o, h, w] = b[c_o] + \\sum_{c_l < C_{in}/G} \\sum_{i < k_H} \\sum_{j < k_W}
            w[c_o, c_l, i, j]\\; \\tilde x[n,\\, g\\,C_{in}/G + c_l,\\; h s_h + i d_h,\\; w s_w + j d_w]

    where ``g = c_o // (C_out/G)`` is the group of output channel ``c_o`` and ``x~`` is ``x``
    zero-padded by ``(top, bottom, left, right)``. Output size per axis (PyTorch's rule):
    ``H_out = floor((H + pad_top + pad_bottom - d_h*(kH - 1) - 1) / s_h) + 1``.

    Parameters
    ----------
    x : ndarray, shape (N, C_in, H, W), float32 or float64
    w : ndarray, shape (C_out, C_in/groups, kH, kW), same dtype as ``x``
    b : ndarray, shape (C_out,), optional
    stride : int or (int, int)
    padding : int, (ph, pw), ((top, bottom), (left, right)), 'valid' or 'same'
        'same' follows TensorFlow's rule at any stride: ``H_out = ceil(H / s_h)``, total padding
        ``max((H_out - 1)*s_h + d_h*(kH - 1) + 1 - H, 0)``, the smaller half on top/left.
    dilation : int or (int, int)
    groups : int
        Splits the channels into ``groups`` independent convolutions; ``groups == C_in`` is a
        depthwise convolution.
    return_state : bool
        Also return the state :func:`conv2d_backward` needs.

    Returns
    -------
    y : ndarray, shape (N, C_out, H_out, W_out), dtype of ``x``
    state : Conv2dState
        Only when ``return_state`` is true.

    Raises
    ------
    TypeError
        Non-array or non-float inputs, mismatched dtypes, non-int stride/padding/dilation.
    ValueError
        Wrong ndim, channel mismatch, groups not dividing the channels, bias not ``(C_out,)``,
        stride or dilation below 1, kernel larger than the padded input.

    Notes
    -----
    im2col + GEMM as in Chellapilla, Puri & Simard, "High Performance Convolutional Neural
    Networks for Document Processing" (2006); a 1x1 fast path; a direct kernel for depthwise
    and narrow grouped convolutions; the batch is processed in chunks so the column buffer
    stays under ``corenet.config.get_workspace_bytes()``. Shape arithmetic: Dumoulin & Visin,
    "A guide to convolution arithmetic for deep learning" (2016).

    Examples
    --------
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> conv2d(x, np.ones((1, 1, 2, 2)), stride=2)[0, 0]
    array([[10., 18.],
           [42., 50.]])
    """
    op = "conv2d"
    x = as_float_array(op, "x", x)
    w = as_float_array(op, "w", w)
    stride, pads, dilation, groups, y_shape = _geometry(op, x.shape, w.shape, stride, padding, dilation, groups)
    if b is not None:
        b = as_float_array(op, "b", b)
        if b.shape != (w.shape[0],):
            raise ValueError(
                f"{op}: bias must have shape ({w.shape[0]},) (one per output channel), received b.shape={b.shape}. "
                f"Received: x.shape={x.shape}, w.shape={w.shape}"
            )
    same_dtype(op, x=x, w=w, b=b)
    y = backend_for(x).conv.conv2d_forward(x, w, b, stride, pads, dilation, groups)
    if not return_state:
        return y
    return y, Conv2dState(x, w, b is not None, stride, pads, dilation, groups, y_shape)


def conv2d_backward(gy, state, need_gx=True, need_gw=True, need_gb=True):
    """Gradients of :func:`conv2d` with respect to its input, weight and bias.

    .. math::

        g_b[c_o] = \\sum_{n,h,w} g_y[n, c_o, h, w], \\qquad
        g_w[c_o, c_l, i, j] = \\sum_{n,h,w} g_y[n, c_o, h, w]\\; \\tilde x[n, c, h s_h + i d_h, w s_w + j d_w],

    and ``gx`` is the adjoint of the forward map: every ``gy[n, c_o, h, w] * w[c_o, c_l, i, j]``
    added to the input pixel that product read (contributions landing in the padding dropped).

    Parameters
    ----------
    gy : ndarray, shape (N, C_out, H_out, W_out), dtype of the forward input
    state : Conv2dState
        From ``conv2d(..., return_state=True)``.
    need_gx, need_gw, need_gb : bool
        Compute only the gradients asked for.

    Returns
    -------
    gx : ndarray (N, C_in, H, W) or None
    gw : ndarray (C_out, C_in/groups, kH, kW) or None
    gb : ndarray (C_out,) or None
        ``None`` also when the forward pass had no bias.
    """
    op = "conv2d_backward"
    check_state(op, state, Conv2dState, "conv2d")
    gy = as_float_array(op, "gy", gy)
    if gy.shape != state.y_shape:
        raise ValueError(f"{op}: gy must have the forward output's shape {state.y_shape}, received gy.shape={gy.shape}")
    same_dtype(op, gy=gy, x=state.x)
    need_gb = bool(need_gb) and state.has_bias
    return backend_for(gy).conv.conv2d_backward(
        state.x, state.w, gy, state.stride, state.padding, state.dilation, state.groups,
        bool(need_gx), bool(need_gw), need_gb,
    )


def _warmup(dtype) -> None:
    """Run every code path forward and backward once on tiny inputs (compiles the kernels)."""
    rng = np.random.default_rng(0)
    cases = [  # (C_in, C_out, k, stride, padding, groups): im2col+GEMM, 1x1 GEMM, direct
        (2, 3, 3, 1, 1, 1),
        (2, 3, 3, 2, "same", 1),
        (2, 3, 1, 1, 0, 1),
        (2, 2, 3, 1, 1, 2),
        (2, 2, 3, 2, 1, 2),
    ]
    for c_in, c_out, k, s, p, g in cases:
        x = rng.standard_normal((2, c_in, 5, 5)).astype(dtype)
        w = rng.standard_normal((c_out, c_in // g, k, k)).astype(dtype)
        b = np.zeros(c_out, dtype=dtype)
        y, state = conv2d(x, w, b, stride=s, padding=p, groups=g, return_state=True)
        conv2d_backward(np.ones_like(y), state)
