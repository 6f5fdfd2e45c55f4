"""Set the thread count of the BLAS library that numpy calls, without a runtime dependency.

threadpoolctl is used when it is installed. Otherwise the OpenBLAS (or MKL) library already
loaded by numpy is found in ``/proc/self/maps`` and its ``*_set_num_threads`` entry point is
called through ctypes. When neither works the call is a no-op and ``blas_info()`` says so.
"""

from __future__ import annotations

import ctypes

import numpy as np

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


# ----------------------------------------------------------------------------- GEMM through numpy
# corenet keeps BLAS on ONE thread and parallelises big GEMMs itself. OpenBLAS's worker threads
# spin for a long while after each multi-threaded call, on the cores corenet's own kernels (Numba,
# OpenMP) are about to use, and every small GEMM waits for a second core: a LeNet-5 fc1 GEMM
# (64x400x120) took 4 ms on 2 BLAS threads beside a busy process and 95 us on one. A GEMM of at
# least SPLIT_MACS multiply-adds is cut into one block per thread instead (rows of the output, or
# the batch of a batched product), each block a single-threaded BLAS call on its own Python thread
# (numpy releases the GIL), so both cores work with no spinning pool left behind.
SPLIT_MACS = 1 << 22
_pool: dict = {}


def _executor(n: int):
    ex = _pool.get(n)
    if ex is None:
        from concurrent.futures import ThreadPoolExecutor

        ex = _pool[n] = ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="corenet-gemm")
    return ex


def matmul(a, b, out=None, threads: int = 1):
    """``np.matmul(a, b, out=out)`` split over ``threads`` when it is big enough (see above).

    ``a`` (M, K) @ ``b`` (K, N), or ``a`` (M, K) @ ``b`` (B, K, N) (a batch of right-hand sides).
    """
    if threads < 2 or a.ndim != 2 or b.ndim not in (2, 3):
        return np.matmul(a, b, out=out)
    M, K = a.shape
    N = b.shape[-1]
    batch = b.shape[0] if b.ndim == 3 else 1
    if M * K * N * batch < SPLIT_MACS:
        return np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((*b.shape[:-2], M, N), dtype=np.result_type(a, b))
    if b.ndim == 3 and batch >= threads:
        cuts = [batch * i // threads for i in range(threads + 1)]
        parts = [(a, b[i:j], out[i:j]) for i, j in zip(cuts, cuts[1:])]
    else:
        cuts = [M * i // threads for i in range(threads + 1)]
        parts = [(a[i:j], b, out[..., i:j, :]) for i, j in zip(cuts, cuts[1:])]
    futures = [_executor(threads).submit(np.matmul, pa, pb, out=po) for pa, pb, po in parts[1:]]
    np.matmul(*parts[0][:2], out=parts[0][2])
    for f in futures:
        f.result()
    return out
