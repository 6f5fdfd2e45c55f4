"""Channel shuffle (ShuffleNet): a fixed permutation of the channels, forward and backward.

``channel_shuffle(x, groups)`` is PyTorch's ``nn.ChannelShuffle``: view ``(N, C, ...)`` as
``(N, groups, C/groups, ...)``, swap the two channel axes and flatten them back, so output channel
``j * groups + i`` is input channel ``i * (C/groups) + j``. Zhang et al., "ShuffleNet: An Extremely
Efficient Convolutional Neural Network for Mobile Devices" (2018); Ma et al., "ShuffleNet V2" (2018).
The backward is the inverse permutation, the same transpose with ``C/groups`` groups.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .device import backend_for, empty
from .validation import as_float_array, check_gy, check_state, positive_int

__all__ = ["channel_shuffle", "channel_shuffle_backward", "ChannelShuffleState"]


class ChannelShuffleState(NamedTuple):
    """What :func:`channel_shuffle_backward` needs: the groups and the input's shape and dtype."""

    groups: int
    shape: tuple
    dtype: object


def _transpose(x, a, b, shape):
    """``x`` viewed as ``(N, a, b, L)`` transposed into a new ``(N, b, a, L)`` array, as ``shape``."""
    n, length = shape[0], math.prod(shape[2:])
    x4 = x.reshape(n, a, b, length)
    y = backend_for(x4).act.channel_shuffle(x4, empty((n, b, a, length), x.dtype, x))
    return y.reshape(shape)


def channel_shuffle(x, groups, return_state=False):
    """Shuffle the channels of ``x (N, C, ...)`` across ``groups`` (``C % groups == 0``).

    ``y[:, j * groups + i] = x[:, i * (C // groups) + j]`` for ``i < groups``, ``j < C // groups``.
    Backward: ``gx[:, i * (C // groups) + j] = gy[:, j * groups + i]``.
    """
    op = "channel_shuffle"
    x = as_float_array(op, "x", x)
    groups = positive_int(op, "groups", groups)
    shape = tuple(x.shape)
    if len(shape) < 2:
        raise ValueError(f"{op}: x must be (N, C, ...) with at least 2 axes, received x.shape={shape}")
    if shape[1] % groups:
        raise ValueError(f"{op}: the {shape[1]} channels are not divisible by groups={groups}. "
                         f"Received: x.shape={shape}")
    y = _transpose(x, groups, shape[1] // groups, shape)
    return (y, ChannelShuffleState(groups, shape, x.dtype)) if return_state else y


def channel_shuffle_backward(gy, state):
    """Gradient of :func:`channel_shuffle`; ``state`` is its :class:`ChannelShuffleState`."""
    op = "channel_shuffle_backward"
    check_state(op, state, ChannelShuffleState, "channel_shuffle")
    gy = as_float_array(op, "gy", gy)
    check_gy(op, gy, state.shape, state.dtype)
    return _transpose(gy, state.shape[1] // state.groups, state.groups, state.shape)


def _warmup(dtype):
    x = np.arange(2 * 6 * 2 * 2, dtype=np.dtype(dtype)).reshape(2, 6, 2, 2)
    y, st = channel_shuffle(x, 3, return_state=True)
    channel_shuffle_backward(y, st)
