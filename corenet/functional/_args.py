"""Argument checking and shape arithmetic shared by every op: done once, before any kernel runs.

Kernels trust what comes out of here: C-contiguous float32/float64 arrays and plain int tuples.
Every error names the op, what was received and what was expected.
"""

from __future__ import annotations

import importlib
import math

import numpy as np

from .. import kernels

FLOAT_DTYPES = (np.float32, np.float64)

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


def pair(op: str, name: str, v, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints, each ``>= minimum``, as ``(v_h, v_w)``."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        v = (int(v), int(v))
    elif isinstance(v, (tuple, list)) and len(v) == 2 and all(
        isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in v
    ):
        v = (int(v[0]), int(v[1]))
    else:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, received {v!r}")
    if v[0] < minimum or v[1] < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, received {v}")
    return v


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
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{op}: {name} must be a positive int, received {v!r}")
    return int(v)


def positive_float(op: str, name: str, v, allow_zero: bool = False) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: {name} must be a number, received {v!r}") from None
    if not math.isfinite(f) or f < 0 or (f == 0 and not allow_zero):
        raise ValueError(f"{op}: {name} must be {'>= 0' if allow_zero else '> 0'} and finite, received {v!r}")
    return f
