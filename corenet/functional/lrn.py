"""Local response normalization (Krizhevsky, Sutskever & Hinton, 2012), across or within channels."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .device import backend_for, empty, empty_like
from .validation import as_float_array, check_state, choice, positive_float, positive_int

__all__ = ["local_response_norm", "local_response_norm_backward", "LRNState"]

MODES = ("across", "within")
CONVENTIONS = ("torch", "caffe", "paper", "tf")


class LRNState(NamedTuple):
    """What ``local_response_norm_backward`` needs: the input, the scale and the coefficients."""

    mode: str
    size: int
    alpha: float  # effective coefficient (already divided by n or n^2 where the convention says so)
    beta: float
    x: np.ndarray
    scale: np.ndarray


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0, mode="across", convention="torch",
                        return_state=False):
    """Local response normalization of an NCHW batch.

    Across channels (AlexNet; Krizhevsky et al., "ImageNet Classification with Deep Convolutional
    Neural Networks", NIPS 2012, section 3.3)::

        b[c] = a[c] * (k + alpha' * sum_{c'=max(0, c-floor(n/2))}^{min(C-1, c+floor((n-1)/2))} a[c']**2) ** -beta

    Within a channel (Caffe's ``WITHIN_CHANNEL``), over an ``n x n`` zero-padded spatial window::

        b[h, w] = a[h, w] * (k + alpha' * sum_{h'=h-floor(n/2)}^{h+floor((n-1)/2)} sum_{w'...} a[h', w']**2) ** -beta

    ``alpha' = alpha / n`` (across) or ``alpha / n**2`` (within) in the ``'torch'``/``'caffe'``
    conventions, ``alpha' = alpha`` in the ``'paper'``/``'tf'`` conventions. The paper's AlexNet
    setting is ``n=5, k=2, alpha=1e-4, beta=0.75`` with ``convention='paper'``; PyTorch's
    ``LocalResponseNorm(5, alpha, beta, k)`` is the same call with ``convention='torch'``.

    Within-channel choices: Caffe computes ``(1 + alpha/n**2 * window sum)**-beta`` with an
    average pooling of ``a**2`` (pad ``(n-1)/2``, stride 1, the divisor always ``n**2``) and
    accepts odd ``n`` only. Here ``k`` takes the place of Caffe's constant 1, so the default
    ``k=1.0`` with ``convention='caffe'`` is exactly Caffe; even ``n`` uses the same window offsets
    as across channels (``floor(n/2)`` before, ``floor((n-1)/2)`` after), which for odd ``n`` is
    Caffe's centred window.

    Gradient, with ``s`` the scale ``k + alpha' * sum`` and ``W(c)`` the window of output ``c``::

        dL/da[j] = g[j] * s[j]**-beta - 2 * alpha' * beta * a[j] * sum_{c : j in W(c)} g[c] * a[c] * s[c]**(-beta-1)

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    size : int
        Window length ``n`` (channels, or the side of the spatial window).
    alpha : float >= 0
    beta : float >= 0
    k : float > 0
    mode : {'across', 'within'}
    convention : {'torch', 'caffe', 'paper', 'tf'}
    return_state : bool
        Also return the ``LRNState`` (``x`` and the scale ``s``) for the backward.

    Returns
    -------
    y : ndarray, (N, C, H, W), dtype of ``x``
    state : LRNState, only with ``return_state=True``
    """
    op = "local_response_norm"
    x = as_float_array(op, "x", x, ndim=4)
    size = positive_int(op, "size", size)
    alpha = positive_float(op, "alpha", alpha, allow_zero=True)
    beta = positive_float(op, "beta", beta, allow_zero=True)
    k = positive_float(op, "k", k)
    choice(op, "mode", mode, MODES)
    choice(op, "convention", convention, CONVENTIONS)
    if convention in ("torch", "caffe"):
        alpha = alpha / (size if mode == "across" else size * size)
    y = empty_like(x)
    scale = empty_like(x) if return_state else empty((0, 0, 0, 0), x.dtype, x)
    lrn = backend_for(x).lrn
    forward = lrn.lrn_across_forward if mode == "across" else lrn.lrn_within_forward
    forward(x, y, scale, size, alpha, beta, k)
    if not return_state:
        return y
    return y, LRNState(mode, size, alpha, beta, x, scale)


def local_response_norm_backward(gy, state: LRNState):
    """Gradient of ``local_response_norm`` with respect to ``x``.

    Parameters
    ----------
    gy : ndarray, (N, C, H, W), dtype of the forward input
    state : LRNState
        From ``local_response_norm(..., return_state=True)``.

    Returns
    -------
    gx : ndarray, (N, C, H, W)
    """
    op = "local_response_norm_backward"
    check_state(op, state, LRNState, "local_response_norm")
    gy = as_float_array(op, "gy", gy, ndim=4)
    if gy.shape != state.x.shape or gy.dtype != state.x.dtype:
        raise ValueError(
            f"{op}: gy must match the forward output, shape {state.x.shape} dtype {state.x.dtype}; "
            f"received gy.shape={gy.shape}, gy.dtype={gy.dtype}"
        )
    gx = empty_like(gy)
    lrn = backend_for(gy).lrn
    backward = lrn.lrn_across_backward if state.mode == "across" else lrn.lrn_within_backward
    backward(state.x, state.scale, gy, gx, state.size, state.alpha, state.beta)
    return gx


def _warmup(dtype) -> None:
    """Run both LRN modes forward (with and without state) and backward on a tiny input."""
    x = np.linspace(-1, 1, 2 * 4 * 3 * 3, dtype=dtype).reshape(2, 4, 3, 3)
    for mode in MODES:
        local_response_norm(x, 3, mode=mode)
        y, st = local_response_norm(x, 3, mode=mode, return_state=True)
        local_response_norm_backward(np.ones_like(y), st)
