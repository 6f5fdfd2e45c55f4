"""Compiled Cython kernels of the ``cython`` backend (built at install time, optional).

One extension module per op family (``conv``, ``pool``, ``lrn``, ``norm``, ``act``), each built
from ``<family>.pyx`` with OpenMP where the compiler supports it. Nothing here is public: the
backend modules in ``corenet/kernels/cython_cpu/`` expose the kernels under the contract names
and pass in the thread count, chosen by ``threads_for`` below.
"""

from ..config import get_num_threads, get_parallel_threshold


def threads_for(size: int, cost: int = 1) -> int:
    """OpenMP threads for a kernel over ``size`` elements of ``cost`` simple operations each.

    One thread below ``config.get_parallel_threshold()`` (the rule of the Numba backend's
    ``@sized``): waking a second OpenMP thread costs more than such a kernel's work.
    """
    return get_num_threads() if size * cost >= get_parallel_threshold() else 1
