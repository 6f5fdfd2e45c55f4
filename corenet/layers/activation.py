"""Activation layers: thin stateful wrappers over the fused activation ops of ``corenet.functional``.

Each keeps the input's shape and dtype; the formulas are in the docstrings of the ops.
"""

from __future__ import annotations

from .. import functional as F
from ..functional.validation import choice, integer, real
from .base import Layer

__all__ = ["ReLU", "LeakyReLU", "ELU", "SELU", "GELU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
           "ReLU6", "SiLU", "Hardswish", "Hardsigmoid"]


class _Activation(Layer):
    """``y = op(x, **self._kw)``; backward ``op_backward(gy, state)``."""

    op = ""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._kw = {}
        self._fwd = getattr(F, self.op)
        self._bwd = getattr(F, self.op + "_backward")

    def forward(self, x, training=False, retain=True):
        if retain:
            y, self._state = self._fwd(x, **self._kw, return_state=True)
            return y
        return self._fwd(x, **self._kw)

    def backward(self, gy, need_gx=True):
        gx = self._bwd(gy, self._state) if need_gx else None
        self._state = None
        return gx

    def _config(self):
        return dict(self._kw)


class ReLU(_Activation):
    """``max(x, 0)``."""

    prefix, op = "relu", "relu"


class LeakyReLU(_Activation):
    """``x if x > 0 else negative_slope * x`` (PyTorch's default slope 0.01)."""

    prefix, op = "leaky_relu", "leaky_relu"

    def __init__(self, negative_slope=0.01, **kwargs):
        super().__init__(**kwargs)
        self._kw = {"negative_slope": real(type(self).__name__, "negative_slope", negative_slope)}


class ELU(_Activation):
    """``x if x > 0 else alpha * (exp(x) - 1)``."""

    prefix, op = "elu", "elu"

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self._kw = {"alpha": real(type(self).__name__, "alpha", alpha)}


class SELU(_Activation):
    """Scaled ELU with the self-normalising constants of Klambauer et al. (2017)."""

    prefix, op = "selu", "selu"


class GELU(_Activation):
    """``x * Phi(x)``; ``approximate='tanh'`` for the tanh approximation (as PyTorch)."""

    prefix, op = "gelu", "gelu"

    def __init__(self, approximate="none", **kwargs):
        super().__init__(**kwargs)
        self._kw = {"approximate": choice(type(self).__name__, "approximate", approximate, ("none", "tanh"))}


class ReLU6(_Activation):
    """``min(max(x, 0), 6)`` (MobileNetV2)."""

    prefix, op = "relu6", "relu6"


class SiLU(_Activation):
    """``x * sigmoid(x)``, also called swish (EfficientNet)."""

    prefix, op = "silu", "silu"


class Hardswish(_Activation):
    """``x * min(max(x + 3, 0), 6) / 6`` (MobileNetV3)."""

    prefix, op = "hardswish", "hardswish"


class Hardsigmoid(_Activation):
    """``min(max(x + 3, 0), 6) / 6`` (MobileNetV3's squeeze-and-excitation gate)."""

    prefix, op = "hardsigmoid", "hardsigmoid"


class Sigmoid(_Activation):
    prefix, op = "sigmoid", "sigmoid"


class Tanh(_Activation):
    prefix, op = "tanh", "tanh"


class Softmax(_Activation):
    """Softmax over ``axis`` (default 1, the channel/class axis, counting the batch axis as 0).

    For training a classifier use the logits with the cross-entropy loss instead (more stable).
    """

    prefix, op = "softmax", "softmax"

    def __init__(self, axis=1, **kwargs):
        super().__init__(**kwargs)
        self._kw = {"axis": integer(type(self).__name__, "axis", axis)}

    def _build(self, input_shape):
        axis = self._kw["axis"]
        if axis == 0 or not -len(input_shape) - 1 <= axis <= len(input_shape):
            raise self._error(f"axis={axis} must be a non-batch axis of the (N, ...) input", input_shape)
        return input_shape


class LogSoftmax(Softmax):
    """``log(softmax(x))`` over ``axis``, computed stably."""

    prefix, op = "log_softmax", "log_softmax"
