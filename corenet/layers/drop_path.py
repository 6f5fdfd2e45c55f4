"""DropPath: stochastic depth on a residual branch, with its own generator (see ``corenet.functional.drop_path``)."""

from __future__ import annotations

from .. import functional as F
from .dropout import _Masked

__all__ = ["DropPath"]


class DropPath(_Masked):
    """Zero whole samples with probability ``p`` in training and scale the rest by ``1/(1-p)``
    (torchvision's ``StochasticDepth(p, mode="row")``); the identity in evaluation.

    Put it on a residual branch, before the ``Add`` with the shortcut. The generator is
    ``np.random.default_rng(seed)`` when ``seed`` is given, else it is seeded from the model's
    generator when the model initializes its layers, as :class:`Dropout`'s; ``self.rng`` is public,
    so checkpoints save and restore its state and data-parallel training gives each rank its stream.
    """

    prefix = "drop_path"

    def __init__(self, p=0.0, **kwargs):
        super().__init__(p, **kwargs)

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
