"""The cuda backend against the plain-loop oracles (tests/naive.py), the numba CPU backend and the
numpy training code, on small shapes.

How this runs without a GPU: numba's CUDA simulator must be switched on before ``numba.cuda`` is
first imported, and by the time pytest imports this module, conftest has already imported it
(``corenet.backends()`` probes every backend). So ``test_simulator_run`` starts a fresh
``python -m pytest`` on this file with ``NUMBA_ENABLE_CUDASIM=1``; in that child every kernel
test below runs on the simulator. In the parent they run on a real GPU when there is one, and
otherwise skip ("no CUDA GPU present"), since the child has covered them. The simulator runs one
Python thread per CUDA thread, so shapes stay tiny and the kernels use small tiles there (see
``corenet/kernels/cuda/_runtime.py``); the CPU-sized cases at the end need a real GPU.
"""

import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import naive
import numpy as np
import pytest

import corenet
from corenet import F, kernels, losses, optim

IN_SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
CUDA_OK = kernels.status().get("cuda") is None
needs_cuda = pytest.mark.skipif(not CUDA_OK, reason="no CUDA GPU present")
needs_gpu = pytest.mark.skipif(IN_SIM or not CUDA_OK, reason="no CUDA GPU present")
TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}
DTYPES = (np.float64, np.float32)

if IN_SIM:
    sys.setswitchinterval(1e-4)  # simulated threads meet at every syncthreads: hand the GIL over fast
    warnings.filterwarnings("ignore", category=Warning, module="numba")


def _close(a, b, dt):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), **TOL[dt])


# ------------------------------------------------------------------------- without a GPU


def test_import_and_backends_never_fail():
    reason = kernels.status()["cuda"]
    assert reason is None or reason.startswith(("no CUDA GPU found", "numba-cuda is not installed"))
    if reason is not None:
        with pytest.raises(RuntimeError, match="not available"):
            kernels.require("cuda")


def test_row_stack_alias_restored_before_numba_cuda():
    code = ("import numpy as np\n"
            "if hasattr(np, 'row_stack'): del np.row_stack\n"
            "from corenet.kernels.cuda import _runtime\n"
            "assert np.row_stack is np.vstack\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


if not IN_SIM:

    def test_simulator_run():
        """Every kernel test of this file on numba's CUDA simulator, in a fresh interpreter."""
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONWARNINGS="ignore")
        tests = Path(__file__).parent
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", str(Path(__file__).name)],
            cwd=tests, env=env, capture_output=True, text=True, timeout=900,
        )
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
        assert " passed" in proc.stdout and " failed" not in proc.stdout


# ------------------------------------------------------------------------- convolution

CONV_CASES = [  # (N, C_in, H, W, C_out, k, stride, pads, dilation, groups, bias)
    (2, 3, 5, 6, 4, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, True),      # gemm, several K steps
    (2, 4, 7, 6, 5, (3, 2), (2, 1), (1, 0, 2, 1), (2, 1), 1, False),  # stride, 4-sided pad, dilation
    (1, 5, 4, 5, 9, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1, True),      # 1x1, row and column tile edges
    (2, 4, 6, 6, 4, 3, (2, 2), (1, 1, 1, 1), (1, 1), 4, True),      # depthwise (direct)
    (2, 6, 5, 5, 4, 2, (1, 2), (0, 1, 1, 0), (1, 2), 2, False),     # grouped, narrow (direct)
]


@needs_cuda
@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("dt", DTYPES)
def test_conv_forward_backward(case, dt):
    from corenet.kernels.cuda import conv
    from corenet.kernels.numba_cpu import conv as cpu

    N, C, H, W, Co, k, s, pads, d, g, bias = case
    kh, kw = (k, k) if isinstance(k, int) else k
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W)).astype(dt)
    w = rng.standard_normal((Co, C // g, kh, kw)).astype(dt)
    b = rng.standard_normal(Co).astype(dt) if bias else None
    y = conv.conv2d_forward(x, w, b, s, pads, d, g)
    assert isinstance(y, np.ndarray) and y.dtype == dt
    _close(y, naive.conv2d(x, w, b, s, pads, d, g), dt)
    _close(y, cpu.conv2d_forward(x, w, b, s, pads, d, g), dt)
    gy = rng.standard_normal(y.shape).astype(dt)
    got = conv.conv2d_backward(x, w, gy, s, pads, d, g, True, True, bias)
    want = naive.conv2d_backward(x, w, gy, s, pads, d, g)
    for a, r in zip(got, want):
        if a is not None:
            assert a.dtype == dt
            _close(a, r, dt)
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
        gx_planes = np.empty_like(gx)
        pool.extreme_pool_backward(gy, idx, gx_planes)  # the CPU signature
        cpu.extreme_pool_backward(gy, idx_cpu, gx_cpu)
        np.testing.assert_array_equal(gx_planes, gx_cpu)
    else:
        d = float(div) if div else (1.0 if mode == "sum" else 0.0)
        pool.avg_pool_forward(x, y, kh, kw, sh, sw, t, b, l, r, dh, dw, cip, d)
        cpu.avg_pool_forward(x, y_cpu, kh, kw, sh, sw, t, b, l, r, dh, dw, cip, d)
        pool.avg_pool_backward(gy, gx, kh, kw, sh, sw, t, b, l, r, dh, dw, cip, d)
        cpu.avg_pool_backward(gy, gx_cpu, kh, kw, sh, sw, t, b, l, r, dh, dw, cip, d)
    _close(y, y_ref, np.float32)
    _close(gx, gx_ref, np.float32)
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
    _close(y, naive.adaptive_avg_pool2d(x, out), np.float64)
    gy = rng.standard_normal(y.shape)
    gx = np.empty_like(x)
    pool.adaptive_avg_pool_backward(gy, gx)
    _close(gx, naive.adaptive_avg_pool2d_backward(x.shape, gy), np.float64)


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
    _close(y, y_ref, dt)
    _close(s, s_ref, dt)
    np.testing.assert_array_equal(y_only, y)
    gx = np.empty_like(x)
    bwd(x, s, gy, gx, size, alpha, beta)
    _close(gx, naive.lrn_backward(x, gy, size, alpha, beta, k, mode, "paper"), dt)


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
    _close(norm.bn_affine(x, m, a, b, np.empty_like(x)), (x - m[:, None]) * a[:, None] + b[:, None], dt)
    want = a[:, None] * gy + b[:, None] * (x - m[:, None]) + c[:, None]
    _close(norm.bn_backward_gx(gy, x, m, a, b, c, np.empty_like(x)), want, dt)
    _close(norm.bn_scale_gx(gy, a), a[:, None] * gy, dt)


# ------------------------------------------------------------------------- activations, dropout, softmax


_ERF = np.vectorize(math.erf)
_K0, _K1 = math.sqrt(2 / math.pi), 0.044715


def _act_refs(x, gy, slope=0.1, alpha=1.0, scale=1.05):
    """numpy references in float64: ``name -> (y, gx, extra kernel args, backward takes y)``."""
    sig = 1 / (1 + np.exp(-x))
    u = _K0 * (x + _K1 * x**3)
    return {
        "relu": (np.maximum(x, 0), gy * (x > 0), (), True),
        "leaky_relu": (np.where(x > 0, x, slope * x), np.where(x > 0, gy, slope * gy), (slope,), False),
        "elu": (scale * np.where(x > 0, x, alpha * np.expm1(x)),
                gy * scale * np.where(x > 0, 1, alpha * np.exp(x)), (alpha, scale), False),
        "gelu_tanh": (0.5 * x * (1 + np.tanh(u)), gy * (0.5 * (1 + np.tanh(u)) + 0.5 * x * (1 - np.tanh(u) ** 2)
                                                        * _K0 * (1 + 3 * _K1 * x * x)), (True,), False),
        "gelu": (0.5 * x * (1 + _ERF(x / math.sqrt(2))),
                 gy * (0.5 * (1 + _ERF(x / math.sqrt(2))) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)),
                 (False,), False),
        "sigmoid": (sig, gy * sig * (1 - sig), (), True),
        "tanh": (np.tanh(x), gy * (1 - np.tanh(x) ** 2), (), True),
    }


@needs_cuda
@pytest.mark.parametrize("dt", DTYPES)
def test_activations_and_softmax(dt):
    from corenet.kernels.cuda import act

    rng = np.random.default_rng(6)
    x = np.concatenate([rng.standard_normal(40) * 3, [0.0, -0.0, 30.0, -30.0]]).astype(dt)
    gy = rng.standard_normal(x.size).astype(dt)
    for name, (y_ref, gx_ref, extra, uses_y) in _act_refs(x.astype(np.float64), gy.astype(np.float64)).items():
        kname = name.replace("_tanh", "")
        extra = tuple(dt(e) if isinstance(e, float) else e for e in extra)
        y = getattr(act, f"{kname}_forward")(x, *extra, np.empty_like(x))
        assert y.dtype == dt
        _close(y, y_ref, dt)
        gx = getattr(act, f"{kname}_backward")(gy, y if uses_y else x, *extra, np.empty_like(x))
        _close(gx, gx_ref, dt)
    for log in (False, True):
        z = rng.standard_normal((2, 5, 3)).astype(dt)
        z64 = z.astype(np.float64)
        e = np.exp(z64 - z64.max(axis=1, keepdims=True))
        sm = e / e.sum(axis=1, keepdims=True)
        s = act.softmax_forward(z, log, np.empty_like(z))
        _close(s, np.log(sm) if log else sm, dt)
        gz = rng.standard_normal(z.shape).astype(dt)
        g64 = gz.astype(np.float64)
        want = g64 - sm * g64.sum(axis=1, keepdims=True) if log else sm * (g64 - (g64 * sm).sum(axis=1, keepdims=True))
        _close(act.softmax_backward(gz, s, log, np.empty_like(z)), want, dt)


@needs_cuda
def test_dropout_same_mask_as_cpu_for_one_rng():
    """The mask comes from the caller's generator, so the result is the CPU backend's: the
    definition in corenet.functional.dropout, ``keep = rng.random(size, float32) >= p``."""
    x = np.linspace(-1, 1, 60, dtype=np.float32).reshape(3, 4, 5)
    previous = corenet.get_backend()
    try:
        corenet.set_backend("cuda")
        y, st = F.dropout(x, 0.4, np.random.default_rng(7), return_state=True)
        gx = F.dropout_backward(np.full_like(y, 2.0), st)
    finally:
        corenet.set_backend(previous)
    keep = np.random.default_rng(7).random(x.size, dtype=np.float32).reshape(x.shape) >= np.float32(0.4)
    scale = np.float32(1 / 0.6)
    np.testing.assert_array_equal(y, np.where(keep, x * scale, 0))
    np.testing.assert_array_equal(gx, np.where(keep, np.float32(2.0) * scale, 0))


@needs_cuda
def test_device_dropout_mask_reproducible():
    from corenet.kernels.cuda import act

    # the simulator draws in Python (~10 ms a number) and seeds extra generators by 2**64-step jumps
    n, states = (100, 1) if IN_SIM else (100_000, 1024)
    from numba import cuda

    seeded = act.make_dropout_states(states, seed=3).copy_to_host()  # the mask kernel advances them
    keep = act.dropout_keep_mask(cuda.to_device(seeded), 0.25, n).copy_to_host()
    again = act.dropout_keep_mask(cuda.to_device(seeded), 0.25, n).copy_to_host()
    np.testing.assert_array_equal(keep, again)
    assert set(np.unique(keep)) <= {0, 1} and abs(keep.mean() - 0.75) < 5 * np.sqrt(0.75 * 0.25 / n)


# ------------------------------------------------------------------------- training kernels


@needs_cuda
@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("ls,reduction", [(0.0, "mean"), (0.1, "sum")])
def test_softmax_cross_entropy(dt, ls, reduction):
    from corenet.kernels.cuda import train

    rng = np.random.default_rng(8)
    z = (rng.standard_normal((6, 4)) * 5).astype(dt)
    labels = rng.integers(0, 4, 6)
    loss, grad = train.softmax_cross_entropy(z, labels, ls, reduction)
    loss_ref, grad_ref = losses.CrossEntropy(ls, reduction)(z, labels)
    assert grad.dtype == dt
    assert loss == pytest.approx(loss_ref, rel=1e-12)
    _close(grad, grad_ref, dt)


@needs_cuda
@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("opt,kw", [
    (optim.SGD, dict(lr=0.1)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (optim.Adam, dict(lr=0.01, weight_decay=0.01)),
    (optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
])
def test_optimizer_updates_match_optim(dt, opt, kw):
    from corenet.kernels.cuda import train

    rng = np.random.default_rng(9)
    o = opt(**kw)
    p = rng.standard_normal(7).astype(dt)
    p_gpu, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
    for t in range(1, 4):
        g = rng.standard_normal(7).astype(dt)
        o.step({"w": p}, {"w": g})
        if opt is optim.SGD:
            train.sgd_update(p_gpu, g, v, kw["lr"], kw.get("momentum", 0.0), kw.get("nesterov", False),
                             kw.get("weight_decay", 0.0))
        else:
            train.adam_update(p_gpu, g, m, v, t, kw["lr"], weight_decay=kw["weight_decay"],
                              decoupled=opt is optim.AdamW)
    _close(p_gpu, p, dt)


# ------------------------------------------------------------------------- device arrays, functional layer


@needs_cuda
def test_device_arrays_stay_on_device():
    from numba import cuda

    from corenet.kernels.cuda import _runtime, conv, norm, pool, train

    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    dx, dw = cuda.to_device(x), cuda.to_device(w)
    y = conv.conv2d_forward(dx, dw, None, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    assert _runtime.is_device(y)
    gx, gw, _ = conv.conv2d_backward(dx, dw, y, (1, 1), (1, 1, 1, 1), (1, 1), 1, True, True, False)
    assert _runtime.is_device(gx) and _runtime.is_device(gw)
    np.testing.assert_allclose(y.copy_to_host(), conv.conv2d_forward(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1))
    py, idx = cuda.device_array((2, 4, 2, 2), np.float32), cuda.device_array((2, 4, 2, 2), np.int32)
    pool.extreme_pool_forward(y, py, idx, 2, 2, 2, 2, 0, 0, 1, 1, False)
    mean, var = norm.bn_stats(y.reshape(2, 4, 25))
    assert _runtime.is_device(mean) and _runtime.is_device(var)
    loss, grad = train.softmax_cross_entropy(py.reshape(2, 16), cuda.to_device(np.array([1, 3])))
    assert _runtime.is_device(loss) and _runtime.is_device(grad)


@needs_cuda
def test_functional_layer_on_cuda_backend():
    """corenet.functional validates, then dispatches to the cuda kernels: numpy in, numpy out."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 6, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    previous = corenet.get_backend()
    try:
        corenet.set_backend("cuda")
        y, st = F.conv2d(x, w, None, stride=1, padding="same", return_state=True)
        gy = rng.standard_normal(y.shape)
        gx, gw, _ = F.conv2d_backward(gy, st)
        p, pst = F.pool2d(y, 2, None, 0, "max", return_state=True)
        gp = F.pool2d_backward(np.ones_like(p), pst)
        n, nst = F.batch_norm(y, None, None, None, None, True, return_state=True)
        gn = F.batch_norm_backward(gy, nst)[0]
        lrn = F.local_response_norm(y, 3)
        r = F.relu(y)
    finally:
        corenet.set_backend(previous)
    pads = (1, 1, 1, 1)
    _close(y, naive.conv2d(x, w, None, (1, 1), pads), np.float64)
    for a, b in zip((gx, gw), naive.conv2d_backward(x, w, gy, (1, 1), pads)):
        _close(a, b, np.float64)
    _close(p, naive.pool2d(y, (2, 2), (2, 2), mode="max")[0], np.float64)
    _close(gp, naive.pool2d_backward(y, np.ones_like(p), (2, 2), (2, 2), mode="max"), np.float64)
    mu, var = y.mean(axis=(0, 2, 3), keepdims=True), y.var(axis=(0, 2, 3), keepdims=True)
    xhat = (y - mu) / np.sqrt(var + 1e-5)
    _close(n, xhat, np.float64)
    want = (gy - gy.mean(axis=(0, 2, 3), keepdims=True)
            - xhat * (gy * xhat).mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(var + 1e-5)
    _close(gn, want, np.float64)
    _close(lrn, naive.lrn(y, 3)[0], np.float64)
    np.testing.assert_array_equal(r, np.maximum(y, 0))


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
