"""Merge layers: Add, Multiply (broadcasting, for squeeze-and-excitation) and Concat.

Broadcasting is channels-first: an input of lower rank is aligned on its *leading* axes and
padded with trailing unit axes, so ``(N, C)`` meets ``(N, C, H, W)`` as ``(N, C, 1, 1)`` (an SE
block's gates); then numpy's rules apply (a 1 stretches). The gradient of a broadcast input is
the upstream gradient summed over the axes it was stretched along.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..functional.validation import integer
from .base import Layer

__all__ = ["Add", "Multiply", "Concat"]


def _expand(shape, ndim):
    return tuple(shape) + (1,) * (ndim - len(shape))


class _Merge(Layer):
    """Checks a list of at least two inputs; subclasses give the output shape and arithmetic."""

    multi_input = True

    def _build(self, input_shape):
        if len(input_shape) < 2:
            raise self._error(f"needs at least 2 inputs, received {len(input_shape)}", input_shape)
        return self._merge_shape(input_shape)


class _Elementwise(_Merge):
    def _merge_shape(self, shapes):
        ndim = max(len(s) for s in shapes)
        out = []
        for axis, dims in enumerate(zip(*(_expand(s, ndim) for s in shapes))):
            big = {d for d in dims if d != 1}
            if len(big) > 1:
                raise self._error(f"input shapes are incompatible on axis {axis + 1} ({' vs '.join(map(str, dims))}); "
                                  f"they must be equal or 1 (lower-rank inputs get trailing unit axes)", shapes)
            out.append(big.pop() if big else 1)
        out = tuple(out)
        self._plain = all(tuple(s) == out for s in shapes)
        self._views = [_expand(s, ndim) for s in shapes]
        return out

    def _aligned(self, xs):
        if self._plain:
            return xs
        return [x.reshape((x.shape[0], *v)) for x, v in zip(xs, self._views)]

    def _reduce(self, g, k):
        """Sum ``g`` (output-shaped) down to input ``k``'s shape."""
        if self._plain:
            return g
        view = self._views[k]
        axes = tuple(i + 1 for i, (d, o) in enumerate(zip(view, self.output_shape)) if d == 1 and o != 1)
        if axes:
            g = g.sum(axis=axes, keepdims=True)
        return np.ascontiguousarray(g.reshape((g.shape[0], *self.input_shape[k])))


class Add(_Elementwise):
    """Element-wise sum (residual connections); backward hands ``gy`` to every input."""

    prefix = "add"

    def forward(self, xs, training=False, retain=True):
        xs = self._aligned(xs)  # broadcasting: the CPU only (F.add says so for device arrays)
        y = F.add(xs[0], xs[1])
        for x in xs[2:]:
            y = F.add(y, x)
        return y

    def backward(self, gy, need_gx=True):
        if not need_gx:
            return [None] * len(self.input_shape)
        self._check_gy(gy)
        return [self._reduce(gy, k) for k in range(len(self.input_shape))]


class Multiply(_Elementwise):
    """Element-wise product with broadcasting: ``(N, C, H, W) * (N, C, 1, 1)`` or ``* (N, C)`` (SE gates)."""

    prefix = "multiply"

    def forward(self, xs, training=False, retain=True):
        k = None if self._plain else self._gate_index()
        if k is not None:  # a feature map times per-channel gates (squeeze-and-excitation)
            y = F.mul_channels(xs[1 - k], xs[k])
        else:  # one shape, or numpy broadcasting (the CPU only: F.mul says so for device arrays)
            xs = self._aligned(xs)
            y = F.mul(xs[0], xs[1])
            for x in xs[2:]:
                y = F.mul(y, x)
        if retain:
            self._state = list(xs)
        return y

    def backward(self, gy, need_gx=True):
        xs, self._state = self._state, None
        if not need_gx:
            return [None] * len(self.input_shape)
        if xs is None:
            raise ValueError(f"{self.label()}: backward needs a forward with retain=True first")
        self._check_gy(gy, xs[0].shape[0])
        k = None if self._plain else self._gate_index()
        if k is not None:
            grads = [None, None]
            grads[1 - k] = F.mul_channels(gy, xs[k])
            grads[k] = F.sum_mul_lanes(gy, xs[1 - k]).reshape((gy.shape[0], *self.input_shape[k]))
            return grads
        out = []
        for k in range(len(xs)):
            g = gy
            for j, x in enumerate(xs):
                if j != k:
                    g = F.mul(g, x)
            out.append(self._reduce(g, k))
        return out

    def _gate_index(self):
        """For two inputs, the index of the (C,)/(C, 1, 1) gate of a (C, H, W) map, else None (one
        kernel pass over the map, forward and backward, on every kind of array)."""
        out = self.output_shape
        if len(self._views) != 2 or len(out) != 3:
            return None
        full = [tuple(v) == tuple(out) for v in self._views]
        gate = [tuple(v) == (out[0], 1, 1) for v in self._views]
        for k in (0, 1):
            if gate[k] and full[1 - k]:
                return k
        return None


class Concat(_Merge):
    """Concatenation along ``axis`` (default 1, channels; the batch axis is 0), as in Inception/DenseNet."""

    prefix = "concat"

    def __init__(self, axis=1, **kwargs):
        super().__init__(**kwargs)
        self.axis = integer(type(self).__name__, "axis", axis)

    def _merge_shape(self, shapes):
        ndim = len(shapes[0])
        axis = self.axis + ndim + 1 if self.axis < 0 else self.axis
        if not 1 <= axis <= ndim:
            raise self._error(f"axis={self.axis} must be a non-batch axis of the (N, ...) inputs", shapes)
        if any(len(s) != ndim for s in shapes):
            raise self._error("inputs must all have the same rank", shapes)
        for i in range(ndim):
            if i + 1 != axis and len({s[i] for s in shapes}) > 1:
                raise self._error(f"inputs must match on every axis but {axis}; axis {i + 1} differs", shapes)
        self._ax = axis
        out = list(shapes[0])
        out[axis - 1] = sum(s[axis - 1] for s in shapes)
        return tuple(out)

    def forward(self, xs, training=False, retain=True):
        return F.concat(xs, self._ax)

    def backward(self, gy, need_gx=True):
        if not need_gx:
            return [None] * len(self.input_shape)
        self._check_gy(gy)
        return F.split(gy, [s[self._ax - 1] for s in self.input_shape], self._ax)

    def _config(self):
        return {"axis": self.axis}
