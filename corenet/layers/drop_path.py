"""DropPath: stochastic depth on a residual branch, with its own generator (see ``corenet.functional.drop_path``)."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..functional.validation import real
from .base import Layer

__all__ = ["DropPath"]


class DropPath(Layer):
    """Zero whole samples with probability ``p`` in training and scale the rest by ``1/(1-p)``
    (torchvision's ``StochasticDepth(p, mode="row")``); the identity in evaluation.

    Put it on a residual branch, before the ``Add`` with the shortcut. The generator is
    ``np.random.default_rng(seed)`` when ``seed`` is given, else it is seeded from the model's
    generator when the model initializes its layers, as :class:`Dropout`'s; ``self.rng`` is public,
    so checkpoints save and restore its state and data-parallel training gives each rank its stream.
    """

    prefix = "drop_path"

    def __init__(self, p=0.0, **kwargs):
        super().__init__(**kwargs)
        p = real(self.label(), "p", p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{self.label()}: p must be in [0, 1], received {p}")
        self.p = p
        self.rng = None

    def _build(self, input_shape):
        return input_shape

    def _initialize_extra(self, rng):
        self.rng = rng if self.seed is not None else np.random.default_rng(int(rng.integers(2**63)))

    def forward(self, x, training=False, retain=True):
        training = bool(training)
        if retain:
            y, self._state = F.drop_path(x, self.p, self.rng, training=training, return_state=True)
            return y
        return F.drop_path(x, self.p, self.rng, training=training) if training else x

    def backward(self, gy, need_gx=True):
        gx = F.drop_path_backward(gy, self._state) if need_gx else None
        self._state = None
        return gx

    def _config(self):
        return {"p": self.p}
