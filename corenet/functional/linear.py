"""Fully connected layer: ``y = x @ w.T + b`` through BLAS (numpy ``matmul``).

The weight is ``(out_features, in_features)`` as in PyTorch, so its weights import unchanged.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import _blas
from ..config import get_num_threads
from .device import cuda_module
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
    if isinstance(x2, np.ndarray):
        y = _blas.matmul(x2, w.T, threads=get_num_threads())  # (M, out)
        if b is not None:
            y += b
    else:  # device arrays: the 1x1 implicit GEMM of the cuda backend
        y = cuda_module("ops").linear_forward(x2, w, b)
    y = y.reshape(shape[:-1] + (w.shape[0],))
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
    if not isinstance(gy2, np.ndarray):
        gx, gw, gb = cuda_module("ops").linear_backward(x2, w, gy2, bool(need_gx), bool(need_gw),
                                                        bool(need_gb and has_b))
        gx = gx.reshape(state.x_shape) if need_gx else None
        return gx, (gw if need_gw else None), (gb if need_gb and has_b else None)
    nt = get_num_threads()
    gx = _blas.matmul(gy2, w, threads=nt).reshape(state.x_shape) if need_gx else None
    gw = _blas.matmul(gy2.T, x2, threads=nt) if need_gw else None
    gb = gy2.sum(axis=0) if (need_gb and has_b) else None
    return gx, gw, gb


def _warmup(dtype):
    """Nothing to compile: linear runs on BLAS."""
