"""Timing and roofline helpers shared by the benchmark scripts.

Numbers that matter are ratios measured in one run: corenet against PyTorch (interleaved, so
both see the same machine noise) and against the machine's own roofs measured at the start.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

import numpy as np


def median_ms(fn, repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def interleaved_ms(fns: dict, repeat: int, warmup: int = 1) -> dict:
    """Median ms of each callable, alternating between them run by run."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def gemm_roof_gflops(n: int = 2048, repeat: int = 5) -> float:
    """float32 square GEMM through numpy's BLAS: the compute roof of this machine and thread count."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    ms = median_ms(lambda: np.matmul(a, b, out=c), repeat)
    return 2 * n**3 / (ms * 1e-3) / 1e9


def copy_roof_gbs(nbytes: int = 256 << 20, repeat: int = 5) -> float:
    """Large array copy (read + write bytes counted): the bandwidth roof."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    ms = median_ms(lambda: np.copyto(dst, src), repeat)
    return 2 * nbytes / (ms * 1e-3) / 1e9


def machine_info(threads: int) -> dict:
    import corenet

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": threads,
        "corenet": corenet.__version__,
        "backends": corenet.backends(),
    }


def write_json(path: str | None, payload: dict) -> None:
    if not path:
        return
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
    print(f"wrote {path}")


def try_import_torch(threads: int):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch
