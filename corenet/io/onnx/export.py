"""corenet -> ONNX: one or a few ONNX nodes per layer call, in the graph's topological order.

Tensor names: a graph input is named after its Input layer, a layer call's output after the layer
(``conv1``; ``conv1_call1``... for further calls of a shared layer); parameters keep their
``state_dict`` names (``conv1.weight``), so :func:`corenet.import_onnx` gives the layers their
names back. Refused, with the reason in the error: LRN of even size (ONNX centres the window the
other way; onnxruntime refuses it) or within channel; dilated average pooling (ONNX has it from
opset 19); average pooling with ``divisor_override``; MinPool2d and SumPool2d; adaptive pooling
whose bins are not one plain window.

Pooling with ``ceil_mode`` is written as ``ceil_mode=1``, as PyTorch's exporter does. onnxruntime and
onnx's reference evaluator then compute PyTorch's (and corenet's) sizes, where the last window must
start inside the input or the leading padding; ONNX shape inference below opset 22 omits that rule
and may announce one more row or column (onnxruntime logs a warning, the values are right).
"""

from __future__ import annotations

import math
import os

import numpy as np

from ...geometry import padding4
from ...graph import InputLayer
from .common import OPSETS, require_onnx
from .export_mobile import MobileExports

__all__ = ["export"]

# the IR version that goes with each opset (onnx's VERSION_TABLE), so that older runtimes load the file
_IR_VERSION = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8}


def export(model, path, opset: int = 17) -> None:
    onnx = require_onnx("corenet.export_onnx")
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or int(opset) not in OPSETS:
        raise ValueError(f"export_onnx: opset must be an int in {OPSETS.start}..{OPSETS.stop - 1}, received {opset!r}")
    graph = _Exporter(onnx, model, int(opset)).run()
    proto = onnx.helper.make_model(graph, producer_name="corenet",
                                   opset_imports=[onnx.helper.make_opsetid("", int(opset))])
    proto.ir_version = _IR_VERSION[int(opset)]
    data = proto.SerializeToString()  # once: the checker takes the bytes (VGG's are over 500 MB)
    onnx.checker.check_model(data)
    tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class _Exporter(MobileExports):  # the mobile architectures' layers: export_mobile.py
    def __init__(self, onnx, model, opset: int):
        self.onnx, self.h, self.model, self.opset = onnx, onnx.helper, model, opset
        self.nodes, self.inits, self.names = [], {}, {}
        self.elem = {np.dtype(np.float32): onnx.TensorProto.FLOAT, np.dtype(np.float64): onnx.TensorProto.DOUBLE}

    # ------------------------------------------------------------------ helpers
    def const(self, name: str, value, dtype=None) -> str:
        """An initializer (added once per name) holding ``value``."""
        if name not in self.inits:
            arr = np.asarray(value, dtype=dtype)
            self.inits[name] = self.onnx.numpy_helper.from_array(np.ascontiguousarray(arr), name)
        return name

    def node(self, op: str, inputs, name: str, output: str | None = None, **attrs) -> str:
        out = output or name
        self.nodes.append(self.h.make_node(op, list(inputs), [out], name=name, **attrs))
        return out

    def value_info(self, name: str, dtype, shape):
        return self.h.make_tensor_value_info(name, self.elem[np.dtype(dtype)], ["N", *shape])

    # ------------------------------------------------------------------ graph
    def run(self):
        model = self.model
        calls: dict[int, int] = {}
        inputs = []
        for t in model.inputs:  # in the model's order, which is the order predict takes them in
            layer = t.node.layer
            self.names[id(t)] = layer.name
            inputs.append(self.value_info(layer.name, layer.input_dtype, layer.shape))
        for gnode in model.graph.nodes:
            layer = gnode.layer
            if isinstance(layer, InputLayer):
                continue
            k = calls[id(layer)] = calls.get(id(layer), -1) + 1
            out = layer.name if k == 0 else f"{layer.name}_call{k}"
            xs = [self.names[id(t)] for t in gnode.inputs]
            fn = getattr(self, f"_{type(layer).__name__}", None)
            if fn is None:
                raise ValueError(f"export_onnx: {layer.label()} ({type(layer).__module__}.{type(layer).__name__}) "
                                 f"has no ONNX mapping; supported: {sorted(_supported())}")
            self.names[id(gnode.output)] = fn(layer, xs if layer.multi_input else xs[0], out, gnode)
        outputs, used = [], {i.name for i in inputs}
        for t in model.outputs:
            name = self.names[id(t)]
            if name in used:  # an output that is a graph input or another output (e.g. after a removed Dropout)
                name = self.node("Identity", [name], f"{name}_out{len(outputs)}")
            used.add(name)
            outputs.append(self.value_info(name, t.dtype, t.shape))
        return self.h.make_graph(self.nodes, model.name, inputs, outputs, list(self.inits.values()))

    def _refuse(self, layer, why: str):
        return ValueError(f"export_onnx: {layer.label()} ({type(layer).__name__}) cannot be exported: {why}")

    def _weights(self, layer, *names):
        return [self.const(f"{layer.name}.{n}", layer.params[n]) for n in names if n in layer.params]

    # ------------------------------------------------------------------ layers
    def _Conv2d(self, layer, x, out, gnode):
        t, b, l, r = padding4("Conv2d", layer.padding, layer.kernel_size, layer.stride, layer.dilation,
                              layer.input_shape[1:])
        return self.node("Conv", [x, *self._weights(layer, "weight", "bias")], out,
                         kernel_shape=list(layer.kernel_size), strides=list(layer.stride), pads=[t, l, b, r],
                         dilations=list(layer.dilation), group=layer.groups)

    def _ConvTranspose2d(self, layer, x, out, gnode):
        """ConvTranspose (PyTorch's weight layout and output size). onnxruntime refuses an
        ``output_padding`` as large as the stride (which a dilation allows): such an axis is written
        with the bottom/right padding reduced by it, and what the padding cannot absorb as zero
        rows/columns appended by a Pad, with the bias added after it."""
        t, b, l, r = padding4("ConvTranspose2d", layer.padding, layer.kernel_size, layer.stride, layer.dilation,
                              layer.input_shape[1:])
        attrs = dict(kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                     dilations=list(layer.dilation), group=layer.groups)
        (oh, ow), (sh, sw) = layer.output_padding, layer.stride
        if oh < sh and ow < sw:
            return self.node("ConvTranspose", [x, *self._weights(layer, "weight", "bias")], out, pads=[t, l, b, r],
                             output_padding=[oh, ow], **attrs)
        pads = [t, l, max(0, b - oh), max(0, r - ow)]
        eh, ew = max(0, oh - b), max(0, ow - r)  # rows/columns past the full scatter: zeros (+ bias)
        if not (eh or ew):
            return self.node("ConvTranspose", [x, *self._weights(layer, "weight", "bias")], out, pads=pads, **attrs)
        y = self.node("ConvTranspose", [x, *self._weights(layer, "weight")], f"{out}/conv", pads=pads, **attrs)
        y = self.node("Pad", [y, self.const(f"{out}._pads", [0, 0, 0, 0, 0, 0, eh, ew], np.int64)],
                      f"{out}/pad" if layer.use_bias else out, mode="constant")
        if layer.use_bias:
            y = self.node("Add", [y, self.const(f"{out}._bias", layer.params["bias"].reshape(1, -1, 1, 1))], out)
        return y

    def _Upsample(self, layer, x, out, gnode):
        """Resize with the coordinate rule of corenet's (PyTorch's) kernels: nearest = ``asymmetric`` +
        ``floor``; bilinear = ``half_pixel`` (the source coordinate clamped at 0 by linear
        interpolation's edge rule) or ``align_corners``. A ``size`` becomes ``sizes`` (the source
        scale ``in/out``): of the spatial axes from opset 18, below it the input's (N, C) at run time
        and (H_out, W_out) (onnxruntime runs it; import_onnx reads constant sizes only); a
        ``scale_factor`` becomes ``scales`` (``1/scale_factor``), 1 on an axis
        whose size does not change (a copy) and 2 on an exact doubling in nearest mode (PyTorch's
        halving)."""
        (_, H, W), (_, ho, wo) = layer.input_shape, layer.output_shape
        attrs = {}
        if layer.size is not None and self.opset >= 18:  # sizes of the spatial axes only
            inputs = [x, "", "", self.const(f"{out}._sizes", [ho, wo], np.int64)]
            attrs = dict(axes=[2, 3])
        elif layer.size is not None:  # (N, C) of the input at run time, then the fixed (ho, wo)
            nc = self.node("Slice", [self.node("Shape", [x], f"{out}/shape"), self.const(f"{out}._s0", [0], np.int64),
                                     self.const(f"{out}._s2", [2], np.int64)], f"{out}/nc")
            inputs = [x, "", "", self.node("Concat", [nc, self.const(f"{out}._hw", [ho, wo], np.int64)],
                                           f"{out}/sizes", axis=0)]
        else:
            sf = layer.scale_factor if isinstance(layer.scale_factor, list) else [layer.scale_factor] * 2
            scales = []
            for size, o, f in zip((H, W), (ho, wo), sf):
                a = 1.0 if o == size else 2.0 if layer.mode == "nearest" and o == 2 * size else float(f)
                if int(np.float32(a) * np.float32(size)) != o:  # onnxruntime sizes the output in float32
                    raise self._refuse(layer, f"scale_factor {f} on a side of {size} gives {o} (floor in float64) "
                                              f"but ONNX Resize's float32 scale gives another size; give size= instead")
                scales.append(a)
            inputs = [x, "", self.const(f"{out}._scales", [1.0, 1.0, *scales], np.float32)]
        if layer.mode == "nearest":
            attrs.update(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        else:
            ctm = "align_corners" if layer.align_corners else "half_pixel"
            attrs.update(mode="linear", coordinate_transformation_mode=ctm)
        return self.node("Resize", inputs, out, **attrs)

    def _Linear(self, layer, x, out, gnode):
        return self.node("Gemm", [x, *self._weights(layer, "weight", "bias")], out, transB=1)

    def _Flatten(self, layer, x, out, gnode):
        return self.node("Flatten", [x], out, axis=1)

    def _Reshape(self, layer, x, out, gnode):
        shape = self.const(f"{out}._shape", [0, *layer.output_shape], np.int64)  # 0: keep the batch size
        return self.node("Reshape", [x, shape], out)

    def _ZeroPad2d(self, layer, x, out, gnode):
        t, b, l, r = layer.pads
        pads = self.const(f"{out}._pads", [0, 0, t, l, 0, 0, b, r], np.int64)
        return self.node("Pad", [x, pads], out, mode="constant")

    def _ChannelPad(self, layer, x, out, gnode):  # the CIFAR ResNet's option-A shortcut
        pads = self.const(f"{out}._pads", [0, layer.before, 0, 0, 0, layer.after, 0, 0], np.int64)
        return self.node("Pad", [x, pads], out, mode="constant")

    def _ChannelSlice(self, layer, x, out, gnode):  # ShuffleNet v2's channel split
        starts, ends, axes = (self.const(f"{out}._{k}", [v], np.int64) for k, v in
                              (("starts", layer.start), ("ends", layer.stop), ("axes", 1)))
        return self.node("Slice", [x, starts, ends, axes], out)

    def _Dropout(self, layer, x, out, gnode):
        return x  # the identity in evaluation

    def _pool_attrs(self, layer):
        k, s, d = layer.kernel_size, layer.stride, layer.dilation
        t, b, l, r = padding4(type(layer).__name__, layer.padding, k, s, d, layer.input_shape[1:])
        return {"kernel_shape": list(k), "strides": list(s), "pads": [t, l, b, r], "ceil_mode": int(layer.ceil_mode)}

    def _MaxPool2d(self, layer, x, out, gnode):
        attrs = self._pool_attrs(layer)
        if layer.dilation != (1, 1):
            attrs["dilations"] = list(layer.dilation)
        return self.node("MaxPool", [x], out, **attrs)

    def _AvgPool2d(self, layer, x, out, gnode):
        if layer.dilation != (1, 1):
            raise self._refuse(layer, f"dilation={layer.dilation}: ONNX AveragePool has dilations only from "
                                      f"opset 19 (this export writes opsets {OPSETS.start}-{OPSETS.stop - 1})")
        if layer.divisor_override is not None:
            raise self._refuse(layer, f"divisor_override={layer.divisor_override} has no ONNX equivalent")
        return self.node("AveragePool", [x], out, count_include_pad=int(layer.count_include_pad),
                         **self._pool_attrs(layer))

    def _MinPool2d(self, layer, x, out, gnode):
        raise self._refuse(layer, "ONNX has no min pooling (write MaxPool2d on the negated input)")

    def _SumPool2d(self, layer, x, out, gnode):
        raise self._refuse(layer, "ONNX has no sum pooling (an AvgPool2d times the window size, or a "
                                  "depthwise Conv2d of ones, says the same)")

    def _GlobalAvgPool2d(self, layer, x, out, gnode):
        return self.node("GlobalAveragePool", [x], out)

    def _GlobalMaxPool2d(self, layer, x, out, gnode):
        return self.node("GlobalMaxPool", [x], out)

    def _AdaptiveAvgPool2d(self, layer, x, out, gnode):
        (_, H, W), (_, ho, wo) = layer.input_shape, layer.output_shape
        if (ho, wo) == (1, 1):
            return self.node("GlobalAveragePool", [x], out)
        if H % ho or W % wo:
            raise self._refuse(layer, f"its bins from {H}x{W} to {ho}x{wo} are not one plain window (ONNX has no "
                                      f"adaptive pooling; the input size must be a multiple of the output size)")
        k = [H // ho, W // wo]
        return self.node("AveragePool", [x], out, kernel_shape=k, strides=k, pads=[0, 0, 0, 0], ceil_mode=0,
                         count_include_pad=1)

    def _AdaptiveMaxPool2d(self, layer, x, out, gnode):
        (_, H, W), (_, ho, wo) = layer.input_shape, layer.output_shape
        if (ho, wo) == (1, 1):
            return self.node("GlobalMaxPool", [x], out)
        if H % ho or W % wo:
            raise self._refuse(layer, f"its bins from {H}x{W} to {ho}x{wo} are not one plain window (ONNX has no "
                                      f"adaptive pooling; the input size must be a multiple of the output size)")
        k = [H // ho, W // wo]
        return self.node("MaxPool", [x], out, kernel_shape=k, strides=k, pads=[0, 0, 0, 0], ceil_mode=0)

    def _BatchNorm2d(self, layer, x, out, gnode):
        C, dt = layer.num_features, layer.buffers["running_mean"].dtype
        if layer.affine:
            scale, bias = self._weights(layer, "weight", "bias")
        else:  # ONNX's scale and bias are required inputs
            scale, bias = self.const(f"{out}._ones", np.ones(C, dt)), self.const(f"{out}._zeros", np.zeros(C, dt))
        mean = self.const(f"{layer.name}.running_mean", layer.buffers["running_mean"])
        var = self.const(f"{layer.name}.running_var", layer.buffers["running_var"])
        return self.node("BatchNormalization", [x, scale, bias, mean, var], out, epsilon=float(layer.eps),
                         momentum=1.0 - float(layer.momentum))  # ONNX's momentum weighs the old statistics

    _BatchNorm1d = _BatchNorm2d

    def _LocalResponseNorm(self, layer, x, out, gnode):
        if layer.mode != "across":
            raise self._refuse(layer, "ONNX's LRN normalises across channels only (mode='within' has no equivalent)")
        if layer.size % 2 == 0:
            raise self._refuse(layer, f"size={layer.size} is even: ONNX's LRN window reaches one channel further "
                                      f"up than corenet's (and PyTorch's) and onnxruntime refuses even sizes")
        alpha = layer.alpha if layer.convention in ("torch", "caffe") else layer.alpha * layer.size
        return self.node("LRN", [x], out, size=layer.size, alpha=float(alpha), beta=float(layer.beta),
                         bias=float(layer.k))  # ONNX divides alpha by size, as the torch convention does

    # ------------------------------------------------------------------ activations
    def _ReLU(self, layer, x, out, gnode):
        return self.node("Relu", [x], out)

    def _LeakyReLU(self, layer, x, out, gnode):
        return self.node("LeakyRelu", [x], out, alpha=float(layer._kw["negative_slope"]))

    def _ELU(self, layer, x, out, gnode):
        return self.node("Elu", [x], out, alpha=float(layer._kw["alpha"]))

    def _SELU(self, layer, x, out, gnode):
        from ...functional.act import SELU_ALPHA, SELU_SCALE

        return self.node("Selu", [x], out, alpha=SELU_ALPHA, gamma=SELU_SCALE)

    def _Sigmoid(self, layer, x, out, gnode):
        return self.node("Sigmoid", [x], out)

    def _Tanh(self, layer, x, out, gnode):
        return self.node("Tanh", [x], out)

    def _Softmax(self, layer, x, out, gnode):
        return self.node("Softmax", [x], out, axis=int(layer._kw["axis"]))  # opset >= 13: one axis, as corenet

    def _LogSoftmax(self, layer, x, out, gnode):
        return self.node("LogSoftmax", [x], out, axis=int(layer._kw["axis"]))

    def _GELU(self, layer, x, out, gnode):
        """Below opset 20 (no Gelu op): ``x * 0.5 * (1 + erf(x / sqrt 2))``, or the tanh form."""
        dt = gnode.output.dtype
        c = lambda tag, v: self.const(f"{out}._{tag}", np.asarray(v, dt))  # noqa: E731
        if layer._kw["approximate"] == "tanh":
            x3 = self.node("Mul", [self.node("Mul", [x, x], f"{out}/x2"), x], f"{out}/x3")
            inner = self.node("Add", [x, self.node("Mul", [x3, c("k", 0.044715)], f"{out}/kx3")], f"{out}/inner")
            t = self.node("Tanh", [self.node("Mul", [inner, c("s", math.sqrt(2 / math.pi))], f"{out}/scaled")],
                          f"{out}/tanh")
        else:
            t = self.node("Erf", [self.node("Mul", [x, c("r", 1 / math.sqrt(2))], f"{out}/scaled")], f"{out}/erf")
        one_plus = self.node("Add", [t, c("one", 1.0)], f"{out}/one_plus")
        return self.node("Mul", [self.node("Mul", [x, one_plus], f"{out}/x_times"), c("half", 0.5)], out)

    # ------------------------------------------------------------------ merges
    def _aligned(self, layer, xs, out):
        """corenet broadcasts channels-first (trailing unit axes); ONNX aligns trailing axes: unsqueeze."""
        ndim = len(layer.output_shape)
        res = []
        for i, (x, shape) in enumerate(zip(xs, layer.input_shape)):
            if len(shape) < ndim:
                axes = self.const(f"{out}._axes{i}", list(range(len(shape) + 1, ndim + 1)), np.int64)
                x = self.node("Unsqueeze", [x, axes], f"{out}/unsqueeze{i}")
            res.append(x)
        return res

    def _Add(self, layer, xs, out, gnode):
        xs = self._aligned(layer, xs, out)
        return self.node("Add" if len(xs) == 2 else "Sum", xs, out)

    def _Multiply(self, layer, xs, out, gnode):
        xs = self._aligned(layer, xs, out)
        y = xs[0]
        for i, x in enumerate(xs[1:], 1):
            y = self.node("Mul", [y, x], out if i == len(xs) - 1 else f"{out}/mul{i}")
        return y

    def _Concat(self, layer, xs, out, gnode):
        return self.node("Concat", xs, out, axis=int(layer._ax))


def _supported() -> list[str]:
    return [n[1:] for n in dir(_Exporter) if n[:2] != "__" and n[1:2].isupper()
            and n[1:] not in ("MinPool2d", "SumPool2d")]
