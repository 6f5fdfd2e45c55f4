"""Timing and roofline helpers shared by the benchmark scripts.

Numbers that matter are ratios measured in one run: corenet against PyTorch (interleaved, so
both see the same machine noise) and against the machine's own roofs measured at the start.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
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


# ---------------------------------------------------------------------------------- FMA peak
_FMA_LIB = None
_ISA = {512: "avx512f (512-bit)", 256: "avx2+fma (256-bit)", 128: "128-bit vectors"}
_LANES = {512: 16, 256: 8, 128: 4}


def _fma_lib():
    """Compile benchmarks/_fma_peak.c with the system C compiler into a temp dir; (lib, None) or (None, why)."""
    global _FMA_LIB
    if _FMA_LIB is not None:
        return _FMA_LIB
    import ctypes
    import shutil
    import subprocess
    import tempfile

    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        _FMA_LIB = (None, "no C compiler found (cc, gcc, clang)")
        return _FMA_LIB
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_fma_peak.c")
    with tempfile.TemporaryDirectory() as tmp:
        so = os.path.join(tmp, "_fma_peak.so")
        cmd = [cc, "-O2", "-ffp-contract=fast", "-shared", "-fPIC", "-pthread", src, "-o", so]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            _FMA_LIB = (None, f"{' '.join(cmd)} failed: {r.stderr.strip()[:300]}")
            return _FMA_LIB
        lib = ctypes.CDLL(so)  # stays mapped after the directory is removed
    lib.fma_run.restype = ctypes.c_double
    lib.fma_run.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long]
    lib.fma_widest.restype = ctypes.c_int
    _FMA_LIB = (lib, None)
    return _FMA_LIB


def fma_peak_gflops(threads: int, bits: int | None = None, seconds: float = 0.2, repeat: int = 5):
    """float32 FMA peak of ``threads`` cores running a register-bound loop at once (``_fma_peak.c``).

    Returns ``(GFLOP/s, isa)`` for the widest SIMD width the CPU has (or ``bits``: 512, 256, 128), the
    best of ``repeat`` runs of about ``seconds`` each (noise only ever slows a register-bound loop), or
    ``(None, why)`` when the kernel cannot be compiled.
    """
    lib, why = _fma_lib()
    if lib is None:
        return None, why
    bits = bits or lib.fma_widest()
    flops_per_iter = threads * 12 * _LANES[bits] * 2
    iters = 1 << 16
    while True:  # calibrate (also brings the cores to their clock speed)
        t0 = time.perf_counter()
        if lib.fma_run(bits, threads, iters) < 0:
            return None, f"could not start {threads} threads"
        dt = time.perf_counter() - t0
        if dt > seconds / 4:
            break
        iters *= 4
    iters = max(1, int(iters * seconds / dt))
    best = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        lib.fma_run(bits, threads, iters)
        best = max(best, flops_per_iter * iters / (time.perf_counter() - t0) / 1e9)
    return best, _ISA[bits]


# ---------------------------------------------------------------------------------- protocol helpers
def load_line(max_load: float = 0.5) -> tuple[str, tuple]:
    """The load average as a line to print first, with a warning when the 1-minute load is above ``max_load``."""
    load = os.getloadavg()
    line = f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    if load[0] > max_load:
        line += f"  WARNING: 1-minute load above {max_load}: the machine is busy, the numbers are not trustworthy"
    return line, load


def run_child(script: str, args, env=None):
    """Run ``script --child ARGS`` in a fresh interpreter: (the JSON of its last stdout line, None) or
    (None, the exit status and last stderr line)."""
    import subprocess

    r = subprocess.run([sys.executable, script, "--child", *map(str, args)], capture_output=True, text=True, env=env)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        tail = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        return None, f"exit {r.returncode}: {tail}"
    return json.loads(lines[-1]), None


def spread(values) -> tuple[float, float, float]:
    """(median, min, max) of per-round values."""
    return statistics.median(values), min(values), max(values)
