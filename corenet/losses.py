"""Loss functions: each returns ``(loss, grad)`` with the gradient with respect to the model output.

Usage::

    loss_fn = losses.get("cross_entropy")        # or losses.CrossEntropy(label_smoothing=0.1)
    loss, g = loss_fn(output, target)            # loss: Python float; g: output's shape and dtype

The loss value is computed in float64 (then returned as a Python ``float``); the gradient keeps
the output's dtype. With ``reduction="mean"`` the gradient already includes the ``1/N`` factor,
so it is exactly ``d loss / d output``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Loss", "CrossEntropy", "MSE", "BCEWithLogits", "get", "accuracy", "top_k_accuracy"]


def _is_device(a) -> bool:
    return not isinstance(a, np.ndarray) and hasattr(a, "copy_to_host")


def _float_output(name, output):
    if _is_device(output):
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


def _reduction(name, reduction, allowed):
    if not isinstance(reduction, str):
        raise TypeError(f"{name}: reduction must be one of {allowed}, received {reduction!r}")
    if reduction not in allowed:
        raise ValueError(f"{name}: reduction must be one of {allowed}, received {reduction!r}")
    return reduction


class Loss:
    """Base class: ``loss(output, target) -> (value, grad)``; ``name`` is the string ``get`` maps."""

    name = "loss"

    def __call__(self, output, target):
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


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


class CrossEntropy(Loss):
    """Softmax cross-entropy on logits ``(N, K)``, as ``torch.nn.CrossEntropyLoss``.

    ``loss_i = -sum_k q_ik log softmax(z_i)_k`` with the target distribution
    ``q_i = (1 - label_smoothing) * t_i + label_smoothing / K``, where ``t_i`` is the one-hot
    vector of an integer label, or the given row of a ``(N, K)`` one-hot/probability target.
    ``log softmax`` is evaluated as ``z - max z - log sum exp(z - max z)`` (stable for huge logits).

    Gradient: ``d loss_i / d z_i = softmax(z_i) * sum_k q_ik - q_i`` (``= p - q`` for a
    distribution), divided by ``N`` for ``reduction="mean"`` (the default) and not for ``"sum"``.
    """

    name = "cross_entropy"

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean"):
        if isinstance(label_smoothing, (bool, np.bool_)) or not isinstance(label_smoothing, (int, float, np.integer,
                                                                                             np.floating)):
            raise TypeError(f"CrossEntropy: label_smoothing must be a number in [0, 1], received {label_smoothing!r}")
        ls = float(label_smoothing)
        if not 0.0 <= ls <= 1.0:
            raise ValueError(f"CrossEntropy: label_smoothing must be in [0, 1], received {label_smoothing!r}")
        self.label_smoothing = ls
        self.reduction = _reduction("CrossEntropy", reduction, ("mean", "sum"))

    def get_config(self):
        return {"label_smoothing": self.label_smoothing, "reduction": self.reduction}

    def __call__(self, output, target):
        name = "cross_entropy"
        if _is_device(output):
            return self._device(output, target)
        output = _float_output(name, output)
        if output.ndim != 2:
            raise ValueError(f"{name}: output must be logits of shape (N, K), received output.shape={output.shape}")
        n, k = output.shape
        if n == 0 or k == 0:
            raise ValueError(f"{name}: output must hold at least one sample and one class, received "
                             f"output.shape={output.shape}")
        z = output.astype(np.float64)
        z = z - z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
        logp = z - lse  # (N, K)
        target = _real_target(name, target)
        if target.shape == output.shape:  # one-hot or probabilities (any numeric dtype)
            q = target.astype(np.float64)
        elif target.ndim == 1:
            labels = class_labels(name, target, n, k)
            q = np.zeros((n, k))
            q[np.arange(n), labels] = 1.0
        else:
            raise ValueError(f"{name}: target must be labels ({n},) or probabilities {output.shape}, "
                             f"received target.shape={target.shape} (dtype {target.dtype})")
        ls = self.label_smoothing
        if ls:
            q = (1.0 - ls) * q + ls / k
        losses = -(q * logp).sum(axis=1)
        grad = np.exp(logp) * q.sum(axis=1, keepdims=True) - q
        value = losses.sum()
        if self.reduction == "mean":
            value /= n
            grad /= n
        return float(value), grad.astype(output.dtype)

    def _device(self, output, target):
        """Device logits: the fused kernel of ``corenet.kernels.cuda.train`` with integer labels; the
        loss comes back as a device ``(1,)`` float64 array (no host synchronisation), the gradient on
        the device. Labels are checked on the host when they are given as a numpy array."""
        from .functional.device import cuda_module

        name = "cross_entropy"
        if output.dtype not in (np.float32, np.float64) or len(output.shape) != 2:
            raise ValueError(f"{name}: output must be float logits of shape (N, K), received "
                             f"output.shape={tuple(output.shape)} dtype {output.dtype}")
        n, k = output.shape
        if not _is_device(target):
            target = np.asarray(target)
            if target.ndim != 1:
                raise NotImplementedError(f"{name}: device outputs take integer labels ({n},); probability "
                                          f"targets of shape {target.shape} run on the CPU only")
            target = class_labels(name, target, n, k)
        elif tuple(target.shape) != (n,) or target.dtype.kind not in "iu":
            raise ValueError(f"{name}: device targets must be integer labels of shape ({n},), received "
                             f"shape {tuple(target.shape)} dtype {target.dtype}")
        return cuda_module("train").softmax_cross_entropy(output, target, self.label_smoothing, self.reduction)


class MSE(Loss):
    """Squared error ``(output - target)^2`` with a documented reduction.

    - ``"mean"`` (default, ``torch.nn.MSELoss``): ``mean((output - target)^2)`` over every
      element; gradient ``2 (output - target) / size``;
    - ``"sum"``: ``sum((output - target)^2)``; gradient ``2 (output - target)``;
    - ``"half_sum"``: ``0.5 * sum((target - output)^2)``, the ``E = 1/2 sum (t - o)^2`` of the
      backpropagation lecture notes; gradient ``output - target``.
    """

    name = "mse"

    def __init__(self, reduction: str = "mean"):
        self.reduction = _reduction("MSE", reduction, ("mean", "sum", "half_sum"))

    def get_config(self):
        return {"reduction": self.reduction}

    def __call__(self, output, target):
        output = _float_output("mse", output)
        target = _real_target("mse", target)
        if target.shape != output.shape:
            raise ValueError(f"mse: target must have the output's shape {output.shape}, "
                             f"received target.shape={target.shape}")
        d = output.astype(np.float64) - target
        sq = float((d * d).sum())
        if self.reduction == "mean":
            return sq / d.size, (d * (2.0 / d.size)).astype(output.dtype)
        if self.reduction == "sum":
            return sq, (2.0 * d).astype(output.dtype)
        return 0.5 * sq, d.astype(output.dtype)


class BCEWithLogits(Loss):
    """Binary cross-entropy on logits, as ``torch.nn.BCEWithLogitsLoss``.

    ``loss = max(z, 0) - z t + log(1 + exp(-|z|))`` (= ``-t log s(z) - (1-t) log(1 - s(z))``
    without overflow), averaged over every element for ``"mean"``; gradient
    ``(sigmoid(z) - t) / size`` (``"mean"``) or ``sigmoid(z) - t`` (``"sum"``). Targets are
    probabilities in [0, 1] with the output's shape.
    """

    name = "bce_with_logits"

    def __init__(self, reduction: str = "mean"):
        self.reduction = _reduction("BCEWithLogits", reduction, ("mean", "sum"))

    def get_config(self):
        return {"reduction": self.reduction}

    def __call__(self, output, target):
        output = _float_output("bce_with_logits", output)
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
        if self.reduction == "mean":
            value /= z.size
            grad /= z.size
        return value, grad.astype(output.dtype)


_BY_NAME = {
    "cross_entropy": CrossEntropy, "categorical_crossentropy": CrossEntropy,
    "sparse_categorical_crossentropy": CrossEntropy, "mse": MSE, "mean_squared_error": MSE,
    "bce_with_logits": BCEWithLogits, "binary_crossentropy_with_logits": BCEWithLogits,
}


def get(identifier) -> Loss:
    """A loss object from a name (``"cross_entropy"``, ``"mse"``, ``"bce_with_logits"`` and the
    Keras aliases), a :class:`Loss` instance (returned as is) or a callable ``(output, target) ->
    (loss, grad)`` (returned as is)."""
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.strip().lower())
        if cls is None:
            raise ValueError(f"unknown loss {identifier!r}; expected one of {sorted(_BY_NAME)} or a Loss object")
        return cls()
    if callable(identifier):
        return identifier
    raise TypeError(f"a loss must be a name or a callable, received {type(identifier).__name__}")


def accuracy(output, target) -> float:
    """Fraction of rows whose arg-max matches the target (labels ``(N,)`` or one-hot ``(N, K)``)."""
    return top_k_accuracy(output, target, 1)


def top_k_accuracy(output, target, k: int = 5) -> float:
    """Fraction of rows whose target class is among the ``k`` largest outputs (ties: lower index first)."""
    output = np.asarray(output)
    if output.ndim != 2:
        raise ValueError(f"accuracy: output must be (N, K) scores, received output.shape={output.shape}")
    target = np.asarray(target)
    if target.shape == output.shape:
        labels = target.argmax(axis=1)
    else:
        labels = class_labels("accuracy", target, output.shape[0], output.shape[1])
    if output.shape[0] == 0:
        return 0.0
    if k == 1:
        return float(np.mean(output.argmax(axis=1) == labels))
    order = np.argsort(-output, axis=1, kind="stable")[:, :k]
    return float(np.mean((order == labels[:, None]).any(axis=1)))
