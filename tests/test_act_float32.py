"""The float32 exp/expm1/tanh/erf of the activations (corenet/_ext/act_math.h and
corenet/kernels/numba_cpu/_vmath.py: branch-free, vectorised) over their whole range, on arrays of
several of the Cython backend's chunks: against the float64 path (libm) in ulps, NaN, infinities,
signed zeros and subnormal results, without warnings, and against PyTorch's float32 CPU ops."""

import math
import warnings

import numpy as np
import pytest

from corenet import F

CHUNK = 16384  # elements per task of the Cython float32 range kernels (act_math.h's CN_CHUNK)
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-40, 1e-30, -1e-30, 88.7, 89.5, -87.4, -88.8, -103.9,
           -104.5, -150.0]


def _x():
    rng = np.random.default_rng(17)
    tiny = np.geomspace(1e-38, 1.0, 1500)
    x = np.concatenate([SPECIAL, np.linspace(-110.0, 95.0, 30_001), rng.standard_normal(10_000) * 4, tiny, -tiny])
    assert x.size > 3 * CHUNK - CHUNK // 2  # three chunks, the last one partial
    return x.astype(np.float32)


OPS = {  # name: (forward, backward, keywords)
    "sigmoid": (F.sigmoid, F.sigmoid_backward, {}),
    "silu": (F.silu, F.silu_backward, {}),
    "tanh": (F.tanh, F.tanh_backward, {}),
    "elu": (F.elu, F.elu_backward, {"alpha": 0.7}),
    "selu": (F.selu, F.selu_backward, {}),
    "gelu": (F.gelu, F.gelu_backward, {}),
    "gelu_tanh": (F.gelu, F.gelu_backward, {"approximate": "tanh"}),
}
# float32 forward against float64, in float32 ulps of the float64 result (|y| >= FLT_MIN); the
# GELUs' erf (Abramowitz-Stegun, as PyTorch's vectorised erf) and 1 + tanh are absolute-accurate
# (measured: <= 2.5 with the AVX-512 and AVX2 clones, and with the SSE2 one, which has no FMA)
ULPS = {"sigmoid": 3, "silu": 3, "tanh": 3, "elu": 3, "selu": 3}
GELU_ATOL = 1.5e-7  # times (1 + |x|)


def _run(name, x, gy):
    fwd, bwd, kw = OPS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or invalid-value warning anywhere
        y, state = fwd(x, return_state=True, **kw)
        return y, bwd(gy, state)


@pytest.mark.parametrize("name", sorted(OPS))
def test_float32_against_float64_over_the_whole_range(backend, name):
    x = _x()
    gy = np.random.default_rng(3).standard_normal(x.size).astype(np.float32)
    y, gx = _run(name, x, gy)
    y64, gx64 = _run(name, x.astype(np.float64), gy.astype(np.float64))
    assert y.dtype == gx.dtype == np.float32
    for got, want in ((y, y64), (gx, gx64)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        inf = np.isinf(want)
        np.testing.assert_array_equal(got[inf], want[inf])
    fin = np.isfinite(y64)
    err = np.abs(y[fin] - y64[fin])
    if name in ULPS:
        # below 1e-30: silu's x / (1 + exp(-x)) is -0 once exp(-x) overflows (x < -88.7), as
        # PyTorch's and libm's expf give it; sigmoid's subnormals are checked in test_special_values
        big = np.abs(y64[fin]) >= 1e-30
        ulp = np.spacing(np.abs(y64[fin]).astype(np.float32)).astype(np.float64)
        assert (err[big] / ulp[big]).max() <= ULPS[name], name
        assert err[~big].max(initial=0) <= 1e-30
    else:
        assert (err / (1 + np.abs(x[fin]))).max() <= GELU_ATOL
    # the derivatives' formulas cancel in float32 (1 - y, 1 + tanh near -1) as they did with libm's
    # functions: the tolerance of test_norm_act's float32 backward test
    np.testing.assert_allclose(gx, gx64, rtol=1e-4, atol=1e-5)


def test_special_values(backend):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, -1000.0, 1000.0, -100.0, 100.0], np.float32)
    s, t = F.sigmoid(x), F.tanh(x)
    np.testing.assert_array_equal(s[1:7], [1, 0, 0.5, 0.5, 0, 1])
    assert np.isnan(s[0]) and np.isnan(t[0])
    assert s[7] == np.float32(math.exp(-100.0))  # a subnormal, as exp(v) / (1 + exp(v)) gives it
    np.testing.assert_array_equal(t[1:], [1, -1, 0, -0.0, -1, 1, -1, 1])
    assert np.signbit(t[4]) and not np.signbit(t[3])  # tanh(-0) = -0
    si = F.silu(x)
    assert np.isnan(si[0]) and si[1] == np.inf and np.isnan(si[2])  # -inf * 0, as torch
    np.testing.assert_array_equal(si[3:7], [0, 0, 0, 1000])
    e = F.elu(x)
    assert np.isnan(e[0]) and e[1] == np.inf
    np.testing.assert_array_equal(e[[2, 5, 7]], [-1, -1, -1])
    g = F.gelu(x)
    assert np.isnan(g[0]) and g[1] == np.inf
    np.testing.assert_array_equal(g[[3, 5, 6]], [0, 0, 1000])


@pytest.mark.parametrize("name", sorted(OPS))
def test_float32_against_torch(backend, name):
    torch = pytest.importorskip("torch")
    x = _x()[len(SPECIAL):]
    gy = np.random.default_rng(5).standard_normal(x.size).astype(np.float32)
    y, gx = _run(name, x, gy)
    xt = torch.tensor(x, requires_grad=True)
    fn = {"sigmoid": torch.sigmoid, "silu": torch.nn.functional.silu, "tanh": torch.tanh,
          "elu": lambda v: torch.nn.functional.elu(v, alpha=0.7), "selu": torch.nn.functional.selu,
          "gelu": torch.nn.functional.gelu,
          "gelu_tanh": lambda v: torch.nn.functional.gelu(v, approximate="tanh")}[name]
    yt = fn(xt)
    yt.backward(torch.tensor(gy))
    if name.startswith("gelu"):  # torch's own float32 erf GELU is off by up to 1e-6 near x = -3.5
        tol = dict(rtol=2e-6, atol=2e-6)
    else:
        tol = dict(rtol=5e-7, atol=2e-38)  # ~4 ulps: each side within ~1-2.5 of the exact value
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_numba_float32_math_ignores_the_callers_fastmath():
    """corenet/kernels/numba_cpu/_vmath.py's functions stay exact inside a fastmath kernel
    (CORENET_FASTMATH=1): reassociation would fold the rounding trick ``(t + magic) - magic``."""
    import numba

    from corenet.kernels.numba_cpu._vmath import verf, vexp, vexpm1_neg, vsigmoid, vtanh

    @numba.njit(fastmath=True)
    def run(x, out):
        for i in range(x.size):
            v = x[i]
            out[0, i] = vexp(v)
            out[1, i] = vsigmoid(v)
            out[2, i] = vtanh(v)
            out[3, i] = verf(v)
            out[4, i] = vexpm1_neg(-abs(v))
        return out

    x = np.linspace(-20, 20, 4001).astype(np.float32)
    got = run(x, np.empty((5, x.size), np.float32))
    x64 = x.astype(np.float64)
    want = [np.exp(x64), 1 / (1 + np.exp(-x64)), np.tanh(x64), np.vectorize(math.erf)(x64), np.expm1(-np.abs(x64))]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=4e-7, atol=2e-7)  # 2e-7: the erf approximation's
