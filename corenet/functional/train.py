"""Loss functions and optimizer updates as functional ops, on the arrays' kind.

``corenet.losses`` and ``corenet.optim`` hold the configuration (reductions, hyper-parameters,
slots, state dicts) and call these; the arithmetic runs in the ``train`` family of the kernels of
the arrays' kind (numpy: the active CPU backend; device arrays: the cuda backend), so neither knows
where an array lives.

Losses return ``(loss, grad)`` with the gradient with respect to the output: the loss value is
computed in float64 and returned as a Python float for numpy outputs; for device logits
:func:`softmax_cross_entropy` returns it as a device ``(1,)`` float64 array (no host
synchronisation; :func:`corenet.functional.tensor.item` reads it). Device outputs are supported by
softmax cross-entropy with integer labels; MSE, BCE and probability targets run on the CPU.

Updates change ``p`` (and the optimizer's slot arrays) in place; see ``corenet/kernels/cuda/train.py``
for the formulas and ``corenet.optim`` for the rules they implement.
"""

from __future__ import annotations

import math

import numpy as np

from .device import backend_for, is_device

__all__ = ["class_labels", "softmax_cross_entropy", "mse_loss", "bce_with_logits_loss", "check_update",
           "clip_gradients", "sgd_update", "adam_update", "adagrad_update", "rmsprop_update"]


# ------------------------------------------------------------------------------ checks
def _host_float_output(name, output):
    if is_device(output):
        raise NotImplementedError(f"{name}: device (GPU) outputs are supported by CrossEntropy with integer labels "
                                  f"only; move the model to the CPU (model.to('cpu')) for this loss")
    if not isinstance(output, np.ndarray) or output.dtype not in (np.float32, np.float64):
        got = f"dtype {output.dtype}" if isinstance(output, np.ndarray) else type(output).__name__
        raise TypeError(f"{name}: output must be a float32/float64 numpy array, received {got}")
    return output


def _real_target(name, target):
    """``target`` as an array of real numbers (float, int or bool); complex, object and strings refused."""
    target = np.asarray(target)
    if target.dtype.kind not in "biuf":
        why = " (its imaginary part would be dropped)" if target.dtype.kind == "c" else ""
        raise TypeError(f"{name}: targets must hold real numbers, received dtype {target.dtype}{why}")
    return target


def class_labels(name, target, n, k):
    """Integer class labels ``(n,)`` as int64, checked to lie in ``[0, k)``.

    Float labels are accepted when every value is a whole number (as Keras allows).
    """
    target = np.asarray(target)
    if target.shape != (n,):
        raise ValueError(f"{name}: integer targets must have shape ({n},) for a batch of {n}, "
                         f"received target.shape={target.shape}")
    if target.dtype.kind == "f":
        if not np.all(np.isfinite(target)) or np.any(target != np.round(target)):
            bad = target[~np.isfinite(target) | (target != np.round(target))][0]
            raise ValueError(f"{name}: class labels must be whole numbers, received label {bad!r}")
    elif target.dtype.kind not in "iub":
        raise TypeError(f"{name}: targets must be integer labels or float probabilities, received dtype {target.dtype}")
    labels = target.astype(np.int64)
    bad = (labels < 0) | (labels >= k)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name}: label {labels[i]} (at index {i}) is out of range for {k} classes; "
                         f"expected 0 <= label < {k}")
    return labels


# ------------------------------------------------------------------------------ losses
def softmax_cross_entropy(output, target, label_smoothing=0.0, reduction="mean"):
    """Softmax cross-entropy of logits ``(N, K)`` against labels ``(N,)`` or a distribution ``(N, K)``.

    ``loss_i = -sum_k q_ik log softmax(z_i)_k`` with ``q_i = (1 - ls) t_i + ls / K``; gradient
    ``softmax(z_i) sum_k q_ik - q_i``, both divided by ``N`` for ``reduction="mean"``.
    ``label_smoothing`` and ``reduction`` are trusted (``losses.CrossEntropy`` checks them).
    """
    name = "cross_entropy"
    if is_device(output):
        return _device_cross_entropy(output, target, label_smoothing, reduction)
    output = _host_float_output(name, output)
    if output.ndim != 2:
        raise ValueError(f"{name}: output must be logits of shape (N, K), received output.shape={output.shape}")
    n, k = output.shape
    if n == 0 or k == 0:
        raise ValueError(f"{name}: output must hold at least one sample and one class, received "
                         f"output.shape={output.shape}")
    target = _real_target(name, target)
    if target.shape == output.shape:  # one-hot or probabilities (any numeric dtype)
        labels = target
    elif target.ndim == 1:
        labels = class_labels(name, target, n, k)
    else:
        raise ValueError(f"{name}: target must be labels ({n},) or probabilities {output.shape}, "
                         f"received target.shape={target.shape} (dtype {target.dtype})")
    return backend_for(output).train.softmax_cross_entropy(output, labels, label_smoothing, reduction)


def _device_cross_entropy(output, target, label_smoothing, reduction):
    """Device logits: integer labels only (checked on the host when given as a numpy array)."""
    name = "cross_entropy"
    if output.dtype not in (np.float32, np.float64) or len(output.shape) != 2:
        raise ValueError(f"{name}: output must be float logits of shape (N, K), received "
                         f"output.shape={tuple(output.shape)} dtype {output.dtype}")
    n, k = output.shape
    if not is_device(target):
        target = np.asarray(target)
        if target.ndim != 1:
            raise NotImplementedError(f"{name}: device outputs take integer labels ({n},); probability "
                                      f"targets of shape {target.shape} run on the CPU only")
        target = class_labels(name, target, n, k)
    elif tuple(target.shape) != (n,) or target.dtype.kind not in "iu":
        raise ValueError(f"{name}: device targets must be integer labels of shape ({n},), received "
                         f"shape {tuple(target.shape)} dtype {target.dtype}")
    return backend_for(output).train.softmax_cross_entropy(output, target, label_smoothing, reduction)


def mse_loss(output, target, reduction="mean"):
    """Squared error: ``"mean"`` ``mean((o - t)^2)``, ``"sum"``, or ``"half_sum"`` ``0.5 sum((t - o)^2)``."""
    output = _host_float_output("mse", output)
    target = _real_target("mse", target)
    if target.shape != output.shape:
        raise ValueError(f"mse: target must have the output's shape {output.shape}, "
                         f"received target.shape={target.shape}")
    d = output.astype(np.float64) - target
    sq = float((d * d).sum())
    if reduction == "mean":
        return sq / d.size, (d * (2.0 / d.size)).astype(output.dtype)
    if reduction == "sum":
        return sq, (2.0 * d).astype(output.dtype)
    return 0.5 * sq, d.astype(output.dtype)


def bce_with_logits_loss(output, target, reduction="mean"):
    """Binary cross-entropy on logits: ``max(z, 0) - z t + log(1 + exp(-|z|))``; gradient ``sigmoid(z) - t``."""
    output = _host_float_output("bce_with_logits", output)
    target = _real_target("bce_with_logits", target)
    if target.shape != output.shape:
        raise ValueError(f"bce_with_logits: target must have the output's shape {output.shape}, "
                         f"received target.shape={target.shape}")
    z = output.astype(np.float64)
    t = target.astype(np.float64)
    value = float((np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))).sum())
    e = np.exp(-np.abs(z))
    sig = np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    grad = sig - t
    if reduction == "mean":
        value /= z.size
        grad /= z.size
    return value, grad.astype(output.dtype)


# ------------------------------------------------------------------------------ optimizer updates
def check_update(op: str, name: str, p, g) -> None:
    """A parameter and its gradient: arrays of one kind and shape, ``p`` floating; on the GPU also one dtype."""
    kinds = {is_device(p), is_device(g)}
    arrays = all(isinstance(a, np.ndarray) or is_device(a) for a in (p, g))
    if not arrays or len(kinds) > 1 or tuple(p.shape) != tuple(g.shape) or (is_device(p) and p.dtype != g.dtype):
        what = "device arrays of one shape and dtype" if is_device(p) else "arrays of one shape"
        raise ValueError(f"{op}: {name!r}: parameter and gradient must be {what}, received "
                         f"{type(p).__name__} {getattr(p, 'shape', '')} and {type(g).__name__} "
                         f"{getattr(g, 'shape', '')}")
    if p.dtype.kind != "f":
        raise TypeError(f"{op}: parameter {name!r} must be a float array, received dtype {p.dtype}")


def clip_gradients(op: str, grads: dict, clip_value=None, clip_norm=None) -> dict:
    """Clipped copies of ``grads`` (never modified): each element to ``[-clip_value, clip_value]``, then
    all together rescaled by ``clip_norm / ||g||`` when their global L2 norm exceeds ``clip_norm``."""
    if clip_value is None and clip_norm is None:
        return grads
    if any(is_device(g) for g in grads.values()):
        raise NotImplementedError(f"{op}: gradient clipping on device arrays is not implemented; device-resident "
                                  f"training supports SGD (momentum, Nesterov), Adam, AdamW, AdaGrad and RMSProp "
                                  f"with weight decay and lr multipliers, without clipping")
    if clip_value is not None:
        c = clip_value
        grads = {k: np.clip(g, -c, c) for k, g in grads.items()}
    if clip_norm is not None:
        norm = math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) if g.dtype == np.float64
                             else float(np.square(g, dtype=np.float64).sum()) for g in grads.values()))
        if norm > clip_norm:
            s = clip_norm / norm
            grads = {k: g * g.dtype.type(s) for k, g in grads.items()}
    return grads


def sgd_update(p, g, v, lr, momentum=0.0, nesterov=False, weight_decay=0.0) -> None:
    """SGD in place: ``v = momentum v - lr (g + wd p)``, ``p += v`` (Nesterov ``p += momentum v - lr g``)."""
    backend_for(p).train.sgd_update(p, g, v, lr, momentum, nesterov, weight_decay)


def adam_update(p, g, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False) -> None:
    """Adam (``decoupled``: AdamW) in place at step ``t`` (1-based)."""
    backend_for(p).train.adam_update(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay, decoupled)


def adagrad_update(p, g, r, lr, eps=1e-7, weight_decay=0.0) -> None:
    """AdaGrad in place: ``r += g^2``, ``p -= lr g / (sqrt(r) + eps)``."""
    backend_for(p).train.adagrad_update(p, g, r, lr, eps, weight_decay)


def rmsprop_update(p, g, r, lr, rho=0.9, eps=1e-7, weight_decay=0.0) -> None:
    """RMSProp in place: ``r = rho r + (1 - rho) g^2``, ``p -= lr g / (sqrt(r) + eps)``."""
    backend_for(p).train.rmsprop_update(p, g, r, lr, rho, eps, weight_decay)
