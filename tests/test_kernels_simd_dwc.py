"""Small-map paths of the CPU convolution: the channel-vectorised depthwise kernels
(``corenet/_ext/simd_conv_dwc_*.h``, path ``"simd_dwc"``) on every instruction set of this CPU, and
the batch-folded pointwise GEMM (path ``"1x1"`` on maps of a few pixels), against the loop oracles
of ``tests/naive.py``, float64 finite differences, 1 against 2 threads, with guard regions."""

import naive
import numpy as np
import pytest
from conftest import CPU_BACKENDS
from gradcheck import vjp_grad
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import corenet
from corenet import config
from corenet.functional.conv import conv2d, conv2d_backward
from corenet.kernels import _cpu_conv, _cpu_pointwise

simd = pytest.importorskip("corenet._ext.simd_conv", reason="the compiled extension is not built here")
from corenet.kernels.cython_cpu import conv as cconv  # noqa: E402  (needs the extension too)

TOL = {np.float64: 1e-10, np.float32: 1e-4}


@pytest.fixture(params=simd.supported_isas())
def isa(request):
    previous = simd.get_isa()
    simd.set_isa(request.param)
    try:
        yield request.param
    finally:
        simd.set_isa(previous)


def close(actual, expected, dtype):
    tol = TOL[dtype]
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * max(1.0, float(np.abs(expected).max(initial=0))))


def run_functional(x, w, b, gy_seed, stride, pads, dilation, groups, backend="cython"):
    previous = corenet.get_backend()
    corenet.set_backend(backend)
    try:
        y, state = conv2d(x, w, b, stride=stride, padding=((pads[0], pads[1]), (pads[2], pads[3])),
                          dilation=dilation, groups=groups, return_state=True)
        gy = np.random.default_rng(gy_seed).standard_normal(y.shape).astype(x.dtype)
        return y, gy, conv2d_backward(gy, state)
    finally:
        corenet.set_backend(previous)


@st.composite
def dw_cases(draw):
    """Depthwise layers with channel blocks that end part-way (16 channels a block), every kernel size
    up to 5x5, strides and dilations per axis, uneven pads (up to the kernel's span and beyond)."""
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    hw = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    p = st.integers(0, 3)
    pads = (draw(p), draw(p), draw(p), draw(p))
    assume(dilation[0] * (k[0] - 1) < hw[0] + pads[0] + pads[1])
    assume(dilation[1] * (k[1] - 1) < hw[1] + pads[2] + pads[3])
    return dict(x_shape=(draw(st.integers(1, 3)), draw(st.sampled_from([2, 5, 16, 17, 33])), *hw), k=k,
                stride=stride, pads=pads, dilation=dilation, seed=draw(st.integers(0, 2**31)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@settings(deadline=None, max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=dw_cases())
def test_dwc_path_matches_oracle(isa, dtype, case, monkeypatch):
    """Forward and all three gradients through corenet.functional with the path forced to simd_dwc."""
    rng = np.random.default_rng(case["seed"])
    N, C, H, W = case["x_shape"]
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((C, 1, *case["k"])).astype(dtype)
    b = rng.standard_normal(C).astype(dtype)
    monkeypatch.setattr(_cpu_conv, "choose_path", lambda *args: "simd_dwc")
    y, gy, grads = run_functional(x, w, b, case["seed"] + 1, case["stride"], case["pads"], case["dilation"], C)
    kw = dict(stride=case["stride"], pads=case["pads"], dilation=case["dilation"], groups=C)
    close(y, naive.conv2d(x, w, b, **kw), dtype)
    assert y.dtype == dtype
    for got, want in zip(grads, naive.conv2d_backward(x, w, gy, **kw)):
        assert got.dtype == dtype
        close(got, want, dtype)


def test_dwc_gradients_match_finite_differences():
    """float64, stride (2, 1), uneven padding, dilation: both gradients against central differences of
    sum(gy * dwc_forward(x, w))."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 18, 4, 3))
    w = rng.standard_normal((18, 1, 3, 2))
    stride, pads, dil = (2, 1), (1, 2, 0, 1), (1, 2)
    y = naive.conv2d(x, w, None, stride=stride, pads=pads, dilation=dil, groups=18)
    gy = rng.standard_normal(y.shape)

    def fwd(xv, wv):
        out = np.empty_like(y)
        cconv.simd_dwc_forward(xv, wv, None, stride, pads, dil, out)
        return out

    close(fwd(x, w), y, np.float64)
    gx, gw = np.empty_like(x), np.empty_like(w)
    cconv.simd_dwc_backward_input(gy, w, stride, pads, dil, gx)
    cconv.simd_dwc_wgrad(x, gy, stride, pads, dil, gw)
    np.testing.assert_allclose(gx, vjp_grad(lambda v: fwd(v, w), x, gy), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gw, vjp_grad(lambda v: fwd(x, v), w, gy), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("stride", [(1, 1), (2, 2)])
def test_dwc_threads_bitwise_and_guarded(isa, stride):
    """40 channels (three blocks, the last partial) and 5 images (the weight gradient's batch
    segments): 1 thread, then 2 forced threads three times, same bits, nothing written past y, gx, gw."""
    rng = np.random.default_rng(9)
    N, C, H, W, guard = 5, 40, 4, 3, 37
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((C, 1, 3, 3)).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    pads = (1, 1, 1, 1)
    kw = dict(stride=stride, pads=pads, groups=C)
    ho, wo = naive.conv2d(x, w, b, **kw).shape[2:]
    gy = rng.standard_normal((N, C, ho, wo)).astype(np.float32)
    calls = [(cconv.simd_dwc_forward, (x, w, b, stride, pads, (1, 1)), (N, C, ho, wo)),
             (cconv.simd_dwc_backward_input, (gy, w, stride, pads, (1, 1)), x.shape),
             (cconv.simd_dwc_wgrad, (x, gy, stride, pads, (1, 1)), w.shape)]
    previous = corenet.get_num_threads(), config.get_parallel_threshold()
    config.set_parallel_threshold(0)
    results = []
    try:
        for nt in (1, 2, 2, 2):
            corenet.set_num_threads(nt)
            outs = []
            for fn, args, shape in calls:
                buf = np.full(int(np.prod(shape)) + guard, -7.5, np.float32)
                fn(*args, buf[:-guard].reshape(shape))
                assert (buf[-guard:] == -7.5).all(), f"{fn.__name__} wrote past its output"
                outs.append(buf[:-guard].copy())
            results.append(outs)
    finally:
        corenet.set_num_threads(previous[0])
        config.set_parallel_threshold(previous[1])
    want = [naive.conv2d(x, w, b, **kw), *naive.conv2d_backward(x, w, gy, **kw)[:2]]
    for got, ref in zip(results[0], want):
        close(got.reshape(ref.shape), ref, np.float32)
    for other in results[1:]:
        for a, ref in zip(other, results[0]):
            np.testing.assert_array_equal(a, ref)


def test_dwc_refuses_a_short_workspace_and_negative_padding():
    x = np.ones((1, 3, 4, 4), np.float32)
    w = np.ones((3, 1, 3, 3), np.float32)
    y = np.empty((1, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"^simd_conv.dwc_forward: workspace of 8 bytes, \d+ needed"):
        simd.dwc_forward(x, w, None, 1, 1, 1, 1, 1, 1, y, np.empty(8, np.uint8), 1)
    ws = np.empty(simd.dwc_workspace(x.shape, w.shape, 1, 1, 1, 1, 4, 4, 4, 1), np.uint8)
    with pytest.raises(ValueError, match=r"^simd_conv.dwc_wgrad: padding \(-1, 0\) received, non-negative"):
        simd.dwc_wgrad(x, y, 1, 1, -1, 0, 1, 1, w, ws, 1)


def test_small_maps_choose_the_small_map_paths():
    dw = (576, 1, 3, 3)
    assert _cpu_conv.choose_path((16, 576, 4, 4), dw, (1, 1), (1,) * 4, 576, cconv) == "simd_dwc"
    assert _cpu_conv.choose_path((16, 576, 16, 16), dw, (1, 1), (1,) * 4, 576, cconv) == "simd_dw"
    assert _cpu_conv.choose_path((16, 576, 32, 32), dw, (2, 2), (1,) * 4, 576, cconv) == "simd_dwc"
    se = (48, 1152, 1, 1)
    assert _cpu_conv.choose_path((16, 1152, 1, 1), se, (1, 1), (0,) * 4, 1, cconv) == "1x1"
    assert _cpu_conv.choose_path((16, 96, 4, 4), (576, 96, 1, 1), (1, 1), (0,) * 4, 1, cconv) == "simd"
    assert _cpu_conv.choose_path((16, 96, 4, 4), (576, 96, 1, 1), (1, 1), (0,) * 4, 1, cconv, True) == "1x1"
    assert _cpu_conv.choose_path((16, 96, 8, 8), (576, 96, 1, 1), (1, 1), (0,) * 4, 1, cconv, True) == "simd"


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("hw,bias", [((1, 1), True), ((1, 1), False), ((2, 3), True), ((17, 16), False)])
def test_pointwise_fold_matches_oracle(backend, dtype, hw, bias, monkeypatch):
    """The "1x1" path on a 1x1 map (x itself as the GEMM operand), a folded small map, and a map past
    FOLD_MAX_PIXELS (one GEMM per image), forward and both gradients, on every CPU backend."""
    monkeypatch.setattr(_cpu_conv, "choose_path", lambda *args: "1x1")
    rng = np.random.default_rng(hw[0] * 7 + bias)
    x = rng.standard_normal((3, 5, *hw)).astype(dtype)
    w = rng.standard_normal((7, 5, 1, 1)).astype(dtype)
    b = rng.standard_normal(7).astype(dtype) if bias else None
    y, gy, grads = run_functional(x, w, b, 4, (1, 1), (0,) * 4, (1, 1), 1, backend)
    close(y, naive.conv2d(x, w, b), dtype)
    for got, want in zip(grads, naive.conv2d_backward(x, w, gy)):
        if want is not None and got is not None:
            assert got.dtype == dtype
            close(got, want, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gemm_split_over_openmp_threads(dtype):
    """_cpu_pointwise.gemm on plain and transposed operands, above the split size on 2 and 3 threads (rows
    split unevenly: 301), repeated, against float64 numpy and the 1-thread result, nothing written past
    the output; an operand that is
    not contiguous along either axis takes numpy's matmul."""
    rng = np.random.default_rng(5)
    M, K, N = 301, 120, 130  # 4.7 M multiply-adds: above _blas.SPLIT_MACS
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    at, bt = np.ascontiguousarray(a.T).T, np.ascontiguousarray(b.T).T  # F-ordered views
    want = a.astype(np.float64) @ b.astype(np.float64)
    for x, y in ((a, b), (at, b), (a, bt), (at, bt), (a[:, ::1], b[::1, :])):
        one = _cpu_pointwise.gemm(x, y, np.empty((M, N), dtype), 1)  # 1 thread: numpy's matmul
        close(one, want, dtype)
        for threads in (2, 3, 2):
            buf = np.full(M * N + 29, np.nan, dtype)  # a guard region after the output
            out = buf[:-29].reshape(M, N)
            assert _cpu_pointwise.gemm(x, y, out, threads) is out
            assert np.isnan(buf[-29:]).all(), "gemm wrote past its output"
            close(out, want, dtype)
            np.testing.assert_allclose(out, one, rtol=1e-5, atol=1e-4 if dtype == np.float32 else 1e-11)
    strided = np.zeros((M, 2 * K), dtype)[:, ::2]
    strided[...] = a
    out = np.empty((M, N), dtype)
    _cpu_pointwise.gemm(strided, b, out, 2)
    close(out, want, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("hw,stride", [((9, 10), (1, 1)), ((12, 11), (2, 2)), ((3, 30), (1, 2))])
def test_dwc_large_planes_match_oracle(isa, dtype, hw, stride):
    """Planes past CS_DWC_SMALL_PLANE (64 pixels) are transposed a channel at a time: y, gx and gw
    on such planes (input, output or both), 21 channels (a partial second block)."""
    rng = np.random.default_rng(hw[0])
    x = rng.standard_normal((2, 21, *hw)).astype(dtype)
    w = rng.standard_normal((21, 1, 3, 3)).astype(dtype)
    b = rng.standard_normal(21).astype(dtype)
    kw = dict(stride=stride, pads=(1, 1, 1, 1), groups=21)
    y = naive.conv2d(x, w, b, **kw)
    gy = rng.standard_normal(y.shape).astype(dtype)
    got_y, gx, gw = np.empty(y.shape, dtype), np.empty_like(x), np.empty_like(w)
    cconv.simd_dwc_forward(x, w, b, stride, (1, 1, 1, 1), (1, 1), got_y)
    cconv.simd_dwc_backward_input(gy, w, stride, (1, 1, 1, 1), (1, 1), gx)
    cconv.simd_dwc_wgrad(x, gy, stride, (1, 1, 1, 1), (1, 1), gw)
    close(got_y, y, dtype)
    want_gx, want_gw, _ = naive.conv2d_backward(x, w, gy, **kw)
    close(gx, want_gx, dtype)
    close(gw, want_gw, dtype)
