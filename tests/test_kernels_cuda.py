"""The cuda backend's convolution, pooling, LRN and batch-norm kernels against the plain-loop
oracles (tests/naive.py), numpy and the numba CPU backend, on small shapes. How these run without
a GPU (numba's CUDA simulator, in a child pytest): see tests/cuda_sim.py.
"""

import subprocess
import sys
from pathlib import Path

import naive
import numpy as np
import pytest
from cuda_sim import DTYPES, IN_SIM, close, needs_cuda, needs_gpu, run_under_simulator

from corenet import kernels
from corenet.kernels.cuda._runtime import cuda  # a module global: the simulator swaps those in kernels

# ------------------------------------------------------------------------- without a GPU


def test_import_and_backends_never_fail():
    reason = kernels.status()["cuda"]
    assert reason is None or reason.startswith(("no CUDA GPU found", "numba-cuda is not installed or"))
    if reason is not None:
        with pytest.raises(RuntimeError, match="not available"):
            kernels.require("cuda")


def test_row_stack_alias_restored_before_numba_cuda():
    code = ("import numpy as np\n"
            "if hasattr(np, 'row_stack'): del np.row_stack\n"
            "from corenet.kernels.cuda import _runtime\n"
            "assert np.row_stack is np.vstack\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_without_numba_cuda_corenet_still_imports_and_says_why():
    code = ("import sys\n"
            "sys.modules['numba.cuda'] = None  # as if numba-cuda were missing\n"
            "import corenet\n"
            "from corenet import kernels\n"
            "assert 'cuda' not in corenet.backends()\n"
            "assert kernels.status()['cuda'].startswith('numba-cuda is not installed or does not import')\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _nvvm_reason():
    try:
        from numba.cuda.cudadrv import nvvm

        nvvm.NVVM()
    except Exception as exc:  # no CUDA toolkit, or numba-cuda missing
        return f"libNVVM (the CUDA toolkit) not found, so no PTX compile check: {type(exc).__name__}"
    return None


@pytest.mark.skipif(IN_SIM or _nvvm_reason() is not None, reason=str(_nvvm_reason()))
def test_every_kernel_compiles_to_ptx_for_sm90():
    """What the simulator cannot prove: numba's CUDA compiler accepts every kernel (see cuda_ptx_check.py)."""
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("cuda_ptx_check.py"))],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


if not IN_SIM:

    def test_simulator_run():
        """Every kernel test of this file on numba's CUDA simulator, in a fresh interpreter."""
        run_under_simulator(__file__)


@needs_cuda
def test_shared_arrays_are_shared_by_every_thread_of_a_block():
    """Every thread sees the others' writes to a shared array after syncthreads (on the simulator
    this needs corenet's thread-safe ``cuda.shared.array``: issue 8's intermittent failures)."""
    @cuda.jit
    def rotate(out):
        s = cuda.shared.array(32, np.int32)
        t = cuda.threadIdx.x
        s[t] = t + 1
        cuda.syncthreads()
        out[cuda.blockIdx.x, t] = s[(t + 1) % 32]

    for _ in range(5):
        out = np.zeros((2, 32), np.int32)
        rotate[2, 32](out)
        np.testing.assert_array_equal(out, np.tile((np.arange(32) + 1) % 32 + 1, (2, 1)))


@pytest.mark.skipif(not IN_SIM, reason="patches numba's CUDA simulator: runs in the simulator child")
def test_simulator_shared_array_lookup_is_atomic(monkeypatch):
    """The simulator's ``cuda.shared.array`` looks up its array by call site and creates it on a
    miss. Made slow (np.empty sleeps, so every thread misses before any stores), the unpatched
    check-then-set hands each thread its own array; corenet's lock must hand them one."""
    import threading
    import time
    import types

    from numba.cuda.simulator import kernelapi

    from corenet.kernels.cuda import _runtime

    def slow_empty(*args, **kwargs):
        time.sleep(0.002)
        return np.empty(*args, **kwargs)

    slow_np = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    slow_np.empty = slow_empty
    monkeypatch.setattr(kernelapi, "np", slow_np)
    monkeypatch.setattr(_runtime, "np", slow_np)
    shared = kernelapi.FakeCUDAShared(0)
    start, got = threading.Barrier(8), []

    def take():
        start.wait()
        got.append(shared.array((4,), np.float32))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and all(a is got[0] for a in got)


# ------------------------------------------------------------------------- convolution

CONV_CASES = [  # (N, C_in, H, W, C_out, k, stride, pads, dilation, groups, bias)
    (2, 3, 5, 6, 4, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, True),      # gemm, several K steps
    (2, 4, 7, 6, 5, (3, 2), (2, 1), (1, 0, 2, 1), (2, 1), 1, False),  # stride, 4-sided pad, dilation
    (1, 5, 4, 5, 9, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1, True),      # 1x1, row and column tile edges
    (2, 4, 6, 6, 4, 3, (2, 2), (1, 1, 1, 1), (1, 1), 4, True),      # depthwise (direct)
    (2, 6, 5, 5, 4, 2, (1, 2), (0, 1, 1, 0), (1, 2), 2, False),     # grouped, narrow (direct)
]


# grouped cases once more with the direct path switched off: the implicit GEMM with groups
CONV_PATHS = [(c, False) for c in CONV_CASES] + [(c, True) for c in CONV_CASES if c[9] > 1]


@needs_cuda
@pytest.mark.parametrize("case,force_gemm", CONV_PATHS)
@pytest.mark.parametrize("dt", DTYPES)
def test_conv_forward_backward(case, force_gemm, dt, monkeypatch):
    from corenet.kernels.cuda import conv
    from corenet.kernels.numba_cpu import conv as cpu

    if force_gemm:
        monkeypatch.setattr(conv, "DIRECT_MAX_GROUP_CHANNELS", 1)
        assert conv.choose_path((4, 1, 3, 3), 4) == "gemm"
    N, C, H, W, Co, k, s, pads, d, g, bias = case
    kh, kw = (k, k) if isinstance(k, int) else k
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W)).astype(dt)
    w = rng.standard_normal((Co, C // g, kh, kw)).astype(dt)
    b = rng.standard_normal(Co).astype(dt) if bias else None
    y = conv.conv2d_forward(x, w, b, s, pads, d, g)
    assert isinstance(y, np.ndarray) and y.dtype == dt
    close(y, naive.conv2d(x, w, b, s, pads, d, g), dt)
    close(y, cpu.conv2d_forward(x, w, b, s, pads, d, g), dt)
    gy = rng.standard_normal(y.shape).astype(dt)
    got = conv.conv2d_backward(x, w, gy, s, pads, d, g, True, True, bias)
    want = naive.conv2d_backward(x, w, gy, s, pads, d, g)
    for a, r in zip(got, want):
        if a is not None:
            assert a.dtype == dt
            close(a, r, dt)
    assert (got[2] is None) == (not bias)


@needs_cuda
def test_conv_gradients_asked_for_and_deterministic():
    from corenet.kernels.cuda import conv

    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2, 6, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((3, 3, 6, 5)).astype(np.float32)
    args = (x, w, gy, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    gx, gw, gb = conv.conv2d_backward(*args, False, True, False)
    assert gx is None and gb is None
    again = conv.conv2d_backward(*args, False, True, False)[1]
    assert np.array_equal(gw, again)  # split partials summed in a fixed order: same bits


# ------------------------------------------------------------------------- pooling

POOL_CASES = [  # (H, W, kernel, stride, pads, dilation, ceil_mode, count_include_pad, divisor)
    (5, 6, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), False, True, None),
    (6, 5, (2, 3), (1, 2), (0, 1, 1, 0), (2, 1), True, False, None),
    (7, 7, (3, 2), (3, 2), (1, 0, 1, 0), (1, 2), True, True, 3),
]


@needs_cuda
@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("mode", ["max", "min", "avg", "sum"])
def test_pool_against_oracle_and_cpu(case, mode):
    from corenet.kernels.cuda import pool
    from corenet.kernels.numba_cpu import pool as cpu

    H, W, (kh, kw), (sh, sw), pads, (dh, dw), ceil, cip, div = case
    t, b, l, r = pads
    rng = np.random.default_rng(2)
    x = rng.integers(0, 3, (2, 2, H, W)).astype(np.float32)  # many ties
    if mode in ("max", "min"):
        div = None
    ho = naive.pool_out_size(H, kh, sh, t, b, dh, ceil)
    wo = naive.pool_out_size(W, kw, sw, l, r, dw, ceil)
    y_ref, arg_ref = naive.pool2d(x, (kh, kw), (sh, sw), pads, (dh, dw), mode, ceil, cip, div)
    gy = rng.standard_normal((2, 2, ho, wo)).astype(np.float32)
    gx_ref = naive.pool2d_backward(x, gy, (kh, kw), (sh, sw), pads, (dh, dw), mode, ceil, cip, div)
    y, gx, y_cpu, gx_cpu = (np.empty(s, np.float32) for s in (gy.shape, x.shape, gy.shape, x.shape))
    if mode in ("max", "min"):
        idx, idx_cpu = np.empty(gy.shape, np.int32), np.empty(gy.shape, np.int32)
        pool.extreme_pool_forward(x, y, idx, kh, kw, sh, sw, t, l, dh, dw, mode == "min")
        cpu.extreme_pool_forward(x, y_cpu, idx_cpu, kh, kw, sh, sw, t, l, dh, dw, mode == "min")
        np.testing.assert_array_equal(idx, arg_ref)  # first extremum of the window, as on the CPU
        np.testing.assert_array_equal(idx, idx_cpu)
        pool.extreme_pool_backward(gy, idx, gx, kh, kw, sh, sw, t, l, dh, dw)  # gather
        cpu.extreme_pool_backward(gy, idx_cpu, gx_cpu, kh, kw, sh, sw, t, l, dh, dw)  # scatter
    else:
        d = float(div) if div else (1.0 if mode == "sum" else 0.0)
        pool.avg_pool_forward(x, y, kh, kw, sh, sw, t, b, l, r, dh, dw, cip, d)
        cpu.avg_pool_forward(x, y_cpu, kh, kw, sh, sw, t, b, l, r, dh, dw, cip, d)
        pool.avg_pool_backward(gy, gx, kh, kw, sh, sw, t, b, l, r, dh, dw, cip, d)
        cpu.avg_pool_backward(gy, gx_cpu, kh, kw, sh, sw, t, b, l, r, dh, dw, cip, d)
    close(y, y_ref, np.float32)
    close(gx, gx_ref, np.float32)
    np.testing.assert_array_equal(y, y_cpu)
    np.testing.assert_array_equal(gx, gx_cpu)  # same additions in the same order


@needs_cuda
@pytest.mark.parametrize("out", [(3, 2), (1, 1), (5, 7)])
def test_adaptive_avg_pool(out):
    from corenet.kernels.cuda import pool

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 5, 7))
    y = np.empty((2, 2) + out)
    pool.adaptive_avg_pool_forward(x, y)
    close(y, naive.adaptive_avg_pool2d(x, out), np.float64)
    gy = rng.standard_normal(y.shape)
    gx = np.empty_like(x)
    pool.adaptive_avg_pool_backward(gy, gx)
    close(gx, naive.adaptive_avg_pool2d_backward(x.shape, gy), np.float64)


@needs_cuda
@pytest.mark.parametrize("out", [(3, 2), (1, 1), (7, 9)])
def test_adaptive_max_pool(out):
    from corenet.kernels.cuda import pool
    from corenet.kernels.numba_cpu import pool as cpu

    rng = np.random.default_rng(4)
    x = rng.integers(0, 3, (2, 2, 5, 7)).astype(np.float32)  # many ties: the first maximum must win
    x[1, 1, 2, 3] = np.nan  # a NaN is the maximum of every bin that holds it
    y_ref, arg_ref = naive.adaptive_max_pool2d(x, out)
    y, idx = np.empty((2, 2) + out, np.float32), np.empty((2, 2) + out, np.int32)
    pool.adaptive_max_pool_forward(x, y, idx)
    np.testing.assert_array_equal(y, y_ref.astype(np.float32))
    np.testing.assert_array_equal(idx, arg_ref)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx, gx_cpu = np.empty_like(x), np.empty_like(x)
    pool.adaptive_max_pool_backward(gy, idx, gx)  # gather over the bins
    cpu.adaptive_max_pool_backward(gy, idx, gx_cpu)  # scatter
    close(gx, naive.adaptive_max_pool2d_backward(x, gy), np.float32)
    np.testing.assert_array_equal(gx, gx_cpu)  # same additions in the same order


# ------------------------------------------------------------------------- LRN


@needs_cuda
@pytest.mark.parametrize("mode", ["across", "within"])
@pytest.mark.parametrize("size,beta", [(2, 0.75), (3, 0.6), (5, 0.75)])
@pytest.mark.parametrize("dt", DTYPES)
def test_lrn(mode, size, beta, dt):
    from corenet.kernels.cuda import lrn

    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 6, 3, 4)).astype(dt)
    gy = rng.standard_normal(x.shape).astype(dt)
    alpha, k = 0.2, 2.0  # 'paper' convention: the kernels take alpha as it is
    y_ref, s_ref = naive.lrn(x, size, alpha, beta, k, mode, "paper")
    fwd, bwd = getattr(lrn, f"lrn_{mode}_forward"), getattr(lrn, f"lrn_{mode}_backward")
    y, s, y_only = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    fwd(x, y, s, size, alpha, beta, k)
    fwd(x, y_only, np.empty((0, 0, 0, 0), dt), size, alpha, beta, k)
    close(y, y_ref, dt)
    close(s, s_ref, dt)
    np.testing.assert_array_equal(y_only, y)
    gx = np.empty_like(x)
    bwd(x, s, gy, gx, size, alpha, beta)
    close(gx, naive.lrn_backward(x, gy, size, alpha, beta, k, mode, "paper"), dt)


# ------------------------------------------------------------------------- batch norm


@needs_cuda
@pytest.mark.parametrize("dt", DTYPES)
def test_batch_norm_kernels(dt):
    from corenet.kernels.cuda import norm

    rng = np.random.default_rng(5)
    x = (rng.standard_normal((3, 4, 10)) * 2 + 100).astype(dt)  # |mean| >> std: no cancellation
    gy = rng.standard_normal(x.shape).astype(dt)
    x64 = x.astype(np.float64)
    mean, var = norm.bn_stats(x)
    assert mean.dtype == var.dtype == np.float64
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(var, x64.var(axis=(0, 2)), rtol=1e-9)
    sg, sgx = norm.bn_backward_reduce(gy, x, mean)
    np.testing.assert_allclose(sg, gy.astype(np.float64).sum(axis=(0, 2)), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(sgx, (gy * (x64 - mean[:, None])).sum(axis=(0, 2)), rtol=1e-9, atol=1e-9)
    a, b, c = (rng.standard_normal(4).astype(dt) for _ in range(3))
    m = mean.astype(dt)
    close(norm.bn_affine(x, m, a, b, np.empty_like(x)), (x - m[:, None]) * a[:, None] + b[:, None], dt)
    want = a[:, None] * gy + b[:, None] * (x - m[:, None]) + c[:, None]
    close(norm.bn_backward_gx(gy, x, m, a, b, c, np.empty_like(x)), want, dt)
    close(norm.bn_scale_gx(gy, a, np.empty_like(gy)), a[:, None] * gy, dt)


# ------------------------------------------------------------------------- real GPU only


@needs_gpu
def test_gpu_conv_at_scale_matches_cpu():
    """Full-size tiles, many blocks, split grad-weight: only meaningful (and fast) on a GPU."""
    from corenet.kernels.cuda import conv
    from corenet.kernels.numba_cpu import conv as cpu

    rng = np.random.default_rng(12)
    x = rng.standard_normal((16, 32, 16, 16)).astype(np.float32)
    w = (rng.standard_normal((64, 32, 3, 3)) * 0.1).astype(np.float32)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    y = conv.conv2d_forward(x, w, None, *args)
    np.testing.assert_allclose(y, cpu.conv2d_forward(x, w, None, *args), rtol=1e-3, atol=1e-3)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    got = conv.conv2d_backward(x, w, gy, *args, True, True, True)
    want = cpu.conv2d_backward(x, w, gy, *args, True, True, True)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-2)
