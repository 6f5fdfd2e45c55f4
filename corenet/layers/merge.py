"""Merge layers: Add, Multiply (broadcasting, for squeeze-and-excitation) and Concat.

Broadcasting is channels-first: an input of lower rank is aligned on its *leading* axes and
padded with trailing unit axes, so ``(N, C)`` meets ``(N, C, H, W)`` as ``(N, C, 1, 1)`` (an SE
block's gates); then numpy's rules apply (a 1 stretches). The gradient of a broadcast input is
the upstream gradient summed over the axes it was stretched along.
"""

from __future__ import annotations

import numpy as np

from ..functional.validation import integer
from .base import Layer, _ops

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

    def _device_only_plain(self):
        if not self._plain:
            raise NotImplementedError(f"{self.label()}: broadcasting inputs on the GPU is not implemented; "
                                      f"device arrays are supported when every input has the output's shape")

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
        if not isinstance(xs[0], np.ndarray):
            self._device_only_plain()
            y = _ops().add(xs[0], xs[1])
            for x in xs[2:]:
                y = _ops().add(y, x)
            return y
        xs = self._aligned(xs)
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y = y + x
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
        if not isinstance(xs[0], np.ndarray):
            return self._forward_device(xs, retain)
        xs = self._aligned(xs)
        if retain:
            self._state = xs
        y = xs[0] * xs[1]
        for x in xs[2:]:
            y = y * x
        return y

    def backward(self, gy, need_gx=True):
        xs, self._state = self._state, None
        if not need_gx:
            return [None] * len(self.input_shape)
        if xs is None:
            raise ValueError(f"{self.label()}: backward needs a forward with retain=True first")
        self._check_gy(gy, xs[0].shape[0])
        if not isinstance(gy, np.ndarray):
            return self._backward_device(gy, xs)
        out = []
        for k in range(len(xs)):
            g = gy
            for j, x in enumerate(xs):
                if j != k:
                    g = g * x
            out.append(self._reduce(g, k))
        return out


    # Device arrays: inputs of one shape (any number), or a feature map times per-channel gates
    # ((N, C, H, W) * (N, C) or (N, C, 1, 1), squeeze-and-excitation), through the cuda ops.
    def _gate_index(self):
        """For two inputs, the index of the (C,)/(C, 1, 1) gate of a (C, H, W) map, else None."""
        out = self.output_shape
        if len(self._views) != 2 or len(out) != 3:
            return None
        full = [tuple(v) == tuple(out) for v in self._views]
        gate = [tuple(v) == (out[0], 1, 1) for v in self._views]
        for k in (0, 1):
            if gate[k] and full[1 - k]:
                return k
        return None

    def _forward_device(self, xs, retain):
        ops = _ops()
        if self._plain:
            y = ops.mul(xs[0], xs[1])
            for x in xs[2:]:
                y = ops.mul(y, x)
        else:
            k = self._gate_index()
            if k is None:
                raise NotImplementedError(
                    f"{self.label()}: on device arrays Multiply takes inputs of one shape, or a (C, H, W) map and "
                    f"(C,)/(C, 1, 1) gates; received shapes {self._shape_str(self.input_shape)}")
            y = ops.mul_channels(xs[1 - k], xs[k])
        if retain:
            self._state = list(xs)
        return y

    def _backward_device(self, gy, xs):
        ops = _ops()
        if self._plain:
            out = []
            for k in range(len(xs)):
                g = gy
                for j, x in enumerate(xs):
                    if j != k:
                        g = ops.mul(g, x)
                out.append(g)
            return out
        k = self._gate_index()
        grads = [None, None]
        grads[1 - k] = ops.mul_channels(gy, xs[k])
        grads[k] = ops.sum_mul_lanes(gy, xs[1 - k]).reshape((gy.shape[0], *self.input_shape[k]))
        return grads


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
        self._splits = np.cumsum([s[axis - 1] for s in shapes])[:-1].tolist()
        out = list(shapes[0])
        out[axis - 1] = sum(s[axis - 1] for s in shapes)
        return tuple(out)

    def forward(self, xs, training=False, retain=True):
        if not isinstance(xs[0], np.ndarray):
            if self._ax != 1:
                raise NotImplementedError(f"{self.label()}: on device arrays only channel concatenation "
                                          f"(axis=1) is implemented, received axis={self.axis}")
            return _ops().concat_channels(xs)
        return np.concatenate(xs, axis=self._ax)

    def backward(self, gy, need_gx=True):
        if not need_gx:
            return [None] * len(self.input_shape)
        self._check_gy(gy)
        if not isinstance(gy, np.ndarray):
            return _ops().split_channels(gy, [s[self._ax - 1] for s in self.input_shape])
        return [np.ascontiguousarray(g) for g in np.split(gy, self._splits, axis=self._ax)]

    def _config(self):
        return {"axis": self.axis}
