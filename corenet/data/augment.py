"""Batch augmentation: vectorised numpy transforms on (N, C, H, W) arrays, seeded explicitly.

Every transform is called as ``t(x, rng=None) -> x``: ``x`` is a batch (N, C, H, W), the result has
the same shape and dtype (integer images are computed in float32, then rounded and clipped to the
dtype's range), and the randomness comes from ``rng`` (a ``numpy.random.Generator``) or, when it is
None, from the generator the transform was built with (``seed=``). Each sample draws its own
parameters; draws happen in a fixed order, so the same generator state gives the same result.
The input is never modified.

Geometric transforms live here; the photometric ones (:class:`ColorJitter`, :class:`Lighting`,
:class:`GaussianNoise`, :class:`Normalize`) in :mod:`corenet.data.photometric`, re-exported here so
that every transform is reachable as ``corenet.data.augment.<Name>``.
"""

from __future__ import annotations

import numpy as np

from ._transform import Compose, Transform, _cast_like, _work_dtype
from .photometric import IMAGENET_EIGVAL, IMAGENET_EIGVEC, ColorJitter, GaussianNoise, Lighting, Normalize

__all__ = [
    "Transform", "Compose", "RandomHorizontalFlip", "RandomVerticalFlip", "RandomCrop", "RandomShift",
    "RandomAffine", "RandomRotation", "RandomScale", "ColorJitter", "Lighting", "GaussianNoise", "Normalize",
    "IMAGENET_EIGVAL", "IMAGENET_EIGVEC",
]


class _RandomFlip(Transform):
    axis = -1

    def __init__(self, p=0.5, seed=None):
        super().__init__(seed)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{type(self).__name__}: p must lie in [0, 1]. Received: p={p}")
        self.p = float(p)

    def apply(self, x, rng):
        flip = rng.random(len(x)) < self.p
        out = x.copy()
        out[flip] = np.flip(x[flip], axis=self.axis)
        return out


class RandomHorizontalFlip(_RandomFlip):
    """Mirror each image left-right (along W) with probability ``p`` (default 0.5)."""

    axis = -1


class RandomVerticalFlip(_RandomFlip):
    """Mirror each image top-bottom (along H) with probability ``p`` (default 0.5)."""

    axis = -2


class RandomCrop(Transform):
    """Pad by ``padding`` on every side, then cut a random window of the original size.

    This is the CIFAR "pad 4 and crop 32" augmentation; each image moves by an independent
    integer offset in ``[-padding, padding]`` along H and W.

    Parameters
    ----------
    padding : int
        Pixels added on each side (maximum shift).
    mode : {"zero", "reflect", "edge"}
        Padding values: zeros, mirror without repeating the edge (``numpy.pad`` "reflect"), or
        repeated edge pixels.
    seed : int or numpy.random.Generator, optional
    """

    _MODES = {"zero": "constant", "reflect": "reflect", "edge": "edge"}

    def __init__(self, padding=4, mode="zero", seed=None):
        super().__init__(seed)
        if mode not in self._MODES:
            raise ValueError(f"{type(self).__name__}: mode must be one of {list(self._MODES)}. Received: {mode!r}")
        if int(padding) < 0:
            raise ValueError(f"{type(self).__name__}: padding must be >= 0. Received: {padding}")
        self.padding, self.mode = int(padding), mode

    def apply(self, x, rng):
        n, _, h, w = x.shape
        p = self.padding
        if self.mode == "reflect" and p >= min(h, w):
            raise ValueError(f"{type(self).__name__}: reflect padding {p} needs images larger than {p} "
                             f"pixels. Received: x.shape={x.shape}")
        oy = rng.integers(0, 2 * p + 1, n)
        ox = rng.integers(0, 2 * p + 1, n)
        padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode=self._MODES[self.mode])
        rows = (oy[:, None] + np.arange(h))[:, None, :, None]  # (N, 1, H, 1)
        cols = (ox[:, None] + np.arange(w))[:, None, None, :]  # (N, 1, 1, W)
        return padded[np.arange(n)[:, None, None, None], np.arange(x.shape[1])[None, :, None, None], rows, cols]


class RandomShift(RandomCrop):
    """Translate each image by a random integer offset in ``[-max_shift, max_shift]`` along H and W.

    Equivalent to :class:`RandomCrop` with ``padding=max_shift``; uncovered pixels are filled
    according to ``mode`` ("zero", "reflect" or "edge").
    """

    def __init__(self, max_shift=2, mode="zero", seed=None):
        super().__init__(padding=max_shift, mode=mode, seed=seed)


def _warp(x, src_y, src_x, interpolation, fill):
    """Sample ``x`` (N, C, H, W) at per-sample source coordinates ``src_y, src_x`` (N, H, W).

    Points outside the image take ``fill``. Bilinear weights of out-of-range neighbours are dropped
    and replaced by ``fill``, so borders blend smoothly into the fill value.
    """
    n, c, h, w = x.shape
    dt = _work_dtype(x)
    xf = x.reshape(n, c, h * w).astype(dt, copy=False)

    def gather(iy, ix):  # (N, H, W) integer coordinates, clipped -> (N, C, H, W)
        flat = (np.clip(iy, 0, h - 1) * w + np.clip(ix, 0, w - 1)).reshape(n, 1, h * w)
        return np.take_along_axis(xf, flat, axis=2).reshape(n, c, h, w)

    if interpolation == "nearest":
        iy, ix = np.rint(src_y).astype(np.intp), np.rint(src_x).astype(np.intp)
        inside = ((iy >= 0) & (iy < h) & (ix >= 0) & (ix < w))[:, None]
        return np.where(inside, gather(iy, ix), dt.type(fill))
    y0, x0 = np.floor(src_y), np.floor(src_x)
    wy, wx = (src_y - y0).astype(dt), (src_x - x0).astype(dt)
    y0, x0 = y0.astype(np.intp), x0.astype(np.intp)
    out = np.zeros((n, c, h, w), dt)
    covered = np.zeros((n, 1, h, w), dt)
    for dy, dx, wgt in ((0, 0, (1 - wy) * (1 - wx)), (0, 1, (1 - wy) * wx), (1, 0, wy * (1 - wx)), (1, 1, wy * wx)):
        iy, ix = y0 + dy, x0 + dx
        wgt = (wgt * ((iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)))[:, None]
        out += wgt * gather(iy, ix)
        covered += wgt
    if fill != 0:
        out += (1 - covered) * dt.type(fill)
    return out


class RandomAffine(Transform):
    """Random rotation, scaling and translation about the image centre, vectorised over the batch.

    Each output pixel ``p`` is sampled at ``R(theta) (p - c) / s + c - t`` of the input (inverse
    mapping), where ``c = ((H-1)/2, (W-1)/2)``, ``theta ~ U(-degrees, degrees)``, ``s ~ U(scale)`` and
    ``t`` is a translation ``~ U(-translate, translate) * (H, W)``.

    Parameters
    ----------
    degrees : float
        Maximum absolute rotation in degrees (counter-clockwise positive, as displayed).
    scale : (float, float), optional
        Range of zoom factors (> 1 enlarges the content).
    translate : (float, float), optional
        Maximum shift as a fraction of (H, W).
    interpolation : {"bilinear", "nearest"}
    fill : float
        Value for pixels that come from outside the image.
    seed : int or numpy.random.Generator, optional
    """

    def __init__(self, degrees=0.0, scale=None, translate=None, interpolation="bilinear", fill=0.0, seed=None):
        super().__init__(seed)
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"{type(self).__name__}: interpolation must be 'bilinear' or 'nearest'. "
                             f"Received: {interpolation!r}")
        if scale is not None and not (len(scale) == 2 and 0 < scale[0] <= scale[1]):
            raise ValueError(f"{type(self).__name__}: scale must be (low, high) with 0 < low <= high. "
                             f"Received: {scale!r}")
        self.degrees, self.scale, self.translate = abs(float(degrees)), scale, translate
        self.interpolation, self.fill = interpolation, float(fill)

    def apply(self, x, rng):
        n, _, h, w = x.shape
        theta = np.deg2rad(rng.uniform(-self.degrees, self.degrees, n)) if self.degrees else np.zeros(n)
        s = rng.uniform(self.scale[0], self.scale[1], n) if self.scale is not None else np.ones(n)
        t = np.zeros((n, 2))
        if self.translate is not None:
            t = rng.uniform(-1.0, 1.0, (n, 2)) * np.array(self.translate, float) * (h, w)
        cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
        gy, gx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")  # (H, W)
        cos, sin = (np.cos(theta) / s)[:, None, None], (np.sin(theta) / s)[:, None, None]
        # rows grow downwards: this inverse map turns the content counter-clockwise on screen for theta > 0
        src_y = cos * gy + sin * gx + cy - t[:, 0, None, None]
        src_x = -sin * gy + cos * gx + cx - t[:, 1, None, None]
        return _cast_like(_warp(x, src_y, src_x, self.interpolation, self.fill), x)


class RandomRotation(RandomAffine):
    """Rotate each image by an angle drawn from ``U(-degrees, degrees)`` (see :class:`RandomAffine`)."""

    def __init__(self, degrees=10.0, interpolation="bilinear", fill=0.0, seed=None):
        super().__init__(degrees=degrees, interpolation=interpolation, fill=fill, seed=seed)


class RandomScale(RandomAffine):
    """Zoom each image about its centre by a factor drawn from ``U(scale)`` (see :class:`RandomAffine`)."""

    def __init__(self, scale=(0.9, 1.1), interpolation="bilinear", fill=0.0, seed=None):
        super().__init__(scale=scale, interpolation=interpolation, fill=fill, seed=seed)
