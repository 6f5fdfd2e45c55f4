"""``Input(shape)``: the symbolic source of a graph, and :class:`InputLayer`, the layer it records."""

from __future__ import annotations

import numpy as np

from .base import Layer
from .symbolic import Node, SymbolicTensor

__all__ = ["Input", "InputLayer"]


class InputLayer(Layer):
    """The source of a graph; made by :func:`Input`."""

    prefix = "input"

    def __init__(self, shape, dtype="float32", name=None, **kw):
        super().__init__(name=name, **kw)
        self.shape = tuple(int(d) for d in shape)
        self.input_dtype = np.dtype(dtype)
        self.input_shape = self.output_shape = self.shape
        self.built = self.initialized = True

    def _config(self) -> dict:
        return {"shape": list(self.shape), "dtype": self.input_dtype.name}

    def forward(self, x, training=False, retain=True):
        return x

    def backward(self, gy, need_gx=True):
        return gy


def Input(shape, dtype=np.float32, name: str | None = None) -> SymbolicTensor:
    """A symbolic input of per-sample ``shape`` (no batch axis), e.g. ``Input((3, 32, 32))``."""
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    if not isinstance(shape, (tuple, list)) or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ValueError(f"Input: shape must be a tuple of positive ints without the batch axis, received {shape!r}")
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise TypeError(f"Input: dtype must be float32 or float64, received {np.dtype(dtype)}")
    layer = InputLayer(shape, dtype, name=name)
    node = Node(layer, [], multi=False)
    node.output = SymbolicTensor(shape, dtype, node)
    layer._nodes.append(node)
    return node.output
