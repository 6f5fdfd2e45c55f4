"""Numba CPU backend: ``@njit(parallel=True, cache=True)`` kernels, one module per op family.

Shared compile options live in ``_jit.py`` so every kernel is built the same way.
"""


from ... import config

config.apply_to_numba()  # thread count and threading layer, before any kernel of this backend runs


def unavailable_reason():
    try:
        import numba  # noqa: F401
    except ImportError as exc:  # numba is a hard dependency; this only guards broken installs
        return f"numba cannot be imported: {exc}"
    return None
