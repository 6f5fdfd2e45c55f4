"""The act family's kernels for the mobile architectures (Numba CPU), re-exported by ``act.py``.

relu6, hardsigmoid, hardswish (MobileNetV2/V3) and silu (EfficientNet) repeat PyTorch's CPU
arithmetic, including its choices at the kinks and for NaN (see ``corenet/functional/act_mobile.py``);
they follow ``act.py``'s design: flat C-contiguous views, one ``prange`` over the elements,
scalars in the array dtype, the output allocated by the caller and passed last.

``drop_path_*`` (stochastic depth) take ``(N, L)`` views and one uint8 keep flag per sample: one
task per sample. ``channel_shuffle`` (ShuffleNet) is the transpose ``y[n, b, a, :] = x[n, a, b, :]``
of an ``(N, A, B, L)`` view into ``(N, B, A, L)``, one task per output row ``(n, b)``; with A and B
swapped it is its own adjoint. Every output element is written by exactly one task.
"""

from numba import prange

from ._jit import kernel
from ._threads import sized
from ._vmath import vexp

__all__ = [
    "relu6_forward",
    "relu6_backward",
    "hardsigmoid_forward",
    "hardsigmoid_backward",
    "hardswish_forward",
    "hardswish_backward",
    "silu_forward",
    "silu_backward",
    "drop_path_forward",
    "drop_path_backward",
    "channel_shuffle",
]


# ------------------------------------------------------- relu6, hardsigmoid, hardswish, silu


@sized(1)
@kernel
def relu6_forward(x, y):
    """``min(max(x, 0), 6)``; NaN and -0 pass through, as in PyTorch's hardtanh."""
    zero, six = x.dtype.type(0.0), x.dtype.type(6.0)
    for i in prange(x.shape[0]):
        v = x[i]
        y[i] = zero if v < zero else (six if v > six else v)
    return y


@sized(1)
@kernel
def relu6_backward(gy, y, gx):
    """``gy`` where ``0 < x < 6``, else 0 (NaN too); from the output (``0 < y < 6`` exactly there)."""
    for i in prange(gy.shape[0]):
        v = y[i]
        gx[i] = gy[i] if (v > 0 and v < 6) else 0
    return gx


@sized(1)
@kernel
def hardsigmoid_forward(x, y):
    """``min(max(x + 3, 0), 6) / 6``."""
    zero, three, six = x.dtype.type(0.0), x.dtype.type(3.0), x.dtype.type(6.0)
    for i in prange(x.shape[0]):
        v = x[i] + three
        y[i] = (zero if v < zero else (six if v > six else v)) / six
    return y


@sized(1)
@kernel
def hardsigmoid_backward(gy, x, gx):
    """``gy / 6`` where ``-3 < x < 3``, else 0."""
    sixth = x.dtype.type(1.0 / 6.0)
    for i in prange(gy.shape[0]):
        v = x[i]
        gx[i] = gy[i] * sixth if (v > -3 and v < 3) else 0
    return gx


@sized(1)
@kernel
def hardswish_forward(x, y):
    """``x * min(max(x + 3, 0), 6) / 6``."""
    zero, three, six = x.dtype.type(0.0), x.dtype.type(3.0), x.dtype.type(6.0)
    for i in prange(x.shape[0]):
        v = x[i]
        r = v + three
        y[i] = v * (zero if r < zero else (six if r > six else r)) / six
    return y


@sized(1)
@kernel
def hardswish_backward(gy, x, gx):
    """0 where ``x <= -3``, ``gy`` where ``x >= 3``, else ``gy * (x / 3 + 1/2)`` (NaN for NaN)."""
    three, half = x.dtype.type(3.0), x.dtype.type(0.5)
    for i in prange(gy.shape[0]):
        v = x[i]
        if v <= -3:
            gx[i] = 0
        elif v >= 3:
            gx[i] = gy[i]
        else:
            gx[i] = gy[i] * (v / three + half)
    return gx


@sized(8)
@kernel
def silu_forward(x, y):
    """``x / (1 + exp(-x))`` (exp overflows to inf for very negative x: the result is -0)."""
    one = x.dtype.type(1.0)
    for i in prange(x.shape[0]):
        v = x[i]
        y[i] = v / (one + vexp(-v))
    return y


@sized(8)
@kernel
def silu_backward(gy, x, gx):
    """``gy * s * (1 + x * (1 - s))`` with ``s = sigmoid(x)``."""
    one = x.dtype.type(1.0)
    for i in prange(gy.shape[0]):
        v = x[i]
        s = one / (one + vexp(-v))
        gx[i] = gy[i] * s * (one + v * (one - s))
    return gx


# ------------------------------------------------------------- drop path, channel shuffle


@sized(1)
@kernel
def drop_path_forward(x, keep, scale, y):
    """``y[n] = x[n] * scale`` where ``keep[n]`` (uint8) is 1, else 0; ``x (N, L)``."""
    for n in prange(x.shape[0]):
        if keep[n]:
            for j in range(x.shape[1]):
                y[n, j] = x[n, j] * scale
        else:
            for j in range(x.shape[1]):
                y[n, j] = 0
    return y


@sized(1)
@kernel
def drop_path_backward(gy, keep, scale, gx):
    for n in prange(gy.shape[0]):
        if keep[n]:
            for j in range(gy.shape[1]):
                gx[n, j] = gy[n, j] * scale
        else:
            for j in range(gy.shape[1]):
                gx[n, j] = 0
    return gx


@sized(1)
@kernel
def channel_shuffle(x, y):
    """``y[n, b, a, :] = x[n, a, b, :]`` for ``x (N, A, B, L)``, ``y (N, B, A, L)``."""
    N, A, B, L = x.shape
    for t in prange(N * B):
        n, b = t // B, t % B
        for a in range(A):
            for j in range(L):
                y[n, b, a, j] = x[n, a, b, j]
    return y
