"""Set the thread count of the BLAS library that numpy calls, without a runtime dependency.

threadpoolctl is used when it is installed. Otherwise the OpenBLAS (or MKL) library already
loaded by numpy is found in ``/proc/self/maps`` and its ``*_set_num_threads`` entry point is
called through ctypes. When neither works the call is a no-op and ``blas_info()`` says so.
"""

from __future__ import annotations

import ctypes

_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
    "MKL_Set_Num_Threads",
)
_found: list | None = None


def _loaded_blas() -> list:
    """ctypes handles of loaded BLAS libraries with a thread-count setter: ``[(path, fn)]``."""
    global _found
    if _found is not None:
        return _found
    import numpy  # noqa: F401  (makes sure numpy's BLAS is loaded)

    _found = []
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if ".so" in line and "/" in line}
    except OSError:
        return _found
    for path in sorted(paths):
        low = path.lower()
        if "openblas" not in low and "mkl_rt" not in low:
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SETTERS:
            fn = getattr(lib, name, None)
            if fn is not None:
                _found.append((path, fn))
                break
    return _found


def set_num_threads(n: int) -> str:
    """Limit BLAS to ``n`` threads; returns how it was done (for diagnostics)."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n, user_api="blas")
        return "threadpoolctl"
    except ImportError:
        pass
    libs = _loaded_blas()
    for _, fn in libs:
        fn(ctypes.c_int(n))
    return "ctypes" if libs else "unavailable"


def blas_info() -> str:
    libs = _loaded_blas()
    return ", ".join(p for p, _ in libs) if libs else "no BLAS thread control found"
