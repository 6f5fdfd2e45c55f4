"""Helpers shared by the data set readers: split checking, scaling and per-channel standardisation."""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "test")


def check_split(split: str, where: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"{where}: split must be one of {SPLITS}. Received: split={split!r}")
    return split


def channel_stats(x) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of images scaled to [0, 1].

    Parameters
    ----------
    x : numpy.ndarray
        Images (N, C, H, W); uint8 values are divided by 255 first.

    Returns
    -------
    mean, std : tuple of float
        One value per channel, computed over N, H and W (population std), in float64.
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"channel_stats: expected images (N, C, H, W). Received: x.shape={x.shape}")
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    mean, sq = [], []
    for c in range(x.shape[1]):  # one channel at a time keeps the float64 temporary small
        xc = x[:, c].astype(np.float64) / scale
        mean.append(float(xc.mean()))
        sq.append(float(xc.std()))
    return tuple(mean), tuple(sq)


def standardize(x, mean, std) -> np.ndarray:
    """Scale uint8 images to [0, 1] and standardise each channel: ``(x / 255 - mean[c]) / std[c]``.

    Parameters
    ----------
    x : numpy.ndarray
        Images (N, C, H, W). uint8 values are divided by 255; floating values are used as they are.
    mean, std : sequence of float
        One value per channel (or a single value for all channels), in the [0, 1] scale.

    Returns
    -------
    numpy.ndarray
        float32 (N, C, H, W), a new array.
    """
    x = np.asarray(x)
    out = x.astype(np.float32)
    if x.dtype == np.uint8:
        out *= np.float32(1.0 / 255.0)
    mean = np.asarray(mean, dtype=np.float32).reshape(-1)
    std = np.asarray(std, dtype=np.float32).reshape(-1)
    channels = x.shape[1]
    if mean.size not in (1, channels) or std.size not in (1, channels):
        raise ValueError(f"standardize: mean and std need 1 or {channels} values (one per channel). "
                         f"Received: mean={mean.tolist()}, std={std.tolist()}")
    if np.any(std <= 0):
        raise ValueError(f"standardize: std must be positive. Received: std={std.tolist()}")
    out -= mean.reshape(1, -1, 1, 1)
    out *= (1.0 / std).reshape(1, -1, 1, 1)
    return out


def apply_normalize(x, normalize, constants, train_stats, where: str) -> np.ndarray:
    """The ``normalize=`` argument of the readers: False, True or an explicit ``(mean, std)``.

    ``True`` uses ``constants`` (the data set's documented training-set statistics) when known,
    else ``train_stats()`` (statistics computed from the training split on disk).
    """
    if normalize is False or normalize is None:
        return x
    if normalize is True:
        mean, std = constants if constants is not None else train_stats()
    elif isinstance(normalize, (tuple, list)) and len(normalize) == 2:
        mean, std = normalize
    else:
        raise ValueError(f"{where}: normalize must be False, True or a (mean, std) pair. "
                         f"Received: normalize={normalize!r}")
    return standardize(x, mean, std)
