"""Argument checking shared by every op, every layer and the training code: done once, before any kernel runs.

Kernels trust what comes out of here: C-contiguous float32/float64 arrays and plain int tuples.
Every error names the op, what was received and what was expected. The window arithmetic and its
checks (``pair``, ``padding4``, ``out_size``, ``check_window_fits``, ``check_padded``) live one floor
down, in ``corenet.geometry``, and are re-exported here so that callers need one import.
"""

from __future__ import annotations

import math
import operator

import numpy as np

from ..geometry import MAX_INT, check_padded, check_window_fits, is_int, out_size, padding4, pair
from .device import is_device

__all__ = [
    "FLOAT_DTYPES", "MAX_INT", "MAX_ELEMENTS", "is_int", "as_float_array", "same_dtype", "pair", "padding4",
    "out_size", "check_elements", "check_padded", "check_window_fits", "positive_int", "integer", "real",
    "positive_float", "choice", "flag", "check_state", "check_gy", "shape_arg",
]

FLOAT_DTYPES = (np.float32, np.float64)

# An output above MAX_ELEMENTS elements (16 GiB of float32) is refused before anything is allocated:
# a clear ValueError instead of a MemoryError or a swap storm. (MAX_INT, for every size-like
# argument, is explained in corenet/geometry.py.)
MAX_ELEMENTS = 2**32


def as_float_array(op: str, name: str, a, ndim: int | None = None) -> np.ndarray:
    """``a`` as a C-contiguous float32/float64 array (dtype kept), or a TypeError/ValueError.

    Device arrays pass through unchanged (they are C-contiguous: every cuda kernel allocates so).
    """
    if not isinstance(a, np.ndarray):
        if is_device(a):
            return _device_float(op, name, a, ndim)
        raise TypeError(f"{op}: {name} must be a numpy array, received {type(a).__name__}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must be float32 or float64, received dtype {a.dtype} ({name}.shape={a.shape})")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D, received {name}.shape={a.shape} ({a.ndim}-D)")
    return np.ascontiguousarray(a)


def _device_float(op, name, a, ndim):
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must be float32 or float64, received dtype {a.dtype} ({name}.shape={a.shape})")
    if ndim is not None and len(a.shape) != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D, received {name}.shape={a.shape} ({len(a.shape)}-D)")
    if not a.is_c_contiguous():
        raise ValueError(f"{op}: device array {name} must be C-contiguous, received {name}.shape={a.shape}")
    return a


def same_dtype(op: str, **arrays) -> None:
    """All non-None arrays share one dtype (no silent up-casting of float32 to float64)."""
    named = [(k, v) for k, v in arrays.items() if v is not None]
    dtypes = {v.dtype for _, v in named}
    if len(dtypes) > 1:
        got = ", ".join(f"{k}.dtype={v.dtype}" for k, v in named)
        raise TypeError(f"{op}: arrays must share one dtype, received {got}")


def check_elements(op: str, shape, what: str = "output") -> None:
    """Refuse an array of ``shape`` with more than ``MAX_ELEMENTS`` elements (before allocating it)."""
    n = math.prod(int(d) for d in shape)
    if n > MAX_ELEMENTS:
        raise ValueError(f"{op}: the {what} would have shape {tuple(int(d) for d in shape)}, {n:.3g} elements; "
                         f"at most 2**32 = {MAX_ELEMENTS} are supported (check the sizes, strides and paddings)")


def check_gy(op: str, gy, shape: tuple, dtype) -> None:
    """A backward's upstream gradient has the forward output's shape and dtype."""
    if tuple(gy.shape) != tuple(shape) or gy.dtype != dtype:
        raise ValueError(f"{op}: gy must be {np.dtype(dtype)} with the forward output's shape {tuple(shape)}, "
                         f"received gy.dtype={gy.dtype}, gy.shape={tuple(gy.shape)}")


def shape_arg(op: str, name: str, shape, ndim: int = 4, layout: str = "(N, C, H, W)") -> tuple:
    """A shape argument of a public ``*_output_shape`` function: ``ndim`` ints >= 0, as a plain tuple."""
    if (not isinstance(shape, (tuple, list)) or len(shape) != ndim
            or not all(is_int(d) and d >= 0 for d in shape)):
        raise TypeError(f"{op}: {name} must be a tuple of {ndim} ints >= 0 {layout}, received {shape!r}")
    return tuple(int(d) for d in shape)


def positive_int(op: str, name: str, v) -> int:
    """An int in ``[1, MAX_INT]``; anything else (bools and floats too) is a ValueError."""
    if not is_int(v) or v < 1:
        raise ValueError(f"{op}: {name} must be a positive int, received {v!r}")
    if v > MAX_INT:
        raise ValueError(f"{op}: {name} must be at most 2**31 - 1 = {MAX_INT}, received {v!r}")
    return int(v)


def integer(op: str, name: str, v) -> int:
    """Any int (an axis): bools, floats, strings and None refused with a TypeError."""
    if not is_int(v):
        raise TypeError(f"{op}: {name} must be an int, received {v!r}")
    return operator.index(v)


def real(op: str, name: str, v) -> float:
    """A finite real number (int or float, numpy scalars included; bools and strings refused)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: {name} must be a number, received {v!r}")
    try:
        f = float(v)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        raise ValueError(f"{op}: {name} must be finite, received {v!r}")
    return f


def positive_float(op: str, name: str, v, allow_zero: bool = False) -> float:
    """A finite number ``> 0`` (``>= 0`` with ``allow_zero``)."""
    f = real(op, name, v)
    if f < 0 or (f == 0 and not allow_zero):
        raise ValueError(f"{op}: {name} must be {'>= 0' if allow_zero else '> 0'} and finite, received {v!r}")
    return f


def choice(op: str, name: str, v, options) -> str:
    """One of the strings ``options`` (anything else, arrays included, is a ValueError/TypeError)."""
    if not isinstance(v, str):
        raise TypeError(f"{op}: {name} must be one of {tuple(options)}, received {v!r}")
    if v not in options:
        raise ValueError(f"{op}: {name} must be one of {tuple(options)}, received {v!r}")
    return v


def flag(op: str, name: str, v) -> bool:
    """A bool (Python or numpy); ints, strings and None refused."""
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be a bool, received {v!r}")
    return bool(v)


def check_state(op: str, state, expected: type, forward: str) -> None:
    """``state`` must be the ``expected`` state type made by ``forward(..., return_state=True)``."""
    if type(state) is not expected:
        raise TypeError(f"{op}: state must be the {expected.__name__} returned by {forward}(..., return_state=True), "
                        f"received {type(state).__name__}")
