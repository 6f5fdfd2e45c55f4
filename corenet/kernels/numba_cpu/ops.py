"""CPU tensor glue of the graph, the layers and the optimizers: the ``ops`` family, in numpy.

The same names and signatures as ``corenet/kernels/cuda/ops.py`` (the contract is documented
there): the sums, copies and concatenations a training step needs between the kernels of the
other families (fan-out gradient sums, gradient accumulation, ``zero_grad``, ``Concat``,
``ZeroPad2d``, ``Multiply``, loss weights). They are single numpy passes over memory, already as
fast as a Numba loop, so the ``cython`` and ``auto`` backends serve this module as well.
Arrays are numpy arrays of one dtype; results are new C-contiguous arrays unless ``out`` is given.
"""

from __future__ import annotations

import numpy as np

from ... import _blas
from ...config import get_num_threads

__all__ = ["add", "accumulate", "copy", "fill", "concat_channels", "split_channels", "linear_forward",
           "linear_backward", "scale", "pad2d", "crop2d", "mul", "mul_channels", "sum_mul_lanes"]


def add(a, b, out=None):
    """``a + b`` (numpy broadcasting), into ``out`` when given."""
    return np.add(a, b) if out is None else np.add(a, b, out=out)


def accumulate(dst, src):
    """``dst += src`` in place."""
    np.add(dst, src, out=dst, casting="same_kind")


def copy(dst, src):
    """``dst[...] = src`` in place (a same-kind cast, as ``np.copyto``)."""
    np.copyto(dst, src, casting="same_kind")


def fill(dst, value):
    """Every element of ``dst`` set to ``value``."""
    dst.fill(value)


def concat_channels(arrays, out=None):
    """Concatenate ``(N, C_i, ...)`` arrays along axis 1."""
    return np.concatenate(arrays, axis=1) if out is None else np.concatenate(arrays, axis=1, out=out)


def split_channels(g, sizes):
    """The pieces ``g[:, c0:c0 + size]`` for consecutive ``sizes`` (each C-contiguous)."""
    cuts = np.cumsum(sizes)[:-1].tolist()
    return [np.ascontiguousarray(p) for p in np.split(g, cuts, axis=1)]


def linear_forward(x, w, b=None):
    """``y (N, out) = x (N, in) @ w.T + b`` with ``w (out, in)`` (PyTorch layout); BLAS, split over
    corenet's threads when large (``_blas.matmul``)."""
    y = _blas.matmul(x, w.T, threads=get_num_threads())
    if b is not None:
        y += b
    return y


def linear_backward(x, w, gy, need_gx=True, need_gw=True, need_gb=True):
    """``(gx, gw, gb)`` of :func:`linear_forward`; ``None`` for what was not asked."""
    nt = get_num_threads()
    gx = _blas.matmul(gy, w, threads=nt) if need_gx else None
    gw = _blas.matmul(gy.T, x, threads=nt) if need_gw else None
    gb = gy.sum(axis=0) if need_gb else None
    return gx, gw, gb


def scale(a, s):
    """``a *= s`` in place (``s`` cast to ``a``'s dtype)."""
    a *= a.dtype.type(s)


def pad2d(x, t, b, l, r):
    """``x (N, C, H, W)`` zero-padded to ``(N, C, H + t + b, W + l + r)``."""
    N, C, H, W = x.shape
    y = np.zeros((N, C, H + t + b, W + l + r), x.dtype)
    y[:, :, t:t + H, l:l + W] = x
    return y


def crop2d(g, t, b, l, r):
    """The adjoint of :func:`pad2d`: ``g[:, :, t:H - b, l:W - r]`` as a new C-contiguous array."""
    return np.ascontiguousarray(g[:, :, t:g.shape[2] - b, l:g.shape[3] - r])


def mul(a, b):
    """``a * b`` (numpy broadcasting)."""
    return a * b


def mul_channels(a, g):
    """``a (N, C, ...) * g (N, C)`` broadcast over the trailing axes of ``a``."""
    return a * g.reshape(g.shape[0], g.shape[1], *(1,) * (a.ndim - 2))


def sum_mul_lanes(a, b):
    """``(a * b).sum(over every axis after 1)`` as ``(N, C)`` of ``a``'s dtype."""
    return (a * b).sum(axis=tuple(range(2, a.ndim)))
