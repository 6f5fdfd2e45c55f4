"""Cython CPU activations, dropout and softmax: the kernels of ``corenet/_ext/act.pyx`` and ``act_mobile.pyx``
(relu6, hardsigmoid, hardswish, silu, drop path, channel shuffle).

Same names, signatures and return values as ``corenet/kernels/numba_cpu/act.py``: the output is
allocated by the caller, passed last, filled and returned. Each wrapper adds the thread count:
``config.get_num_threads()``, or one thread for work too small to be worth waking a second one
(``corenet._ext.threads_for``, the rule of the Numba backend's ``@sized``; ``cost`` is the work
per element, ~8 for a kernel that evaluates exp, erf or tanh).
"""

from __future__ import annotations

from ..._ext import act as _act
from ..._ext import act_mobile as _mobile
from ..._ext import threads_for

__all__ = [
    "relu_forward",
    "relu_backward",
    "leaky_relu_forward",
    "leaky_relu_backward",
    "elu_forward",
    "elu_backward",
    "gelu_forward",
    "gelu_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "tanh_forward",
    "tanh_backward",
    "dropout_forward",
    "dropout_backward",
    "softmax_forward",
    "softmax_backward",
    "relu6_forward",
    "relu6_backward",
    "hardsigmoid_forward",
    "hardsigmoid_backward",
    "hardswish_forward",
    "hardswish_backward",
    "silu_forward",
    "silu_backward",
    "drop_path_forward",
    "drop_path_backward",
    "channel_shuffle",
]


def relu_forward(x, y):
    _act.relu_forward(x, y, threads_for(x.size, 1))
    return y


def relu_backward(gy, y, gx):
    _act.relu_backward(gy, y, gx, threads_for(gy.size, 1))
    return gx


def leaky_relu_forward(x, slope, y):
    _act.leaky_relu_forward(x, slope, y, threads_for(x.size, 1))
    return y


def leaky_relu_backward(gy, x, slope, gx):
    _act.leaky_relu_backward(gy, x, slope, gx, threads_for(gy.size, 1))
    return gx


def elu_forward(x, alpha, scale, y):
    """``scale * (x if x > 0 else alpha * (exp(x) - 1))`` (SELU is ELU with fixed alpha, scale)."""
    _act.elu_forward(x, alpha, scale, y, threads_for(x.size, 8))
    return y


def elu_backward(gy, x, alpha, scale, gx):
    _act.elu_backward(gy, x, alpha, scale, gx, threads_for(gy.size, 8))
    return gx


def gelu_forward(x, tanh_approx, y):
    _act.gelu_forward(x, tanh_approx, y, threads_for(x.size, 8))
    return y


def gelu_backward(gy, x, tanh_approx, gx):
    _act.gelu_backward(gy, x, tanh_approx, gx, threads_for(gy.size, 8))
    return gx


def sigmoid_forward(x, y):
    _act.sigmoid_forward(x, y, threads_for(x.size, 8))
    return y


def sigmoid_backward(gy, y, gx):
    _act.sigmoid_backward(gy, y, gx, threads_for(gy.size, 1))
    return gx


def tanh_forward(x, y):
    _act.tanh_forward(x, y, threads_for(x.size, 8))
    return y


def tanh_backward(gy, y, gx):
    _act.tanh_backward(gy, y, gx, threads_for(gy.size, 1))
    return gx


def dropout_forward(x, keep, scale, y):
    """``y = x * scale`` where ``keep`` (uint8) is 1, else 0."""
    _act.dropout_forward(x, keep, scale, y, threads_for(x.size, 1))
    return y


def dropout_backward(gy, keep, scale, gx):
    _act.dropout_backward(gy, keep, scale, gx, threads_for(gy.size, 1))
    return gx


def softmax_forward(x, log, y):
    """Softmax (or log-softmax when ``log``) over axis 1 of ``x (P, K, Q)``."""
    _act.softmax_forward(x, log, y, threads_for(x.size, 8))
    return y


def softmax_backward(gy, y, log, gx):
    """softmax: ``gx = y * (gy - sum_k gy*y)``; log-softmax: ``gx = gy - exp(y) * sum_k gy``."""
    _act.softmax_backward(gy, y, log, gx, threads_for(gy.size, 8))
    return gx


def relu6_forward(x, y):
    _mobile.relu6_forward(x, y, threads_for(x.size, 1))
    return y


def relu6_backward(gy, y, gx):
    _mobile.relu6_backward(gy, y, gx, threads_for(gy.size, 1))
    return gx


def hardsigmoid_forward(x, y):
    _mobile.hardsigmoid_forward(x, y, threads_for(x.size, 1))
    return y


def hardsigmoid_backward(gy, x, gx):
    _mobile.hardsigmoid_backward(gy, x, gx, threads_for(gy.size, 1))
    return gx


def hardswish_forward(x, y):
    _mobile.hardswish_forward(x, y, threads_for(x.size, 1))
    return y


def hardswish_backward(gy, x, gx):
    _mobile.hardswish_backward(gy, x, gx, threads_for(gy.size, 1))
    return gx


def silu_forward(x, y):
    _mobile.silu_forward(x, y, threads_for(x.size, 8))
    return y


def silu_backward(gy, x, gx):
    _mobile.silu_backward(gy, x, gx, threads_for(gy.size, 8))
    return gx


def drop_path_forward(x, keep, scale, y):
    """``y[n] = x[n] * scale`` where ``keep[n]`` (uint8) is 1, else 0; ``x (N, L)``."""
    _mobile.drop_path_forward(x, keep, scale, y, threads_for(x.size, 1))
    return y


def drop_path_backward(gy, keep, scale, gx):
    _mobile.drop_path_forward(gy, keep, scale, gx, threads_for(gy.size, 1))  # the same scaling
    return gx


def channel_shuffle(x, y):
    """``y[n, b, a, :] = x[n, a, b, :]`` for ``x (N, A, B, L)``, ``y (N, B, A, L)``."""
    _mobile.channel_shuffle(x, y, threads_for(x.size, 1))
    return y
