"""Fully connected layer: ``y = x @ w.T + b``, the ``ops`` family's ``linear_forward``/``linear_backward``
(BLAS on the CPU, split over corenet's threads when large; the 1x1 implicit GEMM on cuda).

The weight is ``(out_features, in_features)`` as in PyTorch, so its weights import unchanged.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .device import backend_for
from .validation import as_float_array, check_elements, check_state, same_dtype

__all__ = ["linear", "linear_backward", "LinearState"]


class LinearState(NamedTuple):
    """What :func:`linear_backward` needs: the input as ``(M, in)``, the weight, the bias flag, x's shape."""

    x: np.ndarray
    w: np.ndarray
    has_b: bool
    x_shape: tuple


def linear(x, w, b=None, return_state=False):
    """``y = x @ w.T + b``.

    Parameters
    ----------
    x : ndarray (..., in_features), float32 or float64 (usually (N, in_features))
    w : ndarray (out_features, in_features), x's dtype
    b : ndarray (out_features,) of x's dtype, or None

    Returns
    -------
    y : ndarray (..., out_features), x's dtype; and the state for :func:`linear_backward` when
        ``return_state``.
    """
    op = "linear"
    x = as_float_array(op, "x", x)
    w = as_float_array(op, "w", w, ndim=2)
    if b is not None:
        b = as_float_array(op, "b", b, ndim=1)
    same_dtype(op, x=x, w=w, b=b)
    shape = tuple(x.shape)  # device arrays' shapes (the simulator's) take no negative indices
    if not shape or shape[-1] != w.shape[1]:
        raise ValueError(f"{op}: x has {shape[-1] if shape else 0} input features but w expects {w.shape[1]}. "
                         f"Received: x.shape={x.shape}, w.shape={w.shape}")
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"{op}: b must have shape ({w.shape[0]},), received b.shape={b.shape}")
    check_elements(op, shape[:-1] + (w.shape[0],))
    x2 = x.reshape(int(np.prod(shape[:-1])), w.shape[1])  # (M, in); -1 is ambiguous when in == 0
    y = backend_for(x2).ops.linear_forward(x2, w, b).reshape(shape[:-1] + (w.shape[0],))
    if not return_state:
        return y
    return y, LinearState(x2, w, b is not None, shape)


def linear_backward(gy, state, need_gx=True, need_gw=True, need_gb=True):
    """Gradients of :func:`linear`: ``gx = gy @ w``, ``gw = gy.T @ x``, ``gb = sum(gy, axis=0)``.

    Returns ``(gx, gw, gb)``, each None when not asked for (``gb`` also when there is no bias).
    """
    op = "linear_backward"
    check_state(op, state, LinearState, "linear")
    x2, w, has_b = state.x, state.w, state.has_b
    gy = as_float_array(op, "gy", gy)
    expected = state.x_shape[:-1] + (w.shape[0],)
    if tuple(gy.shape) != expected:
        raise ValueError(f"{op}: gy must have the forward output's shape {expected}, received gy.shape={gy.shape}")
    same_dtype(op, gy=gy, x=x2)
    gy2 = gy.reshape(x2.shape[0], w.shape[0])  # (M, out); -1 is ambiguous when out == 0
    gx, gw, gb = backend_for(gy2).ops.linear_backward(x2, w, gy2, bool(need_gx), bool(need_gw),
                                                      bool(need_gb and has_b))
    gx = gx.reshape(state.x_shape) if need_gx else None
    return gx, (gw if need_gw else None), (gb if need_gb and has_b else None)


def _warmup(dtype):
    """Nothing to compile: linear runs on BLAS."""
