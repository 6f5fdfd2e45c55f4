"""conv2d forward/backward on every CPU backend against the loop oracles of ``tests/naive.py``."""

import naive
import numpy as np
import pytest
from conftest import CPU_BACKENDS
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import corenet
from corenet import config, geometry
from corenet.functional.conv import conv2d, conv2d_backward, conv_output_shape
from corenet.kernels import _cpu_conv, _cpu_workspace

# the backend fixture is function-scoped but constant across examples, so sharing it is safe
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
RTOL = {np.float64: 1e-10, np.float32: 1e-4}


def assert_close(actual, expected, dtype):
    rtol = RTOL[dtype]
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def force_path(monkeypatch, path):
    """Send every convolution through one code path ("gemm" and "direct" accept any shape)."""
    if path != "auto":
        monkeypatch.setattr(_cpu_conv, "choose_path", lambda *args: path)


@st.composite
def conv_cases(draw, max_hw=6, max_c=3):
    """Shapes and arguments of a valid convolution: groups (incl. depthwise), strides and dilations
    per axis, every padding form, with or without bias."""
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = 1 if groups > 1 and draw(st.booleans()) else draw(st.integers(1, max_c))  # cg == 1: depthwise
    cog = draw(st.integers(1, max_c))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    hw = (draw(st.integers(1, max_hw)), draw(st.integers(1, max_hw)))
    form = draw(st.sampled_from(["int", "pair", "asym", "valid", "same"]))
    p = st.integers(0, 2)
    padding = {"int": draw(p), "pair": (draw(p), draw(p)), "asym": ((draw(p), draw(p)), (draw(p), draw(p))),
               "valid": "valid", "same": "same"}[form]
    pads = geometry.padding4("test", padding, k, stride, dilation, hw)
    assume(dilation[0] * (k[0] - 1) < hw[0] + pads[0] + pads[1])
    assume(dilation[1] * (k[1] - 1) < hw[1] + pads[2] + pads[3])
    x_shape = (draw(st.integers(1, 2)), cg * groups, *hw)
    w_shape = (cog * groups, cg, *k)
    return dict(x_shape=x_shape, w_shape=w_shape, stride=stride, padding=padding, pads=pads,
                dilation=dilation, groups=groups, bias=draw(st.booleans()), seed=draw(st.integers(0, 2**31)))


def make_inputs(case, dtype):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["x_shape"]).astype(dtype)
    w = rng.standard_normal(case["w_shape"]).astype(dtype)
    b = rng.standard_normal(case["w_shape"][0]).astype(dtype) if case["bias"] else None
    return x, w, b


def run(case, x, w, b, gy=None):
    kw = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"], groups=case["groups"])
    y, state = conv2d(x, w, b, return_state=True, **kw)
    grads = conv2d_backward(gy, state) if gy is not None else None
    return y, grads


def oracle(case, x, w, b, gy):
    kw = dict(stride=case["stride"], pads=case["pads"], dilation=case["dilation"], groups=case["groups"])
    return naive.conv2d(x, w, b, **kw), naive.conv2d_backward(x, w, gy, **kw)


@pytest.mark.parametrize("dtype,path", [(np.float64, "auto"), (np.float64, "gemm"), (np.float64, "direct"),
                                        (np.float32, "auto")])
@fixture_ok
@given(case=conv_cases())
def test_forward_and_backward_match_oracle(backend, monkeypatch, dtype, path, case):
    force_path(monkeypatch, path)
    x, w, b = make_inputs(case, dtype)
    expected_shape = conv_output_shape(x.shape, w.shape, case["stride"], case["padding"], case["dilation"],
                                       case["groups"])
    gy = np.random.default_rng(case["seed"] + 1).standard_normal(expected_shape).astype(dtype)
    y, (gx, gw, gb) = run(case, x, w, b, gy)
    y_ref, (gx_ref, gw_ref, gb_ref) = oracle(case, x, w, b, gy)
    assert y.shape == expected_shape == y_ref.shape
    assert y.dtype == gx.dtype == gw.dtype == dtype
    assert_close(y, y_ref, dtype)
    assert_close(gx, gx_ref, dtype)
    assert_close(gw, gw_ref, dtype)
    if b is None:
        assert gb is None
    else:
        assert gb.dtype == dtype
        assert_close(gb, gb_ref, dtype)


@pytest.mark.parametrize("path", ["auto", "gemm", "direct"])
@settings(fixture_ok, max_examples=10)
@given(case=conv_cases(max_hw=4, max_c=2))
def test_backward_matches_finite_differences(backend, monkeypatch, path, case):
    """Gradients of L = sum(y * r) against float64 central differences of the forward pass."""
    force_path(monkeypatch, path)
    x, w, b = make_inputs(case, np.float64)
    r = np.random.default_rng(case["seed"] + 2).standard_normal(run(case, x, w, b)[0].shape)
    gx, gw, gb = run(case, x, w, b, r)[1]

    def numeric(a):
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            keep = a[idx]
            a[idx] = keep + 1e-6
            up = np.sum(run(case, x, w, b)[0] * r)
            a[idx] = keep - 1e-6
            down = np.sum(run(case, x, w, b)[0] * r)
            a[idx] = keep
            g[idx] = (up - down) / 2e-6
        return g

    for analytic, a in [(gx, x), (gw, w)] + ([(gb, b)] if b is not None else []):
        np.testing.assert_allclose(analytic, numeric(a), rtol=1e-6, atol=1e-6)


@given(case=conv_cases(max_hw=40, max_c=4))
def test_output_shape_follows_the_formulas(case):
    (N, _, H, W), (C_out, _, kh, kw) = case["x_shape"], case["w_shape"]
    (sh, sw), (dh, dw), (t, bo, l, r) = case["stride"], case["dilation"], case["pads"]
    shape = conv_output_shape(case["x_shape"], case["w_shape"], case["stride"], case["padding"],
                              case["dilation"], case["groups"])
    assert shape == (N, C_out, (H + t + bo - dh * (kh - 1) - 1) // sh + 1, (W + l + r - dw * (kw - 1) - 1) // sw + 1)
    if case["padding"] == "same":  # TensorFlow's rule at every stride: ceil(H / stride)
        assert shape[2:] == (-(-H // sh), -(-W // sw))
        assert t <= bo <= t + 1 and l <= r <= l + 1


@pytest.mark.parametrize("c_in,c_out,groups,k,stride,padding",
                         [(4, 6, 1, 3, 1, 1), (4, 6, 2, 3, 2, "same"), (6, 6, 6, 3, 1, 1), (5, 3, 1, 1, 1, 0)])
def test_one_and_two_threads_agree(backend, c_in, c_out, groups, k, stride, padding):
    """im2col+GEMM, grouped, depthwise (direct) and 1x1 paths give the same result on 1 and 2 threads."""
    if config._max_threads() < 2:
        pytest.skip("Numba was started with a single thread (NUMBA_NUM_THREADS=1)")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, c_in, 9, 8))
    w = rng.standard_normal((c_out, c_in // groups, k, k))
    b = rng.standard_normal(c_out)
    gy = rng.standard_normal(conv_output_shape(x.shape, w.shape, stride, padding, groups=groups))
    previous = corenet.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            corenet.set_num_threads(n)
            y, state = conv2d(x, w, b, stride=stride, padding=padding, groups=groups, return_state=True)
            results.append((y, *conv2d_backward(gy, state)))
    finally:
        corenet.set_num_threads(previous)
    for one, two in zip(*results):
        np.testing.assert_allclose(one, two, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("limit", [1, 3 * 4 * 9 * 8 * 8])  # one image per chunk; uneven chunks
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_workspace_gives_the_same_result(backend, dtype, limit):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 4, 9, 8)).astype(dtype)
    w = rng.standard_normal((6, 2, 3, 3)).astype(dtype)
    gy = rng.standard_normal((5, 6, 9, 8)).astype(dtype)
    outs = []
    previous = config.get_workspace_bytes()
    try:
        for nbytes in (previous, limit):
            config.set_workspace_bytes(nbytes)
            y, state = conv2d(x, w, padding=1, groups=2, return_state=True)
            outs.append((y, *conv2d_backward(gy, state)[:2]))
    finally:
        config.set_workspace_bytes(previous)
    assert _cpu_workspace.chunk_images(5, 4 * 9 * 9 * 8 * 8) == 5
    for full, chunked in zip(*outs):
        assert_close(chunked, full, dtype)


@pytest.mark.parametrize("path", ["auto", "gemm", "direct"])
def test_padding_wider_than_the_kernel(backend, monkeypatch, rng, path):
    """Padding so wide that some kernel taps see only padding along a whole output row/column."""
    force_path(monkeypatch, path)
    case = dict(stride=(1, 1), padding=((4, 0), (4, 0)), pads=(4, 0, 4, 0), dilation=(1, 1), groups=1)
    x, w, b = rng.standard_normal((2, 2, 1, 1)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    gy = rng.standard_normal((2, 3, 3, 3))
    y, (gx, gw, gb) = run(case, x, w, b, gy)
    y_ref, (gx_ref, gw_ref, gb_ref) = oracle(case, x, w, b, gy)
    for ours, ref in [(y, y_ref), (gx, gx_ref), (gw, gw_ref), (gb, gb_ref)]:
        assert_close(ours, ref, np.float64)


@pytest.mark.parametrize("path", ["auto", "gemm", "direct"])
@pytest.mark.parametrize("k", [1, 3])
def test_empty_batch(backend, monkeypatch, rng, path, k):
    force_path(monkeypatch, path)
    x, w, b = np.zeros((0, 4, 5, 5)), rng.standard_normal((6, 2, k, k)), rng.standard_normal(6)
    y, state = conv2d(x, w, b, groups=2, return_state=True)
    gx, gw, gb = conv2d_backward(y, state)
    assert y.shape == (0, 6, 6 - k, 6 - k) and gx.shape == x.shape
    np.testing.assert_array_equal(gw, np.zeros_like(w))
    np.testing.assert_array_equal(gb, np.zeros(6))


def test_gradients_only_when_asked(backend, rng):
    x, w, b = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    y, state = conv2d(x, w, b, return_state=True)
    gy = np.ones_like(y)
    full = conv2d_backward(gy, state)
    assert conv2d_backward(gy, state, need_gw=False, need_gb=False)[1:] == (None, None)
    only_gw = conv2d_backward(gy, state, need_gx=False, need_gb=False)
    assert only_gw[0] is None and only_gw[2] is None
    np.testing.assert_array_equal(only_gw[1], full[1])
    assert conv2d_backward(gy, conv2d(x, w, return_state=True)[1])[2] is None  # no bias, no gb


def test_non_contiguous_input(backend, rng):
    x = rng.standard_normal((2, 3, 8, 10))[:, :, ::2, 1:]
    w = rng.standard_normal((2, 3, 2, 2))
    np.testing.assert_allclose(conv2d(x, w), naive.conv2d(x, w), rtol=1e-10)


def test_warmup_runs_every_path(backend):
    from corenet.functional import conv

    for dtype in (np.float32, np.float64):
        conv._warmup(np.dtype(dtype))


# ---------------------------------------------------------------- the lecture's worked examples


def test_1d_full_convolution(backend):
    """[1 2 3 4 5] * [3 2 1] (full) = cross-correlation with the flipped kernel and padding 2."""
    x = np.array([1.0, 2, 3, 4, 5]).reshape(1, 1, 1, 5)
    k = np.array([3.0, 2, 1])[::-1].reshape(1, 1, 1, 3)
    np.testing.assert_array_equal(conv2d(x, k, padding=((0, 0), (2, 2))).ravel(), [3, 8, 14, 20, 26, 14, 5])


IMAGE_6X6 = np.array([[int(c) for c in row] for row in "100001 010010 001100 100010 010010 001010".split()],
                     dtype=np.float64).reshape(1, 1, 6, 6)
FILTER_1 = np.array([[1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=np.float64).reshape(1, 1, 3, 3)
FILTER_2 = np.array([[-1, 1, -1]] * 3, dtype=np.float64).reshape(1, 1, 3, 3)


@pytest.mark.parametrize("w,stride,expected", [
    (FILTER_1, 1, [[3, -1, -3, -1], [-3, 1, 0, -3], [-3, -3, 0, 1], [3, -2, -2, -1]]),
    (FILTER_1, 2, [[3, -3], [-3, 0]]),
    (FILTER_2, 1, [[-1, -1, -1, -1], [-1, -1, -2, 1], [-1, -1, -2, 1], [-1, 0, -4, 3]]),
])
def test_6x6_image_filters(backend, w, stride, expected):
    np.testing.assert_array_equal(conv2d(IMAGE_6X6, w, stride=stride)[0, 0], expected)


def test_rgb_example_with_bias(backend, rng):
    x = rng.integers(0, 256, (1, 3, 5, 5)).astype(np.float64)  # only the top-left 2x2 reach output (0, 0)
    x[0, :, :2, :2] = [[[156, 155], [153, 154]], [[167, 166], [164, 165]], [[163, 162], [160, 161]]]
    w = np.array([[[-1, -1, 1], [0, 1, -1], [0, 1, 1]],
                  [[1, 0, 0], [1, -1, -1], [1, 0, -1]],
                  [[0, 1, 1], [0, 1, 0], [1, -1, 1]]], dtype=np.float64).reshape(1, 3, 3, 3)
    assert conv2d(x, w, np.ones(1), padding=1)[0, 0, 0, 0] == -25
    per_channel = conv2d(x, w.reshape(3, 1, 3, 3), padding=1, groups=3)[0, :, 0, 0]  # depthwise: one sum each
    np.testing.assert_array_equal(per_channel, [308, -498, 164])


def test_edge_detector_example(backend):
    x = np.array([[0, 0, 0, 1, 1], [0, 0, 0, 1, 1], [0, 0, 0, 1, 1], [0, 0, 1, 1, 1]], dtype=np.float32)
    k = np.array([[-1, 1], [-1, 1]], dtype=np.float32)
    y = conv2d(x.reshape(1, 1, 4, 5), k.reshape(1, 1, 2, 2))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y[0, 0], [[0, 0, 2, 0], [0, 0, 2, 0], [0, 1, 1, 0]])


@pytest.mark.parametrize("stride,size", [(1, 5), (2, 3), (3, 2)])
def test_output_size_7x7_3x3(stride, size):
    assert conv_output_shape((1, 1, 7, 7), (1, 1, 3, 3), stride=stride) == (1, 1, size, size)


def test_32x32x3_ten_5x5_filters_pad_2(backend, rng):
    x, w, b = rng.standard_normal((1, 3, 32, 32)), rng.standard_normal((10, 3, 5, 5)), np.zeros(10)
    assert conv2d(x, w, b, padding=2).shape == (1, 10, 32, 32)
    assert w.size + b.size == 760


# ---------------------------------------------------------------- bad input


def _bad(x_shape=(2, 3, 8, 8), w_shape=(5, 3, 3, 3), dtype=np.float64, **kw):
    return np.zeros(x_shape, dtype), np.zeros(w_shape, dtype), kw


@pytest.mark.parametrize("x,w,kw,error,match", [
    (*_bad(x_shape=(3, 8, 8)), ValueError, r"x must be 4-D.*x.shape=\(3, 8, 8\)"),
    (*_bad(w_shape=(5, 3, 3)), ValueError, r"w must be 4-D.*w.shape=\(5, 3, 3\)"),
    (*_bad(w_shape=(5, 4, 3, 3)), ValueError,
     r"input has 3 channels but weight expects 4 \(groups=1\). Received: x.shape=\(2, 3, 8, 8\), w.shape="),
    (*_bad(x_shape=(2, 4, 8, 8), w_shape=(6, 2, 3, 3), groups=3), ValueError, r"groups=3 must divide.*x.shape"),
    (*_bad(x_shape=(2, 4, 8, 8), w_shape=(5, 2, 3, 3), groups=2), ValueError, r"groups=2 must divide.*w.shape"),
    (*_bad(x_shape=(2, 3, 2, 8)), ValueError, r"larger than the padded input.*x.shape=\(2, 3, 2, 8\)"),
    (*_bad(x_shape=(2, 3, 5, 5), dilation=3), ValueError, r"larger than the padded input"),
    (*_bad(stride=0), ValueError, r"stride must be >= 1"),
    (*_bad(stride=(1, -2)), ValueError, r"stride must be >= 1"),
    (*_bad(dilation=0), ValueError, r"dilation must be >= 1"),
    (*_bad(groups=0), ValueError, r"groups must be a positive int"),
    (*_bad(padding=-1), ValueError, r"padding must be >= 0"),
    (*_bad(padding="full"), ValueError, r"padding must be 'valid', 'same'"),
    (*_bad(stride=1.5), TypeError, r"stride must be an int"),
    (*_bad(dtype=np.int64), TypeError, r"float32 or float64.*x.shape=\(2, 3, 8, 8\)"),
    (np.zeros((2, 3, 8, 8), np.float32), np.zeros((5, 3, 3, 3)), {}, TypeError,
     r"one dtype.*x.dtype=float32, w.dtype=float64"),
    (*_bad(b=np.zeros(4)), ValueError, r"bias must have shape \(5,\).*b.shape=\(4,\).*x.shape"),
    (*_bad(b=np.zeros(5, np.float32)), TypeError, r"one dtype"),
    ([[1.0]], np.zeros((1, 1, 1, 1)), {}, TypeError, r"x must be a numpy array"),
])
def test_bad_input(backend, x, w, kw, error, match):
    with pytest.raises(error, match=match):
        conv2d(x, w, **kw)


def test_bad_gradient(backend):
    y, state = conv2d(np.zeros((2, 3, 8, 8)), np.zeros((5, 3, 3, 3)), return_state=True)
    with pytest.raises(ValueError, match=r"forward output's shape \(2, 5, 6, 6\), received gy.shape=\(2, 5, 6\)"):
        conv2d_backward(np.zeros((2, 5, 6)), state)
    with pytest.raises(TypeError, match="one dtype"):
        conv2d_backward(y.astype(np.float32), state)
    with pytest.raises(TypeError, match="return_state=True"):
        conv2d_backward(y, None)


# ---------------------------------------------------------------- PyTorch, when it is installed


@pytest.mark.parametrize("groups,stride,padding,dilation", [(1, 1, 1, 1), (2, (2, 1), 2, (1, 2)), (4, 2, 0, 1)])
def test_matches_torch(backend, rng, groups, stride, padding, dilation):
    torch = pytest.importorskip("torch")
    x, w, b = rng.standard_normal((2, 4, 9, 7)), rng.standard_normal((8, 4 // groups, 3, 3)), rng.standard_normal(8)
    y, state = conv2d(x, w, b, stride, padding, dilation, groups, return_state=True)
    gy = rng.standard_normal(y.shape)
    gx, gw, gb = conv2d_backward(gy, state)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride, padding, dilation, groups)
    ty.backward(torch.tensor(gy))
    for ours, theirs in [(y, ty), (gx, tx.grad), (gw, tw.grad), (gb, tb.grad)]:
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", CPU_BACKENDS)
@settings(deadline=None)
@given(data=st.data())
def test_im2col_primitive_matches_oracle(name, data):
    """The column matrix itself, on every CPU backend, with the stride-1 'same'-width case (one flat
    copy per plane in the Numba kernel, with wrapped row edges zeroed) drawn half of the time."""
    from corenet.kernels import require

    N, C = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    H, W = data.draw(st.integers(1, 7)), data.draw(st.integers(1, 7))
    kh, kw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    dh, dw = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    same = data.draw(st.booleans())
    sh, sw = (1, 1) if same else (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    span_h, span_w = dh * (kh - 1), dw * (kw - 1)
    pt, pl = data.draw(st.integers(0, span_h + 1)), data.draw(st.integers(0, span_w + 1))
    if same:  # bottom/right padding making the output exactly as wide (and tall) as the input
        pb, pr = span_h - pt, span_w - pl
        assume(pb >= 0 and pr >= 0)
    else:
        pb, pr = data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))
    ho, wo = (H + pt + pb - span_h - 1) // sh + 1, (W + pl + pr - span_w - 1) // sw + 1
    assume(ho >= 1 and wo >= 1)
    x = np.random.default_rng(0).standard_normal((N, C, H, W)).astype(np.float32)
    col = np.full((C * kh * kw, N * ho * wo), np.nan, np.float32)  # every entry must be written
    require(name).conv.im2col(x, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, col)
    np.testing.assert_array_equal(col, naive.im2col(x, kh, kw, (sh, sw), (pt, pl), (dh, dw), (ho, wo)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("hw", [(1, 1), (1, 5), (4, 1), (2, 2), (5, 7), (9, 16)])
def test_depthwise_3x3_same_matches_oracle_on_tiny_planes(backend, dtype, hw):
    """Depthwise 3x3, stride 1, padding 1 (MobileNet's block), planes down to one pixel, where
    every tap but the centre overhangs an edge: forward and both gradients against the oracle."""
    rng = np.random.default_rng(hw[0] * 10 + hw[1])
    x = rng.standard_normal((2, 3) + hw).astype(dtype)
    w = rng.standard_normal((3, 1, 3, 3)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    y, state = conv2d(x, w, b, padding=1, groups=3, return_state=True)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx, gw, gb = conv2d_backward(gy, state)
    assert y.dtype == gx.dtype == gw.dtype == dtype
    assert_close(y, naive.conv2d(x, w, b, pads=(1, 1, 1, 1), groups=3), dtype)
    ex, ew = naive.conv2d_backward(x, w, gy, pads=(1, 1, 1, 1), groups=3)[:2]
    assert_close(gx, ex, dtype)
    assert_close(gw, ew, dtype)
