"""ShuffleNet's channel layers: ChannelShuffle (the permutation, ``corenet.functional.channel_shuffle``)
and ChannelSlice (the channel split)."""

from __future__ import annotations

from .. import functional as F
from ..functional.validation import integer, positive_int
from .base import Layer

__all__ = ["ChannelShuffle", "ChannelSlice"]


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


class ChannelSlice(Layer):
    """Channels ``start:stop`` of the input: ``(N, C, ...) -> (N, stop - start, ...)``; no parameters.

    ShuffleNet v2's channel split (torchvision's ``x.chunk(2, dim=1)``) is two slices of one tensor.
    Backward puts ``gy`` into those channels of a zero gradient. Through ``F.split``/``F.concat``, so
    it runs on device arrays too.
    """

    prefix = "channel_slice"

    def __init__(self, start, stop, **kwargs):
        super().__init__(**kwargs)
        op = "ChannelSlice"
        start, stop = integer(op, "start", start), integer(op, "stop", stop)
        if not 0 <= start < stop:
            raise ValueError(f"{op}: needs 0 <= start < stop. Received: start={start}, stop={stop}")
        self.start, self.stop = start, stop

    def _build(self, input_shape):
        if len(input_shape) < 1:
            raise self._error("expects (C, ...) per sample", input_shape)
        if self.stop > input_shape[0]:
            raise self._error(f"slices channels {self.start}:{self.stop} of an input with {input_shape[0]}",
                              input_shape)
        return (self.stop - self.start, *input_shape[1:])

    def _pieces(self):
        """Channel counts before, in and after the slice, the empty ones left out."""
        c = self.input_shape[0]
        return [n for n in (self.start, self.stop - self.start, c - self.stop) if n]

    def forward(self, x, training=False, retain=True):
        if self.start == 0 and self.stop == self.input_shape[0]:
            return F.split(x, [self.stop], 1)[0]  # a copy, as every layer's output is a new array
        return F.split(x, self._pieces(), 1)[1 if self.start else 0]

    def backward(self, gy, need_gx=True):
        if not need_gx:
            return None
        rest = tuple(gy.shape[2:])
        parts = [gy]
        if self.start:
            parts.insert(0, F.full_like(gy, 0, (gy.shape[0], self.start, *rest)))
        if self.stop < self.input_shape[0]:
            parts.append(F.full_like(gy, 0, (gy.shape[0], self.input_shape[0] - self.stop, *rest)))
        return F.concat(parts, 1) if len(parts) > 1 else F.split(gy, [gy.shape[1]], 1)[0]

    def _config(self):
        return {"start": self.start, "stop": self.stop}
