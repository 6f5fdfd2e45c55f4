"""The functional ops on two threads against the plain-loop oracles of ``tests/naive.py`` (or a
float64 formula), repeated, including the geometries of issue 12's repros; and 40 training steps
of a small conv/BN/ReLU/pool/linear network on 2 threads, run twice, must give bitwise-equal
weights on each CPU backend. (The kernels' primitives one by one, guarded: tests/test_threads.py.)
"""

from __future__ import annotations

import math

import naive
import numpy as np
import pytest
from test_threads import CONV_GEOMS

import corenet
from corenet import F, config

REPEAT = 5  # calls per case on 2 threads: a race rarely shows on every call


# --------------------------------------------------------------- functional ops vs oracles
def _tol(dt):
    return dict(rtol=1e-4, atol=1e-5) if dt == np.float32 else dict(rtol=1e-10, atol=1e-12)


def _pad_arg(p):
    return ((p[0], p[1]), (p[2], p[3]))


@pytest.mark.parametrize("geom", CONV_GEOMS, ids=[g[0] for g in CONV_GEOMS])
@pytest.mark.parametrize("groups", [1, 3])
def test_conv2d_two_threads_against_oracle(cpu_backend, geom, groups, two_threads):
    _, H, W, kh, kw, s, p, d = geom
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, H, W))
    w = rng.standard_normal((6, 3 // groups, kh, kw))
    b = rng.standard_normal(6)
    ref = naive.conv2d(x, w, b, s, p, d, groups)
    gy = rng.standard_normal(ref.shape)
    gref = naive.conv2d_backward(x, w, gy, s, p, d, groups)
    for _ in range(REPEAT):
        y, state = F.conv2d(x, w, b, s, _pad_arg(p), d, groups, return_state=True)
        np.testing.assert_allclose(y, ref, **_tol(np.float64))
        got = F.conv2d_backward(gy, state)
        for g, r in zip(got, gref):
            np.testing.assert_allclose(g, r, **_tol(np.float64))


def test_issue12_conv_repros(cpu_backend, two_threads):
    """The two calls of issue 12, item 1, repeated: wrong on 2 Cython threads before the fix."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 1, 1)).astype(np.float32)
    w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding="same", dilation=3).numpy()
    x2 = np.array([1, 2, 3], np.float32).reshape(1, 1, 3, 1)
    w2 = np.array([[[[1, 10]]]], np.float32)
    want2 = np.array([[0, 10], [0, 20], [0, 30]], np.float32).reshape(1, 1, 3, 2)
    for _ in range(40):
        np.testing.assert_allclose(F.conv2d(x, w, padding="same", dilation=3), ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(F.conv2d(x2, w2, padding=((0, 0), (5, 0)), dilation=(1, 4)), want2)


@pytest.mark.parametrize("shape", [(128, 64, 2, 2), (64, 64, 2, 4)])
def test_issue12_batch_norm_repro_against_torch(cpu_backend, shape):
    """Issue 12, item 2, at the default threshold (these shapes go parallel anyway)."""
    torch = pytest.importorskip("torch")
    prev = config.get_num_threads()
    try:
        corenet.set_num_threads(2)
    except ValueError:
        pytest.skip("fewer than 2 threads allowed here")
    try:
        rng = np.random.default_rng(1)
        x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
        gy = rng.standard_normal(shape).astype(np.float32)
        gamma = rng.standard_normal(shape[1]).astype(np.float32)
        beta = rng.standard_normal(shape[1]).astype(np.float32)
        tx = torch.tensor(x, requires_grad=True)
        tg, tb = torch.tensor(gamma, requires_grad=True), torch.tensor(beta, requires_grad=True)
        ty = torch.nn.functional.batch_norm(tx, None, None, tg, tb, training=True, eps=1e-5)
        ty.backward(torch.tensor(gy))
        for _ in range(20):
            y, state = F.batch_norm(x, gamma, beta, None, None, True, return_state=True)
            np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-4, atol=1e-4)
            gx, ggamma, gbeta = F.batch_norm_backward(gy, state)
            np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-3, atol=1e-4)
            np.testing.assert_allclose(ggamma, tg.grad.numpy(), rtol=1e-4, atol=1e-3)
            np.testing.assert_allclose(gbeta, tb.grad.numpy(), rtol=1e-4, atol=1e-3)
    finally:
        corenet.set_num_threads(prev)


@pytest.mark.parametrize("shape", [(5, 3, 4, 3), (7, 6)])
def test_batch_norm_two_threads_against_float64_formula(cpu_backend, shape, two_threads):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape) * 3 + 2
    gy = rng.standard_normal(shape)
    gamma, beta = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    axes = (0,) + tuple(range(2, len(shape)))
    bshape = (1, -1) + (1,) * (len(shape) - 2)
    mu, var = x.mean(axis=axes), x.var(axis=axes)
    xhat = (x - mu.reshape(bshape)) / np.sqrt(var + 1e-5).reshape(bshape)
    yref = xhat * gamma.reshape(bshape) + beta.reshape(bshape)
    M = x.size // shape[1]
    sg, sgx = gy.sum(axis=axes), (gy * xhat).sum(axis=axes)
    gxref = (gamma / np.sqrt(var + 1e-5)).reshape(bshape) * (
        gy - sg.reshape(bshape) / M - xhat * sgx.reshape(bshape) / M)
    for _ in range(REPEAT):
        y, state = F.batch_norm(x, gamma, beta, None, None, True, return_state=True)
        np.testing.assert_allclose(y, yref, rtol=1e-9, atol=1e-9)
        gx, ggamma, gbeta = F.batch_norm_backward(gy, state)
        np.testing.assert_allclose(gx, gxref, rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(ggamma, sgx, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(gbeta, sg, rtol=1e-9, atol=1e-9)


POOL_CASES = [  # kernel, stride, pads (t, b, l, r), dilation, mode, ceil_mode, count_include_pad
    ((3, 2), (2, 1), (1, 1, 1, 0), (1, 2), "max", False, True),
    ((3, 3), (2, 2), (1, 1, 1, 1), (1, 1), "min", True, True),
    ((3, 2), (2, 1), (1, 1, 1, 0), (1, 2), "avg", True, False),
    ((2, 3), (1, 2), (0, 1, 1, 1), (1, 1), "avg", False, True),
    ((2, 2), (2, 2), (0, 0, 0, 0), (1, 1), "sum", False, True),
]


@pytest.mark.parametrize("case", POOL_CASES, ids=[c[4] + str(i) for i, c in enumerate(POOL_CASES)])
def test_pool2d_two_threads_against_oracle(cpu_backend, case, two_threads):
    kernel, stride, p, dil, mode, ceil_mode, cip = case
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 7, 6))
    ref, _ = naive.pool2d(x, kernel, stride, p, dil, mode, ceil_mode, cip)
    gy = rng.standard_normal(ref.shape)
    gref = naive.pool2d_backward(x, gy, kernel, stride, p, dil, mode, ceil_mode, cip)
    for _ in range(REPEAT):
        y, state = F.pool2d(x, kernel, stride, _pad_arg(p), mode, dil, ceil_mode, cip, return_state=True)
        np.testing.assert_allclose(y, ref, **_tol(np.float64))
        np.testing.assert_allclose(F.pool2d_backward(gy, state), gref, **_tol(np.float64))


def test_adaptive_max_pool_two_threads_against_oracle(cpu_backend, two_threads):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 7, 5))
    x[1, 2, 2:4, 1] = 5.0  # a tie inside overlapping bins: the first maximum takes the gradient
    ref, _ = naive.adaptive_max_pool2d(x, (3, 4))
    gy = rng.standard_normal(ref.shape)
    gref = naive.adaptive_max_pool2d_backward(x, gy)
    for _ in range(REPEAT):
        y, state = F.adaptive_max_pool2d(x, (3, 4), return_state=True)
        np.testing.assert_array_equal(y, ref)
        np.testing.assert_allclose(F.pool2d_backward(gy, state), gref, **_tol(np.float64))


def test_adaptive_avg_pool_two_threads_against_oracle(cpu_backend, two_threads):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 7, 5))
    ref = naive.adaptive_avg_pool2d(x, (3, 4))
    gy = rng.standard_normal(ref.shape)
    gref = naive.adaptive_avg_pool2d_backward(x.shape, gy)
    for _ in range(REPEAT):
        y, state = F.adaptive_avg_pool2d(x, (3, 4), return_state=True)
        np.testing.assert_allclose(y, ref, **_tol(np.float64))
        np.testing.assert_allclose(F.pool2d_backward(gy, state), gref, **_tol(np.float64))


@pytest.mark.parametrize("mode, align_corners", [("nearest", None), ("bilinear", False), ("bilinear", True)])
def test_upsample_two_threads_against_oracle(cpu_backend, mode, align_corners, two_threads):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 4, 5))
    ref = naive.upsample(x, (9, 12), (2.3, 2.5), mode, bool(align_corners))
    gy = rng.standard_normal(ref.shape)
    gref = naive.upsample_backward(x.shape, gy, (2.3, 2.5), mode, bool(align_corners))
    for _ in range(REPEAT):
        y, state = F.upsample(x, scale_factor=(2.3, 2.5), mode=mode, align_corners=align_corners, return_state=True)
        np.testing.assert_allclose(y, ref, **_tol(np.float64))
        np.testing.assert_allclose(F.upsample_backward(gy, state), gref, **_tol(np.float64))


def test_conv_transpose2d_two_threads_against_oracle(cpu_backend, two_threads):
    """Through the convolution paths it borrows (forward = a convolution's input gradient)."""
    rng = np.random.default_rng(9)
    x, w, b = rng.standard_normal((2, 4, 3, 4)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(6)
    args = dict(stride=(2, 1), padding=((1, 0), (0, 1)), output_padding=(1, 0), groups=2, dilation=(1, 2))
    pads = (1, 0, 0, 1)
    ref = naive.conv_transpose2d(x, w, b, (2, 1), pads, (1, 0), (1, 2), 2)
    gy = rng.standard_normal(ref.shape)
    gref = naive.conv_transpose2d_backward(x, w, gy, (2, 1), pads, (1, 2), 2)
    for _ in range(REPEAT):
        y, state = F.conv_transpose2d(x, w, b, **args, return_state=True)
        np.testing.assert_allclose(y, ref, **_tol(np.float64))
        for g, r in zip(F.conv_transpose2d_backward(gy, state), gref):
            np.testing.assert_allclose(g, r, **_tol(np.float64))


@pytest.mark.parametrize("mode", ["across", "within"])
def test_lrn_two_threads_against_oracle(cpu_backend, mode, two_threads):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 7, 4, 5))
    size, alpha, beta, k = (5, 0.3, 0.75, 2.0) if mode == "across" else (3, 0.5, 0.6, 1.5)
    ref, _ = naive.lrn(x, size, alpha, beta, k, mode)
    gy = rng.standard_normal(x.shape)
    gref = naive.lrn_backward(x, gy, size, alpha, beta, k, mode)
    for _ in range(REPEAT):
        y, state = F.local_response_norm(x, size, alpha, beta, k, mode, return_state=True)
        np.testing.assert_allclose(y, ref, **_tol(np.float64))
        np.testing.assert_allclose(F.local_response_norm_backward(gy, state), gref, rtol=1e-9, atol=1e-11)


def _erf(v):
    return np.vectorize(math.erf)(v)


ACTS = {  # op: (forward oracle, derivative oracle in terms of x), float64
    "relu": (lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(float)),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "elu": (lambda x: np.where(x > 0, x, np.expm1(x)), lambda x: np.where(x > 0, 1.0, np.exp(x))),
    "gelu": (lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))),
             lambda x: 0.5 * (1 + _erf(x / np.sqrt(2))) + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)),
    "leaky_relu": (lambda x: np.where(x > 0, x, 0.01 * x), lambda x: np.where(x > 0, 1.0, 0.01)),
}


@pytest.mark.parametrize("op", sorted(ACTS))
def test_activations_two_threads_against_formula(cpu_backend, op, two_threads):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4, 5, 7))
    gy = rng.standard_normal(x.shape)
    fwd, der = ACTS[op]
    for _ in range(REPEAT):
        y, state = getattr(F, op)(x, return_state=True)
        np.testing.assert_allclose(y, fwd(x), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(getattr(F, op + "_backward")(gy, state), gy * der(x), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("log", [False, True])
def test_softmax_two_threads_against_formula(cpu_backend, log, two_threads):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 6, 5))
    gy = rng.standard_normal(x.shape)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    s = e / e.sum(axis=1, keepdims=True)
    ref = np.log(s) if log else s
    gref = gy - s * gy.sum(axis=1, keepdims=True) if log else s * (gy - (gy * s).sum(axis=1, keepdims=True))
    op = "log_softmax" if log else "softmax"
    for _ in range(REPEAT):
        y, state = getattr(F, op)(x, return_state=True)
        np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(getattr(F, op + "_backward")(gy, state), gref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("op", ["relu6", "hardsigmoid", "hardswish", "silu"])
def test_mobile_activations_two_threads_against_oracle(cpu_backend, op, two_threads):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4, 5, 7)) * 4
    x[0, 0, 0, :5] = [-3.0, 0.0, 3.0, 6.0, -0.0]  # the kinks
    gy = rng.standard_normal(x.shape)
    ref, gref = getattr(naive, op)(x), gy * getattr(naive, op + "_grad")(x)
    for _ in range(REPEAT):
        y, state = getattr(F, op)(x, return_state=True)
        np.testing.assert_allclose(y, ref, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(getattr(F, op + "_backward")(gy, state), gref, rtol=1e-13, atol=1e-15)


def test_channel_shuffle_and_drop_path_two_threads_against_oracle(cpu_backend, two_threads):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 6, 3, 4))
    gy = rng.standard_normal(x.shape)
    keep = np.random.default_rng(12).random(5, dtype=np.float32) >= np.float32(0.4)
    for _ in range(REPEAT):
        y, state = F.channel_shuffle(x, 3, return_state=True)
        np.testing.assert_array_equal(y, naive.channel_shuffle(x, 3))
        np.testing.assert_array_equal(F.channel_shuffle_backward(gy, state), naive.channel_shuffle_backward(gy, 3))
        y, state = F.drop_path(x, 0.4, np.random.default_rng(12), return_state=True)
        np.testing.assert_allclose(y, naive.drop_path(x, keep, 0.4), rtol=1e-15)
        np.testing.assert_allclose(F.drop_path_backward(gy, state), naive.drop_path(gy, keep, 0.4), rtol=1e-15)


def test_dropout_two_threads_matches_its_mask(cpu_backend, two_threads):
    x = np.random.default_rng(9).standard_normal((4, 3, 5, 5))
    gy = np.ones_like(x)
    for _ in range(REPEAT):
        y, state = F.dropout(x, 0.3, np.random.default_rng(10), return_state=True)
        kept = y != 0
        np.testing.assert_allclose(y[kept], x[kept] / 0.7, rtol=1e-15)
        np.testing.assert_array_equal(F.dropout_backward(gy, state) != 0, kept)


# ------------------------------------------------------------------------ training is reproducible
def _train_small_convnet(steps=40):
    from corenet import Input, Model, optim
    from corenet import layers as L

    x_in = Input((3, 8, 8))
    h = L.ReLU()(L.BatchNorm2d(6)(L.Conv2d(6, 3, padding=1, bias=False)(x_in)))
    h = L.MaxPool2d(2)(h)
    out = L.Linear(5)(L.Flatten()(h))
    model = Model(x_in, out, seed=0)
    model.compile(optim.SGD(lr=0.05, momentum=0.9), "cross_entropy")
    rng = np.random.default_rng(11)
    x = rng.standard_normal((16, 3, 8, 8)).astype(np.float32)
    y = rng.integers(0, 5, 16)
    for _ in range(steps):
        model.train_on_batch(x, y)
    return {k: v.copy() for k, v in model.parameters().items()}


def test_two_thread_training_is_bitwise_reproducible(cpu_backend, two_threads):
    """40 steps of conv, BN, ReLU, pool, linear on 2 threads, twice: the same weights, bit for bit."""
    first = _train_small_convnet()
    second = _train_small_convnet()
    assert first.keys() == second.keys()
    for name in first:
        assert np.array_equal(first[name], second[name]), f"{name} differs between two identical runs"
