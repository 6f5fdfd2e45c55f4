"""``corenet.warmup()``: compile (or load from cache) every kernel of the active backend ahead of use."""

from __future__ import annotations

import importlib
import time

import numpy as np

from . import _malloc, config

# Each functional module defines ``_warmup(dtype)``, which runs its ops forward and backward
# on tiny inputs so that every kernel specialisation for ``dtype`` is compiled.
_MODULES = ("conv", "pool", "lrn", "norm", "act", "act_mobile", "shuffle", "drop_path", "resample")


def warmup(dtypes=(np.float32, np.float64), verbose: bool = False) -> dict:
    """Compile every kernel of the active backend for ``dtypes``; returns a small report.

    Numba kernels are cached on disk (``cache=True``), so after the first process this only
    loads machine code. The report names the backend, the thread count, Numba's threading
    layer (when Numba ran) and the seconds spent.
    """
    t0 = time.perf_counter()
    done = []
    for name in _MODULES:
        try:
            module = importlib.import_module(f"corenet.functional.{name}")
        except ImportError:
            continue
        fn = getattr(module, "_warmup", None)
        if fn is None:
            continue
        for dt in dtypes:
            fn(np.dtype(dt))
        done.append(name)
    report = {
        "backend": config.get_backend(),
        "num_threads": config.get_num_threads(),
        "families": done,
        "seconds": round(time.perf_counter() - t0, 3),
        "malloc": _malloc.status(),
    }
    if config.get_backend() in ("numba", "auto"):
        import numba

        try:
            report["threading_layer"] = numba.threading_layer()
        except ValueError:  # no parallel region has run yet
            report["threading_layer"] = "not initialised"
    if verbose:
        print(", ".join(f"{k}={v}" for k, v in report.items()))
    return report
