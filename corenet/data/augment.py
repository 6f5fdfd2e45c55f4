"""Batch augmentation: vectorised numpy transforms on (N, C, H, W) arrays, seeded explicitly.

Every transform is called as ``t(x, rng=None) -> x``: ``x`` is a batch (N, C, H, W), the result has
the same shape and dtype (integer images are computed in float32, then rounded and clipped to the
dtype's range), and the randomness comes from ``rng`` (a ``numpy.random.Generator``) or, when it is
None, from the generator the transform was built with (``seed=``). Each sample draws its own
parameters; draws happen in a fixed order, so the same generator state gives the same result.
The input is never modified.
"""

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


class ColorJitter(Transform):
    """Random brightness, contrast and saturation, one factor per image and property.

    Applied in this order, each factor drawn from ``U(max(0, 1 - v), 1 + v)``:
    brightness ``x * f``; contrast ``(x - m) * f + m`` with ``m`` the image's mean grey level;
    saturation ``(x - g) * f + g`` with ``g = 0.299 R + 0.587 G + 0.114 B`` per pixel (ITU-R BT.601,
    3-channel images only). Meant for images in [0, 1] (apply before standardisation).

    Parameters
    ----------
    brightness, contrast, saturation : float
        Strength of each jitter; 0 disables it.
    clip : (float, float), optional
        Clip the result to this range, e.g. ``(0, 1)``; default None (no clipping).
    seed : int or numpy.random.Generator, optional
    """

    def __init__(self, brightness=0.0, contrast=0.0, saturation=0.0, clip=None, seed=None):
        super().__init__(seed)
        for name, v in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if v < 0:
                raise ValueError(f"ColorJitter: {name} must be >= 0. Received: {name}={v}")
        self.brightness, self.contrast, self.saturation = float(brightness), float(contrast), float(saturation)
        self.clip = clip

    def apply(self, x, rng):
        n, c = x.shape[:2]
        if self.saturation and c != 3:
            raise ValueError(f"ColorJitter: saturation needs RGB images (C=3). Received: x.shape={x.shape}")
        dt = _work_dtype(x)
        out = x.astype(dt)
        weights = np.array([0.299, 0.587, 0.114], dt).reshape(1, 3, 1, 1) if c == 3 else None

        def factors(v):
            return rng.uniform(max(0.0, 1.0 - v), 1.0 + v, n).astype(dt).reshape(n, 1, 1, 1)

        def grey(img):
            return (img * weights).sum(axis=1, keepdims=True) if c == 3 else img.mean(axis=1, keepdims=True)

        if self.brightness:
            out *= factors(self.brightness)
        if self.contrast:
            m = grey(out).mean(axis=(2, 3), keepdims=True)
            out = (out - m) * factors(self.contrast) + m
        if self.saturation:
            g = grey(out)
            out = (out - g) * factors(self.saturation) + g
        if self.clip is not None:
            out = np.clip(out, *self.clip)
        return _cast_like(out, x)


#: Eigenvalues and eigenvectors (columns) of the RGB covariance of ImageNet pixels in [0, 1], as used
#: by fb.resnet.torch for AlexNet-style lighting noise.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))


class Lighting(Transform):
    """AlexNet PCA lighting noise (Krizhevsky, Sutskever and Hinton, 2012, section 4.1).

    Adds ``V (alpha * lambda)`` to every pixel of an RGB image, where ``V`` holds the eigenvectors
    (columns) and ``lambda`` the eigenvalues of the pixel colour covariance, and
    ``alpha ~ N(0, alphastd^2)`` is drawn per image and component. The default eigen-decomposition
    is of pixels in [0, 1], so apply it to images in that scale (before standardisation).

    Parameters
    ----------
    alphastd : float
        Standard deviation of ``alpha`` (AlexNet: 0.1).
    eigval, eigvec : array_like, optional
        (3,) and (3, 3); default the ImageNet values. :meth:`from_data` computes them for a data set.
    seed : int or numpy.random.Generator, optional
    """

    def __init__(self, alphastd=0.1, eigval=IMAGENET_EIGVAL, eigvec=IMAGENET_EIGVEC, seed=None):
        super().__init__(seed)
        self.alphastd = float(alphastd)
        self.eigval, self.eigvec = np.asarray(eigval, float).reshape(3), np.asarray(eigvec, float).reshape(3, 3)

    @classmethod
    def from_data(cls, x, alphastd=0.1, seed=None):
        """Build the transform from the colour covariance of images ``x`` (N, 3, H, W); uint8 is scaled to [0, 1]."""
        x = _check_batch(x, "Lighting.from_data")
        pixels = x.transpose(1, 0, 2, 3).reshape(3, -1).astype(np.float64)
        if x.dtype == np.uint8:
            pixels /= 255.0
        eigval, eigvec = np.linalg.eigh(np.cov(pixels))
        return cls(alphastd, eigval[::-1], eigvec[:, ::-1], seed=seed)

    def apply(self, x, rng):
        if x.shape[1] != 3:
            raise ValueError(f"Lighting: needs RGB images (C=3). Received: x.shape={x.shape}")
        alpha = rng.normal(0.0, self.alphastd, (len(x), 3))
        rgb = (alpha * self.eigval) @ self.eigvec.T  # (N, 3): sum_j V[c, j] alpha_j lambda_j
        dt = _work_dtype(x)
        return _cast_like(x.astype(dt) + rgb.astype(dt)[:, :, None, None], x)


class GaussianNoise(Transform):
    """Add independent ``N(0, std^2)`` noise to every value.

    Parameters
    ----------
    std : float
        Noise standard deviation, in the units of the data.
    seed : int or numpy.random.Generator, optional
    """

    def __init__(self, std=0.05, seed=None):
        super().__init__(seed)
        if std < 0:
            raise ValueError(f"GaussianNoise: std must be >= 0. Received: std={std}")
        self.std = float(std)

    def apply(self, x, rng):
        dt = _work_dtype(x)
        noise = rng.standard_normal(x.shape, dtype=np.float32 if dt == np.float32 else np.float64)
        return _cast_like(x.astype(dt) + noise.astype(dt) * dt.type(self.std), x)


class Normalize(Transform):
    """Per-channel standardisation ``(x - mean[c]) / std[c]`` (deterministic; ``rng`` is ignored).

    Parameters
    ----------
    mean, std : sequence of float
        One value per channel, or one value for all.
    """

    def __init__(self, mean, std):
        super().__init__(0)
        self.mean = np.asarray(mean, float).reshape(-1)
        self.std = np.asarray(std, float).reshape(-1)
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize: std must be positive. Received: std={self.std.tolist()}")

    def apply(self, x, rng):
        c = x.shape[1]
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"Normalize: needs floating-point images (scale integer images to [0, 1] first). "
                             f"Received: x.dtype={x.dtype}")
        if self.mean.size not in (1, c) or self.std.size not in (1, c):
            raise ValueError(f"Normalize: {self.mean.size} mean / {self.std.size} std values for {c} channels. "
                             f"Received: x.shape={x.shape}")
        dt = x.dtype
        mean, std = self.mean.astype(dt).reshape(1, -1, 1, 1), self.std.astype(dt).reshape(1, -1, 1, 1)
        return (x - mean) / std
