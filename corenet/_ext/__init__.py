"""Compiled Cython kernels of the ``cython`` backend (built at install time, optional).

One extension module per op family (``conv``, ``pool``, ``lrn``, ``norm``, ``act``), each built
from ``<family>.pyx`` with OpenMP where the compiler supports it. Nothing here is public: the
backend modules in ``corenet/kernels/cython_cpu/`` expose the kernels under the contract names
and pass in the thread count, chosen by ``threads_for`` below.

OpenMP wait policy
------------------
By default libgomp's workers *spin* after every parallel region (``GOMP_SPINCOUNT`` = 300,000
pause loops, several milliseconds) before they sleep. A training step runs dozens of short
regions with numpy and BLAS calls between them, so a spinning worker holds a core that BLAS's
own threads, the main thread or a neighbour process need, and the CPU scheduler charges it for
the spin: measured on 2 cores, a LeNet-5 step took ~360-540 ms on 2 threads against ~6 ms on 1.
Workers that sleep at once (``OMP_WAIT_POLICY=PASSIVE``) are the other extreme: every region
then pays a futex wake, which on a virtual machine (an inter-processor interrupt, a VM exit) cost
~55-70 us here, more than a ReLU of 1M elements. corenet takes the middle: ``GOMP_SPINCOUNT=1000``
(a few microseconds of spinning, then sleep), so back-to-back regions find their workers awake.
LeNet-5 step, batch 64, 2 threads (``benchmarks/bench_contention.py``, auto backend), median:
passive 2.41 ms idle / 2.72 ms beside a busy process; 1000 spins 2.04 / 3.73; 3000 spins
1.74 / 5.77 (past the 2x-of-one-thread bound beside a busy process); the 1-thread step 2.5 ms.

The policy is read once, when the OpenMP runtime is loaded. So this package loads the extension
modules (and with them the runtime) here, with ``GOMP_SPINCOUNT=1000`` in the environment
for the duration of the load only (child processes and libraries loaded later see the
environment as it was), unless the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``
themselves. If an OpenMP runtime is already in the process (PyTorch brings its own
``libgomp.so.1``, which then also serves these modules; so do some other extensions), its policy
stands: import corenet's Cython backend before torch, or set ``OMP_WAIT_POLICY=PASSIVE`` in the
environment. ``openmp_status()`` says which case applies.
"""

import importlib
import os

from ..config import get_num_threads, get_parallel_threshold

FAMILIES = ("conv", "simd_conv", "pool", "lrn", "norm", "act", "act_mobile", "fused", "resample")
# The runtime the extensions link on Linux (gcc's -fopenmp). Another runtime already in the
# process (MKL's libiomp5, LLVM's libomp) is a separate library and does not stop this one
# from being loaded with the policy below. (Elsewhere there is no /proc/self/maps: the policy is
# set, and LLVM's libomp honours OMP_WAIT_POLICY too.)
_OPENMP_NAMES = ("libgomp",)
_status = {"runtime": None, "wait_policy": None}
_SPINCOUNT = "1000"  # pause loops before a worker sleeps (see the module docstring)


def _loaded_openmp() -> str | None:
    """Path of an OpenMP runtime mapped into this process, or None (or if it cannot be told)."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rsplit(None, 1)[-1]
                if any(name in os.path.basename(path) for name in _OPENMP_NAMES):
                    return path
    except OSError:
        return None
    return None


def _load_with_passive_wait() -> None:
    """Import the extension modules so that their OpenMP runtime starts with sleeping workers."""
    before = _loaded_openmp()
    user = {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ}
    if before is not None:
        _status["wait_policy"] = f"as loaded before corenet ({before})"
    elif user:
        _status["wait_policy"] = "from the environment: " + ", ".join(f"{k}={v}" for k, v in user.items())
    else:
        os.environ["GOMP_SPINCOUNT"] = _SPINCOUNT
        _status["wait_policy"] = f"spin {_SPINCOUNT} then sleep (set by corenet)"
    try:
        for name in FAMILIES:
            try:
                importlib.import_module(f"{__name__}.{name}")
            except ImportError:  # not built: corenet.kernels.cython_cpu reports why
                pass
    finally:
        if before is None and not user:
            del os.environ["GOMP_SPINCOUNT"]
    _status["runtime"] = _loaded_openmp()


def openmp_status() -> dict:
    """``{"runtime": path or None, "wait_policy": how its workers wait}`` (see the module docstring)."""
    return dict(_status)


def threads_for(size: int, cost: int = 1) -> int:
    """OpenMP threads for a kernel over ``size`` elements of ``cost`` simple operations each.

    One thread below ``config.get_parallel_threshold()`` (the rule of the Numba backend's
    ``@sized``): waking a second OpenMP thread costs more than such a kernel's work.
    """
    return get_num_threads() if size * cost >= get_parallel_threshold() else 1


_load_with_passive_wait()
