"""Pooling window arithmetic written once, in plain Python, and compiled by each backend that
runs it inside its kernels (``numba.njit`` in ``numba_cpu/pool.py``, ``cuda.jit(device=True)`` in
``cuda/pool.py``). The Cython backend has the same function in ``_ext/pool.pyx``."""


def tap_range(start, k, d, size):
    """Taps ``t`` in ``[t0, t1)`` keep ``start + t*d`` inside ``[0, size)``."""
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
