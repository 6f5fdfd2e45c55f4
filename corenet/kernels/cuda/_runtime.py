"""The numba.cuda import guard and the host/device boundary shared by every CUDA kernel module.

Design
------
Only this module imports ``numba.cuda``; the kernel modules take ``cuda`` from here, so the
numpy compatibility alias below is always in place first, and ``import corenet`` never imports
CUDA at all (the backend registry calls :func:`cuda_reason` only when asked about backends).

Entry points accept numpy arrays or device arrays and answer in kind: numpy in, numpy out (one
copy to the device per input, one copy back per output); device arrays in, device arrays out,
nothing leaves the device. :func:`dev` and :func:`out_pair` implement that boundary; a strided
device view is refused there (kernels reshape their arrays to flat views: a real device array
raises for a view, the simulator would copy it silently and lose an in-place update).

Memory: :func:`empty` and every other device allocation go through the caching allocator of
``_alloc.py`` (numba's EMM plugin interface, installed at import, before the first context;
``CORENET_CUDA_ALLOCATOR=numba`` keeps numba's own manager); :func:`alloc_stats` counts requests
and new allocations, :func:`empty_cache` hands the free blocks back.

Launch shapes: elementwise kernels use grid-stride loops over a grid capped at ``MAX_BLOCKS``
blocks of ``THREADS`` threads. Under the simulator (``NUMBA_ENABLE_CUDASIM=1``, one Python thread
per CUDA thread) both are small, so the grid-stride loops and the tile edges are exercised on
tiny shapes in seconds; the kernel code is the same.
"""

from __future__ import annotations

import os

import numpy as np

from . import _alloc

# numba-cuda 0.30.4 calls np.row_stack at import time, and numpy 2.5 removed it (it was an alias
# of np.vstack since numpy 1.x): restore the alias before numba.cuda is imported, and only when
# it is missing, so an older numpy is left exactly as it is.
if not hasattr(np, "row_stack"):
    np.row_stack = np.vstack  # noqa: NPY201 (restoring the removed name is the point)

_IMPORT_ERROR: str | None = None
try:
    from numba import config as _numba_config
    from numba import cuda
    from numba.cuda.random import create_xoroshiro128p_states, xoroshiro128p_uniform_float32
except Exception as exc:  # noqa: BLE001 - missing or broken numba-cuda (any error at its import):
    # the backend reports why, and corenet itself keeps importing and running on the CPU.
    cuda = create_xoroshiro128p_states = xoroshiro128p_uniform_float32 = None
    _IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

# numba reads NUMBA_ENABLE_CUDASIM into its config when it is imported; that reading decides which
# numba.cuda was imported (a numba-cuda without the config entry: fall back to the variable)
_sim_flag = getattr(_numba_config, "ENABLE_CUDASIM", None) if cuda is not None else None
SIM = cuda is not None and bool(os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" if _sim_flag is None else _sim_flag)


def _patch_simulator_races() -> None:
    """Make two steps of numba's CUDA simulator thread-safe (it runs one Python thread per CUDA
    thread, and both steps assume they are not interrupted half-way):

    - ``cuda.shared.array`` looks its array up by call site and creates it on a miss, a
      check-then-set: two threads that miss together each make an array, and the one whose array is
      overwritten in the table keeps a private "shared" array for the whole launch (uninitialised:
      its k-table reads sent the implicit-GEMM loads out of bounds, issue 8).
    - calling a device function swaps ``numba.cuda`` for the fake module in its module's globals and
      swaps it back on return; a thread that returns restores the real module under a thread that is
      still inside (the race fixed upstream in numba-cuda PR #690).

    Both are replaced by the same steps under a lock (the swap counted per module, undone by the
    last thread out). Only the simulator is patched, and only the attributes that exist."""
    import sys
    import threading
    from contextlib import contextmanager

    from numba.core import types
    from numba.np import numpy_support

    try:
        from numba.cuda.simulator import kernel as sim_kernel
        from numba.cuda.simulator import kernelapi as sim_api
    except ImportError:  # a simulator laid out differently: leave it alone
        return
    lock = threading.RLock()
    shared_cls = getattr(sim_api, "FakeCUDAShared", None)
    if shared_cls is not None and not getattr(shared_cls, "_corenet_locked", False):
        dynamic = shared_cls.array

        def array(self, shape, dtype):
            if shape == 0:  # dynamic shared memory: one buffer, no lookup
                return dynamic(self, shape, dtype)
            if isinstance(dtype, types.Type):
                dtype = numpy_support.as_dtype(dtype)
            caller = sys._getframe(1)
            key = (caller.f_code.co_filename, caller.f_lineno)
            with lock:
                res = self._allocations.get(key)
                if res is None:
                    res = self._allocations[key] = np.empty(shape, dtype)
            return res

        shared_cls.array = array
        shared_cls._corenet_locked = True
    if hasattr(sim_kernel, "swapped_cuda_module") and not getattr(sim_kernel, "_corenet_locked", False):
        depth: dict[int, tuple[int, dict]] = {}

        @contextmanager
        def swapped_cuda_module(fn, fake_cuda_module):
            from numba import cuda as real

            globs = fn.__globals__
            with lock:
                n, orig = depth.get(id(globs), (0, None))
                if n == 0:
                    orig = {k: v for k, v in globs.items() if v is real}
                    globs.update({k: fake_cuda_module for k in orig})
                depth[id(globs)] = (n + 1, orig)
            try:
                yield
            finally:
                with lock:
                    n, orig = depth[id(globs)]
                    if n == 1:
                        globs.update(orig)
                        del depth[id(globs)]
                    else:
                        depth[id(globs)] = (n - 1, orig)

        sim_kernel.swapped_cuda_module = swapped_cuda_module
        sim_kernel._corenet_locked = True


if cuda is not None:
    # Kernels call these instead of the builtins min/max, whose CUDA typing fails in numba 0.68's
    # built-in CUDA target (the PTX check in tests/test_kernels_cuda.py compiles every kernel).

    @cuda.jit(device=True)
    def dmin(a, b):
        return a if a < b else b

    @cuda.jit(device=True)
    def dmax(a, b):
        return a if a > b else b

    if SIM:
        _patch_simulator_races()
    elif os.environ.get("CORENET_CUDA_ALLOCATOR", "caching") != "numba":
        # before the first context: every device allocation then goes through the block cache
        from numba.cuda.cudadrv import driver as _driver

        cuda.set_memory_manager(_alloc.make_manager_class(_driver))

THREADS = 16 if SIM else 256
MAX_BLOCKS = 4 if SIM else 65535


def cuda_reason() -> str | None:
    """``None`` when CUDA kernels can run here (a GPU, or the simulator), else why they cannot."""
    if cuda is None:
        return f"numba-cuda is not installed or does not import: pip install corenet[cuda] ({_IMPORT_ERROR})"
    if SIM:
        return None
    try:
        if cuda.is_available():
            return None
        cuda.current_context()  # raises with the driver's explanation
    except Exception as exc:  # CudaSupportError, CudaDriverError, missing libraries ...
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first if line.strip()).rstrip(" :")
        return f"no CUDA GPU found: {detail or type(exc).__name__}"
    return "no CUDA GPU found: numba.cuda.is_available() is False"


# ------------------------------------------------------------------------ host/device boundary


def is_device(a) -> bool:
    """True for a numba device array (real or simulated), False for numpy arrays and None."""
    return a is not None and not isinstance(a, np.ndarray) and hasattr(a, "copy_to_host")


def _contiguous(a):
    """``a`` itself when it is a C-contiguous device array, else a ValueError: kernels reshape their
    arrays to flat views, which a real device array refuses for a strided view and the simulator
    answers with a silent copy (an in-place update of a view would be lost)."""
    if not a.is_c_contiguous():
        raise ValueError(
            f"cuda kernels: device arrays must be C-contiguous, received a view of shape {tuple(a.shape)} with "
            f"strides {tuple(a.strides)} (a slice or transpose of a device array); pass a contiguous array, "
            f"e.g. cuda.to_device(np.ascontiguousarray(a.copy_to_host())), or write the result into one")
    return a


def dev(a):
    """``a`` on the device: C-contiguous device arrays pass through (a strided device view is a
    ValueError), numpy arrays are copied (C-contiguous)."""
    if a is None:
        return a
    if is_device(a):
        return _contiguous(a)
    return cuda.to_device(np.ascontiguousarray(a))


_sim_array_type = None


def _sim_wrap(ary):
    global _sim_array_type
    if _sim_array_type is None:
        _sim_array_type = type(cuda.device_array(0, np.uint8))
    return _sim_array_type(ary)


def empty(shape, dtype):
    """An uninitialised device array, from the caching allocator (``_alloc.py``)."""
    if SIM:
        return _alloc.sim_empty(shape, dtype, _sim_wrap)
    return cuda.device_array(shape, dtype=np.dtype(dtype))


def _cache():
    if SIM:
        return _alloc._sim_cache
    return getattr(cuda.current_context().memory_manager, "cache", None)


def alloc_stats() -> dict:
    """The caching allocator's counters (``_alloc.BlockCache.stats``): ``requests`` and
    ``raw_allocs`` since the start, ``in_use`` and ``cached`` bytes; empty when numba's own
    manager is in use (``CORENET_CUDA_ALLOCATOR=numba``, or a context made before corenet's import)."""
    cache = _cache()
    return cache.stats() if cache is not None else {}


def empty_cache() -> int:
    """Release the allocator's free blocks to the driver; the bytes released."""
    cache = _cache()
    return cache.clear() if cache is not None else 0


def host_or_device(result, like):
    """``result`` (a device array) as the kind of ``like``: copied to numpy when ``like`` is numpy."""
    if result is None or is_device(like):
        return result
    return result.copy_to_host()


def out_pair(out):
    """For a caller-provided OUT array: ``(device array to fill, finish)``; ``finish()`` copies back
    into ``out`` when it is a numpy array (device OUT arrays are filled in place)."""
    if is_device(out):
        return _contiguous(out), lambda: None
    d = empty(out.shape, out.dtype)

    def finish():
        d.copy_to_host(out)

    return d, finish


def grid(n: int, threads: int | None = None) -> tuple[int, int]:
    """``(blocks, threads)`` for a grid-stride loop over ``n`` items."""
    t = threads or THREADS
    return max(1, min(MAX_BLOCKS, -(-n // t))), t
