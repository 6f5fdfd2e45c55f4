"""The tensor glue and training-step ops of corenet.functional (tensor.py, train.py) on numpy arrays,
and the ``ops``/``train`` kernel families behind them on every CPU backend. The same ops on device
arrays: tests/test_kernels_cuda_train.py."""

import numpy as np
import pytest

import corenet
from corenet import F, kernels, losses, optim

CPU_BACKENDS = [b for b in corenet.backends() if b in ("numba", "cython", "auto")]


@pytest.fixture(params=CPU_BACKENDS)
def backend(request):
    previous = corenet.get_backend()
    corenet.set_backend(request.param)
    yield request.param
    corenet.set_backend(previous)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_tensor_ops_equal_numpy(backend, dt):
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((2, 3, 4, 5)).astype(dt) for _ in range(2))
    gates = rng.standard_normal((2, 3)).astype(dt)
    np.testing.assert_array_equal(F.add(a, b), a + b)
    np.testing.assert_array_equal(F.add(a, b[:, :, :1]), a + b[:, :, :1])  # numpy broadcasting on the CPU
    np.testing.assert_array_equal(F.mul(a, b), a * b)
    np.testing.assert_array_equal(F.mul_channels(a, gates), a * gates[:, :, None, None])
    np.testing.assert_array_equal(F.mul_channels(a, gates[:, :, None, None]), a * gates[:, :, None, None])
    np.testing.assert_allclose(F.sum_mul_lanes(a, b), (a * b).sum(axis=(2, 3)), rtol=1e-6)
    acc = a.copy()
    F.accumulate(acc, b)
    np.testing.assert_array_equal(acc, a + b)
    F.copy_into(acc, b)
    np.testing.assert_array_equal(acc, b)
    F.fill(acc, 0)
    assert not acc.any()
    full = F.full_like(a, 0.5)
    assert full.dtype == dt and full.shape == a.shape and (full == dt(0.5)).all()
    other = F.full_like(a, 0, (2, 1, 3))  # another shape, a's kind and dtype
    assert other.dtype == dt and other.shape == (2, 1, 3) and not other.any()
    s = a.copy()
    F.scale(s, 3.0)
    np.testing.assert_array_equal(s, a * dt(3.0))
    c = rng.standard_normal((2, 1, 4, 5)).astype(dt)
    for axis in (1, 2, 3):
        parts = [a, c, b] if axis == 1 else [a, b]
        cat = F.concat(parts, axis)
        np.testing.assert_array_equal(cat, np.concatenate(parts, axis=axis))
        for got, want in zip(F.split(cat, [p.shape[axis] for p in parts], axis), parts):
            assert got.flags.c_contiguous
            np.testing.assert_array_equal(got, want)
    padded = F.pad2d(a, 1, 2, 0, 3)
    np.testing.assert_array_equal(padded, np.pad(a, ((0, 0), (0, 0), (1, 2), (0, 3))))
    cropped = F.crop2d(padded, 1, 2, 0, 3)
    assert cropped.flags.c_contiguous
    np.testing.assert_array_equal(cropped, a)


def test_host_helpers():
    a = np.arange(6.0).reshape(2, 3)
    assert F.is_array(a) and not F.is_array([1.0]) and F.device_of(a) == "cpu"
    assert F.move(a, "cpu") is a and F.to_host(a) is a
    copy = F.host_copy(a)
    assert copy is not a and np.array_equal(copy, a)
    assert F.item(np.array([2.5])) == 2.5 and F.item(1.5) == 1.5
    with pytest.raises(TypeError):
        F.item(a)  # more than one element
    assert F.astype(a, np.float32).dtype == np.float32
    assert F.check_device("op", "CPU") == "cpu"
    with pytest.raises(ValueError, match="op: device must be 'cpu' or 'cuda', received 'tpu'"):
        F.check_device("op", "tpu")
    with pytest.raises(ValueError, match="move: device must be"):
        F.move(a, "gpu")
    rng = np.random.default_rng(0)
    assert F.dropout_rng(rng, a) is rng  # numpy arrays draw from the generator itself


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_linear_kernels_of_the_ops_family(backend, dt):
    ops = kernels.require(backend).ops
    rng = np.random.default_rng(1)
    x, w, b = (rng.standard_normal(s).astype(dt) for s in ((5, 7), (3, 7), (3,)))
    gy = rng.standard_normal((5, 3)).astype(dt)
    np.testing.assert_allclose(ops.linear_forward(x, w, b), x @ w.T + b, rtol=1e-6)
    gx, gw, gb = ops.linear_backward(x, w, gy)
    np.testing.assert_allclose(gx, gy @ w, rtol=1e-6)
    np.testing.assert_allclose(gw, gy.T @ x, rtol=1e-6)
    np.testing.assert_allclose(gb, gy.sum(axis=0), rtol=1e-6)
    assert ops.linear_backward(x, w, gy, False, True, False)[::2] == (None, None)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("kind, kw", [
    ("sgd", dict(momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("adam", dict(weight_decay=0.01)),
    ("adamw", dict(weight_decay=0.1)),
    ("adagrad", dict(eps=1e-7, weight_decay=0.01)),
    ("rmsprop", dict(rho=0.8, eps=1e-7)),
])
def test_update_ops_follow_the_textbook_rules(backend, dt, kind, kw):
    """Each update op against its formula in float64 (three steps, slots carried over)."""
    rng = np.random.default_rng(2)
    p = rng.standard_normal(9).astype(dt)
    ref = p.astype(np.float64)
    s1, s2 = np.zeros_like(p), np.zeros_like(p)
    r1, r2 = np.zeros(9), np.zeros(9)
    lr, wd = 0.05, kw.get("weight_decay", 0.0)
    for t in range(1, 4):
        g = rng.standard_normal(9).astype(dt)
        g64 = g.astype(np.float64)
        if kind == "sgd":
            F.sgd_update(p, g, s1, lr, kw["momentum"], kw["nesterov"], wd)
            gg = g64 + wd * ref
            r1 = kw["momentum"] * r1 - lr * gg
            ref = ref + kw["momentum"] * r1 - lr * gg
        elif kind in ("adam", "adamw"):
            F.adam_update(p, g, s1, s2, t, lr, 0.9, 0.999, 1e-8, wd, decoupled=kind == "adamw")
            gg = g64 if kind == "adamw" else g64 + wd * ref
            if kind == "adamw":
                ref = ref * (1 - lr * wd)
            r1 = 0.9 * r1 + 0.1 * gg
            r2 = 0.999 * r2 + 0.001 * gg * gg
            ref = ref - lr * (r1 / (1 - 0.9**t)) / (np.sqrt(r2 / (1 - 0.999**t)) + 1e-8)
        elif kind == "adagrad":
            F.adagrad_update(p, g, s1, lr, kw["eps"], wd)
            gg = g64 + wd * ref
            r1 = r1 + gg * gg
            ref = ref - lr * gg / (np.sqrt(r1) + kw["eps"])
        else:
            F.rmsprop_update(p, g, s1, lr, kw["rho"], kw["eps"], wd)
            r1 = kw["rho"] * r1 + (1 - kw["rho"]) * g64 * g64
            ref = ref - lr * g64 / (np.sqrt(r1) + kw["eps"])
    assert p.dtype == dt
    np.testing.assert_allclose(p, ref, rtol=1e-5 if dt == np.float32 else 1e-12, atol=1e-6)


def test_cross_entropy_op_is_the_loss(backend):
    rng = np.random.default_rng(3)
    z = rng.standard_normal((5, 4)) * 3
    labels = rng.integers(0, 4, 5)
    loss, grad = F.softmax_cross_entropy(z, labels, 0.1, "sum")
    want = losses.CrossEntropy(0.1, "sum")(z, labels)
    assert loss == want[0] and np.array_equal(grad, want[1])
    zs = z - z.max(axis=1, keepdims=True)
    logp = zs - np.log(np.exp(zs).sum(axis=1, keepdims=True))
    q = np.full((5, 4), 0.1 / 4)
    q[np.arange(5), labels] += 0.9
    assert loss == pytest.approx(-(q * logp).sum(), rel=1e-12)
    np.testing.assert_allclose(grad, np.exp(logp) - q, rtol=1e-12, atol=1e-15)


def test_check_update_and_clipping_messages():
    p = np.zeros(3)
    with pytest.raises(ValueError, match=r"SGD.step: 'w': parameter and gradient must be arrays of one shape"):
        F.check_update("SGD.step", "w", p, np.zeros(4))
    with pytest.raises(TypeError, match="parameter 'w' must be a float array"):
        F.check_update("SGD.step", "w", np.zeros(3, np.int64), np.zeros(3))
    g = {"w": np.array([3.0, -4.0])}
    assert F.clip_gradients("op", g) is g
    clipped = F.clip_gradients("op", g, clip_value=1.0, clip_norm=1.0)
    np.testing.assert_allclose(clipped["w"], np.array([1.0, -1.0]) / np.sqrt(2))
    assert g["w"][0] == 3.0  # the caller's gradients are never modified
    o = optim.SGD(lr=0.1, clip_norm=1.0)
    p = np.zeros(2)
    o.step({"w": p}, g)
    np.testing.assert_allclose(p, [-0.06, 0.08])
