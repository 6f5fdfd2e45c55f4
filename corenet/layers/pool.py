"""Pooling layers: max, min, average, sum, global and adaptive (see ``corenet.functional.pool2d``).

Shapes come from the functional module (``F.pool_output_shape``, ``F.adaptive_pool_output_shape``),
so a layer infers exactly the shape its op computes and raises the op's errors, under its own name.
"""

from __future__ import annotations

from .. import functional as F
from ..functional.validation import flag, positive_float
from ..geometry import padding4, pair, plain_padding
from .base import Layer

__all__ = ["MaxPool2d", "AvgPool2d", "MinPool2d", "SumPool2d", "GlobalAvgPool2d", "GlobalMaxPool2d",
           "AdaptiveAvgPool2d", "AdaptiveMaxPool2d"]


class _Pool(Layer):
    """Shared forward and backward of the pooling layers; ``_call(x, rs)`` runs the op."""

    def forward(self, x, training=False, retain=True):
        if retain:
            y, self._state = self._call(x, True)
            return y
        return self._call(x, False)

    def backward(self, gy, need_gx=True):
        gx = F.pool2d_backward(gy, self._state) if need_gx else None
        self._state = None
        return gx


class _WindowPool(_Pool):
    mode = "max"

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, count_include_pad=True,
                 divisor_override=None, **kwargs):
        super().__init__(**kwargs)
        op = type(self).__name__
        self.kernel_size = pair(op, "kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else pair(op, "stride", stride)
        self.dilation = pair(op, "dilation", dilation)
        padding4(op, padding, self.kernel_size, self.stride, self.dilation, (1, 1))  # checks the form and range
        self.padding = plain_padding(padding)
        self.ceil_mode = flag(op, "ceil_mode", ceil_mode)
        self.count_include_pad = flag(op, "count_include_pad", count_include_pad)
        if divisor_override is not None:
            divisor_override = positive_float(op, "divisor_override", divisor_override)
        self.divisor_override = divisor_override

    def _build(self, input_shape):
        return self._image_output_shape(F.pool_output_shape, input_shape, self.kernel_size, self.stride, self.padding,
                           self.dilation, self.ceil_mode)

    def _call(self, x, rs):
        return F.pool2d(x, self.kernel_size, self.stride, self.padding, self.mode, self.dilation, self.ceil_mode,
                        self.count_include_pad, self.divisor_override, return_state=rs)

    def _config(self):
        cfg = {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": self.padding,
               "dilation": list(self.dilation), "ceil_mode": self.ceil_mode}
        if self.mode in ("avg", "sum"):
            cfg["divisor_override"] = self.divisor_override
        if self.mode == "avg":
            cfg["count_include_pad"] = self.count_include_pad
        return cfg


class MaxPool2d(_WindowPool):
    """Max pooling (PyTorch's MaxPool2d; stride defaults to the kernel; pads with -inf)."""

    prefix, mode = "max_pool2d", "max"


class MinPool2d(_WindowPool):
    """Min pooling (pads with +inf)."""

    prefix, mode = "min_pool2d", "min"


class AvgPool2d(_WindowPool):
    """Average pooling; ``count_include_pad`` and ``divisor_override`` as in PyTorch."""

    prefix, mode = "avg_pool2d", "avg"


class SumPool2d(_WindowPool):
    """Sum of each window (zero padding)."""

    prefix, mode = "sum_pool2d", "sum"


class GlobalAvgPool2d(_Pool):
    """Mean of each channel plane: ``(N, C, H, W) -> (N, C, 1, 1)`` (follow with Flatten for Linear)."""

    prefix = "global_avg_pool2d"

    def _build(self, input_shape):
        self._check_image(input_shape)
        return input_shape[0], 1, 1

    def _call(self, x, rs):
        return F.global_avg_pool2d(x, return_state=rs)


class GlobalMaxPool2d(GlobalAvgPool2d):
    """Max of each channel plane: ``(N, C, H, W) -> (N, C, 1, 1)``."""

    prefix = "global_max_pool2d"

    def _call(self, x, rs):
        return F.global_max_pool2d(x, return_state=rs)


class AdaptiveAvgPool2d(_Pool):
    """Average pooling onto ``output_size`` (int or (H_out, W_out); ``None`` keeps that size), PyTorch's bins."""

    prefix = "adaptive_avg_pool2d"
    _fn = staticmethod(F.adaptive_avg_pool2d)

    def __init__(self, output_size, **kwargs):
        super().__init__(**kwargs)
        op = type(self).__name__
        if isinstance(output_size, (list, tuple)) and len(output_size) == 2:
            pair(op, "output_size", tuple(1 if s is None else s for s in output_size))  # None keeps the input size
            self.output_size = [None if s is None else int(s) for s in output_size]
        else:
            self.output_size = pair(op, "output_size", output_size)[0]

    def _build(self, input_shape):
        return self._image_output_shape(F.adaptive_pool_output_shape, input_shape, self.output_size)

    def _call(self, x, rs):
        return self._fn(x, self.output_size, return_state=rs)

    def _config(self):
        return {"output_size": self.output_size}


class AdaptiveMaxPool2d(AdaptiveAvgPool2d):
    """Max pooling onto ``output_size`` (int or (H_out, W_out); ``None`` keeps that size), PyTorch's bins.

    Bin ``i`` of ``H_out`` covers rows ``[floor(i*H/H_out), ceil((i+1)*H/H_out))`` (likewise columns);
    the gradient goes to the first maximum of each bin (see ``corenet.functional.adaptive_max_pool2d``).
    """

    prefix = "adaptive_max_pool2d"
    _fn = staticmethod(F.adaptive_max_pool2d)
