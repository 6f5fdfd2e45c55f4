"""Activations, softmax and dropout: forward/backward pairs on the active backend.

Every op keeps the input's shape and dtype. ``f(x, ..., return_state=True)`` returns
``(y, state)``; ``f_backward(gy, state)`` returns ``gx``. The state holds only what the
backward needs (the output for relu/sigmoid/tanh/softmax, the input for the others).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .device import backend_for, empty, empty_like, is_device
from .validation import as_float_array, check_state, choice, flag, integer, positive_float, real, same_dtype

__all__ = [
    "relu", "relu_backward", "leaky_relu", "leaky_relu_backward", "elu", "elu_backward",
    "selu", "selu_backward", "gelu", "gelu_backward", "sigmoid", "sigmoid_backward",
    "tanh", "tanh_backward", "softmax", "softmax_backward", "log_softmax", "log_softmax_backward",
    "dropout", "dropout_backward",
    "ReluState", "LeakyReluState", "EluState", "SeluState", "GeluState", "SigmoidState", "TanhState",
    "SoftmaxState", "LogSoftmaxState", "DropoutState",
]

# Klambauer et al., "Self-Normalizing Neural Networks" (2017); the constants PyTorch uses.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


# One frozen state type per op: a backward handed another op's state (or a dict) raises a TypeError
# naming both types instead of a KeyError from deep inside. ``shape`` is the forward output's shape.
class ReluState(NamedTuple):
    """What :func:`relu_backward` needs: the output (flat) and its shape."""

    y: np.ndarray
    shape: tuple


class LeakyReluState(NamedTuple):
    """What :func:`leaky_relu_backward` needs: the input (flat), the slope and the shape."""

    x: np.ndarray
    slope: np.floating
    shape: tuple


class EluState(NamedTuple):
    """What :func:`elu_backward` needs: the input (flat), ``alpha``, ``scale`` (1) and the shape."""

    x: np.ndarray
    alpha: np.floating
    scale: np.floating
    shape: tuple


class SeluState(NamedTuple):
    """What :func:`selu_backward` needs: the input (flat), SELU's ``alpha`` and ``scale``, the shape."""

    x: np.ndarray
    alpha: np.floating
    scale: np.floating
    shape: tuple


class GeluState(NamedTuple):
    """What :func:`gelu_backward` needs: the input (flat), the tanh flag and the shape."""

    x: np.ndarray
    tanh: bool
    shape: tuple


class SigmoidState(NamedTuple):
    """What :func:`sigmoid_backward` needs: the output (flat) and its shape."""

    y: np.ndarray
    shape: tuple


class TanhState(NamedTuple):
    """What :func:`tanh_backward` needs: the output (flat) and its shape."""

    y: np.ndarray
    shape: tuple


class SoftmaxState(NamedTuple):
    """What :func:`softmax_backward` needs: the output as ``(P, K, Q)`` and the original shape."""

    y: np.ndarray
    shape: tuple


class LogSoftmaxState(NamedTuple):
    """What :func:`log_softmax_backward` needs: the output as ``(P, K, Q)`` and the original shape."""

    y: np.ndarray
    shape: tuple


class DropoutState(NamedTuple):
    """What :func:`dropout_backward` needs: the keep mask (None: identity), the scale, shape and dtype."""

    keep: object
    scale: object
    shape: tuple
    dtype: np.dtype


def _flat(op, x):
    x = as_float_array(op, "x", x)
    return x, x.reshape(-1)


def _grad(op, gy, state, cls, forward, ref):
    """Check ``state`` and ``gy`` against it; ``gy`` flat and the state's reference array (x or y)."""
    check_state(op, state, cls, forward)
    gy = as_float_array(op, "gy", gy)
    if gy.shape != state.shape:
        raise ValueError(f"{op}: gy must have the forward output's shape {state.shape}, received gy.shape={gy.shape}")
    same_dtype(op, gy=gy, **{ref: getattr(state, ref)})
    return gy.reshape(-1), getattr(state, ref)


def relu(x, return_state=False):
    """``y = max(x, 0)`` (NaN propagates). Backward: ``gx = gy * (y > 0)``."""
    x, xf = _flat("relu", x)
    y = backend_for(xf).act.relu_forward(xf, empty_like(xf))
    return (y.reshape(x.shape), ReluState(y, x.shape)) if return_state else y.reshape(x.shape)


def relu_backward(gy, state):
    """Gradient of :func:`relu`; ``state`` is its :class:`ReluState`."""
    gy, y = _grad("relu_backward", gy, state, ReluState, "relu", "y")
    return backend_for(gy).act.relu_backward(gy, y, empty_like(gy)).reshape(state.shape)


def leaky_relu(x, negative_slope=0.01, return_state=False):
    """``y = x if x > 0 else negative_slope * x``. Backward: ``gy`` or ``negative_slope * gy``."""
    op = "leaky_relu"
    x, xf = _flat(op, x)
    slope = x.dtype.type(real(op, "negative_slope", negative_slope))
    y = backend_for(xf).act.leaky_relu_forward(xf, slope, empty_like(xf)).reshape(x.shape)
    return (y, LeakyReluState(xf, slope, x.shape)) if return_state else y


def leaky_relu_backward(gy, state):
    """Gradient of :func:`leaky_relu`; ``state`` is its :class:`LeakyReluState`."""
    gy, x = _grad("leaky_relu_backward", gy, state, LeakyReluState, "leaky_relu", "x")
    return backend_for(gy).act.leaky_relu_backward(gy, x, state.slope, empty_like(gy)).reshape(state.shape)


def _elu(op, cls, x, alpha, scale, return_state):
    x, xf = _flat(op, x)
    alpha, scale = x.dtype.type(alpha), x.dtype.type(scale)
    y = backend_for(xf).act.elu_forward(xf, alpha, scale, empty_like(xf)).reshape(x.shape)
    return (y, cls(xf, alpha, scale, x.shape)) if return_state else y


def _elu_backward(op, cls, forward, gy, state):
    gy, x = _grad(op, gy, state, cls, forward, "x")
    gx = backend_for(gy).act.elu_backward(gy, x, state.alpha, state.scale, empty_like(gy))
    return gx.reshape(state.shape)


def elu(x, alpha=1.0, return_state=False):
    """ELU (Clevert et al., 2015): ``y = x if x > 0 else alpha * (exp(x) - 1)``.

    Backward: ``gx = gy if x > 0 else gy * alpha * exp(x)``.
    """
    return _elu("elu", EluState, x, real("elu", "alpha", alpha), 1.0, return_state)


def elu_backward(gy, state):
    """Gradient of :func:`elu`; ``state`` is its :class:`EluState`."""
    return _elu_backward("elu_backward", EluState, "elu", gy, state)


def selu(x, return_state=False):
    """SELU (Klambauer et al., 2017): ``scale * elu(x, alpha)`` with PyTorch's constants
    ``alpha = 1.6732632423543772848``, ``scale = 1.0507009873554804934``."""
    return _elu("selu", SeluState, x, SELU_ALPHA, SELU_SCALE, return_state)


def selu_backward(gy, state):
    """Gradient of :func:`selu`; ``state`` is its :class:`SeluState`."""
    return _elu_backward("selu_backward", SeluState, "selu", gy, state)


def gelu(x, approximate="none", return_state=False):
    """GELU (Hendrycks & Gimpel, 2016), PyTorch's two definitions.

    - ``approximate="none"``: ``y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))``,
      ``dy/dx = Phi(x) + x phi(x)`` with ``phi(x) = exp(-x^2/2) / sqrt(2 pi)``;
    - ``approximate="tanh"``: ``y = 0.5 x (1 + tanh(u))``, ``u = sqrt(2/pi) (x + 0.044715 x^3)``,
      ``dy/dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2)``.
    """
    choice("gelu", "approximate", approximate, ("none", "tanh"))
    x, xf = _flat("gelu", x)
    tanh_approx = approximate == "tanh"
    y = backend_for(xf).act.gelu_forward(xf, tanh_approx, empty_like(xf)).reshape(x.shape)
    return (y, GeluState(xf, tanh_approx, x.shape)) if return_state else y


def gelu_backward(gy, state):
    """Gradient of :func:`gelu`; ``state`` is its :class:`GeluState`."""
    gy, x = _grad("gelu_backward", gy, state, GeluState, "gelu", "x")
    return backend_for(gy).act.gelu_backward(gy, x, state.tanh, empty_like(gy)).reshape(state.shape)


def sigmoid(x, return_state=False):
    """``y = 1 / (1 + exp(-x))`` (evaluated without overflow). Backward: ``gx = gy * y * (1 - y)``."""
    x, xf = _flat("sigmoid", x)
    y = backend_for(xf).act.sigmoid_forward(xf, empty_like(xf))
    return (y.reshape(x.shape), SigmoidState(y, x.shape)) if return_state else y.reshape(x.shape)


def sigmoid_backward(gy, state):
    """Gradient of :func:`sigmoid`; ``state`` is its :class:`SigmoidState`."""
    gy, y = _grad("sigmoid_backward", gy, state, SigmoidState, "sigmoid", "y")
    return backend_for(gy).act.sigmoid_backward(gy, y, empty_like(gy)).reshape(state.shape)


def tanh(x, return_state=False):
    """``y = tanh(x)``. Backward: ``gx = gy * (1 - y^2)``."""
    x, xf = _flat("tanh", x)
    y = backend_for(xf).act.tanh_forward(xf, empty_like(xf))
    return (y.reshape(x.shape), TanhState(y, x.shape)) if return_state else y.reshape(x.shape)


def tanh_backward(gy, state):
    """Gradient of :func:`tanh`; ``state`` is its :class:`TanhState`."""
    gy, y = _grad("tanh_backward", gy, state, TanhState, "tanh", "y")
    return backend_for(gy).act.tanh_backward(gy, y, empty_like(gy)).reshape(state.shape)


def _softmax(op, cls, x, axis, log, return_state):
    x = as_float_array(op, "x", x)
    axis = integer(op, "axis", axis)
    if len(x.shape) == 0:
        raise ValueError(f"{op}: x must have at least one axis, received a 0-d array")
    ndim = len(x.shape)
    if not -ndim <= axis < ndim:
        raise ValueError(f"{op}: axis {axis} is out of range for x.shape={tuple(x.shape)}")
    axis %= ndim
    P = math.prod(x.shape[:axis])
    Q = math.prod(x.shape[axis + 1:])
    x3 = x.reshape(P, x.shape[axis], Q)  # (P, K, Q), K = the softmax axis
    y = backend_for(x3).act.softmax_forward(x3, log, empty_like(x3))
    return (y.reshape(x.shape), cls(y, x.shape)) if return_state else y.reshape(x.shape)


def _softmax_backward(op, cls, forward, gy, state):
    check_state(op, state, cls, forward)
    y = state.y
    gy = as_float_array(op, "gy", gy)
    if gy.shape != state.shape:
        raise ValueError(f"{op}: gy must have the forward output's shape {state.shape}, received gy.shape={gy.shape}")
    same_dtype(op, gy=gy, y=y)
    gx = backend_for(y).act.softmax_backward(gy.reshape(y.shape), y, cls is LogSoftmaxState, empty_like(y))
    return gx.reshape(state.shape)


def softmax(x, axis=1, return_state=False):
    """``y_k = exp(x_k - max x) / sum_j exp(x_j - max x)`` along ``axis`` (an int; sums in float64).

    Backward: ``gx = y * (gy - sum_k gy_k y_k)``.
    """
    return _softmax("softmax", SoftmaxState, x, axis, False, return_state)


def softmax_backward(gy, state):
    """Gradient of :func:`softmax`; ``state`` is its :class:`SoftmaxState`."""
    return _softmax_backward("softmax_backward", SoftmaxState, "softmax", gy, state)


def log_softmax(x, axis=1, return_state=False):
    """``y_k = x_k - max x - log sum_j exp(x_j - max x)`` along ``axis`` (an int).

    Backward: ``gx = gy - exp(y) * sum_k gy_k``.
    """
    return _softmax("log_softmax", LogSoftmaxState, x, axis, True, return_state)


def log_softmax_backward(gy, state):
    """Gradient of :func:`log_softmax`; ``state`` is its :class:`LogSoftmaxState`."""
    return _softmax_backward("log_softmax_backward", LogSoftmaxState, "log_softmax", gy, state)


def dropout(x, p, rng, training=True, return_state=False):
    """Inverted dropout (Srivastava et al., 2014): ``y = x * keep / (1 - p)`` in training.

    ``keep = rng.random(x.size, dtype=float32) >= p`` (in C order), so the mask depends only on
    the state of ``rng`` (an ``np.random.Generator``, advanced by ``x.size`` draws) and on the
    shape: the same seed gives the same mask for float32 and float64 input. ``p = 1`` gives
    zeros; in eval mode (``training=False``) or with ``p = 0`` the op is the identity and draws
    nothing from ``rng``.
    Backward: ``gx = gy * keep / (1 - p)``.
    """
    op = "dropout"
    x = as_float_array(op, "x", x)
    p = positive_float(op, "p", p, allow_zero=True)
    if p > 1:
        raise ValueError(f"{op}: p must be in [0, 1], received {p}")
    if not flag(op, "training", training) or p == 0:
        y = x.copy() if isinstance(x, np.ndarray) else x  # device arrays are never written in place
        return (y, DropoutState(None, None, x.shape, x.dtype)) if return_state else y
    if isinstance(rng, np.random.Generator):
        keep = (rng.random(x.size, dtype=np.float32) >= np.float32(p)).view(np.uint8)
    elif is_device(x) and is_device(rng):  # device generator states: the mask is drawn on the GPU
        keep = backend_for(x).act.dropout_keep_mask(rng, p, x.size)
    else:
        raise TypeError(f"{op}: rng must be an np.random.Generator (or, for device arrays, the cuda dropout "
                        f"states of corenet.kernels.cuda.act.make_dropout_states), received {type(rng).__name__}")
    scale = x.dtype.type(0.0 if p == 1 else 1.0 / (1.0 - p))
    y = backend_for(x).act.dropout_forward(x.reshape(-1), keep, scale, empty(x.size, x.dtype, x)).reshape(x.shape)
    if not return_state:
        return y
    return y, DropoutState(keep, scale, x.shape, x.dtype)


def dropout_backward(gy, state):
    """Gradient of :func:`dropout`; ``state`` is its :class:`DropoutState`."""
    op = "dropout_backward"
    check_state(op, state, DropoutState, "dropout")
    gy = as_float_array(op, "gy", gy)
    if gy.shape != state.shape or gy.dtype != state.dtype:
        raise ValueError(f"{op}: gy must be {state.dtype} with shape {state.shape}, "
                         f"received gy.dtype={gy.dtype}, gy.shape={gy.shape}")
    if state.keep is None:
        return gy.copy() if isinstance(gy, np.ndarray) else gy
    gx = empty(gy.size, gy.dtype, gy)
    backend_for(gy).act.dropout_backward(gy.reshape(-1), state.keep, state.scale, gx)
    return gx.reshape(gy.shape)


def _warmup(dtype):
    dtype = np.dtype(dtype)
    x = np.linspace(-2, 2, 24).astype(dtype).reshape(2, 3, 2, 2)
    for fn, bw, kw in ((relu, relu_backward, {}), (leaky_relu, leaky_relu_backward, {}),
                       (elu, elu_backward, {}), (selu, selu_backward, {}),
                       (gelu, gelu_backward, {}), (gelu, gelu_backward, {"approximate": "tanh"}),
                       (sigmoid, sigmoid_backward, {}), (tanh, tanh_backward, {}),
                       (softmax, softmax_backward, {}), (log_softmax, log_softmax_backward, {})):
        y, st = fn(x, return_state=True, **kw)
        bw(y, st)
    y, st = dropout(x, 0.5, np.random.default_rng(0), return_state=True)
    dropout_backward(y, st)
