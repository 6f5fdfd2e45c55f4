"""The graph's execution: topological order, forward and backward through a DAG of layer calls.

``Input(shape)`` starts a graph; calling a layer on symbolic tensor(s) builds the layer from their
shapes and records a :class:`Node` (layer, input tensors, output tensor): that symbolic part lives
below the layers, in ``corenet/layers/symbolic.py`` and ``corenet/layers/input.py``, and is
re-exported here under its public names. A :class:`Graph` takes the nodes between some inputs and
outputs, orders them topologically and compiles them into a flat
list of steps over integer slots, so that forward and backward are two short loops:

- forward runs the steps in order; a layer called more than once (weight sharing) has its per-call
  backward state stashed per step;
- backward runs them in reverse order. The gradient of a tensor consumed by several nodes is the
  sum of theirs (``+`` out of place: ``Add`` hands the same ``gy`` array to each input). A step
  whose output got no gradient, or whose layer has no trainable parameters upstream or itself and
  whose inputs need no gradient, is skipped (a frozen backbone costs no backward).
"""

from __future__ import annotations

from . import functional as F
from .fusion import fuse
from .layers.input import Input, InputLayer
from .layers.symbolic import Node, SymbolicTensor, connect, fmt_shape

__all__ = ["Input", "InputLayer", "SymbolicTensor", "Node", "Graph", "connect"]


def _sum(a, b):
    """``a + b`` out of place, in the arrays' kind (``Add`` hands the same ``gy`` to each input)."""
    return F.add(a, b)


class Graph:
    """The nodes between ``inputs`` and ``outputs`` in topological order, compiled to slot steps."""

    def __init__(self, inputs: list, outputs: list):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        for t in self.inputs:
            if not isinstance(t, SymbolicTensor) or not isinstance(t.node.layer, InputLayer):
                raise TypeError(f"Model inputs must be tensors made by Input(...), received {t!r}")
        for t in self.outputs:
            if not isinstance(t, SymbolicTensor):
                raise TypeError(f"Model outputs must be symbolic tensors, received {type(t).__name__}")
        self.nodes = self._toposort()
        slot = {}
        for node in self.nodes:
            slot[id(node.output)] = len(slot)
        self.n_slots = len(slot)
        self.in_slots = [slot[id(t)] for t in self.inputs]
        self.out_slots = [slot[id(t)] for t in self.outputs]
        self.steps = []
        calls: dict[int, int] = {}
        for node in self.nodes:
            if isinstance(node.layer, InputLayer):
                continue
            calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1
            self.steps.append([node.layer, tuple(slot[id(t)] for t in node.inputs), slot[id(node.output)],
                               node.multi, False])
        for step in self.steps:
            step[4] = calls[id(step[0])] > 1  # shared layer: stash its state per call
        self.steps = fuse([tuple(s) for s in self.steps], self.out_slots)  # corenet/fusion.py
        self._states: list = [None] * len(self.steps)

    def _toposort(self) -> list:
        """Nodes feeding ``outputs`` in topological order (depth-first post-order, deterministic)."""
        order, seen, on_path = [], set(), set()
        inputs = {id(t) for t in self.inputs}
        for out in self.outputs:
            stack = [(out.node, False)]
            while stack:
                node, expanded = stack.pop()
                if expanded:
                    on_path.discard(id(node))
                    if id(node) not in seen:
                        seen.add(id(node))
                        order.append(node)
                    continue
                if id(node) in seen:
                    continue
                if id(node) in on_path:
                    raise ValueError(f"the graph has a cycle through {node.layer.label()}")
                on_path.add(id(node))
                stack.append((node, True))
                if isinstance(node.layer, InputLayer):
                    if id(node.output) not in inputs:
                        raise ValueError(
                            f"graph disconnected: the outputs depend on {node.layer.label()} "
                            f"(shape {fmt_shape(node.output.shape)}), which is not among the model inputs")
                    continue
                for t in reversed(node.inputs):
                    if id(t.node) not in seen:
                        stack.append((t.node, False))
        used = {id(n.output) for n in order}
        for t in self.inputs:
            if id(t) not in used:
                order.insert(0, t.node)  # an input no output depends on still gets a slot
        return order

    # ------------------------------------------------------------------ execution
    def forward(self, xs: list, training: bool, retain: bool) -> list:
        vals = [None] * self.n_slots
        for s, x in zip(self.in_slots, xs):
            vals[s] = x
        states = self._states
        for k, (layer, ins, out, multi, shared) in enumerate(self.steps):
            x = [vals[i] for i in ins] if multi else vals[ins[0]]
            vals[out] = layer.forward(x, training, retain)
            if shared:
                states[k] = layer._state
        self._retained = retain
        return [vals[s] for s in self.out_slots]

    def needs_grad(self, need_input_grads: bool) -> list:
        """Per slot: does any gradient have to flow into it (a trainable layer or a wanted input upstream)?"""
        req = [False] * self.n_slots
        if need_input_grads:
            for s in self.in_slots:
                req[s] = True
        for layer, ins, out, _, _ in self.steps:
            req[out] = (layer.trainable and layer.has_params) or any(req[i] for i in ins)
        return req

    def _backward_plan(self, need_input_grads: bool) -> list:
        """Per step ``(run, need_gx)``, cached until a layer's ``trainable`` flag changes."""
        key = (need_input_grads, *(layer.trainable for layer, *_ in self.steps))
        cache = self.__dict__.setdefault("_plans", {})
        plan = cache.get(key)
        if plan is None:
            req = self.needs_grad(need_input_grads)
            plan = cache[key] = [(req[out], any(req[i] for i in ins)) for _, ins, out, _, _ in self.steps]
        return plan

    def backward(self, gys: list, need_input_grads: bool = True) -> list:
        if not getattr(self, "_retained", False):
            raise RuntimeError("backward() needs the state of a forward run with training=True "
                               "or retain_state=True; forward(x) in inference mode keeps none")
        g = [None] * self.n_slots
        for s, gy in zip(self.out_slots, gys):
            if gy is not None:
                g[s] = gy if g[s] is None else _sum(g[s], gy)
        plan = self._backward_plan(need_input_grads)
        states = self._states
        for k in range(len(self.steps) - 1, -1, -1):
            layer, ins, out, multi, shared = self.steps[k]
            run, need_gx = plan[k]
            gy = g[out]
            g[out] = None
            if shared:
                layer._state = states[k]
                states[k] = None
            if gy is None or not run:
                layer._state = None
                continue
            gx = layer.backward(gy, need_gx)
            if not need_gx:
                continue
            if multi:
                for i, gi in zip(ins, gx):
                    if gi is not None:
                        g[i] = gi if g[i] is None else _sum(g[i], gi)
            elif gx is not None:
                i = ins[0]
                g[i] = gx if g[i] is None else _sum(g[i], gx)
        self._retained = False
        return [g[s] for s in self.in_slots]
