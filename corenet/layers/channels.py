"""Parameter-free layers on the channel axis: ChannelShuffle (ShuffleNet's permutation,
``corenet.functional.channel_shuffle``), ChannelSlice (ShuffleNet v2's channel split) and ChannelPad
(the CIFAR ResNet's option-A shortcut). Slicing and zero-padding channels are each other's adjoint;
both go through ``F.split``/``F.concat``, so they run on device arrays too."""

from __future__ import annotations

from .. import functional as F
from ..functional.validation import integer, positive_int
from .base import Layer

__all__ = ["ChannelShuffle", "ChannelSlice", "ChannelPad"]


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


def _slice_channels(x, start, stop):
    """Channels ``start:stop`` of ``x (N, C, ...)``, C-contiguous, of ``x``'s kind."""
    pieces = [n for n in (start, stop - start, x.shape[1] - stop) if n]
    return F.split(x, pieces, 1)[1 if start else 0]


def _pad_channels(g, before, after):
    """``g (N, C, ...)`` between ``before`` and ``after`` zero channels, of ``g``'s kind."""
    parts = [F.full_like(g, 0, (g.shape[0], n, *g.shape[2:])) if n else None for n in (before, after)]
    parts = [p for p in (parts[0], g, parts[1]) if p is not None]
    return F.concat(parts, 1) if len(parts) > 1 else g


def _check_chw(layer, input_shape):
    if len(input_shape) < 1:
        raise layer._error("expects (C, ...) per sample", input_shape)


class ChannelSlice(Layer):
    """Channels ``start:stop`` of the input: ``(N, C, ...) -> (N, stop - start, ...)``; no parameters.

    ShuffleNet v2's channel split (torchvision's ``x.chunk(2, dim=1)``) is two slices of one tensor.
    Backward puts ``gy`` into those channels of a zero gradient.
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
        _check_chw(self, input_shape)
        if self.stop > input_shape[0]:
            raise self._error(f"slices channels {self.start}:{self.stop} of an input with {input_shape[0]}",
                              input_shape)
        return (self.stop - self.start, *input_shape[1:])

    def forward(self, x, training=False, retain=True):
        return _slice_channels(x, self.start, self.stop)

    def backward(self, gy, need_gx=True):
        return _pad_channels(gy, self.start, self.input_shape[0] - self.stop) if need_gx else None

    def _config(self):
        return {"start": self.start, "stop": self.stop}


class ChannelPad(Layer):
    """Zero channels around the input: ``(N, C, ...) -> (N, before + C + after, ...)``; no parameters.

    The parameter-free half of the CIFAR ResNet's option-A shortcut. Backward slices the
    gradient of the original channels out of ``gy``.
    """

    prefix = "channel_pad"

    def __init__(self, before, after, **kwargs):
        super().__init__(**kwargs)
        op = "ChannelPad"
        before, after = integer(op, "before", before), integer(op, "after", after)
        if min(before, after) < 0:
            raise ValueError(f"{op}: before and after must be >= 0. Received: before={before}, after={after}")
        self.before, self.after = before, after

    def _build(self, input_shape):
        _check_chw(self, input_shape)
        return (self.before + input_shape[0] + self.after, *input_shape[1:])

    def forward(self, x, training=False, retain=True):
        return _pad_channels(x, self.before, self.after)

    def backward(self, gy, need_gx=True):
        return _slice_channels(gy, self.before, self.before + self.input_shape[0]) if need_gx else None

    def _config(self):
        return {"before": self.before, "after": self.after}
