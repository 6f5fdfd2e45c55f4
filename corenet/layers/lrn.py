"""LocalResponseNorm layer (AlexNet's across-channel and Caffe's within-channel normalization)."""

from __future__ import annotations

from .. import functional as F
from ..functional.validation import choice, positive_float, positive_int
from .base import Layer

__all__ = ["LocalResponseNorm"]


class LocalResponseNorm(Layer):
    """Local response normalization; formulas and conventions in ``corenet.functional.local_response_norm``.

    ``convention='torch'`` (default) divides ``alpha`` by the window size as PyTorch does, so
    ``LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)`` means what it means in PyTorch;
    ``convention='paper'`` uses ``alpha`` as written in the AlexNet paper.
    """

    prefix = "local_response_norm"

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0, mode="across", convention="torch", **kwargs):
        super().__init__(**kwargs)
        op = "LocalResponseNorm"
        self.size = positive_int(op, "size", size)
        self.alpha = positive_float(op, "alpha", alpha, allow_zero=True)
        self.beta = positive_float(op, "beta", beta, allow_zero=True)
        self.k = positive_float(op, "k", k)
        self.mode = choice(op, "mode", mode, ("across", "within"))
        self.convention = choice(op, "convention", convention, ("torch", "caffe", "paper", "tf"))

    def _build(self, input_shape):
        if len(input_shape) != 3:
            raise self._error("expects per-sample input (channels, height, width)", input_shape)
        return input_shape

    def forward(self, x, training=False, retain=True):
        out = F.local_response_norm(x, self.size, self.alpha, self.beta, self.k, self.mode, self.convention,
                                    return_state=retain)
        if retain:
            y, self._state = out
            return y
        return out

    def backward(self, gy, need_gx=True):
        gx = F.local_response_norm_backward(gy, self._state) if need_gx else None
        self._state = None
        return gx

    def _config(self):
        return {"size": self.size, "alpha": self.alpha, "beta": self.beta, "k": self.k, "mode": self.mode,
                "convention": self.convention}
