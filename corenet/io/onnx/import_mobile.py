"""ONNX import of the mobile architectures' activations and channel shuffle (issue 17).

A mixin of the importer (``importer._Importer``), which dispatches a node to ``_<op_type>``; the
plumbing (``_x``, ``_const``, ``_call``, ``err``, ``skip``) is the importer's.

- ``Clip(x, 0, 6)`` -> ReLU6 and ``Clip(x, 0)`` -> ReLU (bounds as inputs, or attributes before
  opset 11); other bounds have no corenet layer and are refused.
- ``HardSigmoid`` with ``alpha = 1/6, beta = 1/2`` (PyTorch's) -> Hardsigmoid; ``HardSwish`` -> Hardswish.
- ``Slice`` of one range of channels -> ``ChannelSlice`` (ShuffleNet v2's channel split).
- Patterns, found before any layer is built (:meth:`MobileImports._fuse_mobile`): ``x * Sigmoid(x)``
  -> SiLU and ``x * HardSigmoid(x)`` -> Hardswish (how ONNX, and PyTorch below opset 14, write them),
  when the gate feeds nothing else; ``Reshape (N, g, C/g, ...) -> Transpose (0, 2, 1, ...) ->
  Reshape (N, C, ...)`` with constant shapes -> ChannelShuffle(g). The matched nodes become one layer,
  named after the last node (``_fused``). Elsewhere Sigmoid and Mul import as Sigmoid and Multiply.
"""

from __future__ import annotations

import numpy as np

from ... import layers as L

MOBILE_OPS = ("Clip", "HardSigmoid", "HardSwish", "Slice")


class MobileImports:
    def _fuse_mobile(self) -> set:
        """Find the patterns above: ``self.fused`` maps each one's last node to ``(layer class, input
        tensor name, expected input shape or None)``; returns the indices of the other nodes (to skip)."""
        consumers: dict[str, list] = {}
        for j, n in enumerate(self.g.node):
            for name in n.input:
                consumers.setdefault(name, []).append(j)
        outputs = {o.name for o in self.g.output}
        known = dict(self.consts)  # initializers and Constant nodes (PyTorch writes shapes as the latter)
        for n in self.g.node:
            v = self._attrs(n, self.onnx).get("value") if n.op_type == "Constant" else None
            if v is not None:
                known[n.output[0]] = self.onnx.numpy_helper.to_array(v)
        self.fused, skip = {}, set()

        def only_reader(node, op):
            """The one node (of type ``op``) that reads ``node``'s output, or None."""
            out = node.output[0]
            readers = consumers.get(out, [])
            if out in outputs or len(readers) != 1 or self.g.node[readers[0]].op_type != op:
                return None
            return readers[0]

        for k, n in enumerate(self.g.node):
            if n.domain not in ("", "ai.onnx"):
                continue
            if n.op_type in ("Sigmoid", "HardSigmoid"):
                if n.op_type == "HardSigmoid" and not _is_torch_hardsigmoid(self._attrs(n, self.onnx)):
                    continue
                j = only_reader(n, "Mul")
                if j is None or sorted(self.g.node[j].input) != sorted([n.input[0], n.output[0]]):
                    continue
                self.fused[j] = (L.SiLU if n.op_type == "Sigmoid" else L.Hardswish, n.input[0], None)
                skip.add(k)
            elif n.op_type == "Reshape" and n.input[1:2] and n.input[1] in known:
                t = only_reader(n, "Transpose")
                r = None if t is None else only_reader(self.g.node[t], "Reshape")
                if r is None or self.g.node[r].input[1] not in known:
                    continue
                split = [int(v) for v in known[n.input[1]]]
                merge = [int(v) for v in known[self.g.node[r].input[1]]]
                perm = list(self._attrs(self.g.node[t], self.onnx).get("perm", []))
                if (len(split) >= 3 and perm == [0, 2, 1, *range(3, len(split))] and len(merge) == len(split) - 1
                        and merge[1] == split[1] * split[2] > 0 and merge[2:] == split[3:]):
                    groups = split[1]
                    self.fused[r] = (lambda g=groups: L.ChannelShuffle(g), n.input[0], tuple(merge[1:]))
                    skip |= {k, t}
        return skip

    def _fused(self, node, i):
        """The last node of a pattern found by :meth:`_fuse_mobile`: one layer on the pattern's input."""
        make, x, shape = self.fused[i]
        x = self.tensors[x]
        if shape is not None and tuple(x.shape) != shape:
            raise self.err(node, f"reshapes an input of shape {tuple(x.shape)} to {shape}: not a channel shuffle")
        self._call(node, i, make(), x)

    def _HardSwish(self, node, i, a):
        self._call(node, i, L.Hardswish(), self._x(node))

    def _HardSigmoid(self, node, i, a):
        if not _is_torch_hardsigmoid(a):
            raise self.err(node, f"alpha={a.get('alpha', 0.2)}, beta={a.get('beta', 0.5)}: only PyTorch's "
                                 f"hardsigmoid (alpha=1/6, beta=1/2) has a corenet layer")
        self._call(node, i, L.Hardsigmoid(), self._x(node))

    def _Clip(self, node, i, a):
        if self.opset < 11:
            lo, hi = a.get("min"), a.get("max")
        else:
            lo, hi = (self._const(node, j, what, required=False) for j, what in ((1, "min"), (2, "max")))
        lo, hi = (None if v is None else float(np.asarray(v).reshape(-1)[0]) for v in (lo, hi))
        if lo == 0.0 and hi == 6.0:
            layer = L.ReLU6()
        elif lo == 0.0 and (hi is None or hi == float("inf")):
            layer = L.ReLU()
        else:
            raise self.err(node, f"Clip to [{lo}, {hi}]: only [0, 6] (ReLU6) and [0, inf) (ReLU) have corenet layers")
        self._call(node, i, layer, self._x(node))

    def _Slice(self, node, i, a):
        """One contiguous range of channels (axes [1], step 1) -> ChannelSlice, ShuffleNet v2's channel split."""
        x = self._x(node)
        starts, ends = (np.ravel(self._const(node, j, what)) for j, what in ((1, "starts"), (2, "ends")))
        axes = self._const(node, 3, "axes", required=False)
        steps = self._const(node, 4, "steps", required=False)
        axes = list(range(len(starts))) if axes is None else [int(v) % (len(x.shape) + 1) for v in np.ravel(axes)]
        if axes != [1] or (steps is not None and np.any(np.ravel(steps) != 1)):
            raise self.err(node, f"axes {axes}, steps {steps}: only a step-1 slice of the channel axis maps "
                                 f"(ChannelSlice)")
        c = x.shape[0]
        start, stop = (min(max(int(v) + c if v < 0 else int(v), 0), c) for v in (starts[0], ends[0]))  # ONNX clamps
        if start >= stop:
            raise self.err(node, f"channels {start}:{stop} of {c} are empty: corenet has no empty tensors")
        self._call(node, i, L.ChannelSlice(start, stop), x)


def _is_torch_hardsigmoid(a) -> bool:
    return abs(a.get("alpha", 0.2) - 1 / 6) < 1e-6 and abs(a.get("beta", 0.5) - 0.5) < 1e-6
