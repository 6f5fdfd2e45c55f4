"""Batch norm, activations, softmax, dropout and linear: forward against plain numpy references
written from the definitions, backward against float64 central differences, dtypes, threads."""

import math

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import corenet
from corenet import F

# ------------------------------------------------------------------------------- references


def ref_batch_norm(x, gamma, beta, mean=None, var=None, eps=1e-5):
    x = x.astype(np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if mean is None:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    if gamma is not None:
        y = y * gamma.reshape(shape)
    if beta is not None:
        y = y + beta.reshape(shape)
    return y


def ref_log_softmax(x):
    z = x - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _erf(v):
    return np.vectorize(math.erf)(v)


REF_ACT = {
    "relu": lambda x: np.where(x > 0, x, 0.0),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.01 * x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "selu": lambda x: 1.0507009873554804934 * np.where(x > 0, x, 1.6732632423543772848 * np.expm1(np.minimum(x, 0))),
    "gelu": lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
    "gelu_tanh": lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "softmax": lambda x: np.exp(ref_log_softmax(x)),
    "log_softmax": lambda x: ref_log_softmax(x),
}


def act_fns(name):
    """(forward, backward) of the op called ``name`` in REF_ACT."""
    if name == "gelu_tanh":
        return (lambda x, **kw: F.gelu(x, approximate="tanh", **kw)), F.gelu_backward
    return getattr(F, name), getattr(F, name + "_backward")


def numerical_grad(f, x, eps=1e-6):
    """Central differences of the scalar ``f`` at float64 ``x``."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f(x)
        flat[i] = old - eps
        fm = f(x)
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


@pytest.fixture
def two_threads():
    """The second thread count to compare with 1 (2, or 1 where only one is allowed); restores the count."""
    previous = corenet.get_num_threads()
    yield min(2, numba.config.NUMBA_NUM_THREADS)
    corenet.set_num_threads(previous)


# ---------------------------------------------------------------------------------- batch norm


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (7, 5), (1, 2, 1, 3)])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_training_forward_and_running_stats(backend, rng, dtype, shape, affine):
    x = (rng.standard_normal(shape) * 2 + 3).astype(dtype)
    C = shape[1]
    gamma = rng.standard_normal(C).astype(dtype) if affine else None
    beta = rng.standard_normal(C).astype(dtype) if affine else None
    rm0, rv0 = rng.standard_normal(C).astype(np.float32), rng.random(C).astype(np.float32) + 0.5
    rm, rv = rm0.copy(), rv0.copy()
    y = F.batch_norm(x, gamma, beta, rm, rv, training=True, momentum=0.3)
    assert y.dtype == dtype and y.shape == x.shape
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, ref_batch_norm(x, gamma, beta), rtol=tol, atol=tol * 10)
    axes = (0,) + tuple(range(2, x.ndim))
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(rm, 0.7 * rm0 + 0.3 * x64.mean(axis=axes), rtol=1e-6)
    np.testing.assert_allclose(rv, 0.7 * rv0 + 0.3 * x64.var(axis=axes, ddof=1), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_eval_uses_running_stats_and_leaves_them(backend, rng, dtype):
    x = rng.standard_normal((3, 4, 2, 5)).astype(dtype)
    gamma, beta = rng.standard_normal(4).astype(dtype), rng.standard_normal(4).astype(dtype)
    rm, rv = rng.standard_normal(4), rng.random(4) + 0.5
    rm0, rv0 = rm.copy(), rv.copy()
    y = F.batch_norm(x, gamma, beta, rm, rv, training=False, eps=1e-3)
    np.testing.assert_allclose(y, ref_batch_norm(x, gamma, beta, rm0, rv0, eps=1e-3), rtol=1e-5, atol=1e-5)
    assert np.array_equal(rm, rm0) and np.array_equal(rv, rv0)
    # no running statistics: batch statistics even in eval mode (track_running_stats=False)
    y = F.batch_norm(x, gamma, beta, None, None, training=False)
    np.testing.assert_allclose(y, ref_batch_norm(x, gamma, beta), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(8, 3, 16, 16), (512, 3)])
def test_batch_norm_statistics_are_sound_for_large_means(backend, rng, shape):
    # float32 data with |mean| >> std: a naive E[x^2] - E[x]^2 would lose every digit
    x = (1e4 + rng.standard_normal(shape)).astype(np.float32)
    y = F.batch_norm(x, None, None, None, None, training=True)
    np.testing.assert_allclose(y, ref_batch_norm(x, None, None), rtol=1e-3, atol=1e-3)
    axes = (0,) + tuple(range(2, x.ndim))
    np.testing.assert_allclose(y.std(axis=axes), 1.0, rtol=1e-3)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(3, 2, 2, 3), (5, 3)])
def test_batch_norm_backward_matches_finite_differences(backend, rng, training, shape):
    x = rng.standard_normal(shape) * 1.5 + 0.5
    C = shape[1]
    gamma, beta = rng.standard_normal(C), rng.standard_normal(C)
    rm, rv = rng.standard_normal(C), rng.random(C) + 0.5
    gy = rng.standard_normal(shape)

    def loss(x_, g_=gamma, b_=beta):
        return float((F.batch_norm(x_, g_, b_, rm.copy(), rv.copy(), training) * gy).sum())

    _, state = F.batch_norm(x, gamma, beta, rm.copy(), rv.copy(), training, return_state=True)
    gx, gg, gb = F.batch_norm_backward(gy, state)
    np.testing.assert_allclose(gx, numerical_grad(loss, x.copy()), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gg, numerical_grad(lambda g: loss(x, g_=g), gamma.copy()), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gb, numerical_grad(lambda b: loss(x, b_=b), beta.copy()), rtol=1e-5, atol=1e-7)
    # only what is asked for
    gx2, gg2, gb2 = F.batch_norm_backward(gy, state, need_gparams=False)
    assert gg2 is None and gb2 is None and np.array_equal(gx2, gx)
    gx3, gg3, gb3 = F.batch_norm_backward(gy, state, need_gx=False)
    assert gx3 is None and np.array_equal(gg3, gg) and np.array_equal(gb3, gb)


def test_batch_norm_backward_without_affine(backend, rng):
    x = rng.standard_normal((4, 2, 3, 3))
    gy = rng.standard_normal(x.shape)
    _, state = F.batch_norm(x, None, None, None, None, True, return_state=True)
    gx, gg, gb = F.batch_norm_backward(gy, state)
    assert gg is None and gb is None
    num = numerical_grad(lambda x_: float((F.batch_norm(x_, None, None, None, None, True) * gy).sum()), x.copy())
    np.testing.assert_allclose(gx, num, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(8, 5, 31, 33), (200, 600)])  # above SMALL_WORK: parallel
def test_batch_norm_dtype_and_thread_count(backend, rng, two_threads, dtype, shape):
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    gy = rng.standard_normal(x.shape).astype(dtype)
    C = shape[1]
    g, b = np.ones(C, dtype), np.zeros(C, dtype)
    outs = []
    for n in (1, two_threads):
        corenet.set_num_threads(n)
        y, s = F.batch_norm(x, g, b, None, None, True, return_state=True)
        outs.append((y, *F.batch_norm_backward(gy, s)))
        assert corenet.get_num_threads() == n and numba.get_num_threads() == n
    np.testing.assert_allclose(outs[0][0], ref_batch_norm(x, g, b), rtol=1e-5, atol=1e-5)
    for a, c in zip(*outs):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, c)  # the reduction order does not depend on threads


def test_batch_norm_errors(backend, rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\)"):
        F.batch_norm(x, np.ones(4, np.float32), None, None, None, True)
    with pytest.raises(TypeError, match="dtype"):
        F.batch_norm(x, np.ones(3), None, None, None, True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(x[:1, :, :1, :1], None, None, np.zeros(3), np.ones(3), True)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) or \(N, C\)"):
        F.batch_norm(x[0], None, None, None, None, True)


# --------------------------------------------------------------------------------- activations

ACT_NAMES = list(REF_ACT)


@pytest.mark.parametrize("name", ACT_NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_forward_matches_reference(backend, rng, name, dtype):
    x = (rng.standard_normal((3, 4, 5, 2)) * 3).astype(dtype)
    fwd, _ = act_fns(name)
    y = fwd(x)
    assert y.dtype == dtype and y.shape == x.shape
    tol = 2e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(y, REF_ACT[name](x.astype(np.float64)), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", ACT_NAMES)
@settings(max_examples=10)
@given(shape=st.sampled_from([(2, 3), (2, 3, 2, 2), (1, 5, 1, 3), (4, 1)]), seed=st.integers(0, 2**16))
def test_activation_backward_matches_finite_differences(name, shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kinks of relu/leaky_relu/elu
    gy = rng.standard_normal(shape)
    fwd, bwd = act_fns(name)
    y, state = fwd(x, return_state=True)
    gx = bwd(gy, state)
    assert gx.shape == x.shape
    num = numerical_grad(lambda x_: float((fwd(x_) * gy).sum()), x.copy())
    np.testing.assert_allclose(gx, num, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ACT_NAMES)
def test_activation_float32_backward_and_threads(backend, rng, two_threads, name):
    x = (rng.standard_normal(20_011) * 3).astype(np.float32)
    x = np.stack([x, -x])  # (2, 20011): above SMALL_WORK, and softmax over long rows
    gy = rng.standard_normal(x.shape).astype(np.float32)
    fwd, bwd = act_fns(name)
    outs = []
    for n in (1, two_threads):
        corenet.set_num_threads(n)
        y, s = fwd(x, return_state=True)
        outs.append((y, bwd(gy, s)))
        assert numba.get_num_threads() == n  # small kernels restore the count they lowered
    for a, c in zip(*outs):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, c)
    y64, s64 = fwd(x.astype(np.float64), return_state=True)
    gx64 = bwd(gy.astype(np.float64), s64)
    np.testing.assert_allclose(outs[0][1], gx64, rtol=1e-4, atol=1e-5)  # float32 1 + tanh(u) cancels near -1


def test_activation_parameters_and_nan(backend):
    x = np.array([-2.0, -0.5, 0.0, 1.5, np.nan])
    np.testing.assert_allclose(F.leaky_relu(x, negative_slope=0.2)[:4], [-0.4, -0.1, 0.0, 1.5])
    np.testing.assert_allclose(F.elu(x, alpha=0.5)[:4], [0.5 * np.expm1(-2), 0.5 * np.expm1(-0.5), 0, 1.5])
    for fn in (F.relu, F.leaky_relu, F.elu, F.selu, F.gelu, F.sigmoid, F.tanh):
        assert np.isnan(fn(x)[4]), fn.__name__  # NaN propagates, as in PyTorch
    big = np.array([-1000.0, 1000.0], np.float32)
    assert np.array_equal(F.sigmoid(big), [0.0, 1.0])  # no overflow warning or NaN
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(x, approximate="fast")
    with pytest.raises(TypeError, match="float32 or float64"):
        F.relu(np.arange(3))


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
def test_softmax_axis_and_stability(backend, rng, fn):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32) * 1e4  # huge logits
    ref = "softmax" if fn is F.softmax else "log_softmax"
    for axis in (1, -1, 0):
        y = fn(x, axis=axis)
        moved = np.moveaxis(x.astype(np.float64), axis, 1)
        expect = np.moveaxis(REF_ACT[ref](moved), 1, axis)
        assert np.all(np.isfinite(y))
        np.testing.assert_allclose(y, expect, rtol=1e-5, atol=1e-5)
    if fn is F.softmax:
        np.testing.assert_allclose(F.softmax(x).sum(axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="axis 4"):
        fn(x, axis=4)


def test_softmax_backward_other_axis(backend, rng):
    x = rng.standard_normal((2, 3, 4))
    gy = rng.standard_normal(x.shape)
    for fn, bwd in ((F.softmax, F.softmax_backward), (F.log_softmax, F.log_softmax_backward)):
        _, s = fn(x, axis=2, return_state=True)
        num = numerical_grad(lambda x_, fn=fn: float((fn(x_, axis=2) * gy).sum()), x.copy())
        np.testing.assert_allclose(bwd(gy, s), num, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_scaling_and_reproducibility(backend, dtype):
    x = np.random.default_rng(1).standard_normal((16, 8, 10, 10)).astype(dtype) + 3
    p = 0.3
    y, s = F.dropout(x, p, np.random.default_rng(7), return_state=True)
    assert y.dtype == dtype
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-6)
    assert abs(kept.mean() - (1 - p)) < 0.02
    y2 = F.dropout(x, p, np.random.default_rng(7))
    assert np.array_equal(y, y2)  # same rng state, same mask
    other = F.dropout(x.astype(np.float64 if dtype == np.float32 else np.float32), p, np.random.default_rng(7))
    assert np.array_equal(other != 0, kept)  # the mask does not depend on the dtype
    gy = np.ones_like(x)
    gx = F.dropout_backward(gy, s)
    np.testing.assert_allclose(gx, np.where(kept, 1 / (1 - p), 0.0), rtol=1e-6)
    assert gx.dtype == dtype


def test_dropout_eval_p0_p1_and_errors(backend, rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    r = np.random.default_rng(3)
    state_before = r.bit_generator.state
    y, s = F.dropout(x, 0.5, r, training=False, return_state=True)
    assert np.array_equal(y, x) and y is not x
    assert np.array_equal(F.dropout_backward(x, s), x)
    assert np.array_equal(F.dropout(x, 0.0, r), x)
    assert r.bit_generator.state == state_before  # eval and p=0 draw nothing
    assert not F.dropout(x, 1.0, r).any()
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        F.dropout(x, 1.5, r)
    with pytest.raises(TypeError, match="Generator"):
        F.dropout(x, 0.5, 42)


# -------------------------------------------------------------------------------------- linear


@pytest.mark.parametrize("bias", [True, False])
def test_linear_forward_backward(rng, bias):
    x, w = rng.standard_normal((5, 4)), rng.standard_normal((3, 4))
    b = rng.standard_normal(3) if bias else None
    y, s = F.linear(x, w, b, return_state=True)
    np.testing.assert_allclose(y, x @ w.T + (b if bias else 0))
    gy = rng.standard_normal((5, 3))
    gx, gw, gb = F.linear_backward(gy, s)
    np.testing.assert_allclose(gx, numerical_grad(lambda x_: float((F.linear(x_, w, b) * gy).sum()), x.copy()),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gw, numerical_grad(lambda w_: float((F.linear(x, w_, b) * gy).sum()), w.copy()),
                               rtol=1e-6, atol=1e-8)
    if bias:
        np.testing.assert_allclose(gb, gy.sum(0))
    else:
        assert gb is None
    gx2, gw2, gb2 = F.linear_backward(gy, s, need_gx=False, need_gw=False)
    assert gx2 is None and gw2 is None and (gb2 is None) == (not bias)
    y32 = F.linear(x.astype(np.float32), w.astype(np.float32))
    assert y32.dtype == np.float32
    with pytest.raises(ValueError, match="4 input features but w expects 6"):
        F.linear(x, rng.standard_normal((3, 6)))
    with pytest.raises(TypeError, match="share one dtype"):
        F.linear(x.astype(np.float32), w)


# ------------------------------------------------------------------------- PyTorch cross-check


def test_batch_norm_and_gelu_against_torch(backend, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((4, 3, 5, 5)) * 2 + 1
    gamma, beta, gy = rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal(x.shape)
    bn = torch.nn.BatchNorm2d(3, momentum=0.2).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(gamma))
        bn.bias.copy_(torch.tensor(beta))
    rm, rv = np.zeros(3), np.ones(3)
    for training in (True, False):
        bn.train(training)
        xt = torch.tensor(x, requires_grad=True)
        yt = bn(xt)
        yt.backward(torch.tensor(gy))
        y, s = F.batch_norm(x, gamma, beta, rm, rv, training, momentum=0.2, return_state=True)
        gx, gg, gb = F.batch_norm_backward(gy, s)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(rm, bn.running_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(rv, bn.running_var.numpy(), rtol=1e-12)
        np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(gg, bn.weight.grad.numpy(), rtol=1e-9)
        np.testing.assert_allclose(gb, bn.bias.grad.numpy(), rtol=1e-9)
        bn.zero_grad()
    for approximate in ("none", "tanh"):
        xt = torch.tensor(x, requires_grad=True)
        yt = torch.nn.functional.gelu(xt, approximate=approximate)
        yt.backward(torch.tensor(gy))
        y, s = F.gelu(x, approximate=approximate, return_state=True)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(F.gelu_backward(gy, s), xt.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_small_kernels_restore_the_thread_count(backend, two_threads):
    corenet.set_num_threads(two_threads)
    x = np.linspace(-1, 1, 12).reshape(2, 3, 2)  # below SMALL_WORK: runs on one thread
    _, s = F.batch_norm(x.reshape(2, 3, 2, 1), None, None, None, None, True, return_state=True)
    for y in (F.relu(x), F.softmax(x), F.gelu(x)):
        assert y.shape == x.shape
    assert numba.get_num_threads() == two_threads and corenet.get_num_threads() == two_threads


# ------------------------------------------------------------------------------- state types


def test_every_backward_state_is_one_frozen_namedtuple():
    """Issue 14, item 5: every op's backward state has one shape, a frozen NamedTuple (no dataclasses or dicts)."""
    names = [n for n in dir(F) if n.endswith("State") and isinstance(getattr(F, n), type)]
    mine = {"Conv2dState", "LinearState", "BatchNormState", "LRNState", "BatchNormReluState", "AddReluState"}
    assert mine <= set(names)
    for name in names:
        cls = getattr(F, name)
        assert issubclass(cls, tuple) and hasattr(cls, "_fields"), f"{name} is not a NamedTuple"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 5))
    _, lrn_state = F.local_response_norm(x, 3, return_state=True)
    _, bn_state = F.batch_norm(x, None, None, None, None, True, return_state=True)
    for state in (lrn_state, bn_state):
        with pytest.raises(AttributeError):
            state.x = None  # frozen: a backward cannot be fed a state edited after the forward


def test_conv2d_state_still_unpacks():
    """The public Conv2dState keeps what users could do with it: fields by name and tuple unpacking."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((4, 2, 3, 3))
    y, state = F.conv2d(x, w, None, stride=2, padding=1, return_state=True)
    xs, ws, has_bias, stride, padding, dilation, groups, y_shape = state
    assert xs is x and ws is w and not has_bias
    assert (stride, padding, dilation, groups, y_shape) == ((2, 2), (1, 1, 1, 1), (1, 1), 1, y.shape)
    assert state._replace(groups=1) == state
