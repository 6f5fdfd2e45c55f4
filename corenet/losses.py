"""Loss functions: each returns ``(loss, grad)`` with the gradient with respect to the model output.

Usage::

    loss_fn = losses.get("cross_entropy")        # or losses.CrossEntropy(label_smoothing=0.1)
    loss, g = loss_fn(output, target)            # loss: Python float; g: output's shape and dtype

The loss value is computed in float64 (then returned as a Python ``float``); the gradient keeps
the output's dtype. With ``reduction="mean"`` the gradient already includes the ``1/N`` factor,
so it is exactly ``d loss / d output``.

The classes hold the configuration; the arithmetic is ``corenet.functional``'s
(``softmax_cross_entropy``, ``mse_loss``, ``bce_with_logits_loss``), on the outputs' kind of array.
"""

from __future__ import annotations

import numpy as np

from . import functional as F

class_labels = F.class_labels  # integer labels checked against the class count (kept under its old name)

__all__ = ["Loss", "CrossEntropy", "MSE", "BCEWithLogits", "get", "accuracy", "top_k_accuracy"]


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
        return F.softmax_cross_entropy(output, target, self.label_smoothing, self.reduction)


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
        return F.mse_loss(output, target, self.reduction)


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
        return F.bce_with_logits_loss(output, target, self.reduction)


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
