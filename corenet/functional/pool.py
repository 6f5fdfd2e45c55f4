"""Pooling: max, min, average and sum over 2-D windows; global and adaptive average and max pooling.

Every op returns ``y`` or, with ``return_state=True``, ``(y, state)``; the gradient of every one
of them is ``pool2d_backward(gy, state)`` (the state says which op it came from;
``adaptive_max_pool2d_backward`` is the same for that op). Max/min pooling keeps only the argmax
(int32 flat index ``h*W + w`` into each input plane), never ``x``. ``pool_output_shape`` and
``adaptive_pool_output_shape`` give the output shapes (and raise the ops' errors) without data.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..geometry import check_padded, check_window_fits, output_hw, padding4, pair
from .device import backend_for, empty
from .validation import as_float_array, check_elements, check_state, choice, flag, positive_float, shape_arg

__all__ = [
    "pool2d",
    "pool2d_backward",
    "max_pool2d",
    "avg_pool2d",
    "min_pool2d",
    "sum_pool2d",
    "global_avg_pool2d",
    "global_max_pool2d",
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_backward",
    "pool_output_shape",
    "adaptive_pool_output_shape",
    "PoolState",
]

MODES = ("max", "min", "avg", "sum")


class PoolState(NamedTuple):
    """What ``pool2d_backward`` needs: the op, the geometry and, for max/min, the argmax (immutable)."""

    mode: str  # "max", "min", "avg", "sum", "adaptive_avg" or "adaptive_max"
    x_shape: tuple
    y_shape: tuple
    dtype: np.dtype
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    pads: tuple = (0, 0, 0, 0)  # (top, bottom, left, right)
    dilation: tuple = (1, 1)
    count_include_pad: bool = True
    divisor: float = 0.0  # > 0: fixed divisor (override, or 1 for sum); 0: counted per window
    argmax: np.ndarray | None = None  # max, min and adaptive_max: int32 (N, C, H_out, W_out)


def _geometry(op, x_shape, kernel_size, stride, padding, dilation, ceil_mode):
    """Checked ``(kernel, stride, dilation, pads, (N, C, H_out, W_out))`` of a window pooling."""
    kernel = pair(op, "kernel_size", kernel_size)
    stride = kernel if stride is None else pair(op, "stride", stride)
    dilation = pair(op, "dilation", dilation)
    ceil_mode = flag(op, "ceil_mode", ceil_mode)
    N, C, H, W = x_shape
    pads = padding4(op, padding, kernel, stride, dilation, (H, W))
    t, b, l, r = pads
    if 2 * max(t, b) > kernel[0] or 2 * max(l, r) > kernel[1]:
        raise ValueError(
            f"{op}: padding must be at most half the kernel on every side, received padding "
            f"(top, bottom, left, right)={pads} for kernel_size={kernel} (from padding={padding!r})"
        )
    check_padded(op, (H, W), pads)
    check_window_fits(op, x_shape, kernel, dilation, pads)
    if H * W >= 2**31:
        raise ValueError(f"{op}: input planes above 2**31 elements are not supported, received x.shape={x_shape}")
    Ho, Wo = output_hw(x_shape, kernel, stride, pads, dilation, ceil_mode)
    check_elements(op, (N, C, Ho, Wo))
    return kernel, stride, dilation, pads, (N, C, Ho, Wo)


def pool_output_shape(x_shape, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Output shape ``(N, C, H_out, W_out)`` of :func:`pool2d` (any mode) for an input of ``x_shape``.

    ``H_out = floor((H + top + bottom - dH*(kH-1) - 1) / sH) + 1`` (rounded up with ``ceil_mode``,
    except that the last window must start inside the input or the top padding); likewise
    ``W_out``. Raises the errors :func:`pool2d` raises for these arguments.

    Examples
    --------
    >>> pool_output_shape((1, 3, 7, 7), 3, 2)
    (1, 3, 3, 3)
    >>> pool_output_shape((1, 3, 7, 7), 3, 3, ceil_mode=True)
    (1, 3, 3, 3)
    """
    op = "pool_output_shape"
    return _geometry(op, shape_arg(op, "x_shape", x_shape), kernel_size, stride, padding, dilation, ceil_mode)[4]


def _adaptive_shape(op, x_shape, output_size):
    """Checked ``(N, C, H_out, W_out)``; an entry ``None`` of ``output_size`` keeps that input size."""
    N, C, H, W = x_shape
    if H < 1 or W < 1:
        raise ValueError(f"{op}: x needs H, W >= 1, received x.shape={x_shape}")
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        output_size = tuple(s if s is not None else d for s, d in zip(output_size, (H, W)))
    Ho, Wo = pair(op, "output_size", output_size)
    if Ho * Wo >= 2**31:
        raise ValueError(f"{op}: output planes of 2**31 elements or more are not supported, received "
                         f"output_size={(Ho, Wo)} for x.shape={x_shape}")
    check_elements(op, (N, C, Ho, Wo))
    return N, C, Ho, Wo


def adaptive_pool_output_shape(x_shape, output_size):
    """Output shape ``(N, C, H_out, W_out)`` of :func:`adaptive_avg_pool2d` / :func:`adaptive_max_pool2d`.

    ``output_size`` is an int or ``(H_out, W_out)``; an entry ``None`` keeps that input size.

    >>> adaptive_pool_output_shape((2, 3, 9, 8), (4, None))
    (2, 3, 4, 8)
    """
    op = "adaptive_pool_output_shape"
    return _adaptive_shape(op, shape_arg(op, "x_shape", x_shape), output_size)


def pool2d(x, kernel_size, stride=None, padding=0, mode="max", dilation=1, ceil_mode=False,
           count_include_pad=True, divisor_override=None, return_state=False, *, _op="pool2d"):
    """2-D max, min, average or sum pooling of an NCHW batch (PyTorch semantics).

    Output ``(oh, ow)`` pools the taps ``x[n, c, oh*sH - top + i*dH, ow*sW - left + j*dW]``,
    ``0 <= i < kH, 0 <= j < kW``, with

    ``H_out = floor((H + top + bottom - dH*(kH-1) - 1) / sH) + 1``

    (likewise ``W_out``). With ``ceil_mode`` the division rounds up, except that the last window
    must start inside the input or the top/left padding (PyTorch's rule).

    - ``max`` / ``min``: padding is -inf / +inf, so it never wins; the backward routes each
      gradient to the FIRST extremal element of its window in row-major order (ties resolved the
      same way in every backend); a NaN is extremal. A window that holds no input element (only
      possible with dilation) gives -inf / +inf and receives no gradient.
    - ``avg``: the sum of the window's input elements divided by ``divisor_override`` if given,
      else by the number of taps inside the padded input ``[-top, H + bottom)`` (zero padding
      counts, the ceil-mode overhang never does) when ``count_include_pad``, else by the number of
      taps inside the input.
    - ``sum``: the sum of the window's input elements (divisor 1, or ``divisor_override``).

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    kernel_size : int or (kH, kW)
    stride : int or (sH, sW), optional
        Defaults to ``kernel_size``.
    padding : int, (pH, pW), ((top, bottom), (left, right)), 'valid' or 'same'
        'same' follows TensorFlow: output ``ceil(H / sH)``, total padding
        ``max((H_out-1)*sH + dH*(kH-1) + 1 - H, 0)``, the smaller half on top/left. Every side
        must be ``<= kernel/2`` along its axis.
    mode : {'max', 'min', 'avg', 'sum'}
    dilation : int or (dH, dW)
    ceil_mode, count_include_pad : bool
    divisor_override : number > 0, optional
        Average/sum pooling only.
    return_state : bool
        Also return the ``PoolState`` that ``pool2d_backward`` takes.

    Returns
    -------
    y : ndarray, (N, C, H_out, W_out), dtype of ``x``
    state : PoolState, only with ``return_state=True``

    Examples
    --------
    >>> x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], np.float32)[None, None]
    >>> max_pool2d(x, 2)[0, 0]
    array([[6., 8.],
           [3., 4.]], dtype=float32)
    """
    op = _op
    x = as_float_array(op, "x", x, ndim=4)
    choice(op, "mode", mode, MODES)
    kernel, stride, dilation, pads, out_shape = _geometry(op, x.shape, kernel_size, stride, padding, dilation,
                                                          ceil_mode)
    count_include_pad = flag(op, "count_include_pad", count_include_pad)
    t, b, l, r = pads
    y = empty(out_shape, x.dtype, x)
    pool = backend_for(x).pool
    argmax = None
    divisor = 0.0
    if mode in ("max", "min"):
        if divisor_override is not None:
            raise ValueError(f"{op}: divisor_override applies to avg/sum pooling, received it with mode={mode!r}")
        argmax = empty(out_shape, np.int32, x)
        pool.extreme_pool_forward(x, y, argmax, kernel[0], kernel[1], stride[0], stride[1], t, l,
                                  dilation[0], dilation[1], mode == "min")
    else:
        if divisor_override is not None:
            divisor = positive_float(op, "divisor_override", divisor_override)
        elif mode == "sum":
            divisor = 1.0
        pool.avg_pool_forward(x, y, kernel[0], kernel[1], stride[0], stride[1], t, b, l, r,
                              dilation[0], dilation[1], count_include_pad, divisor)
    if not return_state:
        return y
    return y, PoolState(mode, x.shape, y.shape, x.dtype, kernel, stride, pads, dilation,
                        count_include_pad, divisor, argmax)


def pool2d_backward(gy, state: PoolState, *, _op="pool2d_backward"):
    """Gradient with respect to ``x`` of any pooling op of this module.

    Parameters
    ----------
    gy : ndarray, (N, C, H_out, W_out), the dtype of the forward input
    state : PoolState
        From the forward call with ``return_state=True``.

    Returns
    -------
    gx : ndarray, (N, C, H, W)
        max/min and adaptive max: ``gy`` added at each window's (bin's) argmax. avg/sum:
        ``gy / divisor`` added to every input element of the window. adaptive average:
        ``gy / bin area`` added over the bin.
    """
    op = _op
    check_state(op, state, PoolState, "pool2d")
    gy = as_float_array(op, "gy", gy, ndim=4)
    if gy.shape != state.y_shape or gy.dtype != state.dtype:
        raise ValueError(
            f"{op}: gy must match the forward output, shape {state.y_shape} dtype {state.dtype}; "
            f"received gy.shape={gy.shape}, gy.dtype={gy.dtype}"
        )
    gx = empty(state.x_shape, gy.dtype, gy)
    pool = backend_for(gy).pool
    if state.mode in ("max", "min"):
        (kh, kw), (sh, sw), (dh, dw) = state.kernel, state.stride, state.dilation
        pool.extreme_pool_backward(gy, state.argmax, gx, kh, kw, sh, sw, state.pads[0], state.pads[2], dh, dw)
    elif state.mode == "adaptive_avg":
        pool.adaptive_avg_pool_backward(gy, gx)
    elif state.mode == "adaptive_max":
        pool.adaptive_max_pool_backward(gy, state.argmax, gx)
    else:
        (kh, kw), (sh, sw), (dh, dw) = state.kernel, state.stride, state.dilation
        t, b, l, r = state.pads
        pool.avg_pool_backward(gy, gx, kh, kw, sh, sw, t, b, l, r, dh, dw, state.count_include_pad, state.divisor)
    return gx


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_state=False):
    """Max pooling: ``pool2d(..., mode='max')``; see ``pool2d`` for shapes and semantics."""
    return pool2d(x, kernel_size, stride, padding, "max", dilation, ceil_mode,
                  return_state=return_state, _op="max_pool2d")


def min_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_state=False):
    """Min pooling (padding is +inf): ``pool2d(..., mode='min')``; see ``pool2d``."""
    return pool2d(x, kernel_size, stride, padding, "min", dilation, ceil_mode,
                  return_state=return_state, _op="min_pool2d")


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, dilation=1, return_state=False):
    """Average pooling (PyTorch's ``avg_pool2d`` argument order); see ``pool2d``."""
    return pool2d(x, kernel_size, stride, padding, "avg", dilation, ceil_mode, count_include_pad,
                  divisor_override, return_state, _op="avg_pool2d")


def sum_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, divisor_override=None,
               dilation=1, return_state=False):
    """Sum pooling: the window sums (zero padding); see ``pool2d``."""
    return pool2d(x, kernel_size, stride, padding, "sum", dilation, ceil_mode, True,
                  divisor_override, return_state, _op="sum_pool2d")


def _whole_plane(op: str, x):
    x = as_float_array(op, "x", x, ndim=4)
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"{op}: x needs H, W >= 1, received x.shape={x.shape}")
    return x


def global_avg_pool2d(x, return_state=False):
    """Mean over each plane: ``(N, C, H, W) -> (N, C, 1, 1)``; backward spreads ``gy / (H*W)``."""
    x = _whole_plane("global_avg_pool2d", x)
    return pool2d(x, x.shape[2:], mode="avg", return_state=return_state, _op="global_avg_pool2d")


def global_max_pool2d(x, return_state=False):
    """Max over each plane: ``(N, C, H, W) -> (N, C, 1, 1)``; backward routes to the first max."""
    x = _whole_plane("global_max_pool2d", x)
    return pool2d(x, x.shape[2:], mode="max", return_state=return_state, _op="global_max_pool2d")


def adaptive_avg_pool2d(x, output_size, return_state=False):
    """Average pooling onto a fixed output size (PyTorch's ``adaptive_avg_pool2d``).

    Output row ``i`` of ``H_out`` averages input rows ``[floor(i*H/H_out), ceil((i+1)*H/H_out))``,
    likewise for columns; bins may overlap and ``H_out > H`` is allowed.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    output_size : int or (H_out, W_out)
        An entry ``None`` keeps that input size.
    return_state : bool

    Returns
    -------
    y : ndarray, (N, C, H_out, W_out); and the PoolState with ``return_state=True``
    """
    op = "adaptive_avg_pool2d"
    x = as_float_array(op, "x", x, ndim=4)
    y = empty(_adaptive_shape(op, x.shape, output_size), x.dtype, x)
    backend_for(x).pool.adaptive_avg_pool_forward(x, y)
    if not return_state:
        return y
    return y, PoolState("adaptive_avg", x.shape, y.shape, x.dtype)


def adaptive_max_pool2d(x, output_size, return_state=False):
    """Max pooling onto a fixed output size (PyTorch's ``adaptive_max_pool2d``).

    Output ``(i, j)`` is the maximum of input rows ``[floor(i*H/H_out), ceil((i+1)*H/H_out))`` and
    columns ``[floor(j*W/W_out), ceil((j+1)*W/W_out))``; bins may overlap and ``H_out > H`` is
    allowed. The backward routes each gradient to the FIRST maximal element of its bin in
    row-major order (PyTorch's rule for ties); a NaN is maximal and the first NaN wins (PyTorch
    takes the last NaN of a bin).

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    output_size : int or (H_out, W_out)
        An entry ``None`` keeps that input size.
    return_state : bool
        Also return the ``PoolState`` (with the int32 argmax) that the backward takes.

    Returns
    -------
    y : ndarray, (N, C, H_out, W_out), dtype of ``x``; and the PoolState with ``return_state=True``

    Examples
    --------
    >>> x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    >>> adaptive_max_pool2d(x, 2)[0, 0]
    array([[12., 14.],
           [22., 24.]], dtype=float32)
    """
    op = "adaptive_max_pool2d"
    x = as_float_array(op, "x", x, ndim=4)
    shape = _adaptive_shape(op, x.shape, output_size)
    y = empty(shape, x.dtype, x)
    argmax = empty(shape, np.int32, x)
    backend_for(x).pool.adaptive_max_pool_forward(x, y, argmax)
    if not return_state:
        return y
    return y, PoolState("adaptive_max", x.shape, y.shape, x.dtype, argmax=argmax)


def adaptive_max_pool2d_backward(gy, state: PoolState):
    """Gradient of :func:`adaptive_max_pool2d`: ``gy`` added at each bin's argmax (``pool2d_backward``)."""
    op = "adaptive_max_pool2d_backward"
    if isinstance(state, PoolState) and state.mode != "adaptive_max":
        raise ValueError(f"{op}: state comes from a {state.mode!r} pooling, expected the PoolState of "
                         f"adaptive_max_pool2d (pool2d_backward takes every pooling state)")
    return pool2d_backward(gy, state, _op=op)


def _warmup(dtype) -> None:
    """Run every pooling kernel forward and backward on a tiny input (compiles them for ``dtype``)."""
    x = np.arange(2 * 2 * 5 * 5, dtype=dtype).reshape(2, 2, 5, 5)
    for mode in MODES:
        y, st = pool2d(x, 3, 2, 1, mode, return_state=True)
        pool2d_backward(np.ones_like(y), st)
    for adaptive in (adaptive_avg_pool2d, adaptive_max_pool2d):
        y, st = adaptive(x, 2, return_state=True)
        pool2d_backward(np.ones_like(y), st)
