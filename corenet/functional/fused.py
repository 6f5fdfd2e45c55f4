"""Fused ops: two differentiable ops computed in one pass over memory.

``corenet.graph`` substitutes these for a ``BatchNorm2d`` followed by a ``ReLU`` or a ``ReLU6``
(MobileNetV2's) and for an ``Add`` followed by a ``ReLU`` when no other layer reads the
intermediate (ResNet's two per block); they can be called directly too. Each equals the
composition of the unfused ops (the kernels of the ``fused`` family repeat the unfused arithmetic;
forward bit for bit, gradients up to the grouping of float64 partial sums; see
``corenet/kernels/numba_cpu/fused.py``): a batch-norm output is never stored, and the activation's
gradient (``gy * (y > 0)``, ``gy * (0 < y < 6)``) is formed in registers inside the batch-norm
backward. Device arrays take the unfused ops.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .act import relu, relu_backward
from .act_mobile import relu6, relu6_backward
from .device import backend_for, is_device
from .norm import (
    BatchNormState,
    _backward_coefficients,
    _check_gy,
    _forward_coefficients,
    _want_params,
    batch_norm,
    batch_norm_backward,
)
from .validation import as_float_array, check_state, flag, same_dtype

__all__ = ["batch_norm_relu", "batch_norm_relu_backward", "BatchNormReluState", "add_relu", "add_relu_backward",
           "AddReluState", "fold_batch_norm", "batch_norm_relu6", "batch_norm_relu6_backward", "BatchNormRelu6State"]


class BatchNormReluState(NamedTuple):
    """What :func:`batch_norm_relu_backward` needs: the batch norm's state and the output ``y``
    (``(N, C, L)``; its sign is the ReLU's gradient), or the two unfused states (device arrays)."""

    bn: object
    y: object
    relu: object = None


class AddReluState(NamedTuple):
    """What :func:`add_relu_backward` needs: the output (flat) and its shape."""

    y: object
    shape: tuple
    relu: object = None


class BatchNormRelu6State(NamedTuple):
    """What :func:`batch_norm_relu6_backward` needs, as :class:`BatchNormReluState` (``0 < y < 6``
    is the ReLU6's gradient)."""

    bn: object
    y: object
    relu: object = None


# (activation, its backward, the fused kernels' prefix, the state) of each fused batch norm
_ACTS = {"relu": (relu, relu_backward, "bn_relu", BatchNormReluState),
         "relu6": (relu6, relu6_backward, "bn_relu6", BatchNormRelu6State)}


def batch_norm_relu(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5,
                    return_state=False):
    """``relu(batch_norm(x, ...))`` in one pass: arguments and results as :func:`batch_norm`."""
    return _bn_act("relu", x, gamma, beta, running_mean, running_var, training, momentum, eps, return_state)


def batch_norm_relu_backward(gy, state, need_gx=True, need_gparams=True):
    """Gradients of :func:`batch_norm_relu`: those of :func:`batch_norm` for ``gy * (y > 0)``."""
    return _bn_act_backward("relu", gy, state, need_gx, need_gparams)


def batch_norm_relu6(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5,
                     return_state=False):
    """``relu6(batch_norm(x, ...))`` in one pass: arguments and results as :func:`batch_norm`."""
    return _bn_act("relu6", x, gamma, beta, running_mean, running_var, training, momentum, eps, return_state)


def batch_norm_relu6_backward(gy, state, need_gx=True, need_gparams=True):
    """Gradients of :func:`batch_norm_relu6`: those of :func:`batch_norm` for ``gy * (0 < y < 6)``."""
    return _bn_act_backward("relu6", gy, state, need_gx, need_gparams)


def _bn_act(act, x, gamma, beta, running_mean, running_var, training, momentum, eps, return_state):
    fn, _, prefix, state_type = _ACTS[act]
    op = f"batch_norm_{act}"
    training = flag(op, "training", training)
    if is_device(x) or getattr(x, "ndim", 0) != 4:
        out = batch_norm(x, gamma, beta, running_mean, running_var, training, momentum, eps, return_state)
        if not return_state:
            return fn(out)
        y, act_state = fn(out[0], return_state=True)
        return y, state_type(out[1], None, act_state)
    state, mean, scale, shift = _forward_coefficients(op, x, gamma, beta, running_mean, running_var, training,
                                                      momentum, eps)
    y3 = getattr(backend_for(x).fused, prefix + "_forward")(state.x, mean, scale, shift, np.empty_like(state.x))
    y = y3.reshape(state.shape)
    return (y, state_type(state, y3)) if return_state else y


def _bn_act_backward(act, gy, state, need_gx, need_gparams):
    _, fn_backward, prefix, state_type = _ACTS[act]
    op = f"batch_norm_{act}_backward"
    check_state(op, state, state_type, f"batch_norm_{act}")
    if state.relu is not None:  # the unfused pair (device arrays, 2-D input)
        return batch_norm_backward(fn_backward(gy, state.relu), state.bn, need_gx, need_gparams)
    bn = state.bn
    check_state(op, bn, BatchNormState, f"batch_norm_{act}")
    gy3 = _check_gy(op, gy, bn)
    k = backend_for(gy3).fused
    sums = None
    if _want_params(bn, need_gparams) or (need_gx and bn.batch_stats):
        sums = getattr(k, prefix + "_backward_reduce")(gy3, state.y, bn.x, bn.mean)
    a, b, d, mean, params = _backward_coefficients(bn, sums, need_gparams, backend_for(gy3).norm)
    gx = None
    if need_gx:
        if bn.batch_stats:
            gx = getattr(k, prefix + "_backward_gx")(gy3, state.y, bn.x, mean, a, b, d, np.empty_like(gy3))
        else:
            gx = getattr(k, prefix + "_scale_gx")(gy3, state.y, a, np.empty_like(gy3))
        gx = gx.reshape(bn.shape)
    return (gx, *params)


def add_relu(a, b, return_state=False):
    """``relu(a + b)`` in one pass, for two arrays of one shape and dtype (a residual connection's end).

    Backward: :func:`add_relu_backward` gives ``gy * (y > 0)``, the gradient of both inputs."""
    op = "add_relu"
    if is_device(a) or is_device(b):
        y, relu_state = relu(backend_for(a).ops.add(a, b), return_state=True)
        return (y, AddReluState(None, y.shape, relu_state)) if return_state else y
    a = as_float_array(op, "a", a)
    b = as_float_array(op, "b", b)
    if a.shape != b.shape:
        raise ValueError(f"{op}: a and b must have one shape, received a.shape={a.shape}, b.shape={b.shape}")
    same_dtype(op, a=a, b=b)
    y = backend_for(a).fused.add_relu_forward(a.reshape(-1), b.reshape(-1), np.empty(a.size, a.dtype))
    return (y.reshape(a.shape), AddReluState(y, a.shape)) if return_state else y.reshape(a.shape)


def add_relu_backward(gy, state):
    """Gradient of :func:`add_relu` with respect to either input: ``gy * (y > 0)``."""
    op = "add_relu_backward"
    check_state(op, state, AddReluState, "add_relu")
    if state.relu is not None:
        return relu_backward(gy, state.relu)
    gy = as_float_array(op, "gy", gy)
    if gy.shape != state.shape:
        raise ValueError(f"{op}: gy must have the forward output's shape {state.shape}, received gy.shape={gy.shape}")
    same_dtype(op, gy=gy, y=state.y)
    return backend_for(gy).act.relu_backward(gy.reshape(-1), state.y, np.empty(gy.size, gy.dtype)).reshape(state.shape)


def fold_batch_norm(w, b, gamma, beta, running_mean, running_var, eps=1e-5):
    """Weights and bias of one convolution equal to it followed by an eval-mode batch norm.

    ``conv(x, w', b') == batch_norm(conv(x, w, b), gamma, beta, mean, var, training=False)`` with
    ``s = gamma / sqrt(var + eps)``, ``w'[o] = w[o] * s[o]`` and ``b' = (b - mean) * s + beta``
    (computed in float64, returned in w's dtype; equal to the unfolded pair up to rounding).

    Parameters
    ----------
    w : ndarray (C_out, ...) ; b : ndarray (C_out,) or None (zero bias)
    gamma, beta : ndarray (C_out,) or None (no affine parameters)
    running_mean, running_var : ndarray (C_out,)
    eps : float

    Returns
    -------
    (w', b') numpy arrays, or None for device arrays (the caller keeps the unfolded pair).
    """
    op = "fold_batch_norm"
    if is_device(w) or is_device(running_mean):
        return None
    w = as_float_array(op, "w", w)
    C = w.shape[0]
    for name, v in (("b", b), ("gamma", gamma), ("beta", beta), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if v is not None and (not isinstance(v, np.ndarray) or v.shape != (C,)):
            raise ValueError(f"{op}: {name} must be a ({C},) array, received "
                             f"{getattr(v, 'shape', type(v).__name__)}")
    s = np.sqrt(running_var + eps, dtype=np.float64)
    np.divide(1.0 if gamma is None else gamma, s, out=s)
    shift = np.subtract(0.0 if b is None else b, running_mean, dtype=np.float64)
    shift *= s
    if beta is not None:
        shift += beta
    w2 = np.multiply(w, s.reshape((C,) + (1,) * (w.ndim - 1)), dtype=np.float64).astype(w.dtype)
    return w2, shift.astype(w.dtype)
