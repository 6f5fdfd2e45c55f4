"""ConvTranspose2d: 2-D transposed convolution layer (PyTorch layout and semantics; see
``corenet.functional.conv_transpose2d``)."""

from __future__ import annotations

from .. import functional as F
from ..functional.validation import positive_int
from ..geometry import padding4, pair, plain_padding
from .base import Layer

__all__ = ["ConvTranspose2d"]


class ConvTranspose2d(Layer):
    """2-D transposed convolution ("deconvolution", learned upsampling):
    ``weight (in_channels, out_channels/groups, kH, kW)``, ``bias (out_channels,)`` (PyTorch's layout).

    Parameters
    ----------
    out_channels : int
    kernel_size : int or (h, w)
    stride, dilation : int or (h, w), keyword-only
    padding : int, (ph, pw) or ((top, bottom), (left, right)), keyword-only
        Removed from each side of the full output.
    output_padding : int or (h, w), keyword-only
        Extra rows/columns at the bottom/right, smaller than the stride or the dilation.
    groups : int, must divide the input and output channels
    bias : bool
    in_channels : int, optional (inferred; checked when given)
    kernel_init, bias_init : initializer
        Default ``'fan_in_uniform'`` with PyTorch's fan-in for this layout,
        ``(out_channels/groups) * kH * kW``.

    Input ``(N, C_in, H, W)`` -> ``(N, out_channels, H_out, W_out)`` with
    ``H_out = (H - 1)*stride - pad_top - pad_bottom + dilation*(kH - 1) + output_padding + 1``.
    MACs per sample: ``C_in * H * W * (out_channels/groups) * kH * kW`` (every input pixel times
    its kernel; products that land in the padding included, bias not counted).
    """

    prefix = "conv_transpose2d"

    def __init__(self, out_channels, kernel_size, *, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                 bias=True, in_channels=None, kernel_init="fan_in_uniform", bias_init="fan_in_uniform", **kwargs):
        super().__init__(**kwargs)
        op = "ConvTranspose2d"
        self.out_channels = positive_int(op, "out_channels", out_channels)
        self.kernel_size = pair(op, "kernel_size", kernel_size)
        self.stride = pair(op, "stride", stride)
        self.dilation = pair(op, "dilation", dilation)
        self.output_padding = pair(op, "output_padding", output_padding, minimum=0)
        self.groups = positive_int(op, "groups", groups)
        if isinstance(padding, str):
            raise ValueError(f"{op}: padding must be an int, (ph, pw) or ((top, bottom), (left, right)), "
                             f"received {padding!r}")
        padding4(op, padding, self.kernel_size, self.stride, self.dilation, (1, 1))  # checks the form and range
        self.padding = plain_padding(padding)
        for a in range(2):
            if self.output_padding[a] >= max(self.stride[a], self.dilation[a]):
                raise ValueError(f"{op}: output_padding must be smaller than stride or dilation, received "
                                 f"output_padding={self.output_padding}, stride={self.stride}, "
                                 f"dilation={self.dilation}")
        self.use_bias = bool(bias)
        self.in_channels = None if in_channels is None else positive_int(op, "in_channels", in_channels)
        self.kernel_init, self.bias_init = kernel_init, bias_init
        if self.out_channels % self.groups:
            raise ValueError(f"{self.label()}: groups={self.groups} must divide out_channels={self.out_channels}")

    def _args(self):
        return self.stride, self.padding, self.output_padding, self.groups, self.dilation

    def _build(self, input_shape):
        if len(input_shape) != 3:
            raise self._error("expects per-sample input (channels, height, width)", input_shape)
        C = input_shape[0]
        if self.in_channels is not None and C != self.in_channels:
            raise self._error(f"was given in_channels={self.in_channels} but the input has {C} channels", input_shape)
        if C % self.groups:
            raise self._error(f"groups={self.groups} must divide the input channels ({C})", input_shape)
        self.in_channels = C
        w_shape = (C, self.out_channels // self.groups, *self.kernel_size)
        try:
            out = F.conv_transpose_output_shape((1, *input_shape), w_shape, *self._args())
        except (ValueError, TypeError) as e:
            raise type(e)(f"{self.label()}: {str(e).replace('conv_transpose_output_shape: ', '')}. Received: input "
                          f"shape {self._shape_str(input_shape)}") from None
        rf = w_shape[2] * w_shape[3]
        fan_in, fan_out = w_shape[1] * rf, w_shape[0] * rf  # PyTorch reads fan-in from dim 1 of this layout
        self.add_param("weight", w_shape, self.kernel_init, fan_in=fan_in, fan_out=fan_out)
        if self.use_bias:
            self.add_param("bias", (self.out_channels,), self.bias_init, fan_in=fan_in, fan_out=fan_out)
        return out[1:]

    def forward(self, x, training=False, retain=True):
        p = self.params
        if retain:
            y, self._state = F.conv_transpose2d(x, p["weight"], p.get("bias"), *self._args(), return_state=True)
            return y
        return F.conv_transpose2d(x, p["weight"], p.get("bias"), *self._args())

    def backward(self, gy, need_gx=True):
        train = self.trainable
        gx, gw, gb = F.conv_transpose2d_backward(gy, self._state, need_gx=need_gx, need_gw=train,
                                                 need_gb=train and self.use_bias)
        self._state = None
        if train:
            self._store_grads({"weight": gw, "bias": gb})
        return gx

    def macs(self) -> int:
        c_in, h, w = self.input_shape
        kh, kw = self.kernel_size
        return int(c_in * h * w * (self.out_channels // self.groups) * kh * kw)

    def _config(self):
        from ..init import to_config

        return {"out_channels": self.out_channels, "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": self.padding, "output_padding": list(self.output_padding), "groups": self.groups,
                "dilation": list(self.dilation), "bias": self.use_bias, "in_channels": self.in_channels,
                "kernel_init": to_config(self.kernel_init), "bias_init": to_config(self.bias_init)}
