"""Loss functions and optimizer updates as functional ops, on the arrays' kind.

``corenet.losses`` and ``corenet.optim`` hold the configuration (reductions, hyper-parameters,
slots, state dicts) and call these; the arithmetic runs in the ``train`` family of the kernels of
the arrays' kind (numpy: the active CPU backend; device arrays: the cuda backend), so neither knows
where an array lives.

Losses return ``(loss, grad)`` with the gradient with respect to the output: the loss value is
computed in float64 and returned as a Python float for numpy outputs; for device logits
:func:`softmax_cross_entropy` returns it as a device ``(1,)`` float64 array (no host
synchronisation; :func:`corenet.functional.tensor.item` reads it). Device outputs are supported by
softmax cross-entropy on ``(N, K)`` logits with integer labels; per-element ``(N, K, d1, ...)``
logits, ``ignore_index`` labels, ``reduction="none"``, MSE, BCE and probability targets run on the CPU.

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


def class_labels(name, target, n, k, ignore_index=None):
    """Integer class labels as int64, checked to lie in ``[0, k)`` (or to equal ``ignore_index``).

    ``n`` is the batch size (labels ``(n,)``) or the whole label shape (``(N, d1, ...)`` for
    per-element logits ``(N, k, d1, ...)``). Float labels are accepted when every value is a whole
    number (as Keras allows).
    """
    target = np.asarray(target)
    shape = (n,) if isinstance(n, (int, np.integer)) else tuple(n)
    if target.shape != shape:
        expected = (f"shape ({shape[0]},) for a batch of {shape[0]}" if len(shape) == 1
                    else f"shape {shape} (the logits' shape without the class axis 1)")
        raise ValueError(f"{name}: integer targets must have {expected}, received target.shape={target.shape}")
    if target.dtype.kind == "f":
        if not np.all(np.isfinite(target)) or np.any(target != np.round(target)):
            bad = target[~np.isfinite(target) | (target != np.round(target))][0]
            raise ValueError(f"{name}: class labels must be whole numbers, received label {bad!r}")
    elif target.dtype.kind not in "iub":
        raise TypeError(f"{name}: targets must be integer labels or float probabilities, received dtype {target.dtype}")
    labels = target.astype(np.int64)
    bad = (labels < 0) | (labels >= k)
    if ignore_index is not None:
        bad &= labels != ignore_index
    if bad.any():
        flat = int(np.argmax(bad))
        where = flat if labels.ndim == 1 else tuple(int(i) for i in np.unravel_index(flat, labels.shape))
        also = "" if ignore_index is None else f" or label == ignore_index ({ignore_index})"
        raise ValueError(f"{name}: label {labels.reshape(-1)[flat]} (at index {where}) is out of range for {k} "
                         f"classes; expected 0 <= label < {k}{also}")
    return labels


# ------------------------------------------------------------------------------ losses
def softmax_cross_entropy(output, target, label_smoothing=0.0, reduction="mean", ignore_index=-100):
    """Softmax cross-entropy of logits ``(N, K)`` or ``(N, K, d1, d2, ...)`` (class axis 1), as
    ``torch.nn.functional.cross_entropy``.

    ``target``: integer labels ``(N,)`` / ``(N, d1, ...)``, or a distribution of the logits' shape
    (one-hot or probabilities). Every element ``e`` (a sample, or a sample's pixel) has
    ``loss_e = -sum_k q_ek log softmax(z_e)_k`` with ``q_e = (1 - ls) t_e + ls / K``; gradient
    ``softmax(z_e) sum_k q_ek - q_e``. Labels equal to ``ignore_index`` add nothing (zero loss and
    gradient). ``reduction``: ``"mean"`` divides both by the number of elements that are not
    ignored (no element left: the loss is NaN and the gradient zero, as PyTorch's); ``"sum"``
    does not divide; ``"none"`` returns the per-element losses ``(N, d1, ...)`` in the logits' dtype
    with the gradient of their sum. ``label_smoothing``, ``reduction`` and ``ignore_index`` are
    trusted (``losses.CrossEntropy`` checks them).

    Per-element logits are moved to rows ``(N*d1*..., K)`` (class axis last) for the ``(N, K)`` kernel
    and the gradient moved back; on device arrays only ``(N, K)`` logits with labels run.
    """
    name = "cross_entropy"
    if is_device(output):
        return _device_cross_entropy(output, target, label_smoothing, reduction, ignore_index)
    output = _host_float_output(name, output)
    if output.ndim < 2:
        raise ValueError(f"{name}: output must be logits of shape (N, K) or (N, K, d1, ...), received "
                         f"output.shape={output.shape}")
    if output.size == 0:
        raise ValueError(f"{name}: output must hold at least one sample and one class (and no empty axis), "
                         f"received output.shape={output.shape}")
    n, k, rest = output.shape[0], output.shape[1], output.shape[2:]
    target = _real_target(name, target)
    if target.shape == output.shape:  # one-hot or probabilities (any numeric dtype)
        labels = target
    elif target.ndim == 1 + len(rest):  # labels; class_labels checks the shape
        labels = class_labels(name, target, (n, *rest), k, ignore_index)
    else:
        lab = f"({n},)" if not rest else str((n, *rest))
        raise ValueError(f"{name}: target must be labels {lab} or probabilities {output.shape} for logits of shape "
                         f"{output.shape}, received target.shape={target.shape} (dtype {target.dtype})")
    if rest:  # (N, K, d1, ...) -> rows (N*d1*..., K), class axis last
        rows = np.ascontiguousarray(np.moveaxis(output, 1, -1)).reshape(-1, k)
        labels = (labels.reshape(-1) if labels.ndim == 1 + len(rest)
                  else np.ascontiguousarray(np.moveaxis(labels, 1, -1)).reshape(-1, k))
    else:
        rows = output
    value, grad = _rows_cross_entropy(backend_for(output).train, rows, labels, label_smoothing, reduction,
                                      ignore_index)
    if rest:  # back to (N, K, d1, ...)
        grad = np.ascontiguousarray(np.moveaxis(grad.reshape(n, *rest, k), -1, 1))
        if reduction == "none":
            value = value.reshape(n, *rest)
    return value, grad


def _rows_cross_entropy(kernels, rows, labels, ls, reduction, ignore_index):
    """Rows ``(M, K)`` against labels ``(M,)`` (some maybe ``ignore_index``) or a distribution ``(M, K)``."""
    keep = None
    if labels.ndim == 1:
        ignored = labels == ignore_index
        if ignored.any():
            keep = ~ignored
    if reduction == "none":
        value = _row_losses(rows, labels, ls)
        _, grad = kernels.softmax_cross_entropy(rows, np.where(keep, labels, 0) if keep is not None else labels,
                                                ls, "sum")
        if keep is not None:
            value[~keep] = 0.0
            grad[~keep] = 0
        return value.astype(rows.dtype), grad
    if keep is None:
        return kernels.softmax_cross_entropy(rows, labels, ls, reduction)
    grad = np.zeros_like(rows)
    if not keep.any():  # nothing left to average: PyTorch's 0/0
        return (math.nan if reduction == "mean" else 0.0), grad
    value, kept = kernels.softmax_cross_entropy(np.ascontiguousarray(rows[keep]), labels[keep], ls, reduction)
    grad[keep] = kept  # "mean": the kernel divided by the number of rows kept
    return value, grad


def _row_losses(rows, labels, ls):
    """Per-row losses ``-sum_k q_k log softmax(z)_k`` in float64, in the kernels' order of operations."""
    z = rows.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # (M, K)
    if labels.ndim == 2:
        q = labels.astype(np.float64)
        if ls:
            q = (1.0 - ls) * q + ls / rows.shape[1]
        return -(q * logp).sum(axis=1)
    picked = logp[np.arange(len(rows)), np.where((labels >= 0) & (labels < rows.shape[1]), labels, 0)]
    return -((1.0 - ls) * picked + ls * logp.mean(axis=1))


def _device_cross_entropy(output, target, label_smoothing, reduction, ignore_index):
    """Device logits: ``(N, K)`` with integer labels (checked on the host when given as a numpy array)."""
    name = "cross_entropy"
    if output.dtype not in (np.float32, np.float64) or len(output.shape) < 2:
        raise ValueError(f"{name}: output must be float logits of shape (N, K), received "
                         f"output.shape={tuple(output.shape)} dtype {output.dtype}")
    if len(output.shape) > 2:
        raise NotImplementedError(f"{name}: device (GPU) logits must have shape (N, K), received "
                                  f"{tuple(output.shape)}; per-element (N, K, d1, ...) cross-entropy runs on the "
                                  f"CPU only (model.to('cpu'))")
    if reduction == "none":
        raise NotImplementedError(f"{name}: reduction='none' runs on the CPU only; device logits take 'mean' "
                                  f"or 'sum'")
    n, k = output.shape
    if not is_device(target):
        target = np.asarray(target)
        if target.ndim != 1:
            raise NotImplementedError(f"{name}: device outputs take integer labels ({n},); probability "
                                      f"targets of shape {target.shape} run on the CPU only")
        target = class_labels(name, target, n, k, ignore_index)
        if np.any(target == ignore_index):
            raise NotImplementedError(f"{name}: labels equal to ignore_index ({ignore_index}) are skipped on the "
                                      f"CPU only; device logits need every label in [0, {k})")
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
