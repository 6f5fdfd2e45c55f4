"""SeparableConv2d: a depthwise convolution then a 1x1 pointwise one, as one layer (Keras's SeparableConv2D)."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..functional.validation import positive_int
from ..geometry import padding4, pair
from .base import Layer

__all__ = ["SeparableConv2d"]


class SeparableConv2d(Layer):
    """Depthwise separable convolution (Chollet, "Xception", 2017; Keras ``SeparableConv2D``).

    A depthwise convolution with ``depth_multiplier`` filters per input channel and no bias
    (``groups = in_channels``), then a 1x1 convolution to ``out_channels``, nothing in between:
    ``y = conv2d(conv2d(x, depthwise.weight, None, stride, padding, dilation, groups=C_in),
    pointwise.weight, pointwise.bias)``.

    Parameters (PyTorch names, as a module with two ``Conv2d`` children ``depthwise`` and
    ``pointwise`` would have): ``depthwise.weight (C_in * depth_multiplier, 1, kH, kW)``,
    ``pointwise.weight (out_channels, C_in * depth_multiplier, 1, 1)``, ``pointwise.bias
    (out_channels,)`` when ``bias``. Depthwise channel ``c * depth_multiplier + k`` filters input
    channel ``c``; Keras's kernels are ``depthwise.weight.reshape(C_in, m, kH, kW).transpose(2, 3, 0, 1)``
    and ``pointwise.weight.transpose(2, 3, 1, 0)``.

    Parameters
    ----------
    out_channels : int
    kernel_size, stride, dilation : int or (h, w)
    padding : int, (ph, pw), ((top, bottom), (left, right)), 'valid' or 'same' (as ``Conv2d``)
    depth_multiplier : int, depthwise filters per input channel
    bias : bool, the pointwise convolution's bias
    in_channels : int, optional; inferred from the input, checked when given
    kernel_init, bias_init : initializers; default ``'fan_in_uniform'`` (PyTorch's default for each
        of the two convolutions: fan-in ``kH * kW`` for the depthwise weight, ``C_in * depth_multiplier``
        for the pointwise weight and bias)

    MACs per sample: ``C_in * m * H_out * W_out * kH * kW + out_channels * H_out * W_out * C_in * m``.
    """

    prefix = "separable_conv2d"

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, dilation=1, depth_multiplier=1, bias=True,
                 in_channels=None, kernel_init="fan_in_uniform", bias_init="fan_in_uniform", **kwargs):
        super().__init__(**kwargs)
        op = "SeparableConv2d"
        self.out_channels = positive_int(op, "out_channels", out_channels)
        self.kernel_size = pair(op, "kernel_size", kernel_size)
        self.stride = pair(op, "stride", stride)
        self.dilation = pair(op, "dilation", dilation)
        self.depth_multiplier = positive_int(op, "depth_multiplier", depth_multiplier)
        padding4(op, padding, self.kernel_size, self.stride, self.dilation, (1, 1))  # checks the form and range
        self.padding = padding if isinstance(padding, str) else _plain(padding)
        self.use_bias = bool(bias)
        self.in_channels = None if in_channels is None else positive_int(op, "in_channels", in_channels)
        self.kernel_init, self.bias_init = kernel_init, bias_init

    def _build(self, input_shape):
        if len(input_shape) != 3:
            raise self._error("expects per-sample input (channels, height, width)", input_shape)
        C = input_shape[0]
        if self.in_channels is not None and C != self.in_channels:
            raise self._error(f"was given in_channels={self.in_channels} but the input has {C} channels", input_shape)
        self.in_channels = C
        mid = C * self.depth_multiplier
        kh, kw = self.kernel_size
        try:
            out = F.conv_output_shape((1, *input_shape), (mid, 1, kh, kw), self.stride, self.padding, self.dilation, C)
        except (ValueError, TypeError) as e:
            raise type(e)(f"{self.label()}: {str(e).replace('conv_output_shape: ', '')}. Received: input shape "
                          f"{self._shape_str(input_shape)}") from None
        self.add_param("depthwise.weight", (mid, 1, kh, kw), self.kernel_init, fan_in=kh * kw,
                       fan_out=self.depth_multiplier * kh * kw)
        self.add_param("pointwise.weight", (self.out_channels, mid, 1, 1), self.kernel_init, fan_in=mid,
                       fan_out=self.out_channels)
        if self.use_bias:
            self.add_param("pointwise.bias", (self.out_channels,), self.bias_init, fan_in=mid,
                           fan_out=self.out_channels)
        return (self.out_channels, *out[2:])

    def forward(self, x, training=False, retain=True):
        p = self.params
        if retain:
            h, dw_state = F.conv2d(x, p["depthwise.weight"], None, self.stride, self.padding, self.dilation,
                                   self.in_channels, return_state=True)
            y, pw_state = F.conv2d(h, p["pointwise.weight"], p.get("pointwise.bias"), return_state=True)
            self._state = (dw_state, pw_state)
            return y
        h = F.conv2d(x, p["depthwise.weight"], None, self.stride, self.padding, self.dilation, self.in_channels)
        return F.conv2d(h, p["pointwise.weight"], p.get("pointwise.bias"))

    def backward(self, gy, need_gx=True):
        dw_state, pw_state = self._state
        self._state = None
        train = self.trainable
        if not (train or need_gx):
            return None
        gh, gpw, gpb = F.conv2d_backward(gy, pw_state, need_gx=True, need_gw=train, need_gb=train and self.use_bias)
        gx, gdw, _ = F.conv2d_backward(gh, dw_state, need_gx=need_gx, need_gw=train, need_gb=False)
        if train:
            self._store_grads({"depthwise.weight": gdw, "pointwise.weight": gpw, "pointwise.bias": gpb})
        return gx

    def macs(self) -> int:
        c_out, ho, wo = self.output_shape
        kh, kw = self.kernel_size
        mid = self.in_channels * self.depth_multiplier
        return int(mid * ho * wo * kh * kw + c_out * ho * wo * mid)

    def _config(self):
        from ..init import to_config

        return {"out_channels": self.out_channels, "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": self.padding, "dilation": list(self.dilation), "depth_multiplier": self.depth_multiplier,
                "bias": self.use_bias, "in_channels": self.in_channels,
                "kernel_init": to_config(self.kernel_init), "bias_init": to_config(self.bias_init)}


def _plain(v):
    """Padding as plain ints/lists (JSON-friendly)."""
    if isinstance(v, (list, tuple)):
        return [_plain(e) for e in v]
    return int(v) if isinstance(v, (int, np.integer)) else v
