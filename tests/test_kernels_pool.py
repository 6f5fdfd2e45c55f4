"""Pooling kernels against the plain-loop oracles of tests/naive.py, finite differences and PyTorch."""

import naive
import numpy as np
import pytest
from gradcheck import vjp_grad
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import corenet
from corenet import F

# the `backend` fixture only switches the backend, so sharing it across examples is safe
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

MODES = ("max", "min", "avg", "sum")
TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}


@st.composite
def pool_cases(draw, fd=False):
    """A pooling configuration and an input that fits it (tiny when ``fd``, for finite differences)."""
    kh, kw = draw(st.integers(1, 3 if fd else 4)), draw(st.integers(1, 3 if fd else 4))
    form = draw(st.sampled_from(["int", "pair", "nested", "valid", "same"]))
    if form == "same":
        dilation = (1, 1)  # with dilation the 'same' padding may exceed half the kernel
    else:
        dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    if form == "int":
        padding = draw(st.integers(0, min(kh, kw) // 2))
        pads = (padding,) * 4
    elif form == "pair":
        padding = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
        pads = (padding[0], padding[0], padding[1], padding[1])
    elif form == "nested":
        pads = tuple(draw(st.integers(0, k // 2)) for k in (kh, kh, kw, kw))
        padding = ((pads[0], pads[1]), (pads[2], pads[3]))
    elif form == "valid":
        padding, pads = "valid", (0, 0, 0, 0)
    else:
        padding, pads = "same", None  # known once H, W are drawn
    eff = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    lo = [1, 1] if pads is None else [max(1, eff[0] - pads[0] - pads[1]), max(1, eff[1] - pads[2] - pads[3])]
    span = 3 if fd else 6
    H, W = draw(st.integers(lo[0], lo[0] + span)), draw(st.integers(lo[1], lo[1] + span))
    if pads is None:
        s = stride or (kh, kw)
        pads = _same(H, kh, s[0]) + _same(W, kw, s[1])
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2 if fd else 3)), H, W)
    return dict(
        shape=shape, kernel=(kh, kw), stride=stride, padding=padding, pads=pads, dilation=dilation,
        mode=draw(st.sampled_from(MODES)), ceil_mode=draw(st.booleans()),
        count_include_pad=draw(st.booleans()),
        divisor_override=draw(st.one_of(st.none(), st.integers(1, 5))),
        seed=draw(st.integers(0, 2**16)),
    )


def _same(size, k, s):
    total = max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _input(case, dtype):
    """Distinct values (no ties: argmax is unique and finite differences never cross one)."""
    rng = np.random.default_rng(case["seed"])
    n = int(np.prod(case["shape"]))
    return (rng.permutation(n).reshape(case["shape"]) / n - 0.5).astype(dtype)


def _forward(x, case, **kw):
    kw["divisor_override"] = None if case["mode"] in ("max", "min") else case["divisor_override"]
    return F.pool2d(x, case["kernel"], case["stride"], case["padding"], case["mode"], case["dilation"],
                    case["ceil_mode"], case["count_include_pad"], **kw)


def _oracle_args(case):
    stride = case["stride"] or case["kernel"]
    div = None if case["mode"] in ("max", "min") else case["divisor_override"]
    return (case["kernel"], stride, case["pads"], case["dilation"], case["mode"], case["ceil_mode"],
            case["count_include_pad"], div)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@fixture_ok
@given(case=pool_cases())
def test_pool_matches_oracle(backend, dtype, case):
    x = _input(case, dtype)
    y, state = _forward(x, case, return_state=True)
    want, _ = naive.pool2d(x.astype(np.float64), *_oracle_args(case))
    ho = naive.pool_out_size(x.shape[2], case["kernel"][0], (case["stride"] or case["kernel"])[0],
                             case["pads"][0], case["pads"][1], case["dilation"][0], case["ceil_mode"])
    assert y.shape == want.shape and y.shape[2] == ho
    assert F.pool_output_shape(x.shape, case["kernel"], case["stride"], case["padding"], case["dilation"],
                               case["ceil_mode"]) == y.shape
    assert y.dtype == dtype
    np.testing.assert_allclose(y, want, **TOL[dtype])
    gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    gx = F.pool2d_backward(gy, state)
    assert gx.dtype == dtype and gx.shape == x.shape
    np.testing.assert_allclose(gx, naive.pool2d_backward(x.astype(np.float64), gy, *_oracle_args(case)),
                               **TOL[dtype])


@fixture_ok
@given(case=pool_cases(fd=True))
def test_pool_backward_finite_differences(backend, case):
    x = _input(case, np.float64)  # distinct values 1/n apart: a 1e-6 step never changes an argmax
    y, state = _forward(x, case, return_state=True)
    gy = np.random.default_rng(2).standard_normal(y.shape)
    y_finite = np.where(np.isfinite(y), 1.0, 0.0)  # windows of padding only give -inf and no gradient
    gy = gy * y_finite
    fd = vjp_grad(lambda v: np.nan_to_num(_forward(v, case), posinf=0, neginf=0), x, gy)
    np.testing.assert_allclose(F.pool2d_backward(gy, state), fd, rtol=1e-6, atol=1e-8)


@fixture_ok
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)),
       out=st.tuples(st.integers(1, 5), st.integers(1, 5)), dtype=st.sampled_from([np.float32, np.float64]))
def test_adaptive_avg_matches_oracle(backend, shape, out, dtype):
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(dtype)
    y, state = F.adaptive_avg_pool2d(x, out, return_state=True)
    assert y.shape == shape[:2] + out and y.dtype == dtype
    np.testing.assert_allclose(y, naive.adaptive_avg_pool2d(x.astype(np.float64), out), **TOL[dtype])
    gy = np.random.default_rng(3).standard_normal(y.shape).astype(dtype)
    gx = F.pool2d_backward(gy, state)
    np.testing.assert_allclose(gx, naive.adaptive_avg_pool2d_backward(shape, gy), **TOL[dtype])
    if dtype == np.float64 and np.prod(shape) <= 60:
        fd = vjp_grad(lambda v: F.adaptive_avg_pool2d(v, out), x, gy)
        np.testing.assert_allclose(gx, fd, rtol=1e-6, atol=1e-8)


def test_global_pools(backend, rng):
    x = rng.standard_normal((2, 3, 5, 4))
    y, s = F.global_avg_pool2d(x, return_state=True)
    np.testing.assert_allclose(y, x.mean(axis=(2, 3), keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(F.pool2d_backward(np.ones_like(y), s), np.full(x.shape, 1 / 20), rtol=1e-12)
    y, s = F.global_max_pool2d(x, return_state=True)
    np.testing.assert_array_equal(y, x.max(axis=(2, 3), keepdims=True))
    gx = F.pool2d_backward(np.ones_like(y), s)
    np.testing.assert_array_equal(gx, (x == y).astype(float))
    np.testing.assert_allclose(F.adaptive_avg_pool2d(x, (1, None)), x.mean(axis=2, keepdims=True), rtol=1e-12)


@pytest.mark.parametrize("mode", ["max", "min"])
def test_ties_route_to_first_element(backend, mode):
    x = np.zeros((1, 2, 5, 5), np.float32)
    x[0, 1] = np.array([[1, 3, 3, 0, 3], [3, 3, 1, 3, 3], [0, 0, 0, 0, 0], [2, 2, 2, 2, 2], [2, 2, 2, 2, 2]])
    if mode == "min":
        x = -x
    y, s = F.pool2d(x, 3, 2, padding=1, mode=mode, return_state=True)  # overlapping windows, padding
    gx = F.pool2d_backward(np.ones_like(y), s)
    want = naive.pool2d_backward(x.astype(np.float64), np.ones(y.shape), (3, 3), (2, 2), (1, 1, 1, 1), mode=mode)
    np.testing.assert_array_equal(gx, want)
    # all-zero plane: windows start at rows/cols -1, 1, 3; each routes to its first in-input element
    hot = [1, 1, 0, 1, 0]
    np.testing.assert_array_equal(gx[0, 0], [hot, hot, [0] * 5, hot, [0] * 5])
    assert gx[0, 1, 0, 1] == 2  # shared by two windows, the first 3 of both in row-major order


def test_nan_propagates_through_max(backend):
    x = np.array([[[[1.0, np.nan], [5.0, 2.0]]]])
    y, s = F.max_pool2d(x, 2, return_state=True)
    assert np.isnan(y[0, 0, 0, 0])
    np.testing.assert_array_equal(F.pool2d_backward(np.ones_like(y), s)[0, 0], [[0, 1], [0, 0]])


def test_lecture_examples(backend):
    x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], np.float64)[None, None]
    np.testing.assert_array_equal(F.max_pool2d(x, 2, 2)[0, 0], [[6, 8], [3, 4]])
    np.testing.assert_array_equal(F.avg_pool2d(x, 2, 2)[0, 0], [[3.25, 5.25], [2, 2]])
    np.testing.assert_array_equal(F.sum_pool2d(x, 2)[0, 0], [[13, 21], [8, 8]])
    np.testing.assert_array_equal(F.min_pool2d(x, 2)[0, 0], [[1, 2], [1, 0]])
    x7 = np.zeros((1, 1, 7, 7), np.float32)
    assert F.max_pool2d(x7, 3, 1).shape[2:] == (5, 5)
    assert F.max_pool2d(x7, 3, 2).shape[2:] == (3, 3)
    assert F.max_pool2d(x7, 3, 3).shape[2:] == (2, 2)
    assert F.max_pool2d(x7, 3, 3, ceil_mode=True).shape[2:] == (3, 3)


def test_ceil_mode_overhang_and_divisors(backend):
    x = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5)
    # ceil mode: the last 2x2 window starts at row/col 4; it holds 1 input element and 3 overhang
    y = F.avg_pool2d(x, 2, 2, ceil_mode=True)
    assert y[0, 0, 2, 2] == 24.0 and y[0, 0, 0, 2] == (4 + 9) / 2
    # padding counts with count_include_pad, the overhang never does
    y = F.avg_pool2d(x, 3, 2, padding=1, ceil_mode=True)
    assert y.shape == (1, 1, 3, 3) and y[0, 0, 0, 0] == (0 + 1 + 5 + 6) / 9
    y = F.avg_pool2d(x, 3, 2, padding=1, count_include_pad=False)
    assert y[0, 0, 0, 0] == (0 + 1 + 5 + 6) / 4
    y = F.avg_pool2d(x, 3, 2, padding=1, divisor_override=2)
    assert y[0, 0, 0, 0] == (0 + 1 + 5 + 6) / 2
    # ceil mode drops a window that would start in the bottom/right padding (PyTorch's rule)
    assert F.max_pool2d(np.zeros((1, 1, 4, 4)), 2, 2, padding=1, ceil_mode=True).shape[2:] == (3, 3)


def test_thread_count_does_not_change_results(backend, rng):
    x = rng.standard_normal((2, 8, 96, 90)).astype(np.float32)  # outputs too above _threads.SMALL_WORK
    before = corenet.get_num_threads()
    results = []
    try:
        for n in sorted({1, min(2, before)}):
            corenet.set_num_threads(n)
            out = []
            for mode in MODES:
                y, s = F.pool2d(x, 3, 2, 1, mode, ceil_mode=True, return_state=True)
                out += [y, F.pool2d_backward(np.ones_like(y), s)]
            y, s = F.adaptive_avg_pool2d(x, (40, 30), return_state=True)
            results.append(out + [y, F.pool2d_backward(np.ones_like(y), s)])
    finally:
        corenet.set_num_threads(before)
    for a, b in zip(results[0], results[-1]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("call, match", [
    (lambda: F.max_pool2d(np.zeros((2, 3, 4)), 2), r"4-D.*x.shape=\(2, 3, 4\)"),
    (lambda: F.max_pool2d(np.zeros((1, 1, 4, 4)), 2, padding=2), r"half the kernel.*\(2, 2, 2, 2\)"),
    (lambda: F.avg_pool2d(np.zeros((1, 1, 4, 4)), 3, padding=((0, 2), (0, 0))), r"half the kernel"),
    (lambda: F.max_pool2d(np.zeros((1, 1, 2, 2)), 3, padding=1, dilation=2), r"larger than the padded input"),
    (lambda: F.max_pool2d(np.zeros((1, 1, 4, 4)), 5), r"larger than the padded input.*x.shape=\(1, 1, 4, 4\)"),
    (lambda: F.max_pool2d(np.zeros((1, 1, 4, 4)), 2, stride=0), r"stride must be >= 1, received \(0, 0\)"),
    (lambda: F.max_pool2d(np.zeros((1, 1, 4, 4)), 2, stride=(1, -1)), r"stride.*\(1, -1\)"),
    (lambda: F.max_pool2d(np.zeros((1, 1, 4, 4)), 0), r"kernel_size"),
    (lambda: F.pool2d(np.zeros((1, 1, 4, 4)), 2, mode="median"), r"'median'"),
    (lambda: F.max_pool2d(np.zeros((1, 1, 4, 4)), 2, padding="full"), r"'full'"),
    (lambda: F.pool2d(np.zeros((1, 1, 4, 4)), 2, divisor_override=2), r"divisor_override.*'max'"),
    (lambda: F.avg_pool2d(np.zeros((1, 1, 4, 4)), 2, divisor_override=0), r"divisor_override.*0"),
    (lambda: F.adaptive_avg_pool2d(np.zeros((1, 1, 4, 4)), 0), r"output_size"),
])
def test_bad_input_value_error(backend, call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("call, match", [
    (lambda: F.max_pool2d(np.zeros((1, 1, 4, 4), np.int32), 2), r"float32 or float64, received dtype int32"),
    (lambda: F.max_pool2d([[1.0]], 2), r"numpy array, received list"),
    (lambda: F.max_pool2d(np.zeros((1, 1, 4, 4)), 2.5), r"kernel_size.*2.5"),
    (lambda: F.max_pool2d(np.zeros((1, 1, 4, 4)), 2, ceil_mode="yes"), r"ceil_mode.*'yes'"),
    (lambda: F.pool2d_backward(np.zeros((1, 1, 2, 2)), None), r"PoolState.*NoneType"),
])
def test_bad_input_type_error(backend, call, match):
    with pytest.raises(TypeError, match=match):
        call()


def test_backward_checks_gy(backend):
    y, s = F.max_pool2d(np.zeros((1, 1, 4, 4)), 2, return_state=True)
    with pytest.raises(ValueError, match=r"gy.shape=\(1, 1, 3, 3\)"):
        F.pool2d_backward(np.zeros((1, 1, 3, 3)), s)
    with pytest.raises(ValueError, match=r"gy.dtype=float32"):
        F.pool2d_backward(np.zeros((1, 1, 2, 2), np.float32), s)


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("count_include_pad", [False, True])
def test_matches_torch(backend, ceil_mode, count_include_pad):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(5).standard_normal((2, 3, 11, 8))
    tx = torch.tensor(x, requires_grad=True)
    for k, s, p in [(3, 2, 1), ((2, 3), (2, 1), (1, 0)), (3, 3, 0)]:
        ty = torch.nn.functional.avg_pool2d(tx, k, s, p, ceil_mode, count_include_pad)
        y, st_ = F.avg_pool2d(x, k, s, p, ceil_mode, count_include_pad, return_state=True)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12)
        (gt,) = torch.autograd.grad(ty.sum(), tx)
        np.testing.assert_allclose(F.pool2d_backward(np.ones_like(y), st_), gt.numpy(), rtol=1e-12)
        ty = torch.nn.functional.max_pool2d(tx, k, s, p, 1, ceil_mode)
        y, st_ = F.max_pool2d(x, k, s, p, 1, ceil_mode, return_state=True)
        np.testing.assert_array_equal(y, ty.detach().numpy())
        (gt,) = torch.autograd.grad(ty.sum(), tx)
        np.testing.assert_allclose(F.pool2d_backward(np.ones_like(y), st_), gt.numpy(), rtol=1e-12)
    ty = torch.nn.functional.adaptive_avg_pool2d(tx, (4, 3))
    np.testing.assert_allclose(F.adaptive_avg_pool2d(x, (4, 3)), ty.detach().numpy(), rtol=1e-12)


def test_warmup_and_strided_input(backend, rng):
    from corenet.functional import pool

    for dtype in (np.float32, np.float64):
        pool._warmup(np.dtype(dtype))
    x = rng.standard_normal((2, 3, 7, 6))
    view = x[:, :, ::-1, :]  # not C-contiguous: copied once by the argument check
    np.testing.assert_array_equal(F.max_pool2d(view, 3, 2, 1), F.max_pool2d(np.ascontiguousarray(view), 3, 2, 1))
