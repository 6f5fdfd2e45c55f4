"""CPU training-step kernels: softmax cross-entropy (loss and gradient) and the optimizer updates.

The ``train`` family: the same names and signatures as ``corenet/kernels/cuda/train.py``, whose
docstring gives the formulas. These are the numpy rules ``corenet.losses`` and ``corenet.optim``
compute with (a few in-place ufunc passes over the parameters, small next to a training step's
convolutions), in the order of operations the cuda kernels follow, so results agree to rounding.
The ``cython`` and ``auto`` backends serve this module as well.

``softmax_cross_entropy(logits, labels, ...)``: ``labels`` are integer classes ``(N,)`` or, on the
CPU only, a float ``(N, K)`` target distribution (one-hot or probabilities). Returns
``(float loss, grad)``; the loss is computed in float64, the gradient keeps the logits' dtype.
Update arrays are updated in place; ``g`` is never written. Scalars are cast to the parameter
dtype, so float32 updates run in float32.
"""

from __future__ import annotations

import numpy as np

__all__ = ["softmax_cross_entropy", "sgd_update", "adam_update", "adagrad_update", "rmsprop_update"]


def softmax_cross_entropy(logits, labels, label_smoothing=0.0, reduction="mean"):
    """Loss and gradient of softmax cross-entropy (``log softmax = z - max z - log sum exp``)."""
    n, k = logits.shape
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
    logp = z - lse  # (N, K)
    if labels.ndim == 2:  # a target distribution
        q = labels.astype(np.float64)
    else:
        q = np.zeros((n, k))
        q[np.arange(n), labels] = 1.0
    ls = label_smoothing
    if ls:
        q = (1.0 - ls) * q + ls / k
    losses = -(q * logp).sum(axis=1)
    grad = np.exp(logp) * q.sum(axis=1, keepdims=True) - q
    value = losses.sum()
    if reduction == "mean":
        value /= n
        grad /= n
    return float(value), grad.astype(logits.dtype)


def _decayed(p, g, weight_decay):
    """``g + wd * p`` (L2 weight decay) in ``p``'s dtype; ``g`` itself when there is none."""
    if weight_decay:
        g = g + weight_decay * p
    return g.astype(p.dtype, copy=False)


def sgd_update(p, g, v, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """``v = momentum v - lr g``; ``p += v`` (Nesterov: ``p += momentum v - lr g``); plain: ``p -= lr g``."""
    dt = p.dtype.type
    step = _decayed(p, g, weight_decay) * dt(lr)
    if not momentum:
        p -= step
        return
    v *= dt(momentum)
    v -= step
    if nesterov:
        p += dt(momentum) * v
        p -= step
    else:
        p += v


def adam_update(p, g, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False):
    """One Adam step at step ``t`` (1-based); ``decoupled``: AdamW's ``p *= 1 - lr wd`` instead of L2."""
    dt = p.dtype.type
    if decoupled:
        if weight_decay:
            p *= dt(1.0 - lr * weight_decay)
        g = g.astype(p.dtype, copy=False)
    else:
        g = _decayed(p, g, weight_decay)
    m *= dt(beta1)
    m += dt(1.0 - beta1) * g
    v *= dt(beta2)
    v += dt(1.0 - beta2) * (g * g)
    mhat = m / dt(1.0 - beta1 ** int(t))
    denom = np.sqrt(v / dt(1.0 - beta2 ** int(t)))
    denom += dt(eps)
    p -= dt(lr) * mhat / denom


def adagrad_update(p, g, r, lr, eps=1e-7, weight_decay=0.0):
    """``r += g*g``; ``p -= lr g / (sqrt(r) + eps)``."""
    g = _decayed(p, g, weight_decay)
    r += g * g
    denom = np.sqrt(r)
    denom += p.dtype.type(eps)
    p -= p.dtype.type(lr) * g / denom


def rmsprop_update(p, g, r, lr, rho=0.9, eps=1e-7, weight_decay=0.0):
    """``r = rho r + (1 - rho) g*g``; ``p -= lr g / (sqrt(r) + eps)``."""
    dt = p.dtype.type
    g = _decayed(p, g, weight_decay)
    r *= dt(rho)
    r += dt(1.0 - rho) * (g * g)
    denom = np.sqrt(r)
    denom += dt(eps)
    p -= dt(lr) * g / denom
