"""Layers that move data without arithmetic: Flatten, Reshape, ZeroPad2d."""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..functional.validation import check_elements
from ..geometry import MAX_INT
from ..geometry import is_int as _is_int
from .base import Layer

__all__ = ["Flatten", "Reshape", "ZeroPad2d"]


class Flatten(Layer):
    """``(N, d1, d2, ...) -> (N, d1*d2*...)`` (C-order, as PyTorch's ``flatten(1)``; a view)."""

    prefix = "flatten"

    def _build(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, training=False, retain=True):
        if retain:
            self._state = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, gy, need_gx=True):
        shape, self._state = self._state, None
        if not need_gx:
            return None
        if shape is None:
            raise ValueError(f"{self.label()}: backward needs a forward with retain=True first")
        self._check_gy(gy, shape[0])
        return gy.reshape(shape)


class Reshape(Layer):
    """Reshape each sample to ``target_shape`` (no batch axis; one entry may be -1)."""

    prefix = "reshape"

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        shape = (target_shape,) if _is_int(target_shape) else target_shape
        if not isinstance(shape, (tuple, list)) or not shape or not all(_is_int(d) for d in shape):
            raise TypeError(f"{self.label()}: target_shape must be an int or a tuple of ints (per sample, no batch "
                            f"axis), received {target_shape!r}")
        self.target_shape = tuple(int(d) for d in shape)
        if sum(d == -1 for d in self.target_shape) > 1 or any(d == 0 or d < -1 for d in self.target_shape):
            raise ValueError(f"{self.label()}: target_shape must hold positive sizes and at most one -1, "
                             f"received {target_shape!r}")
        check_elements(self.label(), [abs(d) for d in self.target_shape], "target shape")

    def _build(self, input_shape):
        n = math.prod(input_shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            if n % known:
                raise self._error(f"cannot reshape {n} elements per sample to {self.target_shape}", input_shape)
            return tuple(n // known if d == -1 else d for d in self.target_shape)
        if known != n:
            raise self._error(f"cannot reshape {n} elements per sample to {self.target_shape}", input_shape)
        return self.target_shape

    def forward(self, x, training=False, retain=True):
        if retain:
            self._state = x.shape
        return x.reshape((x.shape[0], *self.output_shape))

    def backward(self, gy, need_gx=True):
        shape, self._state = self._state, None
        if not need_gx:
            return None
        if shape is None:
            raise ValueError(f"{self.label()}: backward needs a forward with retain=True first")
        self._check_gy(gy, shape[0])
        return gy.reshape(shape)

    def _config(self):
        return {"target_shape": list(self.target_shape)}


class ZeroPad2d(Layer):
    """Pad height and width with zeros.

    ``padding``: an int; ``(ph, pw)``; ``((top, bottom), (left, right))`` (Keras' order); or a
    flat 4-tuple ``(left, right, top, bottom)`` (PyTorch's ``ZeroPad2d`` order).
    """

    prefix = "zero_pad2d"

    def __init__(self, padding=1, **kwargs):
        super().__init__(**kwargs)
        p = padding
        if isinstance(p, (int, np.integer)):
            pads = (p, p, p, p)
        elif isinstance(p, (list, tuple)) and len(p) == 4:
            pads = (p[2], p[3], p[0], p[1])
        elif isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(e, (list, tuple)) for e in p):
            pads = (*p[0], *p[1])
        elif isinstance(p, (list, tuple)) and len(p) == 2:
            pads = (p[0], p[0], p[1], p[1])
        else:
            pads = None
        if pads is None or len(pads) != 4 or not all(_is_int(v) and 0 <= v <= MAX_INT for v in pads):
            raise ValueError(f"{self.label()}: padding must be an int, (ph, pw), ((top, bottom), (left, right)) or "
                             f"(left, right, top, bottom) of ints in [0, 2**31 - 1], received {padding!r}")
        self.pads = tuple(int(v) for v in pads)  # (top, bottom, left, right)

    def _build(self, input_shape):
        if len(input_shape) != 3:
            raise self._error("expects per-sample input (channels, height, width)", input_shape)
        C, H, W = input_shape
        t, b, l, r = self.pads
        if H + t + b > MAX_INT or W + l + r > MAX_INT:
            raise self._error(f"the padded size {H + t + b}x{W + l + r} exceeds 2**31 - 1 per axis "
                              f"(padding (top, bottom, left, right)={self.pads})", input_shape)
        return C, H + t + b, W + l + r

    def forward(self, x, training=False, retain=True):
        return F.pad2d(x, *self.pads)

    def backward(self, gy, need_gx=True):
        if not need_gx:
            return None
        self._check_gy(gy)
        return F.crop2d(gy, *self.pads)

    def _config(self):
        t, b, l, r = self.pads
        return {"padding": [[t, b], [l, r]]}
