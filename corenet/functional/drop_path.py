"""Drop path (stochastic depth): whole samples of a residual branch dropped, the rest rescaled.

Huang et al., "Deep Networks with Stochastic Depth" (2016), in the per-sample form of
torchvision's ``stochastic_depth(mode="row")`` (EfficientNet, ConvNeXt, Swin): in training each
sample of the batch is zeroed with probability ``p`` and the survivors are scaled by
``1 / (1 - p)``, so the expectation is unchanged; in evaluation it is the identity. The block's
shortcut is added afterwards, outside this op.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .device import backend_for, empty
from .validation import as_float_array, check_gy, check_state, flag, positive_float

__all__ = ["drop_path", "drop_path_backward", "DropPathState"]


class DropPathState(NamedTuple):
    """What :func:`drop_path_backward` needs: the per-sample keep flags (None: identity), the scale,
    the shape and the dtype."""

    keep: object
    scale: object
    shape: tuple
    dtype: object


def drop_path(x, p, rng, training=True, return_state=False):
    """``y[n] = x[n] * keep[n] / (1 - p)`` for ``x (N, ...)``, one draw per sample.

    ``keep = rng.random(N, dtype=float32) >= p``, so the flags depend only on the state of ``rng``
    (an ``np.random.Generator``, advanced by ``N`` draws) and on the batch size, not on the dtype or
    on the array kind (device arrays get the same flags, copied over: ``N`` bytes). ``p = 1`` gives
    zeros; with ``training=False`` or ``p = 0`` the op is the identity (a copy) and draws nothing.
    A dropped sample is 0 even where ``x`` is inf or NaN (as :func:`dropout`).
    Backward: ``gx[n] = gy[n] * keep[n] / (1 - p)``.
    """
    op = "drop_path"
    x = as_float_array(op, "x", x)
    p = positive_float(op, "p", p, allow_zero=True)
    if p > 1:
        raise ValueError(f"{op}: p must be in [0, 1], received {p}")
    if len(x.shape) < 1:
        raise ValueError(f"{op}: x must have a batch axis, received a 0-d array")
    if not flag(op, "training", training) or p == 0:
        y = x.copy() if isinstance(x, np.ndarray) else x  # device arrays are never written in place
        return (y, DropPathState(None, None, tuple(x.shape), x.dtype)) if return_state else y
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{op}: rng must be an np.random.Generator, received {type(rng).__name__}")
    n = x.shape[0]
    keep = (rng.random(n, dtype=np.float32) >= np.float32(p)).view(np.uint8)
    scale = x.dtype.type(0.0 if p == 1 else 1.0 / (1.0 - p))
    x2 = x.reshape(n, math.prod(x.shape[1:]))  # (N, L)
    y = backend_for(x2).act.drop_path_forward(x2, keep, scale, empty(x2.shape, x.dtype, x)).reshape(x.shape)
    return (y, DropPathState(keep, scale, tuple(x.shape), x.dtype)) if return_state else y


def drop_path_backward(gy, state):
    """Gradient of :func:`drop_path`; ``state`` is its :class:`DropPathState`."""
    op = "drop_path_backward"
    check_state(op, state, DropPathState, "drop_path")
    gy = as_float_array(op, "gy", gy)
    check_gy(op, gy, state.shape, state.dtype)
    if state.keep is None:
        return gy.copy() if isinstance(gy, np.ndarray) else gy
    n = state.shape[0]
    g2 = gy.reshape(n, math.prod(state.shape[1:]))
    gx = backend_for(g2).act.drop_path_backward(g2, state.keep, state.scale, empty(g2.shape, gy.dtype, gy))
    return gx.reshape(state.shape)


def _warmup(dtype):
    x = np.linspace(-1, 1, 24).astype(np.dtype(dtype)).reshape(4, 3, 2)
    y, st = drop_path(x, 0.5, np.random.default_rng(0), return_state=True)
    drop_path_backward(y, st)
