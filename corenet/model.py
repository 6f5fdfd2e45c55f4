"""Model (a functional graph of layers) and Sequential: the low-level API under the training loop.

``Model(inputs, outputs)`` takes the nodes between Input tensor(s) and output tensor(s), names
unnamed layers (``conv2d``, ``conv2d_1``, ... unique per model; a user-supplied name wins; two
layers with one name are an error), initializes layers that hold no weights yet (in topological
order, from ``seed``) and compiles the graph. Training (compile/fit/evaluate/predict/save) comes
from :class:`corenet.training.TrainingMixin`.

Gradients follow PyTorch: ``backward`` accumulates into each layer's gradients and
``zero_grad()`` starts a new accumulation, so call it once per optimisation step.
Parameter names are ``"<layer name>.<PyTorch local name>"`` (``"conv2d.weight"``).
"""

from __future__ import annotations

import numpy as np

from . import functional as F
from .graph import Graph, Input, InputLayer, SymbolicTensor
from .io.checks import register_model_class
from .layers.base import Layer
from .model_config import read_graph_config, read_sequential_config
from .training import TrainingMixin, check_array_dtype

__all__ = ["Model", "Sequential"]


@register_model_class  # checkpoints and the ONNX importer name it; io imports no Model
class Model(TrainingMixin):
    """A network from ``inputs`` (Input tensors) to ``outputs`` (tensors), one tensor or a list each.

    Parameters
    ----------
    inputs, outputs : SymbolicTensor or list of SymbolicTensor
        With a single tensor, ``forward``/``backward`` take and return arrays; with a list, lists.
    name : str, optional
    seed : int, optional
        Seeds the initialization of every layer that is not initialized yet and has no ``seed=``
        of its own; the same architecture built twice with the same seed has identical weights.
    """

    def __init__(self, inputs, outputs, name: str | None = None, seed: int | None = None):
        self._single_in = not isinstance(inputs, (list, tuple))
        self._single_out = not isinstance(outputs, (list, tuple))
        self.inputs = [inputs] if self._single_in else list(inputs)
        self.outputs = [outputs] if self._single_out else list(outputs)
        if not self.inputs or not self.outputs:
            raise ValueError("Model: needs at least one input and one output tensor")
        self.name = name or type(self).__name__.lower()
        self.seed = seed
        self.graph = Graph(self.inputs, self.outputs)
        seen, order = set(), []
        for node in self.graph.nodes:
            if id(node.layer) not in seen:
                seen.add(id(node.layer))
                order.append(node.layer)
        self._all_layers = order
        self.layers = [layer for layer in order if not isinstance(layer, InputLayer)]
        self._assign_names()
        rng = np.random.default_rng(seed)
        for layer in self.layers:
            if not layer.initialized:
                layer.initialize(rng, layer.dtype)
        super().__init__()

    def _assign_names(self) -> None:
        by_name: dict[str, Layer] = {}
        for layer in self._all_layers:
            if layer.name is not None:
                other = by_name.setdefault(layer.name, layer)
                if other is not layer:
                    raise ValueError(f"Model: two different layers are named {layer.name!r} ({type(other).__name__} "
                                     f"and {type(layer).__name__}); layer names must be unique within a model")
        for layer in self._all_layers:
            if layer.name is None:
                name, i = layer.prefix, 0
                while name in by_name:
                    i += 1
                    name = f"{layer.prefix}_{i}"
                layer.name = name
                by_name[name] = layer
        self._by_name = by_name

    # ------------------------------------------------------------------ structure
    @property
    def input(self):
        return self.inputs[0] if self._single_in else self.inputs

    @property
    def output(self):
        return self.outputs[0] if self._single_out else self.outputs

    @property
    def input_names(self) -> list:
        return [t.node.layer.name for t in self.inputs]

    @property
    def output_names(self) -> list:
        return [t.node.layer.name for t in self.outputs]

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """The layer called ``name`` (inputs included), or ``layers[index]``."""
        if index is not None:
            return self.layers[index]
        if name not in self._by_name:
            raise ValueError(f"{self.name}: no layer named {name!r}; layers: {list(self._by_name)}")
        return self._by_name[name]

    def cut(self, at, name: str | None = None) -> Model:
        """A model from the same inputs to the output of layer ``at`` (name, layer or tensor), sharing its layers.

        Add a new head on ``cut.output`` (or on ``model.get_layer(at).output``) for transfer learning.
        """
        if isinstance(at, SymbolicTensor):
            out = at
        else:
            out = (at if isinstance(at, Layer) else self.get_layer(at)).output
        return Model(self.input, out, name=name or f"{self.name}_cut")

    # ------------------------------------------------------------------ compute
    def _as_inputs(self, x) -> list:
        if isinstance(x, dict):
            missing = [n for n in self.input_names if n not in x]
            if missing:
                raise ValueError(f"{self.name}: inputs {missing} missing; received keys {sorted(x)}")
            xs = [x[n] for n in self.input_names]
        elif isinstance(x, (list, tuple)):
            xs = list(x)
        else:
            xs = [x]
        if len(xs) != len(self.inputs):
            raise ValueError(f"{self.name}: expects {len(self.inputs)} input array(s) {self.input_names}, "
                             f"received {len(xs)}")
        out = []
        for a, t in zip(xs, self.inputs):
            if F.device_of(a) != "cpu":  # already a device array
                if tuple(a.shape[1:]) != t.shape or a.dtype != t.dtype:
                    raise ValueError(f"{self.name}: input {t.node.layer.name!r} expects {t.dtype} arrays of shape "
                                     f"(batch, {', '.join(map(str, t.shape))}), received a device array "
                                     f"{a.dtype} {tuple(a.shape)}")
                out.append(a)
                continue
            a = np.asarray(a)
            if a.dtype != t.dtype:  # float64 <-> float32 is cast; integer, complex, bool, object, str refused
                check_array_dtype(self.name, f"input {t.node.layer.name!r}", a, inputs=True)
            if a.shape[1:] != t.shape or a.ndim == 0:
                raise ValueError(f"{self.name}: input {t.node.layer.name!r} expects arrays of shape "
                                 f"(batch, {', '.join(map(str, t.shape))}), received shape {a.shape}")
            if a.dtype != t.dtype:
                a = a.astype(t.dtype)
            a = np.ascontiguousarray(a)
            out.append(F.move(a, self.device))  # a model on the GPU: one copy per batch
        if not out[0].shape[0]:
            raise ValueError(f"{self.name}: inputs must hold at least one sample, received shape {out[0].shape}")
        if len(out) > 1 and len({a.shape[0] for a in out}) > 1:
            raise ValueError(f"{self.name}: inputs must have one batch size, received shapes "
                             f"{[tuple(a.shape) for a in out]} for {self.input_names}")
        return out

    # ------------------------------------------------------------------ device
    device = "cpu"

    def to(self, device: str) -> Model:
        """Move parameters, gradients, float buffers and optimizer slots to ``"cuda"`` or ``"cpu"``, once.

        On ``"cuda"`` every training step stays on the GPU: ``forward``/``fit``/``train_on_batch``
        copy each numpy batch to the device once (device arrays are taken as they are), layers run
        the cuda kernels (chosen by the array kind, whatever ``corenet.set_backend`` says), the loss
        and the optimizer update run on the device, and only the loss value comes back per step.
        ``forward`` returns device arrays; ``predict`` and ``evaluate`` return numpy. Integer
        buffers (``num_batches_tracked``) and Adam's step counts stay on the host. Layers shared
        with another model move with this one. Returns the model.
        """
        target = F.check_device(f"{self.name}.to", device)  # 'cuda': a clear error without a GPU or numba-cuda
        for layer in self.layers:
            for d in (layer.params, layer.buffers, layer.grads):
                for k, v in d.items():
                    d[k] = F.move(v, target)  # float arrays only; no copy when already there
            layer._state = None
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None:
            for per in optimizer.slots.values():
                for name, a in per.items():
                    per[name] = F.move(a, target)
        self.graph._states = [None] * len(self.graph.steps)
        self.graph._retained = False
        self._step_cache = None
        self.device = target
        return self

    def forward(self, x, training: bool = False, retain_state: bool | None = None):
        """Run the network on ``x`` (an array, a list, or a dict by input name) -> output array or list.

        ``training`` selects batch-norm statistics and dropout. ``retain_state`` (default: ``training``)
        keeps what :meth:`backward` needs; pass True to differentiate an inference-mode forward.
        """
        if not isinstance(training, (bool, int, np.bool_, np.integer)):
            raise TypeError(f"{self.name}: training must be a bool, received {training!r}")
        training = bool(training)
        retain = training if retain_state is None else bool(retain_state)
        ys = self.graph.forward(self._as_inputs(x), training, retain)
        return ys[0] if self._single_out else ys

    def backward(self, gy, need_input_grads: bool = True):
        """Back-propagate ``gy`` (dL/d output; a list for several outputs, ``None`` for an unused one).

        Accumulates parameter gradients into :meth:`gradients` and returns dL/d input (array or
        list; ``None`` where no gradient reaches an input, or when ``need_input_grads=False``).
        """
        gys = [gy] if self._single_out else list(gy)
        if len(gys) != len(self.outputs):
            raise ValueError(f"{self.name}: backward expects {len(self.outputs)} output gradient(s), "
                             f"received {len(gys)}")
        gxs = self.graph.backward(gys, need_input_grads)
        return gxs[0] if self._single_in else gxs

    def __call__(self, x, training: bool = False):
        """``forward(x, training)`` on arrays. (A model is not a layer: build on ``model.output`` instead.)"""
        first = x[0] if isinstance(x, (list, tuple)) and x else x
        if isinstance(first, SymbolicTensor):
            raise TypeError(f"{self.name}: calling a model on symbolic tensors is not supported; build on its "
                            "layers' outputs instead, e.g. Model(base.input, head(base.output))")
        return self.forward(x, training=training)

    # ------------------------------------------------------------------ parameters
    def parameters(self) -> dict:
        """``{"layer.weight": array}`` for every parameter, trainable and frozen (buffers excluded)."""
        return {f"{layer.name}.{k}": v for layer in self.layers for k, v in layer.params.items()}

    def trainable_parameters(self) -> dict:
        return {f"{layer.name}.{k}": v for layer in self.layers if layer.trainable for k, v in layer.params.items()}

    def gradients(self) -> dict:
        """Gradients of :meth:`trainable_parameters`, same keys and order."""
        return {f"{layer.name}.{k}": v for layer in self.layers if layer.trainable
                for k, v in layer.gradients().items()}

    def lr_multipliers(self) -> dict:
        """Per trainable parameter, its layer's ``lr_mult`` (same keys as :meth:`trainable_parameters`)."""
        return {f"{layer.name}.{k}": layer.lr_mult for layer in self.layers if layer.trainable for k in layer.params}

    def zero_grad(self) -> None:
        for layer in self.layers:
            layer.zero_grad()

    def state_dict(self) -> dict:
        """Parameters and buffers (``running_mean``, ...) by PyTorch-style name; arrays are the live ones."""
        out = {}
        for layer in self.layers:
            for k, v in layer.params.items():
                out[f"{layer.name}.{k}"] = v
            for k, v in layer.buffers.items():
                out[f"{layer.name}.{k}"] = v
        return out

    def load_state_dict(self, state: dict, strict: bool = True) -> tuple[list, list]:
        """Copy ``state`` into the model's arrays in place; returns ``(missing, unexpected)`` names.

        Shape mismatches always raise; with ``strict`` missing and unexpected names raise too, all
        reported in one ValueError.
        """
        if not isinstance(state, dict):
            raise TypeError(f"{self.name}: load_state_dict takes a dict of name -> array, received "
                            f"{type(state).__name__}")
        own = self.state_dict()
        for k in own:  # never cast complex (dropping the imaginary part), bool, object or string arrays
            kind = np.asarray(state[k]).dtype.kind if k in state else "f"
            if kind not in "fiu":
                raise TypeError(f"{self.name}: load_state_dict: {k!r} must hold real numbers, received dtype "
                                f"{np.asarray(state[k]).dtype}")
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        mismatched = [f"{k}: model {own[k].shape}, received {np.shape(state[k])}"
                      for k in own if k in state and np.shape(state[k]) != own[k].shape]
        problems = []
        if strict and missing:
            problems.append(f"missing: {missing}")
        if strict and unexpected:
            problems.append(f"unexpected: {unexpected}")
        if mismatched:
            problems.append(f"shape mismatch: {mismatched}")
        if problems:
            hint = " (strict=False ignores missing and unexpected names)" if strict and not mismatched else ""
            raise ValueError(f"{self.name}: load_state_dict failed; " + "; ".join(problems) + hint)
        for k, v in own.items():
            if k in state:
                F.copy_into(v, np.asarray(state[k]).astype(v.dtype, copy=False))  # a device array: one copy
        return missing, unexpected

    def astype(self, dtype) -> Model:
        """Cast every parameter, buffer, gradient and input dtype (``astype(np.float64)`` for gradient checks)."""
        dtype = np.dtype(dtype)
        for layer in self.layers:
            layer.astype(dtype)
        for node in self.graph.nodes:
            node.output.dtype = dtype
        return self

    def summary(self, print_fn=print, line_length: int | None = None) -> str:
        """Print and return the layer table (see :func:`corenet.summary.summary`)."""
        from .summary import summary

        return summary(self, print_fn=print_fn, line_length=line_length)

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict:
        """JSON-serialisable architecture: layers, the calls between them, inputs and outputs."""
        call_index, nodes = {}, []
        for node in self.graph.nodes:
            k = call_index.setdefault(id(node.layer), [])
            k.append(node)
            nodes.append({"layer": node.layer.name,
                          "inputs": [self._ref(t, call_index) for t in node.inputs],
                          "multi": node.multi})
        layers = [{"class_name": type(layer).__name__, "config": layer.get_config()} for layer in self._all_layers]
        return {"class_name": "Model",
                "config": {"name": self.name, "seed": self.seed, "layers": layers, "nodes": nodes,
                           "inputs": [self._ref(t, call_index) for t in self.inputs],
                           "outputs": [self._ref(t, call_index) for t in self.outputs],
                           "single_input": self._single_in, "single_output": self._single_out}}

    @staticmethod
    def _ref(t, call_index) -> list:
        calls = call_index[id(t.node.layer)]
        return [t.node.layer.name, next(i for i, n in enumerate(calls) if n is t.node)]

    @classmethod
    def from_config(cls, config: dict) -> Model:
        """Rebuild a model (freshly initialized) from :meth:`get_config` output; dispatches to Sequential.

        The config is checked as it is read (a checkpoint's may be damaged or crafted): every malformed
        entry is a ValueError starting with ``from_config:`` that says where it is.
        """
        if isinstance(config, dict) and config.get("class_name") == "Sequential":
            return Sequential.from_config(config)
        spec = read_graph_config(config)
        return Model(spec["inputs"], spec["outputs"], name=spec["name"], seed=spec["seed"])

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.name!r}: {len(self.layers)} layers, "
                f"{sum(v.size for v in self.parameters().values()):,} params>")


@register_model_class
class Sequential(Model):
    """A chain of layers: ``Sequential([L.Conv2d(6, 5), L.ReLU(), ...], input_shape=(1, 28, 28))``.

    The list may start with an ``Input(...)`` tensor instead of ``input_shape``.
    """

    def __init__(self, layers=None, input_shape=None, name: str | None = None, seed: int | None = None,
                 dtype=np.float32):
        layers = list(layers or [])
        if layers and isinstance(layers[0], SymbolicTensor):
            x = layers.pop(0)
        elif input_shape is not None:
            x = Input(input_shape, dtype)
        else:
            raise ValueError("Sequential: give input_shape=(C, H, W) (per sample) or start the list with Input(...)")
        h = x
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: element {i} is a {type(layer).__name__}, not a Layer")
            h = layer(h)
        super().__init__(x, h, name=name, seed=seed)

    def add(self, layer: Layer) -> None:
        """Append ``layer`` (initialized from ``seed``; the layers already there keep their weights)."""
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add: expected a Layer, received {type(layer).__name__}")
        Model.__init__(self, self.inputs[0], layer(self.outputs[0]), name=self.name, seed=self.seed)

    def get_config(self) -> dict:
        t = self.inputs[0]
        return {"class_name": "Sequential",
                "config": {"name": self.name, "seed": self.seed, "input_shape": list(t.shape),
                           "dtype": t.dtype.name, "input_name": t.node.layer.name,
                           "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()}
                                      for layer in self.layers]}}

    @classmethod
    def from_config(cls, config: dict) -> Sequential:
        spec = read_sequential_config(config)
        return cls([spec["input"], *spec["layers"]], name=spec["name"], seed=spec["seed"])
