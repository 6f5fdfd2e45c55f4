"""The activations of the mobile architectures: relu6, hardsigmoid, hardswish and silu.

Same pattern as ``act.py``: every op keeps the input's shape and dtype, ``f(x, return_state=True)``
returns ``(y, state)`` and ``f_backward(gy, state)`` returns ``gx``; each direction is one fused
kernel of the active backend (or the cuda backend for device arrays).

The definitions and the derivatives are PyTorch's, including the value it takes at each kink
(checked against torch's forward and autograd in ``tests/test_act_mobile.py``): the derivative
is 0 at both ends of relu6's and hardsigmoid's linear piece, hardswish's is 0 at ``x = -3`` and
1 at ``x = 3``. NaN propagates through every forward. At NaN the gradient is 0 for relu6 and
hardsigmoid and NaN for hardswish and silu: what PyTorch's vectorised CPU kernels give (its scalar
loop over the last few elements of a tensor gives ``gy`` for relu6 and hardswish instead).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .act import _flat, _grad
from .device import backend_for, empty_like

__all__ = [
    "relu6", "relu6_backward", "hardsigmoid", "hardsigmoid_backward", "hardswish", "hardswish_backward",
    "silu", "silu_backward", "Relu6State", "HardsigmoidState", "HardswishState", "SiluState",
]


class Relu6State(NamedTuple):
    """What :func:`relu6_backward` needs: the output (flat; ``0 < y < 6`` exactly where
    ``0 < x < 6``) and its shape."""

    y: np.ndarray
    shape: tuple


class HardsigmoidState(NamedTuple):
    """What :func:`hardsigmoid_backward` needs: the input (flat) and its shape."""

    x: np.ndarray
    shape: tuple


class HardswishState(NamedTuple):
    """What :func:`hardswish_backward` needs: the input (flat) and its shape."""

    x: np.ndarray
    shape: tuple


class SiluState(NamedTuple):
    """What :func:`silu_backward` needs: the input (flat) and its shape."""

    x: np.ndarray
    shape: tuple


def relu6(x, return_state=False):
    """ReLU6 (Krizhevsky 2010; MobileNetV2, Sandler et al. 2018): ``y = min(max(x, 0), 6)``.

    Backward: ``gx = gy`` where ``0 < x < 6``, else 0 (0 at both kinks, as PyTorch's hardtanh).
    """
    x, xf = _flat("relu6", x)
    y = backend_for(xf).act.relu6_forward(xf, empty_like(xf))
    return (y.reshape(x.shape), Relu6State(y, x.shape)) if return_state else y.reshape(x.shape)


def relu6_backward(gy, state):
    """Gradient of :func:`relu6`; ``state`` is its :class:`Relu6State`."""
    gy, y = _grad("relu6_backward", gy, state, Relu6State, "relu6", "y")
    return backend_for(gy).act.relu6_backward(gy, y, empty_like(gy)).reshape(state.shape)


def hardsigmoid(x, return_state=False):
    """Hard sigmoid (MobileNetV3, Howard et al. 2019), PyTorch's: ``y = min(max(x + 3, 0), 6) / 6``,
    i.e. 0 for ``x <= -3``, 1 for ``x >= 3`` and ``x/6 + 1/2`` between (ONNX ``HardSigmoid`` with
    ``alpha = 1/6``, ``beta = 1/2``).

    Backward: ``gx = gy / 6`` where ``-3 < x < 3``, else 0.
    """
    x, xf = _flat("hardsigmoid", x)
    y = backend_for(xf).act.hardsigmoid_forward(xf, empty_like(xf)).reshape(x.shape)
    return (y, HardsigmoidState(xf, x.shape)) if return_state else y


def hardsigmoid_backward(gy, state):
    """Gradient of :func:`hardsigmoid`; ``state`` is its :class:`HardsigmoidState`."""
    gy, x = _grad("hardsigmoid_backward", gy, state, HardsigmoidState, "hardsigmoid", "x")
    return backend_for(gy).act.hardsigmoid_backward(gy, x, empty_like(gy)).reshape(state.shape)


def hardswish(x, return_state=False):
    """Hard swish (MobileNetV3, Howard et al. 2019), PyTorch's: ``y = x * min(max(x + 3, 0), 6) / 6``.

    Backward: ``gx = 0`` where ``x <= -3``, ``gy * (x/3 + 1/2)`` where ``-3 < x < 3``, ``gy`` where
    ``x >= 3``.
    """
    x, xf = _flat("hardswish", x)
    y = backend_for(xf).act.hardswish_forward(xf, empty_like(xf)).reshape(x.shape)
    return (y, HardswishState(xf, x.shape)) if return_state else y


def hardswish_backward(gy, state):
    """Gradient of :func:`hardswish`; ``state`` is its :class:`HardswishState`."""
    gy, x = _grad("hardswish_backward", gy, state, HardswishState, "hardswish", "x")
    return backend_for(gy).act.hardswish_backward(gy, x, empty_like(gy)).reshape(state.shape)


def silu(x, return_state=False):
    """SiLU / swish (Elfwing et al. 2017; Ramachandran et al. 2017; EfficientNet):
    ``y = x * sigmoid(x) = x / (1 + exp(-x))``.

    Backward: ``gx = gy * s * (1 + x (1 - s))`` with ``s = sigmoid(x)``.
    """
    x, xf = _flat("silu", x)
    y = backend_for(xf).act.silu_forward(xf, empty_like(xf)).reshape(x.shape)
    return (y, SiluState(xf, x.shape)) if return_state else y


def silu_backward(gy, state):
    """Gradient of :func:`silu`; ``state`` is its :class:`SiluState`."""
    gy, x = _grad("silu_backward", gy, state, SiluState, "silu", "x")
    return backend_for(gy).act.silu_backward(gy, x, empty_like(gy)).reshape(state.shape)


def _warmup(dtype):
    x = np.linspace(-4, 4, 24).astype(np.dtype(dtype)).reshape(2, 3, 2, 2)
    for fn, bw in ((relu6, relu6_backward), (hardsigmoid, hardsigmoid_backward),
                   (hardswish, hardswish_backward), (silu, silu_backward)):
        y, st = fn(x, return_state=True)
        bw(y, st)
