"""Upsample: nearest or bilinear resizing of the spatial axes (PyTorch's ``nn.Upsample``; see
``corenet.functional.upsample``)."""

from __future__ import annotations

from .. import functional as F
from ..functional.validation import choice, flag, is_int, positive_float
from .base import Layer

__all__ = ["Upsample"]


class Upsample(Layer):
    """Resize ``(N, C, H, W)`` to ``size`` or by ``scale_factor`` with PyTorch's coordinate rules.

    Parameters (keyword-only)
    -------------------------
    size : int or (h, w), optional
        The output size, as in PyTorch (not Keras's ``UpSampling2D`` factor).
    scale_factor : float or (float, float), optional
        ``H_out = floor(H * scale_factor)``; the source coordinates use ``1/scale_factor``
        (PyTorch's ``recompute_scale_factor=None``). Exactly one of ``size`` and ``scale_factor``.
    mode : 'nearest' or 'bilinear'
    align_corners : bool or None (bilinear only)

    No parameters; MACs are counted for convolution and linear layers only, so 0.
    """

    prefix = "upsample"

    def __init__(self, *, size=None, scale_factor=None, mode="nearest", align_corners=None, **kwargs):
        super().__init__(**kwargs)
        op = "Upsample"
        self.mode = choice(op, "mode", mode, F.resample.MODES)
        self.align_corners = None if align_corners is None else flag(op, "align_corners", align_corners)
        if self.mode == "nearest" and self.align_corners is not None:
            raise ValueError(f"{op}: align_corners can only be set with mode='bilinear', received "
                             f"align_corners={align_corners} with mode='nearest'")
        if (size is None) == (scale_factor is None):
            raise ValueError(f"{op}: give exactly one of size and scale_factor, received size={size!r}, "
                             f"scale_factor={scale_factor!r}")
        if size is not None:
            F.upsample_output_shape((1, 1, 1, 1), size=size)  # type and range of the size
        else:
            sf = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor,)
            if len(sf) not in (1, 2):
                raise TypeError(f"{op}: scale_factor must be a number or a pair of numbers, received {scale_factor!r}")
            for s in sf:
                positive_float(op, "scale_factor", s)
        self.size = None if size is None else _plain(size)
        self.scale_factor = None if scale_factor is None else _plain(scale_factor)

    def _kwargs(self):
        return dict(size=self.size, scale_factor=self.scale_factor, mode=self.mode, align_corners=self.align_corners)

    def _build(self, input_shape):
        return self._image_output_shape(F.upsample_output_shape, input_shape, self.size, self.scale_factor)

    def forward(self, x, training=False, retain=True):
        if retain:
            y, self._state = F.upsample(x, **self._kwargs(), return_state=True)
            return y
        return F.upsample(x, **self._kwargs())

    def backward(self, gy, need_gx=True):
        state, self._state = self._state, None
        if not need_gx:
            return None
        return F.upsample_backward(gy, state)

    def _config(self):
        return self._kwargs()


def _plain(v):
    """JSON-friendly: a list for a pair, a Python int or float otherwise (numpy scalars included)."""
    if isinstance(v, (tuple, list)):
        return [_plain(e) for e in v]
    return int(v) if is_int(v) else float(v)
