"""Metrics reported by ``fit``/``evaluate``: each returns ``(sum, count)`` so batches average exactly.

A metric is a function ``metric(output, target) -> (total, count)``; the reported value is
``sum(total) / sum(count)`` over the batches of an epoch, which equals the metric over the whole
data set whatever the batch sizes are.
"""

from __future__ import annotations

import numpy as np

__all__ = ["accuracy", "get"]


def accuracy(output: np.ndarray, target: np.ndarray, ignore_index: int = -100) -> tuple[float, int]:
    """Number of correct predictions and the number of predictions.

    - ``output`` of shape ``(N, C, ...)`` with ``C > 1`` (class scores, logits or probabilities):
      the prediction is the argmax over axis 1; ``target`` holds class indices ``(N, ...)`` or
      one-hot / soft labels ``(N, C, ...)`` (then its argmax is the class). Segmentation logits
      ``(N, C, H, W)`` against ``(N, H, W)`` labels give the pixel accuracy (as Keras's accuracy).
      Class indices equal to ``ignore_index`` (-100, the default of ``losses.CrossEntropy`` and
      PyTorch) are left out of both counts.
    - ``output`` of shape ``(N,)`` or ``(N, 1)`` (binary logits): the prediction is ``output > 0``
      and the target class is ``target > 0.5``.
    """
    output = np.asarray(output)
    target = np.asarray(target)
    if output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1):
        pred = output.reshape(-1) > 0
        truth = target.reshape(-1) > 0.5
        return float(np.count_nonzero(pred == truth)), int(pred.size)
    pred = output.argmax(axis=1)
    if target.shape == output.shape:
        target = target.argmax(axis=1)
    elif target.shape != pred.shape:
        raise ValueError(
            f"accuracy: targets must be class indices of shape {pred.shape} or one-hot of shape {output.shape}, "
            f"received target.shape={target.shape}"
        )
    else:
        keep = target != ignore_index
        if not keep.all():
            return float(np.count_nonzero((pred == target) & keep)), int(np.count_nonzero(keep))
    return float(np.count_nonzero(pred == target)), int(pred.size)


_METRICS = {"accuracy": accuracy, "acc": accuracy}


def get(metric):
    """``(name, fn)`` for a metric name (``"accuracy"``) or a callable (named after the function)."""
    if callable(metric):
        return getattr(metric, "__name__", type(metric).__name__), metric
    if isinstance(metric, str) and metric in _METRICS:
        return ("accuracy" if metric == "acc" else metric), _METRICS[metric]
    raise ValueError(f"metrics.get: unknown metric {metric!r}; known: {sorted(_METRICS)} or a callable "
                     "metric(output, target) -> (total, count)")
