"""ChannelShuffle: ShuffleNet's channel permutation (see ``corenet.functional.channel_shuffle``)."""

from __future__ import annotations

from .. import functional as F
from ..functional.validation import positive_int
from .base import Layer

__all__ = ["ChannelShuffle"]


class ChannelShuffle(Layer):
    """PyTorch's ``nn.ChannelShuffle(groups)``: ``(N, C, ...)`` viewed as ``(N, groups, C/groups, ...)``,
    the two channel axes swapped, flattened back. No parameters; the input channels must be
    divisible by ``groups``."""

    prefix = "channel_shuffle"

    def __init__(self, groups, **kwargs):
        super().__init__(**kwargs)
        self.groups = positive_int("ChannelShuffle", "groups", groups)

    def _build(self, input_shape):
        if len(input_shape) < 1 or input_shape[0] % self.groups:
            raise self._error(f"the input channels must be divisible by groups={self.groups}", input_shape)
        return input_shape

    def forward(self, x, training=False, retain=True):
        if retain:
            y, self._state = F.channel_shuffle(x, self.groups, return_state=True)
            return y
        return F.channel_shuffle(x, self.groups)

    def backward(self, gy, need_gx=True):
        gx = F.channel_shuffle_backward(gy, self._state) if need_gx else None
        self._state = None
        return gx

    def _config(self):
        return {"groups": self.groups}
