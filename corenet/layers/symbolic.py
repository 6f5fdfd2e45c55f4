"""The symbolic graph: placeholders for arrays and the record of each layer call, below the layers.

Calling a layer on a :class:`SymbolicTensor` runs :func:`connect`: the layer is built from the
input shapes, and a :class:`Node` (layer, input tensors, output tensor) is appended to the layer's
``_nodes``. Nothing here runs arrays; ``corenet.graph`` orders the nodes and executes them. This
module imports no layer (``connect`` only calls the layer's ``label``, ``build`` and ``_nodes``), so
``layers/base.py`` can import it and the graph's execution sits above the layers without a cycle.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SymbolicTensor", "Node", "connect", "fmt_shape"]


def fmt_shape(shape) -> str:
    """A per-sample shape as Keras prints it, with the batch axis: ``(None, 3, 32, 32)``."""
    return str((None, *shape))


class SymbolicTensor:
    """A placeholder for an array flowing through the graph: per-sample ``shape`` and ``dtype``."""

    __slots__ = ("shape", "dtype", "node")

    def __init__(self, shape, dtype, node=None):
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.node = node

    @property
    def layer(self):
        return self.node.layer

    def __repr__(self) -> str:
        src = self.node.layer.label() if self.node is not None else "?"
        return f"<SymbolicTensor shape={fmt_shape(self.shape)} dtype={self.dtype.name} from {src}>"


class Node:
    """One call of a layer: its input tensors and its output tensor."""

    __slots__ = ("layer", "inputs", "output", "multi")

    def __init__(self, layer, inputs, multi):
        self.layer = layer
        self.inputs = list(inputs)
        self.multi = multi
        self.output = None


def connect(layer, inputs) -> SymbolicTensor:
    """Record ``layer`` called on symbolic ``inputs``: build it from their shapes, return its output."""
    multi = isinstance(inputs, (list, tuple))
    tensors = list(inputs) if multi else [inputs]
    if not all(isinstance(t, SymbolicTensor) for t in tensors):
        got = ", ".join(type(t).__name__ for t in tensors)
        raise TypeError(f"{layer.label()}: inputs must all be symbolic tensors (from Input or a layer), received {got}")
    if layer.multi_input and not multi:
        raise TypeError(f"{layer.label()}: expects a list of tensors, received one tensor {tensors[0]!r}")
    if not layer.multi_input and multi:
        raise TypeError(f"{layer.label()}: expects one tensor, received a list of {len(tensors)}")
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1:
        raise TypeError(f"{layer.label()}: inputs must share one dtype, received {sorted(d.name for d in dtypes)}")
    shapes = [t.shape for t in tensors]
    out_shape = layer.build(shapes if multi else shapes[0])
    dtype = tensors[0].dtype
    if layer.dtype is None:
        layer.dtype = dtype
    node = Node(layer, tensors, multi)
    node.output = SymbolicTensor(out_shape, dtype, node)
    layer._nodes.append(node)
    return node.output
