"""ONNX -> corenet: one layer per ONNX node (Dropout and Identity vanish), built on the graph API.

The file is untrusted: ``load.py`` parses it without following external-data references, refuses
one that points outside its folder and runs ``onnx.checker``; every node is checked before any layer
is built, so that all unsupported nodes are reported at once. Weights must be initializers (or
Constant nodes, or folded from them); a node that computes a weight at run time is refused. PyTorch's
decomposed LocalResponseNorm is matched whole (corenet.io.onnx.patterns).

Refused, with the reason: LRN of even size (ONNX's window is centred one channel higher than
corenet's), Pad other than constant zeros on height/width (or on channels, the CIFAR ResNet's
option-A shortcut), Add/Mul/Sum with a constant operand or inputs of different ranks, pooling
padding beyond half the window (corenet's range), Softmax over the batch axis.
"""

from __future__ import annotations

import os
import re

import numpy as np

from ... import layers as L
from ...graph import Input
from ..checks import model_classes
from .common import require_onnx
from .import_mobile import MOBILE_OPS, MobileImports
from .import_resampling import ResamplingImports
from .load import load_checked
from .patterns import constant_nodes, find_lrn, fold, verify_lrn

__all__ = ["import_model"]

_ACTS = {"Relu": L.ReLU, "Sigmoid": L.Sigmoid, "Tanh": L.Tanh, "Selu": L.SELU}
_PASS = ("Dropout", "Identity")
_OPS = {"Conv", "Gemm", "MatMul", "Flatten", "Reshape", "MaxPool", "AveragePool", "GlobalAveragePool",
        "GlobalMaxPool", "BatchNormalization", "LRN", "LeakyRelu", "Elu", "Softmax", "LogSoftmax", "Gelu",
        "Add", "Sum", "Mul", "Concat", "Pad", "Constant", "Unsqueeze", "Squeeze", "ConvTranspose", "Resize",
        *_ACTS, *_PASS, *MOBILE_OPS}


def import_model(path):
    onnx = require_onnx("corenet.import_onnx")
    proto = load_checked(onnx, path)
    return _Importer(onnx, proto, repr(os.fspath(path))).run()


def _layer_name(raw: str, fallback: str, taken: set) -> str:
    """ONNX name -> corenet name: characters outside [A-Za-z0-9_] become '_', unique with _1, _2..."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", raw).strip("_") or fallback
    base, i = name, 0
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


class _Importer(MobileImports, ResamplingImports):
    def __init__(self, onnx, proto, where: str):
        self.onnx, self.proto, self.g = onnx, proto, proto.graph
        self.where = f"import_onnx: {where}"
        self.opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
        self.consts = {t.name: onnx.numpy_helper.to_array(t) for t in self.g.initializer}
        self.tensors: dict[str, object] = {}   # ONNX tensor name -> corenet SymbolicTensor
        self.weights: list = []                 # (layer, {param or buffer name: array}), filled after building
        self.taken: set = set()
        self.used = {i for n in self.g.node for i in n.input} | {o.name for o in self.g.output}

    def err(self, node, msg: str) -> ValueError:
        return ValueError(f"{self.where}: node {node.name!r} ({node.op_type}): {msg}")

    def run(self):
        self.lrn = {m.indices[-1]: m for m in find_lrn(self.onnx, self.g, self.where)}  # PyTorch's decomposed LRN
        self.skip = {j for m in self.lrn.values() for n, j in zip(m.nodes, m.indices) if n.op_type != "Constant"}
        self.skip -= set(self.lrn)
        self.folded = constant_nodes(self.g, self.consts) - self.skip  # e.g. the pads PyTorch computes for F.pad
        self.skip |= self._fuse_mobile()  # x * Sigmoid(x) -> SiLU, ...: corenet/io/onnx/import_mobile.py
        bad = [f"{n.name or '#' + str(i)!r} ({n.op_type}{'' if n.domain in ('', 'ai.onnx') else ' in ' + n.domain})"
               for i, n in enumerate(self.g.node) if i not in self.skip | self.folded and i not in self.lrn
               and (n.op_type not in _OPS or n.domain not in ("", "ai.onnx"))]
        if bad:
            raise ValueError(f"{self.where}: {len(bad)} node(s) have no corenet equivalent: {', '.join(bad)}; "
                             f"supported op types: {', '.join(sorted(_OPS))}")
        inputs = [self._input(v) for v in self.g.input if v.name not in self.consts]
        for i, node in enumerate(self.g.node):
            self._node(node, i)
        missing = [o.name for o in self.g.output if o.name not in self.tensors]
        if missing:
            raise ValueError(f"{self.where}: outputs {missing} are not computed from the inputs (constant outputs "
                             f"have no corenet equivalent)")
        outputs = [self.tensors[o.name] for o in self.g.output]
        for layer, arrays in self.weights:
            layer.initialize(dtype=layer.dtype)
            for k, v in arrays.items():
                dest = layer.params if k in layer.params else layer.buffers
                dest[k][...] = v
        name = _layer_name(self.g.name, "onnx_model", set())
        model_cls = model_classes()["Model"]  # registered by corenet.model: io imports no Model
        return model_cls(inputs[0] if len(inputs) == 1 else inputs, outputs[0] if len(outputs) == 1 else outputs,
                         name=name)

    # ------------------------------------------------------------------ plumbing
    def _input(self, v):
        t = v.type.tensor_type
        dtypes = {self.onnx.TensorProto.FLOAT: np.float32, self.onnx.TensorProto.DOUBLE: np.float64}
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if t.elem_type not in dtypes or len(dims) < 2 or any(d is None or d < 1 for d in dims[1:]):
            raise ValueError(f"{self.where}: input {v.name!r} must be float32/float64 of shape (batch, ...) with "
                             f"every other size fixed; received elem_type {t.elem_type}, dims {dims}")
        x = Input(tuple(dims[1:]), dtypes[t.elem_type], name=_layer_name(v.name, "input", self.taken))
        self.tensors[v.name] = x
        return x

    def _const(self, node, i: int, what: str, required=True):
        name = node.input[i] if i < len(node.input) else ""
        if not name:
            if required:
                raise self.err(node, f"needs its {what} (input {i})")
            return None
        if name not in self.consts:
            raise self.err(node, f"its {what} {name!r} must be an initializer or a Constant, not computed at run time")
        return self.consts[name]

    def _x(self, node, i=0):
        name = node.input[i]
        if name not in self.tensors:
            raise self.err(node, f"input {name!r} is a constant or unknown; corenet layers take graph tensors")
        return self.tensors[name]

    def _call(self, node, i, layer, x, arrays=None):
        layer.name = _layer_name(node.name, f"{node.op_type.lower()}_{i}", self.taken)
        try:
            y = layer(x)
        except (ValueError, TypeError) as exc:
            raise self.err(node, str(exc)) from None
        if arrays:
            for k, v in arrays.items():
                spec = layer._specs[k][0]
                if tuple(np.shape(v)) != spec:
                    raise self.err(node, f"{k} has shape {tuple(np.shape(v))}, the layer expects {spec}")
            self.weights.append((layer, arrays))
        self.tensors[node.output[0]] = y
        for extra in node.output[1:]:
            if extra and extra in self.used:
                raise self.err(node, f"its output {extra!r} (training-mode or index output) is used; corenet "
                                     f"imports the inference form only")

    @staticmethod
    def _attrs(node, onnx) -> dict:
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def _pads(self, node, a, k, s, d, hw):
        """ONNX pads [t, l, b, r] or auto_pad -> ((t, b), (l, r))."""
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = []
            for size, kk, ss, dd in zip(hw, k, s, d):
                out = -(-size // ss)
                total = max((out - 1) * ss + dd * (kk - 1) + 1 - size, 0)
                small, big = total // 2, total - total // 2
                pads.append((small, big) if auto == "SAME_UPPER" else (big, small))
            return tuple(pads)
        p = list(a.get("pads", [0, 0, 0, 0])) if auto != "VALID" else [0, 0, 0, 0]
        if len(p) != 4:
            raise self.err(node, f"expects 2-D pads [top, left, bottom, right], received {p}")
        return (p[0], p[2]), (p[1], p[3])

    # ------------------------------------------------------------------ nodes
    def _node(self, node, i):
        if i in self.skip:
            return
        if i in self.fused:
            return self._fused(node, i)
        if i in self.folded:
            return self.consts.update(fold(self.onnx, node, self.consts, self.opset))
        if i in self.lrn:
            m = self.lrn[i]
            verify_lrn(self.onnx, self.g, m, self._x(node).shape, self.opset, self.where)
            node = type(node)(name=m.name, op_type="LRN", output=node.output)  # names the layer after the module
            return self._call(node, i, L.LocalResponseNorm(m.size, m.alpha, m.beta, m.k), self.tensors[m.x])
        op, a = node.op_type, self._attrs(node, self.onnx)
        if op == "Constant":
            if "value" not in a:
                raise self.err(node, f"only tensor constants ('value') are supported, received {sorted(a)}")
            self.consts[node.output[0]] = self.onnx.numpy_helper.to_array(a["value"])
            return
        if op in _PASS:
            if op == "Dropout" and len(node.output) > 1 and node.output[1] in self.used:
                raise self.err(node, "its mask output is used; corenet imports the inference form only")
            self.tensors[node.output[0]] = self._x(node)
            return
        getattr(self, f"_{op}", self._simple)(node, i, a)

    def _simple(self, node, i, a):
        op = node.op_type
        if op in _ACTS:
            if op == "Selu" and (abs(a.get("alpha", 1.6732632) - 1.6732632) > 1e-6
                                 or abs(a.get("gamma", 1.0507010) - 1.0507010) > 1e-6):
                raise self.err(node, f"alpha/gamma {a} differ from SELU's constants")
            layer = _ACTS[op]()
        elif op == "LeakyRelu":
            layer = L.LeakyReLU(a.get("alpha", 0.01))
        elif op == "Elu":
            layer = L.ELU(a.get("alpha", 1.0))
        elif op == "Gelu":
            layer = L.GELU(a.get("approximate", b"none").decode() if isinstance(a.get("approximate"), bytes)
                           else a.get("approximate", "none"))
        elif op in ("GlobalAveragePool", "GlobalMaxPool"):
            layer = L.GlobalAvgPool2d() if op == "GlobalAveragePool" else L.GlobalMaxPool2d()
        elif op in ("Softmax", "LogSoftmax"):
            x = self._x(node)
            axis = a.get("axis", -1 if self.opset >= 13 else 1)
            if self.opset < 13 and len(x.shape) > 1:
                raise self.err(node, f"before opset 13 {op} flattens the axes after `axis`; only 2-D inputs map")
            if axis in (0, -len(x.shape) - 1):
                raise self.err(node, "a softmax over the batch axis has no corenet equivalent")
            layer = (L.Softmax if op == "Softmax" else L.LogSoftmax)(axis=axis)
        elif op == "Flatten":
            if a.get("axis", 1) != 1:
                raise self.err(node, f"axis={a.get('axis')}: only axis 1 (keep the batch axis) maps to Flatten")
            layer = L.Flatten()
        else:
            raise self.err(node, "no corenet equivalent")
        self._call(node, i, layer, self._x(node))

    def _Conv(self, node, i, a):
        w, b = self._const(node, 1, "weight"), self._const(node, 2, "bias", required=False)
        x = self._x(node)
        if w.ndim != 4 or len(x.shape) != 3:
            raise self.err(node, f"only 2-D convolution maps to Conv2d; weight shape {w.shape}, input {x.shape}")
        k = tuple(a.get("kernel_shape", w.shape[2:]))
        s, d = tuple(a.get("strides", (1, 1))), tuple(a.get("dilations", (1, 1)))
        layer = L.Conv2d(w.shape[0], k, s, self._pads(node, a, k, s, d, x.shape[1:]), d, a.get("group", 1),
                         bias=b is not None)
        self._call(node, i, layer, x, {"weight": w, **({"bias": b} if b is not None else {})})

    def _Gemm(self, node, i, a):
        if a.get("transA", 0):
            raise self.err(node, "transA=1 (the data transposed) has no Linear equivalent")
        w, c = self._const(node, 1, "weight"), self._const(node, 2, "bias", required=False)
        w = (w if a.get("transB", 0) else w.T) * a.get("alpha", 1.0)
        self._linear(node, i, w, None if c is None else c * a.get("beta", 1.0))

    def _MatMul(self, node, i, a):
        self._linear(node, i, self._const(node, 1, "weight").T, None)

    def _linear(self, node, i, w, c):
        if w.ndim != 2 or (c is not None and c.size not in (1, w.shape[0])):
            raise self.err(node, f"weight {w.shape} / bias {None if c is None else c.shape} do not form a Linear")
        arrays = {"weight": np.ascontiguousarray(w)}
        if c is not None:
            arrays["bias"] = np.broadcast_to(c.reshape(-1), (w.shape[0],)).copy()
        self._call(node, i, L.Linear(w.shape[0], bias=c is not None), self._x(node), arrays)

    def _Reshape(self, node, i, a):
        x, shape = self._x(node), [int(v) for v in self._const(node, 1, "shape")]
        if len(shape) < 2 or a.get("allowzero", 0) and 0 in shape:
            raise self.err(node, f"shape {shape} must keep the batch axis first")
        per = [x.shape[j] if v == 0 and j < len(x.shape) else v for j, v in enumerate(shape[1:])]
        if shape[0] == -1 and -1 in per:
            raise self.err(node, f"shape {shape}: the batch axis and another axis are both -1")
        self._call(node, i, L.Reshape(tuple(per)), x)  # shape[0]: 0, -1 or the exporter's batch size

    def _Unsqueeze(self, node, i, a):  # a Reshape per sample, as long as the batch axis stays first
        x = self._x(node)
        axes = list(a["axes"]) if "axes" in a else [int(v) for v in self._const(node, 1, "axes")]
        full = [-1, *x.shape]
        rank = len(full) + (len(axes) if node.op_type == "Unsqueeze" else -len(axes))
        axes = sorted(ax + (rank if node.op_type == "Unsqueeze" else len(full)) if ax < 0 else ax for ax in axes)
        if 0 in axes:
            raise self.err(node, f"axes {axes} include the batch axis")
        for ax in axes:
            if node.op_type == "Unsqueeze":
                full.insert(ax, 1)
            elif full[ax] != 1:
                raise self.err(node, f"axis {ax} has size {full[ax]}, not 1")
        if node.op_type == "Squeeze":
            full = [d for j, d in enumerate(full) if j not in axes]
        self._call(node, i, L.Reshape(tuple(full[1:])), x)

    _Squeeze = _Unsqueeze

    def _pool(self, node, i, a, cls, **kw):
        x = self._x(node)
        k = tuple(a["kernel_shape"])
        s, d = tuple(a.get("strides", (1,) * len(k))), tuple(a.get("dilations", (1,) * len(k)))
        if len(k) != 2:
            raise self.err(node, f"only 2-D pooling maps; kernel_shape {list(k)}")
        layer = cls(k, s, self._pads(node, a, k, s, d, x.shape[1:]), d, ceil_mode=bool(a.get("ceil_mode", 0)), **kw)
        self._call(node, i, layer, x)

    def _MaxPool(self, node, i, a):
        if a.get("storage_order", 0):
            raise self.err(node, "storage_order=1 (column-major indices) is not supported")
        self._pool(node, i, a, L.MaxPool2d)

    def _AveragePool(self, node, i, a):  # ONNX's default count_include_pad is 0
        self._pool(node, i, a, L.AvgPool2d, count_include_pad=bool(a.get("count_include_pad", 0)))

    def _BatchNormalization(self, node, i, a):
        if a.get("training_mode", 0):
            raise self.err(node, "training_mode=1: corenet imports the inference form")
        x = self._x(node)
        names = ("weight", "bias", "running_mean", "running_var")
        arrays = {n: self._const(node, j + 1, n) for j, n in enumerate(names)}
        cls = {3: L.BatchNorm2d, 1: L.BatchNorm1d}.get(len(x.shape))
        if cls is None:
            raise self.err(node, f"input shape {x.shape} per sample: BatchNorm2d takes (C, H, W), BatchNorm1d (C,)")
        layer = cls(eps=a.get("epsilon", 1e-5), momentum=1.0 - a.get("momentum", 0.9))
        self._call(node, i, layer, x, arrays)

    def _LRN(self, node, i, a):
        size = a["size"]
        if size % 2 == 0:
            raise self.err(node, f"size={size} is even: ONNX centres its window one channel higher than corenet")
        layer = L.LocalResponseNorm(size, a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0))
        self._call(node, i, layer, self._x(node))  # ONNX divides alpha by size: corenet's 'torch' convention

    def _merge(self, node, i, cls):
        xs = [self._x(node, j) for j in range(len(node.input))]
        if len({len(x.shape) for x in xs}) > 1:
            raise self.err(node, f"inputs of different ranks {[x.shape for x in xs]}: ONNX aligns trailing axes, "
                                 f"corenet leading ones; only equal ranks map")
        if len(xs) == 1:
            self.tensors[node.output[0]] = xs[0]
            return
        self._call(node, i, cls(), xs)

    def _Add(self, node, i, a):
        self._merge(node, i, L.Add)

    _Sum = _Add

    def _Mul(self, node, i, a):
        self._merge(node, i, L.Multiply)

    def _Concat(self, node, i, a):
        xs = [self._x(node, j) for j in range(len(node.input))]
        axis = a["axis"] + len(xs[0].shape) + 1 if a["axis"] < 0 else a["axis"]
        if axis == 0:
            raise self.err(node, "concatenation along the batch axis has no corenet equivalent")
        self._call(node, i, L.Concat(axis), xs)

    def _Pad(self, node, i, a):
        x = self._x(node)
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        pads = list(a["pads"]) if "pads" in a else [int(v) for v in self._const(node, 1, "pads")]
        value = a.get("value", 0.0) if "pads" in a else self._const(node, 2, "constant value", required=False)
        if len(node.input) > 3 and node.input[3]:
            raise self.err(node, "the 'axes' input (opset 18) is not supported; write all pads")
        n = len(x.shape) + 1
        if mode != "constant" or (value is not None and np.any(np.asarray(value) != 0)) or len(pads) != 2 * n:
            raise self.err(node, f"only zero padding maps (mode {mode!r}, value {value}, pads {pads})")
        before, after = pads[:n], pads[n:]
        if min(pads) < 0 or before[0] or after[0]:
            raise self.err(node, f"pads {pads}: negative pads or padding of the batch axis are not supported")
        if n == 4 and not before[1] and not after[1]:
            layer = L.ZeroPad2d(((before[2], after[2]), (before[3], after[3])))
        elif n == 4 and not any(before[2:] + after[2:]):
            layer = L.ChannelPad(before[1], after[1])  # the CIFAR ResNet's option-A shortcut
        else:
            raise self.err(node, f"pads {pads}: only height/width (ZeroPad2d) or only channels map")
        self._call(node, i, layer, x)
