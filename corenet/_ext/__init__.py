"""Compiled Cython kernels of the ``cython`` backend (built at install time, optional).

One extension module per op family (``conv``, ``pool``, ``lrn``, ``norm``, ``act``), each built
from ``<family>.pyx`` with OpenMP where the compiler supports it. Nothing here is public: the
backend modules in ``corenet/kernels/cython_cpu/`` expose the kernels under the contract names
and pass in the thread count, chosen by ``threads_for`` below.
"""

from ..config import get_num_threads

# About 30-60 us of single-thread work for a simple elementwise kernel: below this, waking a
# second OpenMP thread costs more than it saves (on a busy machine a worker may wait a whole
# scheduler slice). The same threshold as the Numba backend's ``@sized``.
SMALL_WORK = 1 << 15


def threads_for(size: int, cost: int = 1) -> int:
    """OpenMP threads for a kernel over ``size`` elements of ``cost`` simple operations each."""
    return get_num_threads() if size * cost >= SMALL_WORK else 1
