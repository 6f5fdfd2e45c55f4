"""Fused batch norm + ReLU (or ReLU6) and add + ReLU against the unfused ops (forward: the same bits; gradients:
up to the grouping of float64 partial sums), in the kernels (2 forced threads, guard regions) and
in whole models through the graph's fusion."""

import os

import numpy as np
import pytest
from conftest import CPU_BACKENDS

import corenet
from corenet import Input, Model, config, kernels, models
from corenet import functional as F
from corenet import layers as L
from corenet.fusion import FusedAddReLU, FusedBatchNormReLU, FusedConvBatchNorm

DTYPES = [np.float32, np.float64]
GUARD = 37


@pytest.fixture(params=CPU_BACKENDS + ["auto"])
def any_backend(request):
    previous = corenet.get_backend()
    corenet.set_backend(request.param)
    try:
        yield request.param
    finally:
        corenet.set_backend(previous)


def same(a, b):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def close(a, b, dtype):
    """Equal up to the order of float64 partial sums (the vectorised reductions may group the
    masked and the unmasked sums differently): 1e-12 in float64, a few ulps in float32."""
    tol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, float(np.abs(b).max(initial=0))))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training,affine", [(True, True), (True, False), (False, True)])
def test_batch_norm_relu_equals_the_pair(any_backend, dtype, training, affine):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 4, 6)).astype(dtype)
    g = rng.standard_normal(5).astype(dtype) if affine else None
    b = rng.standard_normal(5).astype(dtype) if affine else None
    stats = [(rng.standard_normal(5), rng.random(5) + 0.5) for _ in range(2)]
    y1, s1 = F.batch_norm_relu(x, g, b, *map(np.copy, stats[0]), training, return_state=True)
    z, sb = F.batch_norm(x, g, b, *map(np.copy, stats[0]), training, return_state=True)
    y2, sr = F.relu(z, return_state=True)
    same(y1, y2)
    assert y1.dtype == dtype
    gy = rng.standard_normal(x.shape).astype(dtype)
    for got, want in zip(F.batch_norm_relu_backward(gy, s1), F.batch_norm_backward(F.relu_backward(gy, sr), sb)):
        if want is None:
            assert got is None
        else:
            assert got.dtype == dtype
            close(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training,affine", [(True, True), (True, False), (False, True)])
def test_batch_norm_relu6_equals_the_pair(any_backend, dtype, training, affine):
    """Both ends of the clamp taken: the outputs spread over [-12, 12] (exact 0 and 6 included)."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 5, 4, 6)).astype(dtype)
    x[2, :, 3, 5] = 50.0  # one outlier per channel: normalised above 6 without affine parameters too
    x[0, 0, 0, 0] = np.nan  # NaN passes the clamp (and spreads over channel 0 in training); gradient 0
    g = (rng.standard_normal(5) * 4).astype(dtype) if affine else None
    b = rng.standard_normal(5).astype(dtype) if affine else None
    rm, rv = rng.standard_normal(5), rng.random(5) * 0.05 + 0.01
    if not training:  # exact 0 and 6 in eval mode: x = mean gives y = beta
        b = np.array([0.0, 6.0, 1.0, -1.0, 7.0], dtype)
        x[1, :, 1, 1] = rm.astype(dtype)
    y1, s1 = F.batch_norm_relu6(x, g, b, rm.copy(), rv.copy(), training, return_state=True)
    z, sb = F.batch_norm(x, g, b, rm.copy(), rv.copy(), training, return_state=True)
    y2, sr = F.relu6(z, return_state=True)
    same(y1, y2)
    assert y1.dtype == dtype and (y1 == 6).any() and (y1 == 0).any()
    gy = rng.standard_normal(x.shape).astype(dtype)
    for got, want in zip(F.batch_norm_relu6_backward(gy, s1), F.batch_norm_backward(F.relu6_backward(gy, sr), sb)):
        if want is None:
            assert got is None
        else:
            assert got.dtype == dtype
            if training:  # the NaN spreads over its channel's statistics
                np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
                got, want = np.nan_to_num(got), np.nan_to_num(want)
            close(got, want, dtype)


def test_batch_norm_relu6_backward_matches_finite_differences():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 3, 4))
    g, b = rng.standard_normal(3) * 3, rng.standard_normal(3) + 2
    gy = rng.standard_normal(x.shape)

    def loss(x_, g_, b_):
        return float((F.batch_norm_relu6(x_, g_, b_, np.zeros(3), np.ones(3), True) * gy).sum())

    y, state = F.batch_norm_relu6(x, g, b, np.zeros(3), np.ones(3), True, return_state=True)
    assert ((y > 0) & (y < 6)).any() and (y == 6).any() and (y == 0).any()
    gx, gg, gb = F.batch_norm_relu6_backward(gy, state)
    for got, arg in ((gx, x), (gg, g), (gb, b)):
        num = np.zeros_like(arg)
        for i in range(arg.size):
            args = [x.copy(), g.copy(), b.copy()]
            k = [a is arg for a in (x, g, b)].index(True)
            d = np.zeros(arg.size)
            d[i] = 1e-6
            args[k] = arg + d.reshape(arg.shape)
            fp = loss(*args)
            args[k] = arg - d.reshape(arg.shape)
            num.reshape(-1)[i] = (fp - loss(*args)) / 2e-6
        np.testing.assert_allclose(got, num, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_relu_equals_the_pair(any_backend, dtype):
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((2, 3, 5, 5)).astype(dtype) for _ in range(2))
    a[0, 0, 0, :2] = -b[0, 0, 0, :2]  # exact zeros: relu's tie
    y1, s1 = F.add_relu(a, b, return_state=True)
    y2, s2 = F.relu(a + b, return_state=True)
    same(y1, y2)
    gy = rng.standard_normal(a.shape).astype(dtype)
    same(F.add_relu_backward(gy, s1), F.relu_backward(gy, s2))


def test_fused_ops_check_their_state_and_shapes():
    x = np.ones((2, 3, 4, 4))
    with pytest.raises(TypeError, match="batch_norm_relu_backward: state must be the BatchNormReluState"):
        F.batch_norm_relu_backward(x, F.relu(x, return_state=True)[1])
    with pytest.raises(TypeError, match="batch_norm_relu6_backward: state must be the BatchNormRelu6State"):
        F.batch_norm_relu6_backward(x, F.batch_norm_relu(x, None, None, np.zeros(3), np.ones(3), True,
                                                         return_state=True)[1])
    with pytest.raises(TypeError, match="add_relu_backward: state must be the AddReluState"):
        F.add_relu_backward(x, {})
    with pytest.raises(ValueError, match="add_relu: a and b must have one shape"):
        F.add_relu(x, np.ones((2, 3, 4, 5)))
    _, state = F.add_relu(x, x, return_state=True)
    with pytest.raises(ValueError, match="add_relu_backward: gy must have"):
        F.add_relu_backward(np.ones((2, 3)), state)


def _fused_cases(dt):
    """(name, args with output placeholders) of every kernel of the fused family."""
    rng = np.random.default_rng(3)
    N, C, Lh = 3, 4, 10
    x = rng.standard_normal((N, C, Lh)).astype(dt)
    y = np.maximum(rng.standard_normal((N, C, Lh)), 0).astype(dt)
    y6 = np.clip(rng.standard_normal((N, C, Lh)) * 5, 0, 6).astype(dt)
    gy = rng.standard_normal((N, C, Lh)).astype(dt)
    v = [rng.standard_normal(C).astype(dt) for _ in range(5)]
    flat = rng.standard_normal(N * C * Lh).astype(dt)
    out3, outf = ("out", (N, C, Lh)), ("out", (N * C * Lh,))
    return {
        "bn_relu_forward": (x, v[0], v[1], v[2], out3),
        "bn_relu_backward_reduce": (gy, y, x, v[0].astype(np.float64)),
        "bn_relu_backward_gx": (gy, y, x, v[0], v[1], v[2], v[3], out3),
        "bn_relu_scale_gx": (gy, y, v[0], out3),
        "add_relu_forward": (flat, x.reshape(-1), outf),
        "bn_relu6_forward": (x, v[0], (v[1] * 5).astype(dt), v[2], out3),
        "bn_relu6_backward_reduce": (gy, y6, x, v[0].astype(np.float64)),
        "bn_relu6_backward_gx": (gy, y6, x, v[0], v[1], v[2], v[3], out3),
        "bn_relu6_scale_gx": (gy, y6, v[0], out3),
    }


def _call(fn, args, dt, sentinel):
    real, bufs = [], []
    for a in args:
        if isinstance(a, tuple) and a and a[0] == "out":
            n = int(np.prod(a[1]))
            buf = np.full(n + GUARD, sentinel, dt)
            bufs.append((buf, n))
            real.append(buf[:n].reshape(a[1]))
        else:
            real.append(a)
    ret = fn(*real)
    for buf, n in bufs:
        assert (buf[n:] == sentinel).all(), f"{fn.__name__} wrote past its output"
    return [buf[:n].copy() for buf, n in bufs] or [np.asarray(r).copy() for r in ret]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_fused_kernels_two_forced_threads_bitwise_and_guarded(name, dtype):
    """Every fused kernel on 1 thread, then repeatedly on 2 threads forced on small inputs (the size
    threshold set to 0): identical bits, nothing written past the outputs."""
    if config._max_threads() < 2:
        pytest.skip("fewer than 2 threads allowed here (NUMBA_NUM_THREADS)")
    module = kernels.require(name).fused
    cases = _fused_cases(dtype)
    assert set(cases) == set(module.__all__), "a fused kernel without a thread/guard case"
    prev = config.get_num_threads(), config.get_parallel_threshold()
    try:
        config.set_parallel_threshold(0)
        for kname, args in cases.items():
            fn = getattr(module, kname)
            corenet.set_num_threads(1)
            ref = _call(fn, args, dtype, 7.0)
            corenet.set_num_threads(2)
            for r in range(4):
                for a, b in zip(ref, _call(fn, args, dtype, -3.0 if r % 2 else 5.0)):
                    same(a, b)
    finally:
        corenet.set_num_threads(prev[0])
        config.set_parallel_threshold(prev[1])


def _train(build, fusion, steps=3):
    os.environ["CORENET_FUSION"] = fusion
    try:
        model = build()
    finally:
        del os.environ["CORENET_FUSION"]
    model.compile(corenet.optim.SGD(lr=0.1, momentum=0.9), "cross_entropy")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, *model.inputs[0].shape)).astype(np.float32)
    y = rng.integers(0, 10, 6)
    losses = [model.train_on_batch(x, y) for _ in range(steps)]
    return model, losses, model.predict(x)


def test_resnet20_fused_training_matches_unfused():
    build = lambda: models.resnet20_cifar(shortcut="B", seed=0)  # noqa: E731
    fused, losses_f, pred_f = _train(build, "1")
    plain, losses_p, pred_p = _train(build, "0")
    steps = [step[0] for step in fused.graph.steps]
    conv_bn = [s for s in steps if isinstance(s, FusedConvBatchNorm)]
    assert len(conv_bn) == 21 and sum(s.relu for s in conv_bn) == 10  # every BN follows a conv; 10 feed a ReLU
    assert sum(isinstance(s, FusedAddReLU) for s in steps) == 9
    assert len(plain.graph.steps) == len(steps) + 19 + 21
    np.testing.assert_allclose(losses_f, losses_p, rtol=1e-5)
    # inference folds the batch norms into the convolutions: equal up to float32 rounding
    np.testing.assert_allclose(pred_f, pred_p, rtol=1e-4, atol=1e-5)
    for k, v in plain.parameters().items():
        close(fused.parameters()[k], v, np.float32)


def test_mobilenet_v2_fused_training_matches_unfused():
    """Every BN -> ReLU6 of MobileNetV2 runs fused (training) and folded into its convolution
    (inference); losses, parameters and predictions as unfused."""
    build = lambda: models.mobilenet_v2(num_classes=10, input_size=32, width=0.35, seed=0)  # noqa: E731
    fused, losses_f, pred_f = _train(build, "1", steps=2)
    plain, losses_p, pred_p = _train(build, "0", steps=2)
    steps = [step[0] for step in fused.graph.steps]
    conv_bn = [s for s in steps if isinstance(s, FusedConvBatchNorm)]
    relu6 = sum(type(layer) is L.ReLU6 for layer in plain.layers)
    assert relu6 > 30 and sum(s.act is F.relu6 for s in conv_bn) == relu6
    assert not any(type(s) is L.ReLU6 for s in steps)
    np.testing.assert_allclose(losses_f, losses_p, rtol=1e-5)
    # the parameters are equal; the predictions differ by the inference folding's rounding, which this
    # net (1x1 maps, batch 6, 2 steps at lr 0.1) amplifies: 0.4-1.4e-4 relative depending on the
    # depthwise kernels' rounding in training (the numba and cython backends' predictions differ by 30%)
    np.testing.assert_allclose(pred_f, pred_p, rtol=5e-4, atol=1e-5)
    for k, v in plain.parameters().items():
        close(fused.parameters()[k], v, np.float32)


def test_only_private_intermediates_are_fused():
    """A batch norm read by two layers, a batch norm that is a model output, and a shared ReLU stay unfused."""
    x = Input((3, 8, 8))
    h = L.Conv2d(4, 3, padding=1)(x)
    bn_out = L.BatchNorm2d()(h)                 # also a model output: not fused
    r1 = L.ReLU()(bn_out)
    bn2 = L.BatchNorm2d()(L.Conv2d(4, 3, padding=1)(r1))
    a = L.ReLU()(bn2)                           # bn2 read twice: not fused
    b = L.Conv2d(4, 1)(bn2)
    shared = L.ReLU()
    s1 = shared(L.BatchNorm2d()(a))             # a shared ReLU: not fused
    s2 = shared(b)
    out = L.Linear(10)(L.Flatten()(L.GlobalAvgPool2d()(L.Add()([s1, s2]))))
    model = Model(x, [out, bn_out])
    assert not any(isinstance(step[0], (FusedBatchNormReLU, FusedAddReLU)) for step in model.graph.steps)


def test_frozen_batch_norm_fuses_with_eval_statistics():
    def build():
        m = models.resnet20_cifar(shortcut="B", seed=1)
        for layer in m.layers:
            if isinstance(layer, L.BatchNorm2d):
                layer.trainable = False
        return m

    _, losses_f, pred_f = _train(build, "1", steps=2)
    _, losses_p, pred_p = _train(build, "0", steps=2)
    np.testing.assert_allclose(losses_f, losses_p, rtol=1e-5)
    np.testing.assert_allclose(pred_f, pred_p, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("bias,affine", [(True, True), (False, True), (True, False)])
def test_folded_batch_norm_equals_conv_then_eval_batch_norm(dtype, tol, bias, affine):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    w = rng.standard_normal((5, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype) if bias else None
    g, beta = (rng.standard_normal(5).astype(dtype) for _ in range(2)) if affine else (None, None)
    mean, var = rng.standard_normal(5), rng.random(5) + 0.1
    want = F.batch_norm(F.conv2d(x, w, b, stride=2, padding=1), g, beta, mean.copy(), var.copy(), False, eps=1e-3)
    w2, b2 = F.fold_batch_norm(w, b, g, beta, mean, var, eps=1e-3)
    assert w2.dtype == b2.dtype == dtype
    got = F.conv2d(x, w2, b2, stride=2, padding=1)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


def test_inference_folds_and_training_does_not():
    """forward(training=False) without state takes the folded convolution; with state (or in
    training) the layers run one by one and backward works."""
    model = models.resnet20_cifar(shortcut="B", seed=2)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 3, 32, 32)).astype(np.float32)
    for layer in model.layers:  # non-trivial running statistics
        if isinstance(layer, L.BatchNorm2d):
            layer.buffers["running_mean"][:] = rng.standard_normal(layer.num_features)
            layer.buffers["running_var"][:] = rng.random(layer.num_features) + 0.5
    folded = model.forward(x, training=False)
    kept = model.forward(x, training=False, retain_state=True)
    np.testing.assert_allclose(folded, kept, rtol=1e-4, atol=1e-5)
    gx = model.backward(np.ones_like(kept))
    assert gx.shape == x.shape and np.isfinite(gx).all()
