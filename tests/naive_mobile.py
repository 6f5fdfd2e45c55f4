"""Plain-loop oracles of the mobile blocks' ops (ReLU6, hard sigmoid/swish, SiLU, channel shuffle,
drop path), float64; re-exported by ``naive`` (``naive.relu6``), whose rules they follow."""

import math

import numpy as np

# ---------------------------------------------------------------- mobile activations, shuffle, drop path
# PyTorch's definitions element by element, with its derivative at the kinks and for NaN.


def _elementwise(f, x):
    x = np.asarray(x, np.float64)
    return np.array([f(float(v)) for v in x.reshape(-1)]).reshape(x.shape)


def relu6(x):
    return _elementwise(lambda v: v if v != v else min(max(v, 0.0), 6.0), x)


def relu6_grad(x):
    """dy/dx: 1 strictly inside (0, 6), 0 elsewhere (kinks and NaN included)."""
    return _elementwise(lambda v: 1.0 if 0 < v < 6 else 0.0, x)


def hardsigmoid(x):
    """``relu6(x + 3) / 6``: 0 up to -3, 1 from 3, ``x/6 + 1/2`` between."""
    return _elementwise(lambda v: v if v != v else min(max(v + 3, 0.0), 6.0) / 6, x)


def hardsigmoid_grad(x):
    return _elementwise(lambda v: 1 / 6 if -3 < v < 3 else 0.0, x)


def hardswish(x):
    """``x * relu6(x + 3) / 6``: NaN at -inf (``-inf * 0``), as in PyTorch."""
    return _elementwise(lambda v: v if v != v else v * min(max(v + 3, 0.0), 6.0) / 6, x)


def hardswish_grad(x):
    """0 for x <= -3, 1 for x >= 3, x/3 + 1/2 between (NaN for NaN)."""
    return _elementwise(lambda v: 0.0 if v <= -3 else (1.0 if v >= 3 else v / 3 + 0.5), x)


def _sigmoid(v):
    return 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))


def silu(x):
    return _elementwise(lambda v: v * _sigmoid(v), x)


def silu_grad(x):
    return _elementwise(lambda v: _sigmoid(v) * (1 + v * (1 - _sigmoid(v))), x)


def channel_shuffle(x, groups):
    """``y[:, j * groups + i] = x[:, i * (C // groups) + j]``."""
    C = x.shape[1]
    y = np.zeros(x.shape, np.float64)
    for i in range(groups):
        for j in range(C // groups):
            y[:, j * groups + i] = x[:, i * (C // groups) + j]
    return y


def channel_shuffle_backward(gy, groups):
    C = gy.shape[1]
    gx = np.zeros(gy.shape, np.float64)
    for i in range(groups):
        for j in range(C // groups):
            gx[:, i * (C // groups) + j] += gy[:, j * groups + i]
    return gx


def drop_path(x, keep, p):
    """Sample ``n`` times ``1/(1-p)`` where ``keep[n]``, else 0 (0 for ``p = 1``)."""
    y = np.zeros(x.shape, np.float64)
    for n in range(x.shape[0]):
        if keep[n]:
            y[n] = np.asarray(x[n], np.float64) / (1 - p)
    return y
