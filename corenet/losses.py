"""Loss functions: each returns ``(loss, grad)`` with the gradient with respect to the model output.

Usage::

    loss_fn = losses.get("cross_entropy")        # or losses.CrossEntropy(label_smoothing=0.1)
    loss, g = loss_fn(output, target)            # loss: Python float; g: output's shape and dtype

The loss value is computed in float64 (then returned as a Python ``float``); the gradient keeps
the output's dtype. With ``reduction="mean"`` the gradient already includes the ``1/N`` factor,
so it is exactly ``d loss / d output``. ``CrossEntropy`` also takes per-element logits
``(N, K, d1, ...)`` with labels ``(N, d1, ...)`` (segmentation), as PyTorch's.

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
    """Softmax cross-entropy on logits ``(N, K)`` or ``(N, K, d1, d2, ...)``, as ``torch.nn.CrossEntropyLoss``.

    The class axis is 1; every other position is an element (a segmentation model's
    ``(N, K, H, W)`` logits against ``(N, H, W)`` labels: one element per pixel).
    ``loss_e = -sum_k q_ek log softmax(z_e)_k`` with the target distribution
    ``q_e = (1 - label_smoothing) * t_e + label_smoothing / K``, where ``t_e`` is the one-hot
    vector of an integer label, or the given distribution when the target has the logits' shape
    (one-hot or probabilities, class axis 1). ``log softmax`` is evaluated as
    ``z - max z - log sum exp(z - max z)`` (stable for huge logits).

    Gradient: ``d loss_e / d z_e = softmax(z_e) * sum_k q_ek - q_e`` (``= p - q`` for a distribution).

    - ``ignore_index`` (default -100, PyTorch's): integer labels equal to it add nothing to the loss
      or the gradient and are not counted by the mean; it is not used with distribution targets.
    - ``reduction="mean"`` (default): divided by the number of elements not ignored (every element
      ignored: the loss is NaN and the gradient zero, as PyTorch 2 gives); ``"sum"``: not divided;
      ``"none"``: the per-element losses ``(N, d1, ...)`` (output dtype, 0 where ignored) with the
      gradient of their sum, for custom training loops (``fit`` needs a scalar loss).

    Device (GPU) logits take ``(N, K)`` integer labels with ``"mean"`` or ``"sum"``; the rest runs on
    the CPU and raises ``NotImplementedError`` on device arrays.
    """

    name = "cross_entropy"

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean", ignore_index: int = -100):
        if isinstance(label_smoothing, (bool, np.bool_)) or not isinstance(label_smoothing, (int, float, np.integer,
                                                                                             np.floating)):
            raise TypeError(f"CrossEntropy: label_smoothing must be a number in [0, 1], received {label_smoothing!r}")
        ls = float(label_smoothing)
        if not 0.0 <= ls <= 1.0:
            raise ValueError(f"CrossEntropy: label_smoothing must be in [0, 1], received {label_smoothing!r}")
        if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, (int, np.integer)):
            raise TypeError(f"CrossEntropy: ignore_index must be an int (a label to skip), received {ignore_index!r}")
        self.label_smoothing = ls
        self.reduction = _reduction("CrossEntropy", reduction, ("mean", "sum", "none"))
        self.ignore_index = int(ignore_index)

    def get_config(self):
        return {"label_smoothing": self.label_smoothing, "reduction": self.reduction,
                "ignore_index": self.ignore_index}

    def __call__(self, output, target):
        return F.softmax_cross_entropy(output, target, self.label_smoothing, self.reduction, self.ignore_index)


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


def accuracy(output, target, ignore_index: int = -100) -> float:
    """Fraction of elements whose arg-max over axis 1 matches the target: scores ``(N, K)`` or
    ``(N, K, d1, ...)`` (pixel accuracy), labels ``(N,)`` / ``(N, d1, ...)`` or one-hot of the
    scores' shape; labels equal to ``ignore_index`` are left out (as ``CrossEntropy`` does)."""
    return top_k_accuracy(output, target, 1, ignore_index)


def top_k_accuracy(output, target, k: int = 5, ignore_index: int = -100) -> float:
    """Fraction of elements whose target class is among the ``k`` largest outputs over axis 1
    (ties: lower index first); shapes and ``ignore_index`` as :func:`accuracy`."""
    output = np.asarray(output)
    if output.ndim < 2:
        raise ValueError(f"accuracy: output must be (N, K) or (N, K, d1, ...) scores, "
                         f"received output.shape={output.shape}")
    target = np.asarray(target)
    n, classes = output.shape[:2]
    if target.shape == output.shape:
        labels = target.argmax(axis=1)
    else:
        labels = class_labels("accuracy", target, (n, *output.shape[2:]), classes, ignore_index)
    rows = np.moveaxis(output, 1, -1).reshape(-1, classes)  # (N*d1*..., K)
    labels = labels.reshape(-1)
    keep = labels != ignore_index
    if not keep.all():
        rows, labels = rows[keep], labels[keep]
    if len(rows) == 0:
        return 0.0
    if k == 1:
        return float(np.mean(rows.argmax(axis=1) == labels))
    order = np.argsort(-rows, axis=1, kind="stable")[:, :k]
    return float(np.mean((order == labels[:, None]).any(axis=1)))
