"""The direct SIMD convolution (``corenet/_ext/simd_conv.h``) on every instruction set this CPU has,
against the loop oracles of ``tests/naive.py``, float64 finite differences, PyTorch on real layer
shapes, 1 against 2 threads, and with a guard region after every output it writes."""

import naive
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import corenet
from corenet import config, geometry
from corenet.functional.conv import conv2d, conv2d_backward
from corenet.kernels import _cpu_conv

simd = pytest.importorskip("corenet._ext.simd_conv", reason="the compiled extension is not built here")
from corenet.kernels.cython_cpu import conv as cconv  # noqa: E402  (needs the extension too)

ISAS = simd.supported_isas()
TOL = {np.float64: 1e-10, np.float32: 1e-4}


@pytest.fixture(params=ISAS)
def isa(request):
    """Run the test once per instruction set of this CPU, restoring the default afterwards."""
    previous = simd.get_isa()
    simd.set_isa(request.param)
    try:
        yield request.param
    finally:
        simd.set_isa(previous)


def close(actual, expected, dtype):
    tol = TOL[dtype]
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * max(1.0, float(np.abs(expected).max(initial=0))))


@st.composite
def cases(draw):
    """Ungrouped convolutions whose tiles end part-way: output channels around the block sizes (4, 8),
    output rows around the vector lengths (4 to 16 lanes), strides and dilations per axis, uneven pads;
    16 and 32 output channels on small planes take the channel-vectorised tile (forward_ocvec)."""
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    hw = (draw(st.integers(1, 9)), draw(st.integers(1, 21)))
    p = st.integers(0, 3)
    pads = (draw(p), draw(p), draw(p), draw(p))
    assume(dilation[0] * (k[0] - 1) < hw[0] + pads[0] + pads[1])
    assume(dilation[1] * (k[1] - 1) < hw[1] + pads[2] + pads[3])
    return dict(x_shape=(draw(st.integers(1, 5)), draw(st.integers(1, 3)), *hw),
                w_shape=(draw(st.sampled_from([1, 3, 4, 5, 8, 9, 16, 17, 32])), 0, *k),
                stride=stride, pads=pads, dilation=dilation, seed=draw(st.integers(0, 2**31)))


def forward(x, w, b, stride, pads, dilation, threads=None):
    ho = geometry.out_size(x.shape[2], w.shape[2], stride[0], pads[0], pads[1], dilation[0])
    wo = geometry.out_size(x.shape[3], w.shape[3], stride[1], pads[2], pads[3], dilation[1])
    y = np.empty((x.shape[0], w.shape[0], ho, wo), x.dtype)
    cconv.simd_forward(x, w, b, stride, pads, dilation, y)
    return y


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_forward_and_weight_gradient_match_oracle(isa, dtype, case):
    rng = np.random.default_rng(case["seed"])
    N, C, H, W = case["x_shape"]
    OC, _, kh, kw = case["w_shape"]
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((OC, C, kh, kw)).astype(dtype)
    b = rng.standard_normal(OC).astype(dtype)
    kw_ = dict(stride=case["stride"], pads=case["pads"], dilation=case["dilation"])
    y = forward(x, w, b, case["stride"], case["pads"], case["dilation"])
    assert y.dtype == dtype
    close(y, naive.conv2d(x, w, b, **kw_), dtype)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gw = np.empty_like(w)
    cconv.simd_wgrad(x, gy, case["stride"], case["pads"], case["dilation"], gw)
    close(gw, naive.conv2d_backward(x, w, gy, **kw_)[1], dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_conv2d_on_the_simd_path_matches_oracle(isa, dtype, case, monkeypatch):
    """Forward and all three gradients through corenet.functional, with every layer on the simd path
    (the stride-1 input gradient is a simd forward of gy with the flipped, swapped kernel)."""
    rng = np.random.default_rng(case["seed"])
    N, C, H, W = case["x_shape"]
    OC, _, kh, kw = case["w_shape"]
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((OC, C, kh, kw)).astype(dtype)
    b = rng.standard_normal(OC).astype(dtype)
    pads = case["pads"]
    padding = ((pads[0], pads[1]), (pads[2], pads[3]))
    monkeypatch.setattr(_cpu_conv, "choose_path", lambda *args: "simd")
    previous = corenet.get_backend()
    corenet.set_backend("cython")
    try:
        y, state = conv2d(x, w, b, stride=case["stride"], padding=padding, dilation=case["dilation"],
                          return_state=True)
        gy = rng.standard_normal(y.shape).astype(dtype)
        gx, gw, gb = conv2d_backward(gy, state)
    finally:
        corenet.set_backend(previous)
    kw_ = dict(stride=case["stride"], pads=pads, dilation=case["dilation"])
    close(y, naive.conv2d(x, w, b, **kw_), dtype)
    for got, want in zip((gx, gw, gb), naive.conv2d_backward(x, w, gy, **kw_)):
        assert got.dtype == dtype
        close(got, want, dtype)


def test_gradients_match_finite_differences(isa):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 6, 7))
    w = rng.standard_normal((5, 3, 3, 2))
    gy = rng.standard_normal((2, 5, 3, 6))
    args = dict(stride=(2, 1), pads=(1, 1, 0, 1), dilation=(1, 2))

    def loss():
        return float((forward(x, w, None, **args) * gy).sum())

    gw = np.empty_like(w)
    cconv.simd_wgrad(x, gy, args["stride"], args["pads"], args["dilation"], gw)
    eps = 1e-6
    for idx in [(0, 0, 0, 0), (4, 2, 2, 1), (2, 1, 1, 0)]:
        old = w[idx]
        w[idx] = old + eps
        up = loss()
        w[idx] = old - eps
        down = loss()
        w[idx] = old
        assert abs((up - down) / (2 * eps) - gw[idx]) < 1e-6


@pytest.mark.parametrize("shape", [
    (64, 16, 32, 32, 16, 3, 1, 1),  # ResNet-20 stage 1
    (16, 64, 8, 8, 64, 3, 1, 1),    # ResNet-20 stage 3
    (8, 32, 16, 16, 64, 3, 2, 1),   # a strided stage transition
    (8, 1, 28, 28, 6, 5, 1, 2),     # LeNet-5 C1
    (8, 6, 14, 14, 16, 5, 1, 0),    # LeNet-5 C3
])
def test_layer_shapes_match_torch(isa, shape):
    torch = pytest.importorskip("torch")
    N, C, H, W, OC, k, s, p = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((OC, C, k, k)).astype(np.float32)
    gy_shape = (N, OC, (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1)
    gy = rng.standard_normal(gy_shape).astype(np.float32)
    tx, tw = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    ty = torch.nn.functional.conv2d(tx, tw, stride=s, padding=p)
    ty.backward(torch.from_numpy(gy))
    y = forward(x, w, None, (s, s), (p, p, p, p), (1, 1))
    gw = np.empty_like(w)
    cconv.simd_wgrad(x, gy, (s, s), (p, p, p, p), (1, 1), gw)
    close(y, ty.detach().numpy(), np.float32)
    close(gw, tw.grad.numpy(), np.float32)


@pytest.mark.parametrize("n_images", [1, 3, 8])  # below and above the per-image split of 2 x threads
def test_one_and_two_threads_agree_bitwise(isa, n_images):
    """Every task owns its outputs and the batch segments of the weight gradient depend on the shapes
    only, so 1 and 2 threads, called repeatedly, give identical bits."""
    if config._max_threads() < 2:
        pytest.skip("only one thread can run here (NUMBA_NUM_THREADS=1)")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n_images, 5, 11, 19)).astype(np.float32)
    w = rng.standard_normal((9, 5, 3, 3)).astype(np.float32)
    b = rng.standard_normal(9).astype(np.float32)
    gy = rng.standard_normal((n_images, 9, 11, 19)).astype(np.float32)
    previous = corenet.get_num_threads(), config.get_parallel_threshold()
    config.set_parallel_threshold(0)  # small inputs: 2 threads all the same
    results = {}
    try:
        for n in (1, 2, 2, 2, 1):
            corenet.set_num_threads(n)
            y = forward(x, w, b, (1, 1), (1, 1, 1, 1), (1, 1))
            gw = np.empty_like(w)
            cconv.simd_wgrad(x, gy, (1, 1), (1, 1, 1, 1), (1, 1), gw)
            results.setdefault("y", []).append(y)
            results.setdefault("gw", []).append(gw)
    finally:
        corenet.set_num_threads(previous[0])
        config.set_parallel_threshold(previous[1])
    for outs in results.values():
        for other in outs[1:]:
            np.testing.assert_array_equal(other, outs[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outputs_leave_a_guard_region_untouched(isa, dtype):
    """The kernels write only their outputs: a sentinel after y and after gw survives."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 7, 13)).astype(dtype)
    w = rng.standard_normal((6, 4, 3, 3)).astype(dtype)
    gy = rng.standard_normal((3, 6, 7, 13)).astype(dtype)
    pads, guard = (1, 1, 1, 1), 97
    ybuf = np.full(3 * 6 * 7 * 13 + guard, 12345.0, dtype)
    y = ybuf[:-guard].reshape(3, 6, 7, 13)
    nt = corenet.get_num_threads()
    ws = np.empty(simd.forward_workspace(x.shape, w.shape, 1, 1, 1, 1, 7, 13, x.itemsize, nt), np.uint8)
    simd.forward(x, w, None, 1, 1, 1, 1, 1, 1, y, ws, nt)
    assert (ybuf[-guard:] == 12345.0).all()
    close(y, naive.conv2d(x, w, None, pads=pads), dtype)
    gwbuf = np.full(w.size + guard, -777.0, dtype)
    gw = gwbuf[:-guard].reshape(w.shape)
    ws = np.empty(simd.wgrad_workspace(x.shape, w.shape, 1, 1, 1, 1, 7, 13, x.itemsize, nt), np.uint8)
    simd.wgrad(x, gy, 1, 1, 1, 1, 1, 1, gw, ws, nt)
    assert (gwbuf[-guard:] == -777.0).all()
    close(gw, naive.conv2d_backward(x, w, gy, pads=pads)[1], dtype)


def test_short_workspace_is_refused():
    x = np.zeros((2, 3, 8, 8), np.float32)
    w = np.zeros((4, 3, 3, 3), np.float32)
    y = np.zeros((2, 4, 6, 6), np.float32)
    with pytest.raises(ValueError, match="workspace"):
        simd.forward(x, w, None, 1, 1, 0, 0, 1, 1, y, np.empty(16, np.uint8), 1)


def test_unsupported_isa_is_refused():
    with pytest.raises(ValueError, match="not supported"):
        simd.set_isa("neon")
    assert simd.get_isa() in ISAS


# ------------------------------------------------------------------ depthwise
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_depthwise_matches_oracle(isa, dtype, case, monkeypatch):
    """Depthwise forward and all gradients through corenet.functional on the simd_dw path (stride 1:
    gx by the flipped kernel; strided: the direct kernel), against the loop oracle. Small maps would
    take simd_dwc (tests/test_kernels_simd_dwc.py), so the path is forced."""
    rng = np.random.default_rng(case["seed"])
    N, C, H, W = case["x_shape"]
    kh, kw = case["w_shape"][2:]
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((C, 1, kh, kw)).astype(dtype)
    b = rng.standard_normal(C).astype(dtype)
    pads = case["pads"]
    kw_ = dict(stride=case["stride"], pads=pads, dilation=case["dilation"], groups=C)
    previous = corenet.get_backend()
    corenet.set_backend("cython")
    try:
        if C > 1:
            assert _cpu_conv.choose_path(x.shape, w.shape, case["stride"], pads, C, cconv) in ("simd_dw", "simd_dwc")
        monkeypatch.setattr(_cpu_conv, "choose_path", lambda *args: "simd_dw")
        y, state = conv2d(x, w, b, stride=case["stride"], padding=((pads[0], pads[1]), (pads[2], pads[3])),
                          dilation=case["dilation"], groups=C, return_state=True)
        gy = rng.standard_normal(y.shape).astype(dtype)
        grads = conv2d_backward(gy, state)
    finally:
        corenet.set_backend(previous)
    close(y, naive.conv2d(x, w, b, **kw_), dtype)
    for got, want in zip(grads, naive.conv2d_backward(x, w, gy, **kw_)):
        assert got.dtype == dtype
        close(got, want, dtype)


def test_depthwise_outputs_leave_a_guard_region_untouched(isa):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 5, 9, 21)).astype(np.float32)
    w = rng.standard_normal((5, 1, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((3, 5, 9, 21)).astype(np.float32)
    nt = corenet.get_num_threads()
    ybuf = np.full(x.size + 50, 3.5, np.float32)
    y = ybuf[:-50].reshape(x.shape)
    ws = np.empty(simd.dw_forward_workspace(x.shape, w.shape, 1, 1, 1, 1, 9, 21, 4, nt), np.uint8)
    simd.dw_forward(x, w, None, 1, 1, 1, 1, 1, 1, y, ws, nt)
    assert (ybuf[-50:] == 3.5).all()
    close(y, naive.conv2d(x, w, None, pads=(1, 1, 1, 1), groups=5), np.float32)
    gwbuf = np.full(w.size + 50, 3.5, np.float32)
    gw = gwbuf[:-50].reshape(w.shape)
    ws = np.empty(simd.dw_wgrad_workspace(x.shape, w.shape, 1, 1, 1, 1, 9, 21, 4, nt), np.uint8)
    simd.dw_wgrad(x, gy, 1, 1, 1, 1, 1, 1, gw, ws, nt)
    assert (gwbuf[-50:] == 3.5).all()
    close(gw, naive.conv2d_backward(x, w, gy, pads=(1, 1, 1, 1), groups=5)[1], np.float32)


@pytest.mark.parametrize("n_images", [1, 5])  # the small-batch split and the per-image one
def test_channel_vectorised_tile_threads_and_guard(isa, n_images):
    """A 7x7 plane with 32 output channels takes forward_ocvec and wgrad_ocvec on every instruction
    set: against the oracle, 1 vs 2 forced threads bitwise, and nothing written past y or gw."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((n_images, 5, 7, 7)).astype(np.float32)
    w = rng.standard_normal((32, 5, 3, 3)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    gy = rng.standard_normal((n_images, 32, 7, 7)).astype(np.float32)
    guard = 41
    previous = corenet.get_num_threads(), config.get_parallel_threshold()
    config.set_parallel_threshold(0)
    outs, grads = [], []
    try:
        for nt in (1, 2, 2, 2):
            corenet.set_num_threads(nt)
            ybuf = np.full(n_images * 32 * 49 + guard, 77.0, np.float32)
            y = ybuf[:-guard].reshape(n_images, 32, 7, 7)
            cconv.simd_forward(x, w, b, (1, 1), (1, 1, 1, 1), (1, 1), y)
            assert (ybuf[-guard:] == 77.0).all()
            outs.append(y.copy())
            gbuf = np.full(w.size + guard, -5.0, np.float32)
            gw = gbuf[:-guard].reshape(w.shape)
            cconv.simd_wgrad(x, gy, (1, 1), (1, 1, 1, 1), (1, 1), gw)
            assert (gbuf[-guard:] == -5.0).all()
            grads.append(gw.copy())
    finally:
        corenet.set_num_threads(previous[0])
        config.set_parallel_threshold(previous[1])
    close(outs[0], naive.conv2d(x, w, b, pads=(1, 1, 1, 1)), np.float32)
    close(grads[0], naive.conv2d_backward(x, w, gy, pads=(1, 1, 1, 1))[1], np.float32)
    for other in outs[1:]:
        np.testing.assert_array_equal(other, outs[0])
    for other in grads[1:]:
        np.testing.assert_array_equal(other, grads[0])
