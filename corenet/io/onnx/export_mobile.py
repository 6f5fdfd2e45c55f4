"""ONNX export of the mobile architectures' layers (issue 17): a mixin of the exporter
(``export._Exporter``), which dispatches a layer to ``_<class name>``; ``node``, ``const``,
``_weights`` and ``_refuse`` are the exporter's.

=================  ============================================================================
corenet layer      ONNX
=================  ============================================================================
ReLU6              Clip(x, 0, 6) (PyTorch's export)
Hardsigmoid        HardSigmoid(alpha=1/6, beta=1/2)
Hardswish          HardSwish (opset 14 on); opset 13: ``x * HardSigmoid(x)``, as PyTorch writes it
SiLU               ``x * Sigmoid(x)`` (ONNX has no SiLU op; PyTorch writes the same two nodes)
ChannelShuffle     Reshape (0, g, C/g, ...) -> Transpose (0, 2, 1, ...) -> Reshape (0, C, ...)
DropPath           removed (the identity in evaluation)
SeparableConv2d    Conv (group = C_in, no bias) -> Conv 1x1, named ``<layer>/depthwise`` and
                   ``<layer>``; the weights keep their names (``<layer>.depthwise.weight``...)
=================  ============================================================================

Clip and HardSigmoid compute ``min(max(x, 0), 6)`` and ``max(0, min(1, x/6 + 1/2))``: the same
values as corenet's kernels up to float rounding (``(x + 3) / 6`` there).
"""

from __future__ import annotations

import numpy as np

from ...geometry import padding4


class MobileExports:
    def _ReLU6(self, layer, x, out, gnode):
        dt = gnode.output.dtype
        lo, hi = self.const(f"{out}._min", np.asarray(0.0, dt)), self.const(f"{out}._max", np.asarray(6.0, dt))
        return self.node("Clip", [x, lo, hi], out)

    def _Hardsigmoid(self, layer, x, out, gnode):
        return self.node("HardSigmoid", [x], out, alpha=1.0 / 6.0, beta=0.5)

    def _Hardswish(self, layer, x, out, gnode):
        if self.opset >= 14:
            return self.node("HardSwish", [x], out)
        gate = self.node("HardSigmoid", [x], f"{out}/gate", alpha=1.0 / 6.0, beta=0.5)
        return self.node("Mul", [x, gate], out)

    def _SiLU(self, layer, x, out, gnode):
        return self.node("Mul", [x, self.node("Sigmoid", [x], f"{out}/sigmoid")], out)

    def _ChannelShuffle(self, layer, x, out, gnode):
        C, *rest = layer.input_shape
        g = layer.groups
        split = self.const(f"{out}._split", [0, g, C // g, *rest], np.int64)
        merge = self.const(f"{out}._merge", [0, C, *rest], np.int64)
        perm = [0, 2, 1, *range(3, len(rest) + 3)]
        h = self.node("Reshape", [x, split], f"{out}/split")
        h = self.node("Transpose", [h], f"{out}/transpose", perm=perm)
        return self.node("Reshape", [h, merge], out)

    def _DropPath(self, layer, x, out, gnode):
        return x  # the identity in evaluation

    def _SeparableConv2d(self, layer, x, out, gnode):
        t, b, l, r = padding4("SeparableConv2d", layer.padding, layer.kernel_size, layer.stride, layer.dilation,
                              layer.input_shape[1:])
        h = self.node("Conv", [x, *self._weights(layer, "depthwise.weight")], f"{out}/depthwise",
                      kernel_shape=list(layer.kernel_size), strides=list(layer.stride), pads=[t, l, b, r],
                      dilations=list(layer.dilation), group=layer.in_channels)
        return self.node("Conv", [h, *self._weights(layer, "pointwise.weight", "pointwise.bias")], out,
                         kernel_shape=[1, 1], strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1], group=1)
