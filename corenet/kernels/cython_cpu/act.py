"""Cython CPU activations, dropout and softmax: the kernels of ``corenet/_ext/act.pyx``.

Same names, signatures and return values as ``corenet/kernels/numba_cpu/act.py``. The compiled
kernels fill OUT arrays; the wrappers allocate them, pass the thread count from
``corenet.config`` and return them, as the Numba kernels do.
"""

from __future__ import annotations

import numpy as np

from ..._ext import act as _act
from ...config import get_num_threads

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
]


def relu_forward(x):
    y = np.empty_like(x)
    _act.relu_forward(x, y, get_num_threads())
    return y


def relu_backward(gy, y):
    gx = np.empty_like(gy)
    _act.relu_backward(gy, y, gx, get_num_threads())
    return gx


def leaky_relu_forward(x, slope):
    y = np.empty_like(x)
    _act.leaky_relu_forward(x, slope, y, get_num_threads())
    return y


def leaky_relu_backward(gy, x, slope):
    gx = np.empty_like(gy)
    _act.leaky_relu_backward(gy, x, slope, gx, get_num_threads())
    return gx


def elu_forward(x, alpha, scale):
    """``scale * (x if x > 0 else alpha * (exp(x) - 1))`` (SELU is ELU with fixed alpha, scale)."""
    y = np.empty_like(x)
    _act.elu_forward(x, alpha, scale, y, get_num_threads())
    return y


def elu_backward(gy, x, alpha, scale):
    gx = np.empty_like(gy)
    _act.elu_backward(gy, x, alpha, scale, gx, get_num_threads())
    return gx


def gelu_forward(x, tanh_approx):
    y = np.empty_like(x)
    _act.gelu_forward(x, tanh_approx, y, get_num_threads())
    return y


def gelu_backward(gy, x, tanh_approx):
    gx = np.empty_like(gy)
    _act.gelu_backward(gy, x, tanh_approx, gx, get_num_threads())
    return gx


def sigmoid_forward(x):
    y = np.empty_like(x)
    _act.sigmoid_forward(x, y, get_num_threads())
    return y


def sigmoid_backward(gy, y):
    gx = np.empty_like(gy)
    _act.sigmoid_backward(gy, y, gx, get_num_threads())
    return gx


def tanh_forward(x):
    y = np.empty_like(x)
    _act.tanh_forward(x, y, get_num_threads())
    return y


def tanh_backward(gy, y):
    gx = np.empty_like(gy)
    _act.tanh_backward(gy, y, gx, get_num_threads())
    return gx


def dropout_forward(x, keep, scale):
    """``y = x * scale`` where ``keep`` (uint8) is 1, else 0."""
    y = np.empty_like(x)
    _act.dropout_forward(x, keep, scale, y, get_num_threads())
    return y


def dropout_backward(gy, keep, scale):
    gx = np.empty_like(gy)
    _act.dropout_backward(gy, keep, scale, gx, get_num_threads())
    return gx


def softmax_forward(x, log):
    """Softmax (or log-softmax when ``log``) over axis 1 of ``x (P, K, Q)``."""
    y = np.empty_like(x)
    _act.softmax_forward(x, log, y, get_num_threads())
    return y


def softmax_backward(gy, y, log):
    """softmax: ``gx = y * (gy - sum_k gy*y)``; log-softmax: ``gx = gy - exp(y) * sum_k gy``."""
    gx = np.empty_like(gy)
    _act.softmax_backward(gy, y, log, gx, get_num_threads())
    return gx
