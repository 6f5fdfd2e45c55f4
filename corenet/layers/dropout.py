"""Dropout: inverted dropout with its own random generator (see ``corenet.functional.dropout``)."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..functional.validation import real
from .base import Layer

__all__ = ["Dropout"]


class _Masked(Layer):
    """A layer that draws a random mask in training with its own generator: ``p`` checked, ``self.rng``
    from ``np.random.default_rng(seed)`` when ``seed`` is given, else seeded from the model's generator
    when the model initializes its layers; public, so a checkpoint saves and restores its state."""

    def __init__(self, p, **kwargs):
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

    def _config(self):
        return {"p": self.p}


class Dropout(_Masked):
    """Zero each element with probability ``p`` in training and scale the rest by ``1/(1-p)``.

    The identity in evaluation. The mask generator is ``np.random.default_rng(seed)`` when
    ``seed`` is given, else it is seeded from the model's generator when the model initializes
    its layers; ``self.rng`` is public so that a checkpoint can save and restore its state.
    """

    prefix = "dropout"

    def __init__(self, p=0.5, **kwargs):
        super().__init__(p, **kwargs)
        self._device_rng = None  # the mask generator on the GPU, seeded once from self.rng

    def forward(self, x, training=False, retain=True):
        training = bool(training)
        rng = self.rng
        if training:  # device arrays draw their mask from generator states on the GPU (F.dropout_rng)
            rng = F.dropout_rng(self.rng, x, self._device_rng)
            if rng is not self.rng:
                self._device_rng = rng
        if retain:
            y, self._state = F.dropout(x, self.p, rng, training=training, return_state=True)
            return y
        return F.dropout(x, self.p, rng, training=training) if training else x

    def backward(self, gy, need_gx=True):
        gx = F.dropout_backward(gy, self._state) if need_gx else None
        self._state = None
        return gx
