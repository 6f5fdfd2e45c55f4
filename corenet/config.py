"""Process-wide configuration: the kernel backend chosen, the thread count, fastmath, workspace limit.

This is the only mutable global state in corenet. Everything here can also be set from the
environment before import:

- ``CORENET_BACKEND``: ``"auto"`` (default: per op family the fastest CPU kernels, see
  ``corenet/kernels/auto``), ``"numba"``, ``"cython"`` or ``"cuda"``.
- ``CORENET_NUM_THREADS``: threads for Numba, OpenMP (Cython) and, where it can be reached, BLAS.
- ``CORENET_WORKSPACE_MB``: the im2col column-buffer limit in MiB (default 64).
- ``CORENET_PARALLEL_MIN_WORK``: the work (elements x cost per element) below which a kernel runs
  on one thread (default 32768; 0 makes every kernel use every thread, as the thread tests do).

Numba's threading layer: corenet selects ``workqueue`` unless ``NUMBA_THREADING_LAYER`` is set.
The OpenMP layer's threads spin between parallel regions; on a machine where anything else runs
(another process, BLAS's own threads) a 2-thread LeNet-5 step then waits whole scheduler slices
at every region: measured 570-1030 ms per step against 50-105 ms with ``workqueue`` and 58-99 ms
on one thread, under the same load. The cost of ``workqueue``: Numba kernels must not be called
from two Python threads at once (Numba aborts); set ``NUMBA_THREADING_LAYER=omp`` (or ``tbb``)
if you need that.
"""

from __future__ import annotations

import os
import sys

from . import _blas

__all__ = [
    "get_backend",
    "set_backend",
    "backends",
    "backend_status",
    "get_num_threads",
    "set_num_threads",
    "get_workspace_bytes",
    "set_workspace_bytes",
    "get_parallel_threshold",
    "set_parallel_threshold",
    "get_fastmath",
]

_DEFAULT_BACKEND = "auto"
_state: dict = {
    "backend": os.environ.get("CORENET_BACKEND", _DEFAULT_BACKEND).strip().lower(),
    "num_threads": None,  # resolved lazily: numba's import is deferred until a kernel is needed
    "workspace_bytes": int(float(os.environ.get("CORENET_WORKSPACE_MB", "64")) * (1 << 20)),
    # fastmath lets LLVM reorder float sums; kept off so results match the oracles bit-for-bit
    # in float64 and thread counts only change rounding.
    "fastmath": os.environ.get("CORENET_FASTMATH", "0") == "1",
    # About 30-60 us of single-thread work for a simple elementwise kernel: below this, waking a
    # second thread costs more than it saves (on a busy machine a worker may wait a whole
    # scheduler slice). Read by both CPU backends (numba_cpu/_threads.py, _ext/__init__.py).
    "parallel_min_work": int(os.environ.get("CORENET_PARALLEL_MIN_WORK", str(1 << 15))),
}


def get_backend() -> str:
    """Name of the active kernel backend (``"auto"``, ``"numba"``, ``"cython"`` or ``"cuda"``)."""
    return _state["backend"]


def set_backend(name: str) -> None:
    """Switch every op to the kernels of backend ``name`` (see ``corenet.kernels.set_backend``).

    Raises
    ------
    ValueError
        If ``name`` is not a known backend.
    RuntimeError
        If the backend is known but cannot be used here; the message says why
        (for example: the Cython extension was not compiled at install time).
    """
    _kernel_registry().set_backend(name)


def backends() -> list[str]:
    """Names of the backends that can be used in this process, in preference order."""
    return _kernel_registry().backends()


def backend_status() -> dict[str, str]:
    """Every known backend with ``"available"`` or the reason it is not."""
    return _kernel_registry().backend_status()


# The backends themselves (which exist, which can run here, how they are imported) belong to the
# kernel registry, ``corenet.kernels``, one floor up. It plugs itself in here when it is imported
# (``import corenet`` always imports it), so the three functions above keep working without this
# module importing kernels: ``config`` stays the lowest floor and imports nothing of corenet but _blas.
_registry = None


def plug_registry(registry) -> None:
    """Called once by ``corenet.kernels`` at import with the object that answers the three functions above."""
    global _registry
    _registry = registry


def _kernel_registry():
    if _registry is None:
        raise RuntimeError("corenet.config: the kernel registry (corenet.kernels) is not imported; "
                           "`import corenet` first")
    return _registry


def choose_backend(name: str) -> None:
    """Record ``name`` as the active backend (called by ``corenet.kernels.set_backend`` once it is validated)."""
    _state["backend"] = name


def get_num_threads() -> int:
    """Threads used by the kernels (Numba, OpenMP) and BLAS."""
    if _state["num_threads"] is None:
        env = os.environ.get("CORENET_NUM_THREADS")
        set_num_threads(int(env) if env else _max_threads())
    return _state["num_threads"]


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in Numba parallel regions, Cython/OpenMP ``prange`` and corenet's GEMMs.

    BLAS itself is set to one thread: its spinning worker pool fought the kernels' threads for the
    cores, and corenet splits a big GEMM over ``n`` threads itself (``corenet._blas.matmul``).
    Numba is only told once it is imported (the Cython backend never imports it).
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: expected an int, received {type(n).__name__} {n!r}")
    limit = _max_threads()
    if not 1 <= n <= limit:
        raise ValueError(f"set_num_threads: expected 1 <= n <= {limit} (NUMBA_NUM_THREADS), received {n}")
    _blas.set_num_threads(1)
    _state["num_threads"] = n
    if "numba" in sys.modules:
        apply_to_numba()


def apply_to_numba() -> None:
    """Give Numba corenet's thread count and threading layer (called when the Numba backend loads)."""
    import numba

    if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = "workqueue"  # see the module docstring; before any parallel region
    numba.set_num_threads(get_num_threads())


def _max_threads() -> int:
    """Numba's NUMBA_NUM_THREADS, computed as Numba does without importing it."""
    if "numba" in sys.modules:
        return int(sys.modules["numba"].config.NUMBA_NUM_THREADS)
    env = os.environ.get("NUMBA_NUM_THREADS")
    if env:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def get_workspace_bytes() -> int:
    """Upper bound, in bytes, of the im2col column buffer of one convolution call."""
    return _state["workspace_bytes"]


def set_workspace_bytes(nbytes: int) -> None:
    """Bound the im2col column buffer; convolutions process the batch in chunks that fit."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 1:
        raise ValueError(f"set_workspace_bytes: expected a positive int, received {nbytes!r}")
    _state["workspace_bytes"] = nbytes


def get_parallel_threshold() -> int:
    """Work (elements x cost per element) from which a CPU kernel uses more than one thread."""
    return _state["parallel_min_work"]


def set_parallel_threshold(work: int) -> None:
    """Run CPU kernels whose work is below ``work`` on one thread (both CPU backends).

    ``0`` sends every call through the parallel path with ``get_num_threads()`` threads: the
    thread tests use it to exercise parallel code on small inputs. Results do not depend on it.
    """
    if isinstance(work, bool) or not isinstance(work, int) or work < 0:
        raise ValueError(f"set_parallel_threshold: expected an int >= 0, received {work!r}")
    _state["parallel_min_work"] = work


def get_fastmath() -> bool:
    """Whether Numba kernels are compiled with ``fastmath`` (read once, at kernel import)."""
    return _state["fastmath"]
