"""Local response normalization against the loop oracles of tests/naive.py, finite differences and PyTorch."""

import naive
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import corenet
from corenet import F

# the `backend` fixture only switches the backend, so sharing it across examples is safe
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}


@st.composite
def lrn_cases(draw, tiny=False):
    mode = draw(st.sampled_from(["across", "within"]))
    c_max = 4 if tiny else 9
    hw_max = 3 if tiny else 6
    return dict(
        shape=(draw(st.integers(1, 2)), draw(st.integers(1, c_max)),
               draw(st.integers(1, hw_max)), draw(st.integers(1, hw_max))),
        size=draw(st.integers(1, 4 if mode == "within" else 7)),  # odd and even, and wider than C
        alpha=draw(st.sampled_from([1e-4, 0.3, 2.0])),
        beta=draw(st.sampled_from([0.75, 0.5, 1.0, 0.6, 0.0])),
        k=draw(st.sampled_from([1.0, 2.0, 0.5])),
        mode=mode,
        convention=draw(st.sampled_from(["torch", "caffe", "paper", "tf"])),
        seed=draw(st.integers(0, 2**16)),
    )


def _params(case):
    return {key: case[key] for key in ("size", "alpha", "beta", "k", "mode", "convention")}


def _oracle_params(case):
    p = _params(case)
    p["n"] = p.pop("size")
    return p


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@fixture_ok
@given(case=lrn_cases())
def test_lrn_matches_oracle(backend, dtype, case):
    rng = np.random.default_rng(case["seed"])
    x = (2 * rng.standard_normal(case["shape"])).astype(dtype)
    y, state = F.local_response_norm(x, **_params(case), return_state=True)
    want, scale = naive.lrn(x.astype(np.float64), **_oracle_params(case))
    assert y.shape == x.shape and y.dtype == dtype
    np.testing.assert_allclose(y, want, **TOL[dtype])
    np.testing.assert_allclose(state.scale, scale, **TOL[dtype])
    np.testing.assert_array_equal(F.local_response_norm(x, **_params(case)), y)  # no-state path
    gy = rng.standard_normal(x.shape).astype(dtype)
    gx = F.local_response_norm_backward(gy, state)
    assert gx.dtype == dtype
    want_gx = naive.lrn_backward(x.astype(np.float64), gy.astype(np.float64), **_oracle_params(case))
    np.testing.assert_allclose(gx, want_gx, **TOL[dtype])


@fixture_ok
@given(case=lrn_cases(tiny=True))
def test_lrn_backward_finite_differences(backend, case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["shape"])
    y, state = F.local_response_norm(x, **_params(case), return_state=True)
    gy = rng.standard_normal(x.shape)
    fd = np.zeros_like(x)
    eps = 1e-6
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        diff = F.local_response_norm(xp, **_params(case)) - F.local_response_norm(xm, **_params(case))
        fd[i] = np.sum(gy * diff) / (2 * eps)
    np.testing.assert_allclose(F.local_response_norm_backward(gy, state), fd, rtol=1e-6, atol=1e-8)


def test_conventions_and_known_values(backend):
    # one channel, n=1: b = a / (k + alpha' a^2)^beta
    x = np.full((1, 1, 1, 1), 2.0)
    assert F.local_response_norm(x, 1, alpha=1.0, beta=1.0, k=1.0)[0, 0, 0, 0] == 2.0 / 5.0
    x = np.arange(1.0, 6.0).reshape(1, 5, 1, 1)  # channels 1..5, n=3: window [c-1, c+1]
    paper = F.local_response_norm(x, 3, alpha=0.1, beta=1.0, k=2.0, convention="paper")[0, :, 0, 0]
    np.testing.assert_allclose(paper, [1 / (2 + 0.1 * 5), 2 / (2 + 0.1 * 14), 3 / (2 + 0.1 * 29),
                                       4 / (2 + 0.1 * 50), 5 / (2 + 0.1 * 41)], rtol=1e-14)
    torch_conv = F.local_response_norm(x, 3, alpha=0.3, beta=1.0, k=2.0, convention="torch")
    np.testing.assert_allclose(torch_conv, F.local_response_norm(x, 3, alpha=0.1, beta=1.0, k=2.0, convention="tf"))
    # even n=4: window [c-2, c+1]; channel 0 sees channels 0, 1
    even = F.local_response_norm(x, 4, alpha=1.0, beta=1.0, k=1.0, convention="paper")[0, :, 0, 0]
    np.testing.assert_allclose(even[[0, 4]], [1 / (1 + 1 + 4), 5 / (1 + 9 + 16 + 25)], rtol=1e-14)
    # within channel, Caffe: 3x3 zero-padded window, alpha / 9
    p = np.zeros((1, 1, 3, 3))
    p[0, 0, 1, 1] = 3.0
    w = F.local_response_norm(p, 3, alpha=9.0, beta=1.0, mode="within", convention="caffe")
    np.testing.assert_allclose(w[0, 0], [[0, 0, 0], [0, 3.0 / (1 + 9.0), 0], [0, 0, 0]], rtol=1e-14)


@pytest.mark.parametrize("n_images", [1, 3])
def test_pixel_blocks_match_oracle(backend, rng, n_images):
    # 20x20 pixels: the across kernels split each image into several pixel blocks
    x = rng.standard_normal((n_images, 4, 20, 20))
    y, state = F.local_response_norm(x, 3, alpha=0.5, beta=0.75, k=1.0, return_state=True)
    np.testing.assert_allclose(y, naive.lrn(x, 3, alpha=0.5)[0], rtol=1e-10)
    gy = rng.standard_normal(x.shape)
    np.testing.assert_allclose(F.local_response_norm_backward(gy, state), naive.lrn_backward(x, gy, 3, alpha=0.5),
                               rtol=1e-10, atol=1e-12)


def test_thread_count_does_not_change_results(backend, rng):
    x = rng.standard_normal((3, 11, 40, 30)).astype(np.float32)  # 1200 pixels: two blocks per image
    before = corenet.get_num_threads()
    results = []
    try:
        for n in sorted({1, min(2, before)}):
            corenet.set_num_threads(n)
            out = []
            for mode, beta in [("across", 0.75), ("within", 0.75), ("across", 0.6)]:
                y, s = F.local_response_norm(x, 5, 1e-2, beta, 2.0, mode=mode, return_state=True)
                out += [y, s.scale, F.local_response_norm_backward(np.ones_like(y), s)]
            results.append(out)
    finally:
        corenet.set_num_threads(before)
    for a, b in zip(results[0], results[-1]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("call, exc, match", [
    (lambda x: F.local_response_norm(x[0], 5), ValueError, r"4-D.*x.shape=\(3, 4, 4\)"),
    (lambda x: F.local_response_norm(x, 0), ValueError, r"size must be a positive int, received 0"),
    (lambda x: F.local_response_norm(x, 2.5), ValueError, r"size.*2.5"),
    (lambda x: F.local_response_norm(x, 5, convention="keras"), ValueError, r"convention.*'keras'"),
    (lambda x: F.local_response_norm(x, 5, mode="spatial"), ValueError, r"mode.*'spatial'"),
    (lambda x: F.local_response_norm(x, 5, k=0.0), ValueError, r"k must be > 0.*0.0"),
    (lambda x: F.local_response_norm(x, 5, alpha=-1), ValueError, r"alpha.*-1"),
    (lambda x: F.local_response_norm(x, 5, beta="a"), TypeError, r"beta.*'a'"),
    (lambda x: F.local_response_norm(x.astype(np.int64), 5), TypeError, r"received dtype int64"),
    (lambda x: F.local_response_norm_backward(x, None), TypeError, r"LRNState.*NoneType"),
    (lambda x: F.local_response_norm_backward(x[:, :2], F.local_response_norm(x, 3, return_state=True)[1]),
     ValueError, r"gy.shape=\(1, 2, 4, 4\)"),
])
def test_bad_input(backend, call, exc, match):
    with pytest.raises(exc, match=match):
        call(np.ones((1, 3, 4, 4)))


@pytest.mark.parametrize("size, alpha, beta, k", [(5, 1e-4, 0.75, 2.0), (4, 0.5, 0.6, 1.0), (3, 2.0, 1.0, 0.5)])
def test_matches_torch(backend, size, alpha, beta, k):
    torch = pytest.importorskip("torch")
    x = 3 * np.random.default_rng(size).standard_normal((2, 7, 5, 6))
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.local_response_norm(tx, size, alpha, beta, k)
    y, state = F.local_response_norm(x, size, alpha, beta, k, return_state=True)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12)
    gy = np.random.default_rng(0).standard_normal(x.shape)
    (gt,) = torch.autograd.grad(ty, tx, torch.tensor(gy))
    np.testing.assert_allclose(F.local_response_norm_backward(gy, state), gt.numpy(), rtol=1e-9, atol=1e-12)


def test_warmup_and_strided_input(backend, rng):
    from corenet.functional import lrn

    for dtype in (np.float32, np.float64):
        lrn._warmup(np.dtype(dtype))
    x = rng.standard_normal((2, 6, 5, 4))
    view = x[:, ::-1]  # not C-contiguous: copied once by the argument check
    np.testing.assert_array_equal(F.local_response_norm(view, 3), F.local_response_norm(np.ascontiguousarray(view), 3))
