"""Upsampling (nearest and bilinear) with PyTorch's coordinate rules, forward and backward.

Design
------
Resampling is separable: each output row reads one (nearest) or two (bilinear) input rows with
fixed weights, and each output column likewise. This module turns the arguments into those
per-axis tables once per call (``_axis_table``, PyTorch's arithmetic in PyTorch's precision), and
the ``resample`` kernel family gathers (forward) and scatter-adds (backward) with them; see
``corenet/kernels/numba_cpu/resample.py`` for the contract.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..geometry import MAX_INT, is_int
from .device import backend_for, empty
from .validation import as_float_array, check_elements, check_gy, check_state, choice, flag, real, shape_arg

__all__ = ["upsample", "upsample_backward", "upsample_output_shape", "UpsampleState"]

MODES = ("nearest", "bilinear")


class UpsampleState(NamedTuple):
    """What :func:`upsample_backward` needs: the shapes, the mode and the per-axis tables."""

    x_shape: tuple
    y_shape: tuple
    dtype: np.dtype
    mode: str
    rows: tuple  # nearest: (ih,); bilinear: (h0, h1, lh)
    cols: tuple


def _sizes(op, x_shape, size, scale_factor):
    """``(out_h, out_w, scale_h, scale_w)``: the output size and the scale factors as given (or None)."""
    if len(x_shape) != 4:
        raise ValueError(f"{op}: x must be 4-D (N, C, H, W), received x.shape={tuple(x_shape)}")
    H, W = x_shape[2:]
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{op}: give exactly one of size and scale_factor, received size={size!r}, "
                         f"scale_factor={scale_factor!r}")
    if size is not None:
        if is_int(size):
            size = (size, size)
        if not (isinstance(size, (tuple, list)) and len(size) == 2 and all(is_int(s) for s in size)):
            raise TypeError(f"{op}: size must be an int or a pair of ints (the output size), received {size!r}")
        if min(size) < 1 or max(size) > MAX_INT:
            raise ValueError(f"{op}: size must be in [1, 2**31 - 1], received {tuple(size)}")
        return int(size[0]), int(size[1]), None, None
    sf = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor, scale_factor)
    if len(sf) != 2:
        raise TypeError(f"{op}: scale_factor must be a number or a pair of numbers, received {scale_factor!r}")
    sf = tuple(real(op, "scale_factor", s) for s in sf)
    if min(sf) <= 0:
        raise ValueError(f"{op}: scale_factor must be > 0, received {scale_factor!r}")
    out = (math.floor(H * sf[0]), math.floor(W * sf[1]))  # PyTorch: floor(in * scale), in double
    if min(out) < 1 or max(out) > MAX_INT:
        raise ValueError(f"{op}: scale_factor {scale_factor!r} gives an output of {out[0]}x{out[1]} for an input of "
                         f"{H}x{W}; every side must be in [1, 2**31 - 1]")
    return out[0], out[1], sf[0], sf[1]


def upsample_output_shape(x_shape, size=None, scale_factor=None) -> tuple[int, int, int, int]:
    """``(N, C, H_out, W_out)`` of :func:`upsample`: ``size``, or ``floor(H * scale_factor)``.

    Examples
    --------
    >>> upsample_output_shape((1, 3, 5, 4), scale_factor=1.5)
    (1, 3, 7, 6)
    """
    op = "upsample_output_shape"
    x_shape = shape_arg(op, "x_shape", x_shape)
    ho, wo, _, _ = _sizes(op, x_shape, size, scale_factor)
    return (*x_shape[:2], ho, wo)


def _axis_table(size, out, scale_factor, mode, align_corners, dtype):
    """One axis: ``(idx,)`` for nearest, ``(i0, i1, weights (out, 2))`` for bilinear.

    PyTorch's rules (``F.interpolate``, ``recompute_scale_factor=None``): ``scale = 1/scale_factor``
    when a scale factor is given, else ``in/out``; an unchanged size copies. Nearest:
    ``src = min(floor(dst * scale), in - 1)`` in float32 (as PyTorch computes it for every dtype).
    Bilinear, in x's precision: ``src = dst * (in - 1)/(out - 1)`` with ``align_corners``, else
    ``max(scale*(dst + 0.5) - 0.5, 0)``; ``i0 = min(floor(src), in - 1)``, ``i1 = min(i0 + 1, in - 1)``,
    ``lambda = clip(src - i0, 0, 1)`` and weights ``(1 - lambda, lambda)``.
    """
    dst = np.arange(out)
    if mode == "nearest":
        if out == size:
            idx = dst
        elif out == 2 * size:
            idx = dst >> 1
        else:
            f = np.float32
            scale = f(1.0 / scale_factor) if scale_factor else f(size) / f(out)
            idx = np.minimum(np.floor(dst.astype(f) * scale).astype(np.int64), size - 1)
        return (np.ascontiguousarray(idx, np.int64),)
    t = np.dtype(dtype).type
    if out == size:
        i0, lam = dst, np.zeros(out, dtype)
    else:
        if align_corners:
            scale = t(size - 1) / t(out - 1) if out > 1 else t(0)
            src = scale * dst.astype(dtype)
        else:
            scale = t(1.0 / scale_factor) if scale_factor else t(size) / t(out)
            src = np.maximum(scale * (dst.astype(dtype) + t(0.5)) - t(0.5), t(0))
        i0 = np.minimum(np.floor(src).astype(np.int64), size - 1)
        lam = np.clip(src - i0.astype(dtype), t(0), t(1)).astype(dtype)
    i1 = np.minimum(i0 + 1, size - 1) if out != size else i0
    weights = np.stack([t(1) - lam, lam], axis=1).astype(dtype)
    return np.ascontiguousarray(i0, np.int64), np.ascontiguousarray(i1, np.int64), np.ascontiguousarray(weights)


def upsample(x, size=None, scale_factor=None, mode="nearest", align_corners=None, return_state=False):
    """Upsample (or resize) the spatial axes of ``x``, as PyTorch's ``F.interpolate`` / ``nn.Upsample``.

    Each output pixel ``(oh, ow)`` reads source coordinates computed per axis:

    - ``'nearest'``: ``src = min(floor(dst * scale), in - 1)`` with ``scale = 1/scale_factor`` when
      ``scale_factor`` is given (PyTorch's ``recompute_scale_factor=None``), else ``in/out``;
    - ``'bilinear'``: ``src = dst * (in - 1)/(out - 1)`` with ``align_corners=True``; otherwise the
      half-pixel rule ``src = max(scale*(dst + 0.5) - 0.5, 0)`` (clamped at 0 as PyTorch does), and
      ``y`` interpolates linearly between rows ``floor(src)`` and ``floor(src) + 1`` (clamped to the
      input), likewise along columns.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32 or float64
    size : int or (int, int), optional
        The output size ``(H_out, W_out)`` (as in PyTorch, not Keras's factor).
    scale_factor : float or (float, float), optional
        ``H_out = floor(H * scale_factor)``. Exactly one of ``size`` and ``scale_factor``.
    mode : 'nearest' or 'bilinear'
    align_corners : bool or None
        Bilinear only (None means False); must stay None for 'nearest' (PyTorch's rule).
    return_state : bool

    Returns
    -------
    y : ndarray, shape (N, C, H_out, W_out), dtype of ``x``
    state : UpsampleState, only when ``return_state`` is true

    Examples
    --------
    >>> upsample(np.array([[[[1.0, 2.0]]]]), scale_factor=2)[0, 0]
    array([[1., 1., 2., 2.],
           [1., 1., 2., 2.]])
    >>> upsample(np.array([[[[0.0, 1.0]]]]), size=(1, 4), mode="bilinear")[0, 0, 0]
    array([0.  , 0.25, 0.75, 1.  ])
    """
    op = "upsample"
    x = as_float_array(op, "x", x)
    ho, wo, sh, sw = _sizes(op, x.shape, size, scale_factor)
    mode = choice(op, "mode", mode, MODES)
    if align_corners is not None:
        align_corners = flag(op, "align_corners", align_corners)
        if mode == "nearest":
            raise ValueError(f"{op}: align_corners can only be set with mode='bilinear', received "
                             f"align_corners={align_corners} with mode='nearest'")
    N, C, H, W = x.shape
    if min(C, H, W) < 1:
        raise ValueError(f"{op}: channels, height and width must be >= 1, received x.shape={x.shape}")
    y_shape = (N, C, ho, wo)
    check_elements(op, y_shape)
    rows = _axis_table(H, ho, sh, mode, bool(align_corners), x.dtype)
    cols = _axis_table(W, wo, sw, mode, bool(align_corners), x.dtype)
    y = empty(y_shape, x.dtype, x)
    k = backend_for(x).resample
    if mode == "nearest":
        k.nearest_forward(x, rows[0], cols[0], y)
    else:
        k.bilinear_forward(x, *rows, *cols, y)
    if not return_state:
        return y
    return y, UpsampleState(tuple(x.shape), y_shape, x.dtype, mode, rows, cols)


def upsample_backward(gy, state):
    """Gradient of :func:`upsample`: each ``gy[n, c, oh, ow]`` added back to the input pixels that
    output read, times their interpolation weights (a scatter-add, one plane per thread).

    Parameters
    ----------
    gy : ndarray, shape (N, C, H_out, W_out)
    state : UpsampleState from ``upsample(..., return_state=True)``

    Returns
    -------
    gx : ndarray, shape (N, C, H, W)
    """
    op = "upsample_backward"
    check_state(op, state, UpsampleState, "upsample")
    gy = as_float_array(op, "gy", gy)
    check_gy(op, gy, state.y_shape, state.dtype)
    gx = empty(state.x_shape, gy.dtype, gy)
    k = backend_for(gy).resample
    if state.mode == "nearest":
        k.nearest_backward(gy, state.rows[0], state.cols[0], gx)
    else:
        k.bilinear_backward(gy, *state.rows, *state.cols, gx)
    return gx


def _warmup(dtype) -> None:
    """Both modes forward and backward once (compiles the kernels for ``dtype``)."""
    x = np.linspace(-1, 1, 2 * 2 * 3 * 3).astype(dtype).reshape(2, 2, 3, 3)
    for mode in MODES:
        y, st = upsample(x, scale_factor=2, mode=mode, return_state=True)
        upsample_backward(np.ones_like(y), st)
