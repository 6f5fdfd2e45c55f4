"""Operator fusion: graph steps that run two layers in one pass over memory.

``Graph`` (``corenet/graph.py``) compiles a model into steps ``(layer, input slots, output slot,
multi, shared)``; ``fuse`` rewrites that list once, at build time. Two patterns are fused, both
only when the intermediate tensor has no other reader (not another layer, not a model output) and
neither layer is shared (called at several places of the graph):

- ``BatchNorm2d -> ReLU`` (every conv-BN-ReLU of ResNet, VGG-BN, DenseNet, MobileNet) and
  ``BatchNorm2d -> ReLU6`` (MobileNetV2's): one kernel normalises and clamps; the backward forms the
  activation's gradient inside the batch norm's.
- ``Add -> ReLU`` of two same-shape inputs (a residual block's end): ``relu(a + b)`` in one kernel;
  the backward gives both inputs ``gy * (y > 0)``.
- ``Conv2d -> BatchNorm2d`` (and ``-> ReLU`` or ``-> ReLU6``): in inference (``training=False`` without keeping
  state: ``predict``, ``evaluate``, ``forward(x)``) the batch norm's running statistics are folded
  into the convolution's weights and bias (``F.fold_batch_norm``), so the batch norm costs nothing;
  in training the two run as before (batch statistics need the convolution's output).

The layers themselves are untouched (parameters, names, ``summary``, checkpoints, freezing): a
fused step only calls them in another way. Forward results are those of the unfused layers bit for
bit; gradients up to the grouping of the float64 partial sums that the vectoriser picks for each
reduction loop (``tests/test_fusion.py``: 1e-12 in float64). ``CORENET_FUSION=0`` turns fusion
off for models built afterwards.
"""

from __future__ import annotations

import os

from . import functional as F
from .layers.activation import ReLU, ReLU6
from .layers.conv import Conv2d
from .layers.merge import Add
from .layers.norm import BatchNorm2d


def enabled() -> bool:
    return os.environ.get("CORENET_FUSION", "1") != "0"


class _Fused:
    """A step standing for ``first`` then ``relu``; the graph sees one layer."""

    def __init__(self, first, relu):
        self.first, self.relu = first, relu

    @property
    def trainable(self):
        return self.first.trainable

    @property
    def has_params(self):
        return self.first.has_params

    @property
    def _state(self):
        return self.first._state

    @_state.setter
    def _state(self, value):
        self.first._state = value

    def label(self) -> str:
        return f"{self.first.label()}+{self.relu.label()}"


class FusedConvBatchNorm:
    """A ``Conv2d`` and the batch norm (or fused batch norm + ReLU step) that alone reads it."""

    def __init__(self, conv, rest):
        self.conv, self.rest = conv, rest
        fused = isinstance(rest, FusedBatchNormReLU)
        self.bn = rest.first if fused else rest
        self.relu = fused and type(rest.relu) is ReLU
        self.act = rest.activation if fused else None  # applied after the folded convolution

    @property
    def trainable(self):
        return self.conv.trainable or self.rest.trainable

    @property
    def has_params(self):
        return self.conv.has_params or self.rest.has_params

    @property
    def _state(self):
        return self.conv._state

    @_state.setter
    def _state(self, value):  # the graph clears states it will not use
        self.conv._state = value
        self.rest._state = value

    def label(self) -> str:
        return f"{self.conv.label()}+{self.rest.label()}"

    def forward(self, x, training=False, retain=True):
        if not training and not retain:
            y = self._folded(x)
            if y is not None:
                return y
        return self.rest.forward(self.conv.forward(x, training, retain), training, retain)

    def _folded(self, x):
        conv, bn = self.conv, self.bn
        p, b = bn.params, bn.buffers
        folded = F.fold_batch_norm(conv.params["weight"], conv.params.get("bias"), p.get("weight"), p.get("bias"),
                                   b["running_mean"], b["running_var"], bn.eps)
        if folded is None:
            return None
        y = F.conv2d(x, folded[0], folded[1], conv.stride, conv.padding, conv.dilation, conv.groups)
        return y if self.act is None else self.act(y)

    def backward(self, gy, need_gx=True):
        conv_learns = self.conv.trainable and self.conv.has_params
        g = self.rest.backward(gy, need_gx or conv_learns)
        if g is None:
            self.conv._state = None
            return None
        return self.conv.backward(g, need_gx)


class FusedBatchNormReLU(_Fused):
    """A ``BatchNorm2d`` and the ``ReLU`` (or ``ReLU6``) that alone reads it."""

    _OPS = {ReLU: (F.batch_norm_relu, F.batch_norm_relu_backward, F.relu),
            ReLU6: (F.batch_norm_relu6, F.batch_norm_relu6_backward, F.relu6)}

    def __init__(self, first, relu):
        super().__init__(first, relu)
        self._op, self._op_backward, self.activation = self._OPS[type(relu)]

    def forward(self, x, training=False, retain=True):
        return self.first._forward(self._op, x, training, retain)  # BatchNorm2d.forward with the fused op

    def backward(self, gy, need_gx=True):
        return self.first._backward(self._op_backward, gy, need_gx)


class FusedAddReLU(_Fused):
    def forward(self, xs, training=False, retain=True):
        y, state = F.add_relu(xs[0], xs[1], return_state=True)
        self.first._state = state if retain else None
        return y

    def backward(self, gy, need_gx=True):
        state, self.first._state = self.first._state, None
        if not need_gx:
            return [None, None]
        g = F.add_relu_backward(gy, state)
        return [g, g]


def fuse(steps: list, out_slots: list) -> list:
    """``steps`` with each fusable (layer, ReLU) pair replaced by one fused step."""
    if not enabled():
        return steps
    readers: dict[int, list] = {}
    for k, (_, ins, _, _, _) in enumerate(steps):
        for i in ins:
            readers.setdefault(i, []).append(k)
    outputs = set(out_slots)
    fused, dropped = {}, set()
    for k, (layer, ins, out, multi, shared) in enumerate(steps):
        if shared or out in outputs or len(readers.get(out, ())) != 1:
            continue
        j = readers[out][0]
        relu, rins, rout, _, rshared = steps[j]
        if type(relu) not in (ReLU, ReLU6) or rshared or rins != (out,):
            continue
        if type(layer) is BatchNorm2d and not multi:
            fused[k] = (FusedBatchNormReLU(layer, relu), ins, rout, multi, False)
        elif type(layer) is Add and multi and len(ins) == 2 and layer._plain and type(relu) is ReLU:
            fused[k] = (FusedAddReLU(layer, relu), ins, rout, multi, False)
        else:
            continue
        dropped.add(j)
    steps = [fused.get(k, step) for k, step in enumerate(steps) if k not in dropped]
    return _fuse_conv_batch_norm(steps, outputs)


def _fuse_conv_batch_norm(steps, outputs):
    """A ``Conv2d`` step whose only reader is a (fused) batch-norm step becomes one step."""
    readers: dict[int, list] = {}
    for k, (_, ins, _, _, _) in enumerate(steps):
        for i in ins:
            readers.setdefault(i, []).append(k)
    fused, dropped = {}, set()
    for k, (layer, ins, out, multi, shared) in enumerate(steps):
        if type(layer) is not Conv2d or shared or multi or out in outputs or len(readers.get(out, ())) != 1:
            continue
        j = readers[out][0]
        rest, rins, rout, _, rshared = steps[j]
        if rshared or rins != (out,) or not (type(rest) is BatchNorm2d or isinstance(rest, FusedBatchNormReLU)):
            continue
        fused[k] = (FusedConvBatchNorm(layer, rest), ins, rout, False, False)
        dropped.add(j)
    return [fused.get(k, step) for k, step in enumerate(steps) if k not in dropped]
