"""Compiled Cython kernels of the ``cython`` backend (built at install time, optional).

One extension module per op family (``conv``, ``pool``, ``lrn``, ``norm``, ``act``), each built
from ``<family>.pyx`` with OpenMP where the compiler supports it. Nothing here is public: the
backend modules in ``corenet/kernels/cython_cpu/`` expose the kernels under the contract names
and pass in the thread count from ``corenet.config``.
"""
