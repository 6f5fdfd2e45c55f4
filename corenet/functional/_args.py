"""Argument checking and shape arithmetic shared by every op: done once, before any kernel runs.

Kernels trust what comes out of here: C-contiguous float32/float64 arrays and plain int tuples.
Every error names the op, what was received and what was expected.
"""

from __future__ import annotations

import importlib
import math
import operator

import numpy as np

from .. import kernels

FLOAT_DTYPES = (np.float32, np.float64)

# ------------------------------------------------------------------ range limits
# Every size-like argument (kernel, stride, padding, dilation, groups, window, output size) must be
# below 2**31: the kernels index with machine ints and keep int32 argmax indices per plane, and a
# larger value is never a real request (a stride of 2**63 overflowed inside the kernels, a padding of
# 2**31 reached numpy's allocator). An output above MAX_ELEMENTS elements (16 GiB of float32) is
# refused before anything is allocated: a clear ValueError instead of a MemoryError or a swap storm.
MAX_INT = 2**31 - 1
MAX_ELEMENTS = 2**32

# ------------------------------------------------------------------ array kinds (host or device)
# A numba device array (real or simulated) selects the cuda kernels; a numpy array the active CPU
# backend, so CPU and GPU models coexist without flipping the global backend. The numpy path
# costs one isinstance check per op; numba.cuda is imported only when a device array shows up.


def is_device(a) -> bool:
    """True for a numba device array (real or simulated), without importing numba.cuda."""
    return a is not None and not isinstance(a, np.ndarray) and hasattr(a, "copy_to_host")


def backend_for(a):
    """The kernels for ``a``: the active backend for numpy arrays, the cuda backend for device arrays."""
    return kernels.active() if isinstance(a, np.ndarray) else kernels.require("cuda")


def cuda_module(name: str):
    """A module of the cuda backend beyond the kernel families (``ops``, ``train``, ``_runtime``)."""
    kernels.require("cuda")
    return importlib.import_module(f"corenet.kernels.cuda.{name}")


def empty(shape, dtype, like):
    """An uninitialised array of ``like``'s kind: numpy, or a device array next to ``like``."""
    if isinstance(like, np.ndarray):
        return np.empty(shape, dtype)
    return cuda_module("_runtime").empty(shape, dtype)


def empty_like(a):
    """``np.empty_like`` for numpy arrays and device arrays (C order)."""
    if isinstance(a, np.ndarray):
        return np.empty_like(a)
    return cuda_module("_runtime").empty(a.shape, a.dtype)


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


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def pair(op: str, name: str, v, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints, each in ``[minimum, MAX_INT]``, as ``(v_h, v_w)``."""
    if _is_int(v):
        v = (int(v), int(v))
    elif isinstance(v, (tuple, list)) and len(v) == 2 and all(_is_int(e) for e in v):
        v = (int(v[0]), int(v[1]))
    else:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, received {v!r}")
    if v[0] < minimum or v[1] < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, received {v}")
    if v[0] > MAX_INT or v[1] > MAX_INT:
        raise ValueError(f"{op}: {name} must be at most 2**31 - 1 = {MAX_INT}, received {v}")
    return v


def check_elements(op: str, shape, what: str = "output") -> None:
    """Refuse an array of ``shape`` with more than ``MAX_ELEMENTS`` elements (before allocating it)."""
    n = math.prod(int(d) for d in shape)
    if n > MAX_ELEMENTS:
        raise ValueError(f"{op}: the {what} would have shape {tuple(int(d) for d in shape)}, {n:.3g} elements; "
                         f"at most 2**32 = {MAX_ELEMENTS} are supported (check the sizes, strides and paddings)")


def check_padded(op: str, hw, pads) -> None:
    """The padded input ``(H + top + bottom, W + left + right)`` must stay below 2**31 per axis."""
    t, b, l, r = pads
    if hw[0] + t + b > MAX_INT or hw[1] + l + r > MAX_INT:
        raise ValueError(f"{op}: the padded input {hw[0] + t + b}x{hw[1] + l + r} exceeds 2**31 - 1 per axis. "
                         f"Received: input {hw[0]}x{hw[1]}, padding (top, bottom, left, right)={tuple(pads)}")


def same_padding(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's 'same' rule: ``(before, after)`` padding so the output is ``ceil(size/stride)``.

    The total ``max((out-1)*stride + dil*(k-1) + 1 - size, 0)`` is split with the smaller half
    before (top/left) and the extra one after (bottom/right).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (k - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def padding4(op: str, padding, kernel: tuple[int, int], stride: tuple[int, int],
             dilation: tuple[int, int], hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Normalise every accepted padding form to ``(top, bottom, left, right)``.

    Accepted: an int; ``(ph, pw)``; ``((top, bottom), (left, right))``; ``'valid'``; ``'same'``.
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return 0, 0, 0, 0
        if mode == "same":
            t, b = same_padding(hw[0], kernel[0], stride[0], dilation[0])
            l, r = same_padding(hw[1], kernel[1], stride[1], dilation[1])
            return t, b, l, r
        raise ValueError(f"{op}: padding must be 'valid', 'same', an int or pairs, received {padding!r}")
    if (isinstance(padding, (tuple, list)) and len(padding) == 2
            and all(isinstance(p, (tuple, list)) for p in padding)):
        (t, b), (l, r) = (pair(op, "padding", tuple(p), minimum=0) for p in padding)
        return t, b, l, r
    ph, pw = pair(op, "padding", padding, minimum=0)
    return ph, ph, pw, pw


def out_size(size: int, k: int, stride: int, pad_before: int, pad_after: int, dilation: int,
             ceil_mode: bool = False) -> int:
    """Output length along one axis (PyTorch's rule, incl. its ceil-mode correction).

    ``floor((size + pads - dil*(k-1) - 1) / stride) + 1``; with ``ceil_mode`` the division rounds
    up, but the last window must start inside the input or the leading padding.
    """
    span = size + pad_before + pad_after - dilation * (k - 1) - 1
    if span < 0:
        return 0
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + pad_before:
        out -= 1
    return out


def check_window_fits(op: str, x_shape, kernel, dilation, pads) -> None:
    """The dilated kernel must fit inside the padded input (else the output would be empty)."""
    H, W = x_shape[-2:]
    t, b, l, r = pads
    eff_h = dilation[0] * (kernel[0] - 1) + 1
    eff_w = dilation[1] * (kernel[1] - 1) + 1
    if eff_h > H + t + b or eff_w > W + l + r:
        raise ValueError(
            f"{op}: kernel {tuple(kernel)} (dilation {tuple(dilation)}, effective {eff_h}x{eff_w}) is larger than "
            f"the padded input {H + t + b}x{W + l + r}. Received: x.shape={tuple(x_shape)}, padding={pads}"
        )


def positive_int(op: str, name: str, v) -> int:
    """An int in ``[1, MAX_INT]``; anything else (bools and floats too) is a ValueError."""
    if not _is_int(v) or v < 1:
        raise ValueError(f"{op}: {name} must be a positive int, received {v!r}")
    if v > MAX_INT:
        raise ValueError(f"{op}: {name} must be at most 2**31 - 1 = {MAX_INT}, received {v!r}")
    return int(v)


def integer(op: str, name: str, v) -> int:
    """Any int (an axis): bools, floats, strings and None refused with a TypeError."""
    if not _is_int(v):
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
