"""Subgraphs of primitive ONNX nodes that import as one corenet layer.

PyTorch's exporter (``torch.onnx.export(..., dynamo=False)``) writes ``nn.LocalResponseNorm`` not as
ONNX's LRN but as about 50 nodes: a trunk ``Mul(x, x) -> Reshape (N, 1, C, H, -1) -> Pad (channels,
size // 2 before, (size - 1) // 2 after) -> AveragePool [size, 1, 1] -> If (squeeze the unit axis) ->
Reshape (N, C, H, W) -> Mul alpha -> Add k -> Pow beta -> Div(x, .)``, plus the Shape / Gather /
Unsqueeze / Concat / Constant... nodes that compute the trunk's shapes, pads and condition.
:func:`find_lrn` finds each such subgraph from its last node (a ``Div`` by a ``Pow``), checks it
node by node, and checks it numerically (onnx's reference evaluator against the LRN formula at the
model's own shape): it then becomes a ``LocalResponseNorm(size, alpha, beta, k)`` (PyTorch's
convention, corenet's default; even sizes included, PyTorch and corenet centre their window alike).
A ``Div`` by a ``Pow`` that is not exactly this subgraph is refused with the nodes named.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["LRNMatch", "find_lrn", "verify_lrn"]

_TRUNK = ("Pow", "Add", "Mul", "Reshape", "If", "AveragePool", "Pad", "Reshape", "Mul")  # from Div backwards
_SIDE = {"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Constant", "ConstantOfShape", "Reshape", "Slice",
         "Transpose", "Cast", "Equal", "Identity"}


@dataclass
class LRNMatch:
    div: object                     # the last node; the layer's output is its output
    x: str                          # the normalised tensor
    size: int
    alpha: float
    beta: float
    k: float
    nodes: list = field(default_factory=list)  # every node of the subgraph, in graph order
    indices: list = field(default_factory=list)  # their positions in graph.node (the last is the Div's)

    @property
    def name(self) -> str:
        """The module path PyTorch ends its node names' scope with (``/features/features.2/Div`` -> ``features.2``)."""
        parts = self.div.name.strip("/").split("/")
        return parts[-2] if len(parts) > 1 else "local_response_norm"


def _names(nodes) -> str:
    return ", ".join(f"{n.name!r} ({n.op_type})" for n in nodes)


def _attrs(onnx, node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def find_lrn(onnx, graph, where: str) -> list[LRNMatch]:
    """Every PyTorch LRN subgraph of ``graph``; a ValueError naming the nodes for one that is malformed."""
    nodes = list(graph.node)  # one wrapper per node for the whole search: id() is stable
    producer = {o: n for n in nodes for o in n.output}
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for o in graph.output:
        consumers.setdefault(o.name, []).append(None)
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    for n in nodes:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = onnx.numpy_helper.to_array(n.attribute[0].t)
    order = {id(n): j for j, n in enumerate(nodes)}
    matches = []
    for div in nodes:
        if div.op_type != "Div" or len(div.input) != 2 or getattr(producer.get(div.input[1]), "op_type", "") != "Pow":
            continue
        trunk, seen, why = [div], [div], None
        cur = div
        for op in _TRUNK:  # the data path: input 1 of Div, then input 0 (If: the branches' AveragePool)
            if cur.op_type == "If":
                refs = {i for a in cur.attribute if a.g.node for b in a.g.node for i in b.input}
                prev = next((producer[r] for r in refs if r in producer and producer[r].op_type == op), None)
            else:
                prev = producer.get(cur.input[1 if cur is div else 0])
            if prev is None or prev.op_type != op:
                found = "a graph input or initializer" if prev is None else f"{prev.name!r} ({prev.op_type})"
                why = f"after {cur.name!r} ({cur.op_type}) expected {op}, found {found}"
                break
            trunk.append(prev)
            seen.append(prev)
            cur = prev
        if why is None:
            why = _check_trunk(onnx, trunk, div, consts)
        if why is None:  # the side nodes: everything that feeds the trunk besides its data path
            x = div.input[0]
            inside = {o for n in trunk for o in n.output}
            stack = [i for n in trunk for i in n.input if i and i not in inside and i != x]
            branch = {o for a in trunk[5].attribute for b in a.g.node for o in b.output}
            stack += [i for a in trunk[5].attribute for b in a.g.node for i in b.input if i not in inside | branch]
            side = {}
            while stack and why is None:
                t = stack.pop()
                p = producer.get(t)
                if p is None:
                    if t not in consts:
                        why = f"the trunk reads {t!r}, which is neither computed in the subgraph nor a constant"
                    continue
                if id(p) in side:
                    continue
                if p.op_type not in _SIDE:
                    why = f"{p.name!r} ({p.op_type}) feeds its shapes or pads, but is not a shape computation"
                    continue
                side[id(p)] = p
                stack += [i for i in p.input if i and i not in inside and i != x]
            seen += list(side.values())
            inner = inside | {o for n in side.values() for o in n.output}
            members = {id(n) for n in trunk} | set(side)
            for t in inner - set(div.output) - set(consts):  # constants may be shared
                outside = [c for c in consumers.get(t, []) if c is None or id(c) not in members]
                if outside and why is None:
                    why = f"its intermediate tensor {t!r} is also used outside it"
        if why is not None:
            raise ValueError(f"{where}: nodes {_names(seen)} look like PyTorch's decomposed LocalResponseNorm "
                             f"(a Div by a Pow) but differ from its pattern: {why}; only that exact subgraph maps")
        ap, mul, add, pow_ = trunk[6], trunk[3], trunk[2], trunk[1]
        members = sorted([*trunk, *side.values()], key=lambda n: order[id(n)])
        matches.append(LRNMatch(div, div.input[0], int(_attrs(onnx, ap)["kernel_shape"][0]),
                                float(consts[mul.input[1]]), float(consts[pow_.input[1]]),
                                float(consts[add.input[1]]), members, [order[id(n)] for n in members]))
    return matches


def _check_trunk(onnx, trunk, div, consts):
    """None when the trunk's attributes and constants are PyTorch's; else why not."""
    pow_, add, mul, _, if_, ap, _, _, sq = trunk[1:]
    x = div.input[0]
    if list(sq.input) != [x, x]:
        return f"{sq.name!r} must square the Div's numerator {x!r}, it multiplies {list(sq.input)}"
    for node in (pow_, add, mul):
        if node.input[1] not in consts or np.size(consts[node.input[1]]) != 1:
            return f"{node.name!r} ({node.op_type}) must take a scalar constant as its second input"
    a = _attrs(onnx, ap)
    size = a.get("kernel_shape", [0])[0]
    if (list(a.get("kernel_shape", [])) != [size, 1, 1] or list(a.get("strides", [1, 1, 1])) != [1, 1, 1]
            or any(a.get("pads", [0] * 6)) or a.get("ceil_mode", 0) or not a.get("count_include_pad", 0)):
        return f"{ap.name!r} (AveragePool) must average {size} channels, stride 1, no pads, count_include_pad=1: {a}"
    branches = {b.name: [n.op_type for n in b.g.node if n.op_type != "Constant"] for b in if_.attribute}
    if branches != {"then_branch": ["Squeeze"], "else_branch": ["Identity"]}:
        return f"{if_.name!r} (If) must squeeze or pass the pooled tensor, its branches are {branches}"
    return None


def verify_lrn(onnx, graph, match: LRNMatch, shape, opset: int, where: str) -> None:
    """Run the subgraph with onnx's reference evaluator at ``(2, *shape)``; it must equal PyTorch's LRN."""
    from onnx.reference import ReferenceEvaluator

    h = onnx.helper
    used = {i for n in match.nodes for i in n.input}
    inits = [t for t in graph.initializer if t.name in used]
    sub = h.make_graph(match.nodes, "lrn", [h.make_tensor_value_info(match.x, onnx.TensorProto.FLOAT, None)],
                       [h.make_tensor_value_info(match.div.output[0], onnx.TensorProto.FLOAT, None)], inits)
    model = h.make_model(sub, opset_imports=[h.make_opsetid("", opset)])
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    try:
        got = ReferenceEvaluator(model).run(None, {match.x: x})[0]
    except Exception as exc:
        raise ValueError(f"{where}: nodes {_names(match.nodes)} (PyTorch's LocalResponseNorm pattern) do not "
                         f"evaluate at shape {tuple(shape)}: {exc}") from None
    s = match.size
    sq = np.pad(x.astype(np.float64) ** 2, ((0, 0), (s // 2, (s - 1) // 2), (0, 0), (0, 0)))
    avg = sum(sq[:, j:j + x.shape[1]] for j in range(s)) / s
    want = x / (match.k + match.alpha * avg) ** match.beta
    if got.shape != want.shape or not np.allclose(got, want, rtol=1e-4, atol=1e-5):
        raise ValueError(f"{where}: nodes {_names(match.nodes)} have the shape of PyTorch's LocalResponseNorm "
                         f"(size {s}, alpha {match.alpha}, beta {match.beta}, k {match.k}) but do not compute it")


# ops whose outputs are constants when their inputs are: PyTorch computes F.pad's pads with them
FOLDABLE = {"ConstantOfShape", "Slice", "Transpose", "Cast", "Concat", "Reshape", "Unsqueeze", "Squeeze", "Gather",
            "Range", "Add", "Sub", "Mul", "Div", "Neg", "Identity"}


def constant_nodes(graph, consts) -> set:
    """Indices of the FOLDABLE nodes whose inputs are all constants (initializers, Constant nodes, folded ones)."""
    known, folded = set(consts), set()
    for j, n in enumerate(graph.node):
        if n.op_type == "Constant":
            known.update(n.output)
        elif n.op_type in FOLDABLE and n.domain in ("", "ai.onnx") and all(i in known for i in n.input if i):
            folded.add(j)
            known.update(n.output)
    return folded


def fold(onnx, node, consts, opset: int) -> dict:
    """Evaluate one node on constant inputs with onnx's reference evaluator: {output name: array}."""
    from onnx.reference import ReferenceEvaluator

    h = onnx.helper
    inits = [onnx.numpy_helper.from_array(np.asarray(consts[i]), i) for i in dict.fromkeys(node.input) if i]
    g = h.make_graph([node], "fold", [], [h.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
                                          for o in node.output if o], inits)
    outs = ReferenceEvaluator(h.make_model(g, opset_imports=[h.make_opsetid("", opset)])).run(None, {})
    return dict(zip([o for o in node.output if o], outs))
