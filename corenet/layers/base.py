"""Layer: the lifecycle every layer follows (Keras's), with PyTorch's parameter layout and names.

Lifecycle
---------
1. **construct** — hyper-parameters only; nothing that depends on the input.
2. **build(input_shape)** — runs once, when the layer is first called on a symbolic tensor (or an
   array). ``input_shape`` is per sample (no batch axis). The layer checks it, infers what the
   constructor left open (input channels/features), declares its parameters and buffers with
   :meth:`add_param` and returns its output shape.
3. **initialize(rng, dtype)** — fills the declared arrays. :class:`~corenet.Model` does this for
   every new layer in topological order with one generator seeded by the model's ``seed``; a
   layer's own ``seed=`` wins. Layers that already hold weights (shared with another model) are
   left alone, so cutting a model and adding a head keeps the trained weights.
4. **forward(x, training=False, retain=True)** -> ``y``; with ``retain`` the layer keeps in
   ``self._state`` what its backward needs, only until that backward runs.
   **backward(gy, need_gx=True)** -> ``gx`` (``None`` when not asked), and, if the layer is
   ``trainable``, *accumulates* its parameter gradients into ``self.grads`` (PyTorch semantics:
   :meth:`zero_grad` starts a new accumulation; it costs nothing, the next backward overwrites).
5. **get_config() / from_config(cfg)** — JSON-serialisable constructor arguments.

Parameters live in ``self.params`` (trainable: ``weight``, ``bias``) and buffers in
``self.buffers`` (``running_mean``, ...), both under PyTorch's ``state_dict`` local names and in
PyTorch's layouts so that weights import 1:1. ``lr_mult`` scales the learning rate of this layer's
parameters (fine-tuning); ``trainable=False`` freezes them (and puts batch norm in eval mode).
Merge layers (``multi_input = True``) take and return lists.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .. import init as _init
from ..functional.validation import FLOAT_DTYPES, check_elements, flag, positive_float
from .symbolic import SymbolicTensor, connect, fmt_shape

__all__ = ["Layer", "get_layer_class", "fmt_shape"]

_CLASSES: dict[str, type] = {}
grad_ready = None  # set by corenet.distributed during a data-parallel backward: called with each layer storing grads


def get_layer_class(name: str) -> type:
    """The layer class registered under ``name`` (its class name), for ``from_config``."""
    try:
        return _CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown layer class {name!r}; known: {sorted(_CLASSES)}") from None


class Layer:
    """Base of every layer. Subclasses implement ``_build``, ``forward``, ``backward``, ``_config``."""

    prefix = "layer"        # stem of automatic names: conv2d, conv2d_1, ...
    multi_input = False     # merge layers take a list of tensors

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _CLASSES[cls.__name__] = cls

    def __init__(self, *, name: str | None = None, trainable: bool = True, lr_mult: float = 1.0,
                 seed: int | None = None):
        if name is not None and (not isinstance(name, str) or not name or "." in name):
            raise ValueError(f"{type(self).__name__}: name must be a non-empty str without '.', received {name!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"{type(self).__name__}: seed must be an int or None, received {seed!r}")
        self.name = name
        self.trainable = flag(type(self).__name__, "trainable", trainable)
        self.lr_mult = positive_float(type(self).__name__, "lr_mult", lr_mult, allow_zero=True)
        self.seed = None if seed is None else int(seed)
        self.params: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self._specs: dict[str, tuple] = {}
        self.input_shape = None
        self.output_shape = None
        self.dtype = None
        self.built = False
        self.has_params = False  # declares trainable arrays (set by build)
        self.initialized = False
        self._nodes: list = []
        self._state = None
        self._grads_fresh = True

    # ------------------------------------------------------------------ lifecycle
    def build(self, input_shape) -> tuple:
        """Check ``input_shape`` (per sample; a list of shapes for merges), declare params, return the output shape."""
        if self.multi_input:
            shape = [tuple(int(d) for d in s) for s in input_shape]
        else:
            shape = tuple(int(d) for d in input_shape)
        if self.built:
            if shape != self.input_shape:
                raise ValueError(
                    f"{self.label()}: already built for input shape {self._shape_str(self.input_shape)}; a layer "
                    f"is reused only on inputs of the same shape. Received: {self._shape_str(shape)}")
            return self.output_shape
        output_shape = tuple(int(d) for d in self._build(shape))
        check_elements(self.label(), output_shape, "output of one sample")
        self.output_shape = output_shape
        self.input_shape = shape
        self.has_params = any(not spec[4] for spec in self._specs.values())
        self.built = True
        return self.output_shape

    def compute_output_shape(self, input_shape) -> tuple:
        """Output shape (per sample) for ``input_shape``; builds the layer if it is not built."""
        return self.build(input_shape)

    def _build(self, input_shape) -> tuple:
        return input_shape

    def add_param(self, name: str, shape, init="zeros", *, fan_in=None, fan_out=None, buffer=False, dtype=None):
        """Declare a parameter (or a buffer) filled by ``init`` at :meth:`initialize`."""
        shape = tuple(int(d) for d in shape)
        check_elements(self.label(), shape, f"parameter {name!r}")
        self._specs[name] = (shape, init, fan_in, fan_out, buffer, dtype)

    def initialize(self, rng: np.random.Generator | None = None, dtype=None) -> None:
        """Create the declared arrays. The layer's own ``seed`` wins over ``rng``; neither: fresh entropy."""
        if not self.built:
            raise RuntimeError(f"{self.label()}: initialize() before build(); call the layer on a tensor first")
        if dtype is None:
            dtype = self.dtype if self.dtype is not None else np.float32
        dtype = np.dtype(dtype)
        if self.seed is not None:
            rng = np.random.default_rng(self.seed)
        elif rng is None:
            rng = np.random.default_rng()
        for pname, (shape, spec, fan_in, fan_out, buffer, fixed) in self._specs.items():
            arr = _init.make(spec, shape, rng, dtype if fixed is None else fixed, fan_in, fan_out)
            if buffer:
                self.buffers[pname] = arr
            else:
                self.params[pname] = arr
                self.grads[pname] = np.zeros_like(arr)
        self._initialize_extra(rng)
        self.dtype = dtype
        self.initialized = True
        self._grads_fresh = True

    def _initialize_extra(self, rng) -> None:
        """Hook for state drawn from the model's generator besides parameters (dropout's generator)."""

    # ------------------------------------------------------------------ compute
    def __call__(self, inputs):
        """On symbolic tensor(s): record a graph node, return the output tensor. On arrays: run forward."""
        first = inputs[0] if isinstance(inputs, (list, tuple)) and inputs else inputs
        if isinstance(first, SymbolicTensor):
            return connect(self, inputs)
        arrays = self._check_arrays(inputs)
        self.build([a.shape[1:] for a in arrays] if self.multi_input else arrays.shape[1:])  # checks a built layer
        if not self.initialized:
            self.initialize(dtype=(arrays[0] if self.multi_input else arrays).dtype)
        return self.forward(arrays, training=False)

    def _check_arrays(self, inputs):
        """Eager calls: float arrays with a batch axis (one, or a list of one batch size for merges)."""
        if self.multi_input != isinstance(inputs, (list, tuple)):
            want = "a list of arrays" if self.multi_input else "one array"
            raise TypeError(f"{self.label()}: expects {want}, received {type(inputs).__name__}")
        arrays = list(inputs) if self.multi_input else [inputs]
        for a in arrays:
            if not F.is_array(a):
                raise TypeError(f"{self.label()}: expects numpy (or device) arrays, received {type(a).__name__}")
            if a.dtype not in FLOAT_DTYPES:
                raise TypeError(f"{self.label()}: expects float32 or float64 arrays, received dtype {a.dtype}")
            if len(a.shape) < 2 or min(a.shape) < 1:
                raise ValueError(f"{self.label()}: expects arrays (batch, ...) with at least one sample and one "
                                 f"axis per sample, every size >= 1, received shape {tuple(a.shape)}")
        if len({a.shape[0] for a in arrays}) > 1:
            raise ValueError(f"{self.label()}: inputs must have one batch size, received shapes "
                             f"{[tuple(a.shape) for a in arrays]}")
        return arrays if self.multi_input else arrays[0]

    def forward(self, x, training: bool = False, retain: bool = True):
        raise NotImplementedError

    def backward(self, gy, need_gx: bool = True):
        raise NotImplementedError

    def _check_gy(self, gy, batch: int | None = None) -> None:
        """For layers that run no functional op (which checks its own): ``gy`` is a float array of the
        output's per-sample shape (and of the forward's batch size when known). A tuple compare per step."""
        if not F.is_array(gy):
            raise TypeError(f"{self.label()}: backward expects gy as a numpy (or device) array, "
                            f"received {type(gy).__name__}")
        if gy.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{self.label()}: backward expects a float32 or float64 gy, received dtype {gy.dtype}")
        shape = tuple(gy.shape)
        if shape[1:] != self.output_shape or len(shape) < 1 or (batch is not None and shape[0] != batch):
            n = "batch" if batch is None else batch
            raise ValueError(f"{self.label()}: backward expects gy of shape {(n, *self.output_shape)}, "
                             f"received gy.shape={shape}")

    def _store_grads(self, grads: dict) -> None:
        """Accumulate parameter gradients (overwrite after :meth:`zero_grad`)."""
        own = self.grads
        if self._grads_fresh:
            for k, g in grads.items():
                if g is not None:
                    F.copy_into(own[k], g)
            self._grads_fresh = False
        else:
            for k, g in grads.items():
                if g is not None:
                    F.accumulate(own[k], g)
        if grad_ready is not None:
            grad_ready(self)

    def zero_grad(self) -> None:
        """Start a new gradient accumulation (lazy: no memory is touched)."""
        self._grads_fresh = True

    def gradients(self) -> dict:
        """Parameter gradients (zeros after :meth:`zero_grad` until the next backward)."""
        if self._grads_fresh:
            for g in self.grads.values():
                F.fill(g, 0)
        return self.grads

    def param_count(self) -> int:
        """Number of parameter elements (buffers excluded), from the declared shapes."""
        return int(sum(int(np.prod(s[0])) for s in self._specs.values() if not s[4]))

    def macs(self) -> int:
        """Multiply-accumulates per sample (convolution and linear layers only; see corenet.summary)."""
        return 0

    def astype(self, dtype) -> Layer:
        """Cast floating parameters, buffers and gradients to ``dtype`` (e.g. float64 for gradient checks)."""
        dtype = np.dtype(dtype)
        for d in (self.params, self.buffers, self.grads):
            for k, v in d.items():
                if v.dtype.kind == "f":
                    d[k] = F.astype(v, dtype, self.label(), repr(k))
        self.dtype = dtype
        self._state = None
        return self

    # ------------------------------------------------------------------ graph
    @property
    def output(self):
        """The symbolic output of this layer's only call (for cutting a model at this layer)."""
        return self._only_node("output").output

    @property
    def input(self):
        node = self._only_node("input")
        return node.inputs if node.multi else node.inputs[0]

    def _only_node(self, what):
        if not self._nodes:
            raise ValueError(f"{self.label()} has not been called on a tensor yet, so it has no {what}")
        if len(self._nodes) > 1:
            raise ValueError(f"{self.label()} was called {len(self._nodes)} times; its {what} is ambiguous "
                             f"(use layer.nodes[i].output)")
        return self._nodes[0]

    @property
    def nodes(self) -> list:
        return list(self._nodes)

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict:
        cfg = {"name": self.name, "trainable": self.trainable}
        if self.lr_mult != 1.0:
            cfg["lr_mult"] = self.lr_mult
        if self.seed is not None:
            cfg["seed"] = self.seed
        cfg.update(self._config())
        return cfg

    def _config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict) -> Layer:
        return cls(**config)

    # ------------------------------------------------------------------ messages
    def label(self) -> str:
        """``Conv2d layer 'conv2d_1'`` (or ``Conv2d layer`` before the model names it)."""
        cls = type(self).__name__
        return f"{cls} layer {self.name!r}" if self.name else f"{cls} layer"

    def _shape_str(self, shape) -> str:
        if shape and isinstance(shape, list):
            return ", ".join(fmt_shape(s) for s in shape)
        return fmt_shape(shape)

    def _error(self, msg: str, input_shape) -> ValueError:
        return ValueError(f"{self.label()}: {msg}. Received: input shape {self._shape_str(input_shape)}")

    def _check_image(self, input_shape) -> None:
        """An image layer's per-sample input is ``(channels, height, width)``."""
        if len(input_shape) != 3:
            raise self._error("expects per-sample input (channels, height, width)", input_shape)

    def _image_output_shape(self, shape_fn, input_shape, *args, **kwargs) -> tuple:
        """``shape_fn((1, C, H, W), *args, **kwargs)[1:]`` for an image layer; the op's errors (same type)
        raised under this layer's name, so a layer infers exactly the shape its op computes."""
        self._check_image(input_shape)
        try:
            return tuple(shape_fn((1, *input_shape), *args, **kwargs)[1:])
        except (ValueError, TypeError) as e:
            raise type(e)(f"{self.label()}: {str(e).replace(f'{shape_fn.__name__}: ', '')}. Received: input shape "
                          f"{self._shape_str(input_shape)}") from None

    def __repr__(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"{type(self).__name__}({cfg}{', ' if cfg else ''}name={self.name!r})"
