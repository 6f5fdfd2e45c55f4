"""Tensor glue in the arrays' kind: the sums, copies and reshuffles between the differentiable ops.

The graph sums fan-out gradients, layers accumulate parameter gradients and zero them, ``Concat``
and ``ZeroPad2d`` move blocks, ``Multiply`` scales maps by gates, a model moves its arrays to the
GPU and back. Each op here dispatches on the kind of its first array (numpy: the active CPU
backend's ``ops`` family; a numba device array: the cuda backend's), so the floors above
``functional/`` (graph, layers, losses, optimizers, training, model) never ask where an array lives.

On the CPU the ops are numpy expressions with numpy's broadcasting; device arrays need operands of
one shape (and ``concat``/``split`` the channel axis): anything else is a ``NotImplementedError``
naming the op and what device arrays support. Results are new arrays of the inputs' kind unless
the op works in place (``accumulate``, ``copy_into``, ``fill``, ``scale``).
"""

from __future__ import annotations

import numpy as np

from .device import backend_for, cuda_module, empty, is_device, to_device, to_host

__all__ = ["is_array", "device_of", "check_device", "to_device", "to_host", "move", "host_copy", "item",
           "astype", "full_like", "add", "accumulate", "copy_into", "fill", "scale", "mul", "mul_channels",
           "sum_mul_lanes", "concat", "split", "pad2d", "crop2d", "dropout_rng"]

DEVICES = ("cpu", "cuda")


def is_array(a) -> bool:
    """True for a numpy array or a device array (the arrays the ops of corenet accept)."""
    return isinstance(a, np.ndarray) or is_device(a)


def device_of(a) -> str:
    """``"cuda"`` for a device array, ``"cpu"`` otherwise."""
    return "cuda" if is_device(a) else "cpu"


def check_device(op: str, device) -> str:
    """``"cpu"`` or ``"cuda"`` (any case); ``"cuda"`` only where the cuda backend runs (else a
    RuntimeError saying why: no GPU, no numba-cuda)."""
    target = str(device).lower()
    if target not in DEVICES:
        raise ValueError(f"{op}: device must be 'cpu' or 'cuda', received {device!r}")
    if target == "cuda":
        cuda_module("_runtime")
    return target


def move(a, device: str):
    """``a`` on ``device`` (``"cpu"``: a numpy array; ``"cuda"``: a device array); no copy when it is there.

    Only float arrays move to the GPU (integer buffers, such as batch norm's step count, stay numpy).
    """
    if device not in DEVICES:
        raise ValueError(f"move: device must be one of {DEVICES}, received {device!r}")
    if device == "cpu":
        return to_host(a)
    if isinstance(a, np.ndarray) and a.dtype.kind == "f":
        return to_device(a)
    return a


def host_copy(a) -> np.ndarray:
    """A numpy copy of ``a`` (a device array is copied back; a numpy array is copied)."""
    return a.copy_to_host() if is_device(a) else np.array(a, copy=True)


def item(a) -> float:
    """A Python float from a number or a one-element array (a device loss: one device-to-host copy)."""
    if is_device(a):
        a = a.copy_to_host()
    if isinstance(a, np.ndarray) and a.size == 1:
        return float(a.reshape(-1)[0])
    return float(a)


def astype(a, dtype, op: str = "astype", name: str = "the array"):
    """``a.astype(dtype)`` for numpy arrays; device arrays are refused (a TypeError naming ``op``)."""
    if is_device(a):
        raise TypeError(f"{op}: astype casts host arrays; {name} is on the GPU. Move the model to the CPU "
                        f"first: model.to('cpu').astype(...).to('cuda')")
    return a.astype(dtype)


def full_like(a, value, shape=None):
    """A new array of ``a``'s kind and dtype, of ``shape`` (default ``a``'s), every element ``value``."""
    shape = tuple(a.shape) if shape is None else tuple(shape)
    if isinstance(a, np.ndarray):
        return np.full(shape, value, a.dtype)
    d = empty(shape, a.dtype, a)
    backend_for(d).ops.fill(d, value)
    return d


def _one_shape(op: str, *arrays) -> None:
    """Device arrays: one shape for every operand (the kernels walk flat views; no broadcasting)."""
    if is_device(arrays[0]) and len({tuple(a.shape) for a in arrays}) > 1:
        got = ", ".join(str(tuple(a.shape)) for a in arrays)
        raise NotImplementedError(f"{op}: broadcasting device arrays is not implemented; device arrays must have "
                                  f"one shape, received shapes {got}")


def add(a, b):
    """``a + b``, a new array (numpy broadcasting on the CPU; one shape on the GPU)."""
    _one_shape("add", a, b)
    return backend_for(a).ops.add(a, b)


def accumulate(dst, src) -> None:
    """``dst += src`` in place."""
    backend_for(dst).ops.accumulate(dst, src)


def copy_into(dst, src) -> None:
    """``dst[...] = src`` in place (same-kind casts on the CPU)."""
    backend_for(dst).ops.copy(dst, src)


def fill(dst, value) -> None:
    """Every element of ``dst`` set to ``value``, in place."""
    backend_for(dst).ops.fill(dst, value)


def scale(a, s) -> None:
    """``a *= s`` in place (``s`` cast to ``a``'s dtype)."""
    backend_for(a).ops.scale(a, s)


def mul(a, b):
    """``a * b``, a new array (numpy broadcasting on the CPU; one shape on the GPU)."""
    _one_shape("mul", a, b)
    return backend_for(a).ops.mul(a, b)


def mul_channels(a, g):
    """``a (N, C, ...) * g``, the gates ``g`` (``(N, C)``, or ``(N, C, 1, 1)``) broadcast over a's trailing axes."""
    return backend_for(a).ops.mul_channels(a, g.reshape(g.shape[0], g.shape[1]))


def sum_mul_lanes(a, b):
    """``(a * b)`` summed over every axis after the channels: ``(N, C)`` (the gates' gradient)."""
    return backend_for(a).ops.sum_mul_lanes(a, b)


def _channel_axis(op: str, a, axis: int) -> None:
    if is_device(a) and axis != 1:
        raise NotImplementedError(f"{op}: on device arrays only the channel axis (axis=1) is implemented, "
                                  f"received axis={axis}")


def concat(arrays, axis: int = 1):
    """``np.concatenate(arrays, axis)`` (``axis >= 1``); device arrays: the channel axis."""
    first = arrays[0]
    _channel_axis("concat", first, axis)
    if axis == 1:
        return backend_for(first).ops.concat_channels(list(arrays))
    return np.concatenate(arrays, axis=axis)


def split(g, sizes, axis: int = 1) -> list:
    """The adjoint of :func:`concat`: C-contiguous pieces of ``g`` of ``sizes`` along ``axis``."""
    _channel_axis("split", g, axis)
    if axis == 1:
        return backend_for(g).ops.split_channels(g, list(sizes))
    cuts = np.cumsum(sizes)[:-1].tolist()
    return [np.ascontiguousarray(p) for p in np.split(g, cuts, axis=axis)]


def pad2d(x, t: int, b: int, l: int, r: int):
    """``x (N, C, H, W)`` zero-padded to ``(N, C, H + t + b, W + l + r)``."""
    return backend_for(x).ops.pad2d(x, t, b, l, r)


def crop2d(g, t: int, b: int, l: int, r: int):
    """The adjoint of :func:`pad2d`: ``g[:, :, t:H - b, l:W - r]`` as a new C-contiguous array."""
    return backend_for(g).ops.crop2d(g, t, b, l, r)


def dropout_rng(rng: np.random.Generator, like, states=None):
    """The generator :func:`corenet.functional.dropout` draws the mask of ``like`` from.

    For numpy arrays, ``rng`` itself. For device arrays the mask is drawn on the GPU: ``states``
    (device generator states made by an earlier call) when given, else new xoroshiro128+ states
    seeded once from ``rng``; the caller keeps them for its next call. Device masks differ from the CPU's.
    """
    if not is_device(like):
        return rng
    if states is not None and is_device(states):
        return states
    rt = cuda_module("_runtime")
    n = min(65536, rt.THREADS * rt.MAX_BLOCKS)
    return backend_for(like).act.make_dropout_states(n, int(rng.integers(2**63)))
