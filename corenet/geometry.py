"""Window geometry: output sizes, padding forms and window tap ranges, written once.

The lowest floor of corenet, beside ``config``: plain integer arithmetic that imports nothing from
corenet, used by the argument checks (``functional/validation.py``), the layers' shape inference,
the kernels of every backend (``tap_range`` is compiled by ``numba.njit`` in ``numba_cpu/pool.py``
and ``cuda.jit(device=True)`` in ``cuda/pool.py``; ``_ext/pool.pyx`` has the same function in Cython)
and the ONNX exporter.

Conventions: a padding is ``(top, bottom, left, right)``; ``stride``, ``dilation`` and ``kernel`` are
``(h, w)`` pairs. The checking helpers (``pair``, ``padding4``, ``check_*``) raise ValueError/TypeError
naming the op, what was received and what was expected.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MAX_INT",
    "is_int",
    "pair",
    "same_padding",
    "padding4",
    "plain_padding",
    "out_size",
    "output_hw",
    "check_window_fits",
    "check_padded",
    "tap_range",
]

# Every size-like argument (kernel, stride, padding, dilation, groups, window, output size) must be
# below 2**31: the kernels index with machine ints and keep int32 argmax indices per plane, and a
# larger value is never a real request (a stride of 2**63 overflowed inside the kernels, a padding of
# 2**31 reached numpy's allocator).
MAX_INT = 2**31 - 1


def is_int(v) -> bool:
    """A Python or numpy integer, bools excluded."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def pair(op: str, name: str, v, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints, each in ``[minimum, MAX_INT]``, as ``(v_h, v_w)``."""
    if is_int(v):
        v = (int(v), int(v))
    elif isinstance(v, (tuple, list)) and len(v) == 2 and all(is_int(e) for e in v):
        v = (int(v[0]), int(v[1]))
    else:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, received {v!r}")
    if v[0] < minimum or v[1] < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, received {v}")
    if v[0] > MAX_INT or v[1] > MAX_INT:
        raise ValueError(f"{op}: {name} must be at most 2**31 - 1 = {MAX_INT}, received {v}")
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


def plain_padding(padding):
    """A padding argument in plain JSON-friendly form: numpy ints as ints, tuples as lists, strings kept."""
    if isinstance(padding, (list, tuple)):
        return [plain_padding(p) for p in padding]
    return int(padding) if is_int(padding) else padding


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


def output_hw(x_shape, kernel, stride, padding4, dilation, ceil_mode: bool = False) -> tuple[int, int]:
    """``(ho, wo)`` of a window op over ``x_shape (..., H, W)`` with a ``kernel (kh, kw)`` window."""
    H, W = tuple(x_shape)[-2:]  # (a simulated device array's shape refuses negative indices)
    t, b, l, r = padding4
    ho = out_size(H, kernel[0], stride[0], t, b, dilation[0], ceil_mode)
    wo = out_size(W, kernel[1], stride[1], l, r, dilation[1], ceil_mode)
    return ho, wo


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


def check_padded(op: str, hw, pads) -> None:
    """The padded input ``(H + top + bottom, W + left + right)`` must stay below 2**31 per axis."""
    t, b, l, r = pads
    if hw[0] + t + b > MAX_INT or hw[1] + l + r > MAX_INT:
        raise ValueError(f"{op}: the padded input {hw[0] + t + b}x{hw[1] + l + r} exceeds 2**31 - 1 per axis. "
                         f"Received: input {hw[0]}x{hw[1]}, padding (top, bottom, left, right)={tuple(pads)}")


def tap_range(start, k, d, size):
    """Taps ``t`` in ``[t0, t1)`` keep ``start + t*d`` inside ``[0, size)``.

    Plain Python on ints only, so that the backends can compile it into their kernels.
    """
    t0 = 0
    if start < 0:
        t0 = (-start + d - 1) // d
    t1 = k
    last = start + (k - 1) * d
    if last >= size:
        t1 = k - (last - size) // d - 1
    if t1 < t0:
        t1 = t0
    return t0, t1


def adaptive_bin(i, size, n_out):
    """Adaptive pooling's bin ``i`` of ``n_out`` over ``size``: ``[floor(i*size/n_out), ceil((i+1)*size/n_out))``
    (PyTorch's rule; never empty, bins may overlap). Plain Python on ints, compiled into the kernels."""
    return (i * size) // n_out, ((i + 1) * size + n_out - 1) // n_out
