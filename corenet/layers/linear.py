"""Linear: fully connected layer, ``y = x @ weight.T + bias`` (PyTorch layout)."""

from __future__ import annotations

from .. import functional as F
from ..functional.validation import positive_int
from .base import Layer

__all__ = ["Linear"]


class Linear(Layer):
    """Fully connected layer: ``weight (out_features, in_features)``, ``bias (out_features,)``.

    The input must be ``(N, in_features)``: put a :class:`~corenet.layers.Flatten` after
    convolutional feature maps. ``in_features`` is inferred (checked when given).
    Default initialization ``U(+-1/sqrt(in_features))`` for weight and bias, as PyTorch.
    MACs per sample: ``in_features * out_features``.
    """

    prefix = "linear"

    def __init__(self, out_features, bias=True, in_features=None, kernel_init="fan_in_uniform",
                 bias_init="fan_in_uniform", **kwargs):
        super().__init__(**kwargs)
        self.out_features = positive_int("Linear", "out_features", out_features)
        self.in_features = None if in_features is None else positive_int("Linear", "in_features", in_features)
        self.use_bias = bool(bias)
        self.kernel_init, self.bias_init = kernel_init, bias_init

    def _build(self, input_shape):
        if len(input_shape) != 1:
            raise self._error(f"expects per-sample input (in_features,), i.e. arrays (N, in_features), but the "
                              f"input is {len(input_shape) + 1}-D; add a Flatten layer before it", input_shape)
        fin = input_shape[0]
        if self.in_features is not None and fin != self.in_features:
            raise self._error(f"was given in_features={self.in_features} but the input has {fin}", input_shape)
        self.in_features = fin
        self.add_param("weight", (self.out_features, fin), self.kernel_init, fan_in=fin, fan_out=self.out_features)
        if self.use_bias:
            self.add_param("bias", (self.out_features,), self.bias_init, fan_in=fin, fan_out=self.out_features)
        return (self.out_features,)

    def forward(self, x, training=False, retain=True):
        p = self.params
        if retain:
            y, self._state = F.linear(x, p["weight"], p.get("bias"), return_state=True)
            return y
        return F.linear(x, p["weight"], p.get("bias"))

    def backward(self, gy, need_gx=True):
        train = self.trainable
        gx, gw, gb = F.linear_backward(gy, self._state, need_gx, train, train and self.use_bias)
        self._state = None
        if train:
            self._store_grads({"weight": gw, "bias": gb})
        return gx

    def macs(self) -> int:
        return int(self.in_features * self.out_features)

    def _config(self):
        from ..init import to_config

        return {"out_features": self.out_features, "bias": self.use_bias, "in_features": self.in_features,
                "kernel_init": to_config(self.kernel_init), "bias_init": to_config(self.bias_init)}
