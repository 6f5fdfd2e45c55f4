"""The checks of what ``fit``, ``evaluate`` and ``predict`` receive (count, kind, dtype, shape and length of
the arrays; the batch size) and the small list helpers the trainer and the epoch loop share."""

from __future__ import annotations

import numpy as np

from .. import functional as F

__all__ = ["check_array_dtype", "check_data", "check_batch_size", "check_lengths"]


def _as_list(a) -> list:
    return list(a) if isinstance(a, (list, tuple)) else [a]


def _host(a) -> list:
    """``_as_list(a)`` with device arrays copied to numpy (predict/evaluate results, metrics)."""
    return [F.to_host(o) for o in _as_list(a)]


def check_lengths(xs: list, y, op: str = "fit") -> int:
    n = len(xs[0])
    arrays = list(xs) + (_as_list(y) if y is not None else [])
    lengths = [len(a) for a in arrays]
    if len(set(lengths)) != 1:
        raise ValueError(f"{op}: inputs and targets must have the same number of samples, received lengths {lengths}")
    if n == 0:
        raise ValueError(f"{op}: received an empty data set (0 samples)")
    return n


def check_batch_size(op: str, batch_size) -> int:
    """A positive int (``batch_size=-1`` once gave ``{'loss': 0.0, 'accuracy': nan}``)."""
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"{op}: batch_size must be a positive int, received {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"{op}: batch_size must be a positive int, received {batch_size!r}")
    return int(batch_size)


def check_array_dtype(op: str, what: str, a, inputs: bool) -> None:
    """Inputs: float arrays only (cast later between float32/float64); targets: real numbers or bools.

    Complex (the imaginary part would be dropped), object, string, bool inputs and integer inputs are a
    TypeError; for integer images the message says how to convert them.
    """
    kind = a.dtype.kind
    if kind == "f" or (not inputs and kind in "biu"):
        return
    if kind in "iu":
        hint = (" For images, x.astype(np.float32) / 255 scales uint8 pixels to [0, 1] as corenet.data.DataLoader "
                "does (or pass a DataLoader); x.astype(np.float32) keeps the raw values." if kind == "u" and
                a.dtype.itemsize == 1 else " Convert it with x.astype(np.float32).")
        raise TypeError(f"{op}: {what} must be a float32 or float64 array, received dtype {a.dtype}.{hint}")
    why = {"c": " (its imaginary part would be dropped; pass x.real if that is meant)"}.get(kind, "")
    expected = "float32 or float64" if inputs else "real numbers (float, int or bool)"
    raise TypeError(f"{op}: {what} must hold {expected}, received dtype {a.dtype}{why}")


def check_data(model, xs: list, y, op: str, targets_required: bool = False) -> int:
    """Check ``xs`` against the model's inputs (count, array kind, dtype, per-sample shape) and ``y``
    (array kind, dtype, lengths); return the number of samples. One pass per call, not per batch."""
    names = model.input_names
    if len(xs) != len(names):
        raise ValueError(f"{op}: the model takes {len(names)} input array(s) {names}, received {len(xs)}")
    for a, t, name in zip(xs, model.inputs, names):
        if not F.is_array(a):
            raise TypeError(f"{op}: input {name!r} must be a numpy array, received {type(a).__name__}")
        check_array_dtype(op, f"input {name!r}", a, inputs=True)
        if len(a.shape) < 1 or tuple(a.shape[1:]) != t.shape:
            raise ValueError(f"{op}: input {name!r} expects arrays of shape (batch, {', '.join(map(str, t.shape))}), "
                             f"received shape {tuple(a.shape)}")
    if y is None:
        if targets_required:
            raise ValueError(f"{op}: targets y are required")
    else:
        for a in _as_list(y):
            if not F.is_array(a):
                raise TypeError(f"{op}: targets must be numpy arrays (a list of them for several outputs), "
                                f"received {type(a).__name__}")
            check_array_dtype(op, "targets", a, inputs=False)
            if len(a.shape) < 1:
                raise ValueError(f"{op}: targets need a batch axis, received a 0-d array")
    return check_lengths(xs, y, op)


def _take(y, index):
    if isinstance(y, (list, tuple)):
        return [a[index] for a in y]
    return y[index]
