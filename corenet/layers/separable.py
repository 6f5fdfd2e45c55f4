"""SeparableConv2d: a depthwise convolution then a 1x1 pointwise one, as one layer (Keras's SeparableConv2D)."""

from __future__ import annotations

from .. import functional as F
from ..functional.validation import positive_int
from .conv import _ConvLike

__all__ = ["SeparableConv2d"]


class SeparableConv2d(_ConvLike):
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
        self._init_conv(out_channels, kernel_size, stride, padding, dilation, 1, bias, in_channels, kernel_init,
                        bias_init)
        self.depth_multiplier = positive_int("SeparableConv2d", "depth_multiplier", depth_multiplier)

    def _build(self, input_shape):
        C = self._input_channels(input_shape)
        mid = C * self.depth_multiplier
        kh, kw = self.kernel_size
        out = self._image_output_shape(F.conv_output_shape, input_shape, (mid, 1, kh, kw), self.stride,
                                       self.padding, self.dilation, C)
        self.add_param("depthwise.weight", (mid, 1, kh, kw), self.kernel_init, fan_in=kh * kw,
                       fan_out=self.depth_multiplier * kh * kw)
        self.add_param("pointwise.weight", (self.out_channels, mid, 1, 1), self.kernel_init, fan_in=mid,
                       fan_out=self.out_channels)
        if self.use_bias:
            self.add_param("pointwise.bias", (self.out_channels,), self.bias_init, fan_in=mid,
                           fan_out=self.out_channels)
        return (self.out_channels, *out[1:])

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
        if self._state is None:
            raise ValueError(f"{self.label()}: backward needs a forward with retain=True first")
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
        cfg = super()._config()
        del cfg["groups"]  # the depthwise step's groups are the input channels
        return {**cfg, "depth_multiplier": self.depth_multiplier}
