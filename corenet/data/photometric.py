"""Photometric batch transforms: brightness/contrast/saturation jitter, PCA lighting noise, Gaussian noise,
per-channel normalisation. Same protocol as :mod:`corenet.data.augment`: ``t(x, rng=None) -> x`` on
(N, C, H, W), shape and dtype kept, input untouched.
"""

from __future__ import annotations

import numpy as np

from ._transform import Transform, _cast_like, _check_batch, _work_dtype


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
