"""Where an array lives: the one place in corenet that tells numpy arrays from device arrays.

A numba device array (real or simulated) selects the cuda kernels; a numpy array the active CPU
backend, so CPU and GPU models coexist without flipping the global backend. The numpy path costs
one isinstance check per op; numba.cuda is imported only when a device array shows up (or a move
to the device is asked for). Everything above ``functional/`` asks here, never ``kernels/``.
"""

from __future__ import annotations

import importlib

import numpy as np

from .. import kernels

__all__ = ["is_device", "backend_for", "cuda_module", "empty", "empty_like", "to_device", "to_host"]


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


def to_device(a):
    """``a`` on the GPU: a numpy array is copied (C order, dtype kept); a device array is returned as is."""
    if is_device(a):
        return a
    return cuda_module("_runtime").cuda.to_device(np.ascontiguousarray(a))


def to_host(a):
    """``a`` as a numpy array: a device array is copied back; anything else is returned as is."""
    return a.copy_to_host() if is_device(a) else a
