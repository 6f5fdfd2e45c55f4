"""ConvTranspose2d: 2-D transposed convolution layer (PyTorch layout and semantics; see
``corenet.functional.conv_transpose2d``)."""

from __future__ import annotations

from .. import functional as F
from ..geometry import pair
from .conv import _ConvLike

__all__ = ["ConvTranspose2d"]


class ConvTranspose2d(_ConvLike):
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
    _op = "conv_transpose2d"

    def __init__(self, out_channels, kernel_size, *, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                 bias=True, in_channels=None, kernel_init="fan_in_uniform", bias_init="fan_in_uniform", **kwargs):
        super().__init__(**kwargs)
        self._init_conv(out_channels, kernel_size, stride, padding, dilation, groups, bias, in_channels,
                        kernel_init, bias_init, string_padding=False)
        op = "ConvTranspose2d"
        self.output_padding = pair(op, "output_padding", output_padding, minimum=0)
        for a in range(2):
            if self.output_padding[a] >= max(self.stride[a], self.dilation[a]):
                raise ValueError(f"{op}: output_padding must be smaller than stride or dilation, received "
                                 f"output_padding={self.output_padding}, stride={self.stride}, "
                                 f"dilation={self.dilation}")

    def _args(self):
        return self.stride, self.padding, self.output_padding, self.groups, self.dilation

    def _build(self, input_shape):
        C = self._input_channels(input_shape)
        w_shape = (C, self.out_channels // self.groups, *self.kernel_size)
        out = self._image_output_shape(F.conv_transpose_output_shape, input_shape, w_shape, *self._args())
        rf = w_shape[2] * w_shape[3]
        fan_in, fan_out = w_shape[1] * rf, w_shape[0] * rf  # PyTorch reads fan-in from dim 1 of this layout
        self.add_param("weight", w_shape, self.kernel_init, fan_in=fan_in, fan_out=fan_out)
        if self.use_bias:
            self.add_param("bias", (self.out_channels,), self.bias_init, fan_in=fan_in, fan_out=fan_out)
        return out

    def macs(self) -> int:
        c_in, h, w = self.input_shape
        kh, kw = self.kernel_size
        return int(c_in * h * w * (self.out_channels // self.groups) * kh * kw)

    def _config(self):
        return {**super()._config(), "output_padding": list(self.output_padding)}
