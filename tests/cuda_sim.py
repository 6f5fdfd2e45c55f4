"""Shared set-up of the cuda kernel tests (test_kernels_cuda*.py): simulator detection, skips,
tolerances, and the runner that repeats a test file under numba's CUDA simulator.

numba's CUDA simulator must be switched on before ``numba.cuda`` is first imported, and by the
time pytest imports a test module, conftest has already imported it (``corenet.backends()``
probes every backend). So each cuda test file has a ``test_simulator_run`` that starts a fresh
``python -m pytest <that file>`` with ``NUMBA_ENABLE_CUDASIM=1``; in that child every kernel test
runs on the simulator. In the parent the kernel tests run on a real GPU when there is one, and
otherwise skip ("no CUDA GPU present"), since the child has covered them. The simulator runs one
Python thread per CUDA thread, so shapes stay tiny and the kernels use small tiles there (see
``corenet/kernels/cuda/_runtime.py``); the few full-size cases need a real GPU. Two steps of the
simulator itself are not thread-safe (creating a shared array, swapping the cuda module around a
device-function call); ``_runtime._patch_simulator_races`` locks them, or shared tiles turn
private to one simulated thread at random.
"""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import corenet
from corenet import kernels

IN_SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
CUDA_OK = kernels.status().get("cuda") is None
needs_cuda = pytest.mark.skipif(not CUDA_OK, reason="no CUDA GPU present")
needs_gpu = pytest.mark.skipif(IN_SIM or not CUDA_OK, reason="no CUDA GPU present")
TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}
DTYPES = (np.float64, np.float32)

if IN_SIM:
    sys.setswitchinterval(1e-4)  # simulated threads meet at every syncthreads: hand the GIL over fast
    warnings.filterwarnings("ignore", category=Warning, module="numba")


def close(a, b, dt):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), **TOL[dt])


def run_under_simulator(test_file: str) -> None:
    """Run ``test_file`` (a path) in a fresh pytest with the CUDA simulator on; fail with its output."""
    path = Path(test_file)
    # the child imports the corenet this process imported (the source tree, not a stale installed copy)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONWARNINGS="ignore",
               PYTHONPATH=str(Path(corenet.__file__).resolve().parent.parent))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", path.name],
        cwd=path.parent, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout
