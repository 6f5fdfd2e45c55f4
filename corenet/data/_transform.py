"""Base of the batch transforms: the ``t(x, rng=None) -> x`` protocol, composition and dtype helpers."""

from __future__ import annotations

import numpy as np


def _check_batch(x, where):
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{where}: expected a batch (N, C, H, W). Received: x.shape={x.shape}")
    return x


def _cast_like(out, x):
    """``out`` in the dtype of ``x``; integers are rounded and clipped to their range."""
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(x.dtype)
    return out.astype(x.dtype, copy=False)


def _work_dtype(x):
    return x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float32)


class Transform:
    """Base class: holds the default generator and dispatches to ``apply(x, rng)``."""

    def __init__(self, seed=None):
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def __call__(self, x, rng=None):
        x = _check_batch(x, type(self).__name__)
        return self.apply(x, self.rng if rng is None else rng)

    def apply(self, x, rng):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "rng")
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply transforms in sequence, passing the same generator along.

    Parameters
    ----------
    transforms : sequence of callables
        Each called as ``t(x, rng)``.
    seed : int or numpy.random.Generator, optional
        Default generator when none is given at call time.
    """

    def __init__(self, transforms, seed=None):
        super().__init__(seed)
        self.transforms = list(transforms)

    def apply(self, x, rng):
        for t in self.transforms:
            x = t(x, rng)
        return x
