"""Operator fusion: graph steps that run two layers in one pass over memory.

``Graph`` (``corenet/graph.py``) compiles a model into steps ``(layer, input slots, output slot,
multi, shared)``; ``fuse`` rewrites that list once, at build time. Two patterns are fused, both
only when the intermediate tensor has no other reader (not another layer, not a model output) and
neither layer is shared (called at several places of the graph):

- ``BatchNorm2d -> ReLU`` (every conv-BN-ReLU of ResNet, VGG-BN, DenseNet, MobileNet): one kernel
  normalises and rectifies; the backward forms the ReLU's gradient inside the batch norm's.
- ``Add -> ReLU`` of two same-shape inputs (a residual block's end): ``relu(a + b)`` in one kernel;
  the backward gives both inputs ``gy * (y > 0)``.

The layers themselves are untouched (parameters, names, ``summary``, checkpoints, freezing): a
fused step only calls them in another way. Forward results are those of the unfused layers bit for
bit; gradients up to the grouping of the float64 partial sums that the vectoriser picks for each
reduction loop (``tests/test_fusion.py``: 1e-12 in float64). ``CORENET_FUSION=0`` turns fusion
off for models built afterwards.
"""

from __future__ import annotations

import os

from . import functional as F
from .layers.activation import ReLU
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


class FusedBatchNormReLU(_Fused):
    def forward(self, x, training=False, retain=True):
        return self.first.forward_relu(x, training, retain)

    def backward(self, gy, need_gx=True):
        return self.first.backward_relu(gy, need_gx)


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
        if type(relu) is not ReLU or rshared or rins != (out,):
            continue
        if type(layer) is BatchNorm2d and not multi:
            fused[k] = (FusedBatchNormReLU(layer, relu), ins, rout, multi, False)
        elif type(layer) is Add and multi and len(ins) == 2 and layer._plain:
            fused[k] = (FusedAddReLU(layer, relu), ins, rout, multi, False)
        else:
            continue
        dropped.add(j)
    return [fused.get(k, step) for k, step in enumerate(steps) if k not in dropped]
