"""Conv2d: 2-D convolution layer (PyTorch layout and semantics; see ``corenet.functional.conv2d``),
and the construction, input checks and config it shares with ``ConvTranspose2d`` and ``SeparableConv2d``."""

from __future__ import annotations

from .. import functional as F
from ..functional.validation import positive_int
from ..geometry import padding4, pair, plain_padding
from .base import Layer

__all__ = ["Conv2d"]


class _ConvLike(Layer):
    """What the convolution layers share: checked hyper-parameters, the input-channel check, forward and
    backward through one functional pair (``_op``), the config."""

    def _init_conv(self, out_channels, kernel_size, stride, padding, dilation, groups, bias, in_channels,
                   kernel_init, bias_init, *, string_padding=True):
        op = type(self).__name__
        self.out_channels = positive_int(op, "out_channels", out_channels)
        self.kernel_size = pair(op, "kernel_size", kernel_size)
        self.stride = pair(op, "stride", stride)
        self.dilation = pair(op, "dilation", dilation)
        self.groups = positive_int(op, "groups", groups)
        if isinstance(padding, str) and not string_padding:
            raise ValueError(f"{op}: padding must be an int, (ph, pw) or ((top, bottom), (left, right)), "
                             f"received {padding!r}")
        padding4(op, padding, self.kernel_size, self.stride, self.dilation, (1, 1))  # checks the form and range
        self.padding = padding if isinstance(padding, str) else plain_padding(padding)
        self.use_bias = bool(bias)
        self.in_channels = None if in_channels is None else positive_int(op, "in_channels", in_channels)
        self.kernel_init, self.bias_init = kernel_init, bias_init
        if self.out_channels % self.groups:
            raise ValueError(f"{self.label()}: groups={self.groups} must divide out_channels={self.out_channels}")

    def _input_channels(self, input_shape) -> int:
        """The channels of a ``(C, H, W)`` input, checked against ``in_channels`` and ``groups`` and kept."""
        self._check_image(input_shape)
        C = input_shape[0]
        if self.in_channels is not None and C != self.in_channels:
            raise self._error(f"was given in_channels={self.in_channels} but the input has {C} channels", input_shape)
        if C % self.groups:
            raise self._error(f"groups={self.groups} must divide the input channels ({C})", input_shape)
        self.in_channels = C
        return C

    _op = "conv2d"  # the functional pair this layer runs: F.<_op>(x, w, b, *self._args()) and F.<_op>_backward

    def _args(self):
        return self.stride, self.padding, self.dilation, self.groups

    def forward(self, x, training=False, retain=True):
        p = self.params
        out = getattr(F, self._op)(x, p["weight"], p.get("bias"), *self._args(), return_state=retain)
        if not retain:
            return out
        y, self._state = out
        return y

    def backward(self, gy, need_gx=True):
        train = self.trainable
        gx, gw, gb = getattr(F, self._op + "_backward")(gy, self._state, need_gx=need_gx, need_gw=train,
                                                        need_gb=train and self.use_bias)
        self._state = None
        if train:
            self._store_grads({"weight": gw, "bias": gb})
        return gx

    def _config(self):
        from ..init import to_config

        return {"out_channels": self.out_channels, "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": self.padding, "dilation": list(self.dilation), "groups": self.groups,
                "bias": self.use_bias, "in_channels": self.in_channels,
                "kernel_init": to_config(self.kernel_init), "bias_init": to_config(self.bias_init)}


class Conv2d(_ConvLike):
    """2-D convolution: ``weight (out_channels, in_channels/groups, kH, kW)``, ``bias (out_channels,)``.

    Parameters
    ----------
    out_channels : int
    kernel_size, stride, dilation : int or (h, w)
    padding : int, (ph, pw), ((top, bottom), (left, right)), 'valid' or 'same' (TensorFlow's rule,
        also at stride > 1)
    groups : int, must divide the input and output channels (``groups == in_channels``: depthwise)
    bias : bool
    in_channels : int, optional
        Inferred from the input; when given it is checked.
    kernel_init, bias_init : initializer (name, ``{"name": ..., **hyper}`` or callable)
        Default ``'fan_in_uniform'``: ``U(+-1/sqrt(fan_in))`` for both, PyTorch's default.

    Input ``(N, C_in, H, W)`` -> output ``(N, out_channels, H_out, W_out)``.
    MACs per sample: ``C_out * H_out * W_out * (C_in/groups) * kH * kW`` (bias not counted).
    """

    prefix = "conv2d"

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 in_channels=None, kernel_init="fan_in_uniform", bias_init="fan_in_uniform", **kwargs):
        super().__init__(**kwargs)
        self._init_conv(out_channels, kernel_size, stride, padding, dilation, groups, bias, in_channels,
                        kernel_init, bias_init)

    def _build(self, input_shape):
        C = self._input_channels(input_shape)
        w_shape = (self.out_channels, C // self.groups, *self.kernel_size)
        out = self._image_output_shape(F.conv_output_shape, input_shape, w_shape, self.stride, self.padding,
                                       self.dilation, self.groups)
        fan_in, fan_out = w_shape[1] * w_shape[2] * w_shape[3], w_shape[0] * w_shape[2] * w_shape[3]
        self.add_param("weight", w_shape, self.kernel_init, fan_in=fan_in, fan_out=fan_out)
        if self.use_bias:
            self.add_param("bias", (self.out_channels,), self.bias_init, fan_in=fan_in, fan_out=fan_out)
        return out

    def macs(self) -> int:
        c_out, ho, wo = self.output_shape
        kh, kw = self.kernel_size
        return int(c_out * ho * wo * (self.in_channels // self.groups) * kh * kw)
