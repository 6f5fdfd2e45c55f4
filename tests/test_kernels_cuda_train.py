"""The cuda backend's activation, softmax, dropout and training-step kernels (cuda/train.py), device
arrays in and out, and the functional layer on the cuda backend, against numpy, the oracles of
tests/naive.py and corenet's numpy losses and optimizers. How these run without a GPU (numba's
CUDA simulator, in a child pytest): see tests/cuda_sim.py.
"""

import math

import naive
import numpy as np
import pytest
from cuda_sim import DTYPES, IN_SIM, close, needs_cuda, run_under_simulator

import corenet
from corenet import F, losses, optim

if not IN_SIM:

    def test_simulator_run():
        """Every kernel test of this file on numba's CUDA simulator, in a fresh interpreter."""
        run_under_simulator(__file__)


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
        close(y, y_ref, dt)
        gx = getattr(act, f"{kname}_backward")(gy, y if uses_y else x, *extra, np.empty_like(x))
        close(gx, gx_ref, dt)
    for log in (False, True):
        z = rng.standard_normal((2, 5, 3)).astype(dt)
        z64 = z.astype(np.float64)
        e = np.exp(z64 - z64.max(axis=1, keepdims=True))
        sm = e / e.sum(axis=1, keepdims=True)
        s = act.softmax_forward(z, log, np.empty_like(z))
        close(s, np.log(sm) if log else sm, dt)
        gz = rng.standard_normal(z.shape).astype(dt)
        g64 = gz.astype(np.float64)
        want = g64 - sm * g64.sum(axis=1, keepdims=True) if log else sm * (g64 - (g64 * sm).sum(axis=1, keepdims=True))
        close(act.softmax_backward(gz, s, log, np.empty_like(z)), want, dt)


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
    close(grad, grad_ref, dt)


@needs_cuda
@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("opt,kw", [
    (optim.SGD, dict(lr=0.1)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (optim.Adam, dict(lr=0.01, weight_decay=0.01)),
    (optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
    (optim.AdaGrad, dict(lr=0.1, weight_decay=0.01)),
    (optim.RMSProp, dict(lr=0.01, rho=0.8)),
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
        if opt is optim.AdaGrad:
            train.adagrad_update(p_gpu, g, v, kw["lr"], o.eps, kw["weight_decay"])
        elif opt is optim.RMSProp:
            train.rmsprop_update(p_gpu, g, v, kw["lr"], kw["rho"], o.eps)
        elif opt is optim.SGD:
            train.sgd_update(p_gpu, g, v, kw["lr"], kw.get("momentum", 0.0), kw.get("nesterov", False),
                             kw.get("weight_decay", 0.0))
        else:
            train.adam_update(p_gpu, g, m, v, t, kw["lr"], weight_decay=kw["weight_decay"],
                              decoupled=opt is optim.AdamW)
    close(p_gpu, p, dt)


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
    close(y, naive.conv2d(x, w, None, (1, 1), pads), np.float64)
    for a, b in zip((gx, gw), naive.conv2d_backward(x, w, gy, (1, 1), pads)):
        close(a, b, np.float64)
    close(p, naive.pool2d(y, (2, 2), (2, 2), mode="max")[0], np.float64)
    close(gp, naive.pool2d_backward(y, np.ones_like(p), (2, 2), (2, 2), mode="max"), np.float64)
    mu, var = y.mean(axis=(0, 2, 3), keepdims=True), y.var(axis=(0, 2, 3), keepdims=True)
    xhat = (y - mu) / np.sqrt(var + 1e-5)
    close(n, xhat, np.float64)
    want = (gy - gy.mean(axis=(0, 2, 3), keepdims=True)
            - xhat * (gy * xhat).mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(var + 1e-5)
    close(gn, want, np.float64)
    close(lrn, naive.lrn(y, 3)[0], np.float64)
    np.testing.assert_array_equal(r, np.maximum(y, 0))


@needs_cuda
@pytest.mark.parametrize("dt", DTYPES)
def test_graph_glue_ops(dt):
    from numba import cuda

    from corenet.kernels.cuda import _runtime, ops

    rng = np.random.default_rng(13)
    a, b = (rng.standard_normal((2, 3, 2, 2)).astype(dt) for _ in range(2))
    np.testing.assert_array_equal(ops.add(a, b), a + b)
    acc = a.copy()
    ops.accumulate(acc, b)
    np.testing.assert_array_equal(acc, a + b)
    d = cuda.to_device(a)
    ops.fill(d, 0)
    assert _runtime.is_device(d) and not d.copy_to_host().any()
    ops.copy(d, cuda.to_device(b))
    np.testing.assert_array_equal(d.copy_to_host(), b)
    host = np.zeros_like(a)
    ops.copy(host, d)
    np.testing.assert_array_equal(host, b)
    c = rng.standard_normal((2, 1, 2, 2)).astype(dt)
    cat = ops.concat_channels([a, c, b])
    np.testing.assert_array_equal(cat, np.concatenate([a, c, b], axis=1))
    for got, want in zip(ops.split_channels(cat, [3, 1, 3]), (a, c, b)):
        np.testing.assert_array_equal(got, want)
    x, w, bias = (rng.standard_normal(s).astype(dt) for s in ((5, 7), (3, 7), (3,)))
    close(ops.linear_forward(x, w, bias), x @ w.T + bias, dt)
    gy = rng.standard_normal((5, 3)).astype(dt)
    gx, gw, gb = ops.linear_backward(x, w, gy)
    close(gx, gy @ w, dt)
    close(gw, gy.T @ x, dt)
    close(gb, gy.sum(axis=0), dt)


@needs_cuda
@pytest.mark.parametrize("dt", DTYPES)
def test_functional_tensor_ops_on_device_arrays_equal_the_cpu(dt):
    """corenet.functional's tensor glue: device arrays in, device arrays out, the CPU's values."""
    from numba import cuda

    rng = np.random.default_rng(14)
    a, b = (rng.standard_normal((2, 3, 2, 3)).astype(dt) for _ in range(2))
    c = rng.standard_normal((2, 1, 2, 3)).astype(dt)
    gates = rng.standard_normal((2, 3)).astype(dt)
    da, db, dc, dg = (cuda.to_device(v) for v in (a, b, c, gates))
    cases = {
        "add": (F.add(da, db), F.add(a, b)),
        "mul": (F.mul(da, db), F.mul(a, b)),
        "mul_channels": (F.mul_channels(da, dg), F.mul_channels(a, gates)),
        "sum_mul_lanes": (F.sum_mul_lanes(da, db), F.sum_mul_lanes(a, b)),
        "concat": (F.concat([da, dc, db]), F.concat([a, c, b])),
        "pad2d": (F.pad2d(da, 1, 0, 2, 1), F.pad2d(a, 1, 0, 2, 1)),
        "crop2d": (F.crop2d(da, 1, 0, 0, 1), F.crop2d(a, 1, 0, 0, 1)),
        "full_like": (F.full_like(da, 0.25), F.full_like(a, 0.25)),
    }
    for got, want in zip(F.split(F.concat([da, dc, db]), [3, 1, 3]), (a, c, b)):
        assert F.is_array(got) and F.device_of(got) == "cuda"
        np.testing.assert_array_equal(F.to_host(got), want)
    for name, (got, want) in cases.items():
        assert F.device_of(got) == "cuda", name
        close(F.to_host(got), want, dt)
    acc = F.move(a.copy(), "cuda")
    F.accumulate(acc, db)
    F.scale(acc, 2.0)
    close(F.host_copy(acc), (a + b) * dt(2.0), dt)
    F.copy_into(acc, db)
    np.testing.assert_array_equal(F.to_host(acc), b)
    F.fill(acc, 0)
    assert not F.move(acc, "cpu").any()
    assert F.item(cuda.to_device(np.array([1.5]))) == 1.5
    with pytest.raises(NotImplementedError, match="add: broadcasting device arrays is not implemented"):
        F.add(da, dc)
    with pytest.raises(NotImplementedError, match="concat: on device arrays only the channel axis"):
        F.concat([da, db], 2)
    with pytest.raises(TypeError, match="astype casts host arrays"):
        F.astype(da, np.float64)
    states = F.dropout_rng(np.random.default_rng(0), da)
    assert F.dropout_rng(np.random.default_rng(1), da, states) is states
    z, labels = a.reshape(12, 3), np.arange(12) % 3
    loss, grad = F.softmax_cross_entropy(F.move(z, "cuda"), labels)
    want_loss, want_grad = F.softmax_cross_entropy(z, labels)
    assert F.item(loss) == pytest.approx(want_loss, rel=1e-6)
    close(F.to_host(grad), want_grad, dt)
