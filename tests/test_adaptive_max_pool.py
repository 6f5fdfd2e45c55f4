"""Adaptive max pooling (issue 17) and the pooling contract of issue 14: the functional op against
the plain-loop oracle, PyTorch and float64 finite differences; the layer's gradient, summary row,
config and save/load; one kernel signature per name on every backend; ``pool_output_shape``."""

import inspect
import json

import naive
import numpy as np
import pytest
from gradcheck import check_layer, vjp_grad
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import corenet
from corenet import F, Input, Model, Sequential, kernels
from corenet import layers as L
from corenet.functional.pool import PoolState
from corenet.summary import layer_rows

fixture_ok = settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                              HealthCheck.too_slow])
TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-6, atol=1e-6)}

shapes = st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9))
sizes = st.tuples(st.integers(1, 6), st.integers(1, 6))


def _input(shape, seed, dtype, ties):
    """Distinct values, or (``ties``) values from {0, 1, 2}: the first maximum of a bin must win."""
    rng = np.random.default_rng(seed)
    if ties:
        return rng.integers(0, 3, shape).astype(dtype)
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) / n - 0.5).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@fixture_ok
@given(shape=shapes, out=sizes, seed=st.integers(0, 2**16), ties=st.booleans())
def test_adaptive_max_pool_matches_oracle(backend, dtype, shape, out, seed, ties):
    x = _input(shape, seed, dtype, ties)
    y, state = F.adaptive_max_pool2d(x, out, return_state=True)
    want, argmax = naive.adaptive_max_pool2d(x.astype(np.float64), out)
    assert y.shape == shape[:2] + out and y.dtype == dtype
    assert y.shape == F.adaptive_pool_output_shape(shape, out)
    np.testing.assert_array_equal(y, want.astype(dtype))  # a maximum is one of the inputs: exact
    np.testing.assert_array_equal(state.argmax, argmax)
    gy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(dtype)
    gx = F.adaptive_max_pool2d_backward(gy, state)
    assert gx.dtype == dtype and gx.shape == x.shape
    np.testing.assert_allclose(gx, naive.adaptive_max_pool2d_backward(x.astype(np.float64), gy), **TOL[dtype])
    np.testing.assert_array_equal(F.pool2d_backward(gy, state), gx)  # the one backward of every pooling


@settings(max_examples=15, deadline=None)
@given(shape=shapes, out=sizes, seed=st.integers(0, 2**16), ties=st.booleans())
def test_adaptive_max_pool_matches_torch(shape, out, seed, ties):
    torch = pytest.importorskip("torch")
    x = _input(shape, seed, np.float64, ties)
    tx = torch.tensor(x, requires_grad=True)
    ty, tidx = torch.nn.functional.adaptive_max_pool2d(tx, out, return_indices=True)
    y, state = F.adaptive_max_pool2d(x, out, return_state=True)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(state.argmax, tidx.numpy())  # PyTorch's tie rule: the first maximum
    gy = np.random.default_rng(seed).standard_normal(y.shape)
    (gt,) = torch.autograd.grad(ty, tx, torch.tensor(gy))
    np.testing.assert_allclose(F.pool2d_backward(gy, state), gt.numpy(), rtol=1e-12, atol=1e-12)


@settings(max_examples=10, deadline=None)
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 6), st.integers(1, 6)),
       out=st.tuples(st.integers(1, 4), st.integers(1, 4)), seed=st.integers(0, 2**16))
def test_adaptive_max_pool_finite_differences(shape, out, seed):
    x = _input(shape, seed, np.float64, ties=False)  # values 1/n apart: a 1e-6 step never changes a maximum
    y, state = F.adaptive_max_pool2d(x, out, return_state=True)
    gy = np.random.default_rng(seed).standard_normal(y.shape)
    fd = vjp_grad(lambda v: F.adaptive_max_pool2d(v, out), x, gy)
    np.testing.assert_allclose(F.pool2d_backward(gy, state), fd, rtol=1e-6, atol=1e-8)


def test_adaptive_max_pool_bins_ties_and_nan(backend):
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    # rows and columns [0, 2), [1, 4), [3, 5): overlapping bins
    np.testing.assert_array_equal(F.adaptive_max_pool2d(x, 3)[0, 0], [[6, 8, 9], [16, 18, 19], [21, 23, 24]])
    np.testing.assert_array_equal(F.adaptive_max_pool2d(x, (1, None))[0, 0], [[20, 21, 22, 23, 24]])
    big = F.adaptive_max_pool2d(x, (7, 6))  # output larger than the input: bins of one or two rows
    np.testing.assert_array_equal(big, naive.adaptive_max_pool2d(x.astype(np.float64), (7, 6))[0])
    ones = np.ones((1, 1, 4, 4), np.float64)
    y, s = F.adaptive_max_pool2d(ones, 2, return_state=True)
    np.testing.assert_array_equal(F.pool2d_backward(np.ones_like(y), s)[0, 0],
                                  [[1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])  # first of each bin
    nan = np.array([[[[1.0, np.nan, 7.0], [np.nan, 2.0, 9.0]]]])
    y, s = F.adaptive_max_pool2d(nan, (1, 2), return_state=True)  # bins: columns [0, 2) and [1, 3)
    assert np.isnan(y[0, 0, 0]).all()
    np.testing.assert_array_equal(s.argmax[0, 0], [[1, 1]])  # the first NaN of each bin


@pytest.mark.parametrize("call, error, match", [
    (lambda: F.adaptive_max_pool2d(np.zeros((1, 1, 4, 4)), 0), ValueError, r"adaptive_max_pool2d: output_size.*>= 1"),
    (lambda: F.adaptive_max_pool2d(np.zeros((1, 4, 4)), 2), ValueError, r"adaptive_max_pool2d: x must be 4-D"),
    (lambda: F.adaptive_max_pool2d(np.zeros((1, 1, 0, 4)), 2), ValueError, r"H, W >= 1.*\(1, 1, 0, 4\)"),
    (lambda: F.adaptive_max_pool2d(np.zeros((1, 1, 4, 4), np.int64), 2), TypeError, r"float32 or float64.*int64"),
    (lambda: F.adaptive_max_pool2d(np.zeros((1, 1, 4, 4)), 2.5), TypeError, r"output_size.*2.5"),
    (lambda: F.adaptive_max_pool2d_backward(np.zeros((1, 1, 2, 2)), None), TypeError,
     r"^adaptive_max_pool2d_backward: .*PoolState.*NoneType"),
    (lambda: F.adaptive_max_pool2d_backward(np.zeros((1, 1, 2, 2)), F.adaptive_max_pool2d(np.zeros((1, 1, 4, 4)), 1,
                                                                                          return_state=True)[1]),
     ValueError, r"^adaptive_max_pool2d_backward: gy must match the forward output, shape \(1, 1, 1, 1\)"),
    (lambda: F.adaptive_max_pool2d_backward(np.zeros((1, 1, 1, 1)),
                                            F.adaptive_avg_pool2d(np.zeros((1, 1, 2, 2)), 1, return_state=True)[1]),
     ValueError, r"'adaptive_avg' pooling"),
    (lambda: F.pool_output_shape((1, 1, 4), 2), TypeError, r"pool_output_shape: x_shape.*\(1, 1, 4\)"),
    (lambda: F.pool_output_shape((1, 1, 4, 4), 5), ValueError, r"pool_output_shape: kernel.*larger than the padded"),
    (lambda: F.adaptive_pool_output_shape((1, 1, 4, 4), (0, 2)), ValueError, r"adaptive_pool_output_shape: output"),
])
def test_adaptive_max_pool_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_pool_state_is_one_frozen_named_tuple():
    x = np.zeros((1, 2, 4, 4))
    states = [F.max_pool2d(x, 2, return_state=True)[1], F.avg_pool2d(x, 2, return_state=True)[1],
              F.adaptive_avg_pool2d(x, 3, return_state=True)[1], F.adaptive_max_pool2d(x, 3, return_state=True)[1]]
    assert {type(s) for s in states} == {PoolState} and issubclass(PoolState, tuple)
    assert [s.mode for s in states] == ["max", "avg", "adaptive_avg", "adaptive_max"]
    with pytest.raises(AttributeError):
        states[0].mode = "avg"
    mode, x_shape, y_shape, *_ = states[3]  # unpacks like a tuple
    assert (mode, x_shape, y_shape) == ("adaptive_max", (1, 2, 4, 4), (1, 2, 3, 3))


@pytest.mark.parametrize("kernel, stride, padding, dilation, ceil_mode", [
    (3, 2, 1, 1, True), ((2, 3), (1, 2), ((0, 1), (1, 1)), (2, 1), False), (3, None, "same", 1, False),
])
def test_pool_output_shape_is_the_ops_shape(kernel, stride, padding, dilation, ceil_mode):
    x = np.zeros((2, 3, 9, 8))
    want = F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode).shape
    assert F.pool_output_shape(x.shape, kernel, stride, padding, dilation, ceil_mode) == want
    layer = L.MaxPool2d(kernel, stride, padding, dilation, ceil_mode)
    assert layer(Input((3, 9, 8))).shape == want[1:]


def test_pool_kernels_have_one_signature_on_every_backend():
    """Issue 14: the same names and parameters on numba, cython, auto and (when importable) cuda."""
    import importlib

    modules = {b: kernels.require(b).pool for b in corenet.backends() if b in ("numba", "cython", "auto")}
    try:
        modules["cuda"] = importlib.import_module("corenet.kernels.cuda.pool")
    except ImportError:  # numba.cuda absent: the CPU backends are still compared
        pass
    ref = modules["numba"]
    assert {"adaptive_max_pool_forward", "adaptive_max_pool_backward"} <= set(ref.__all__)
    for name, module in modules.items():
        assert module.__all__ == ref.__all__, name
        for fn in ref.__all__:
            assert inspect.signature(getattr(module, fn)) == inspect.signature(getattr(ref, fn)), (name, fn)


# ------------------------------------------------------------------------------ the layer


def test_adaptive_max_pool_layer_gradient():
    check_layer(L.AdaptiveMaxPool2d((2, 3)), (2, 5, 7), batch=2)
    check_layer(L.AdaptiveMaxPool2d([None, 2]), (2, 3, 5), batch=2)


def test_adaptive_max_pool_layer_summary_config_and_save_load(tmp_path):
    from corenet import io

    m = Sequential([L.Conv2d(4, 3, name="c"), L.AdaptiveMaxPool2d((2, 3), name="pool"), L.Flatten(), L.Linear(5)],
                   input_shape=(2, 9, 8), seed=0)
    rows = {r["name"]: r for r in layer_rows(m)}
    assert rows["pool"]["type"] == "AdaptiveMaxPool2d" and rows["pool"]["shape"] == (4, 2, 3)
    assert rows["pool"]["macs"] == 0 and rows["pool"]["params"] == 0  # pooling counts no MACs (summary.py)
    assert rows["pool"]["bytes"] == 4 * 2 * 3 * 4
    cfg = json.loads(json.dumps(m.get_layer("pool").get_config()))
    assert cfg["output_size"] == [2, 3] and L.get_layer_class("AdaptiveMaxPool2d") is L.AdaptiveMaxPool2d
    assert L.AdaptiveMaxPool2d.from_config(cfg).get_config() == cfg
    m.save(tmp_path / "m.npz", include_optimizer=False)
    again = io.load(tmp_path / "m.npz")
    assert type(again.get_layer("pool")) is L.AdaptiveMaxPool2d
    x = np.random.default_rng(0).standard_normal((3, 2, 9, 8)).astype(np.float32)
    np.testing.assert_array_equal(again.forward(x), m.forward(x))


def test_adaptive_max_pool_layer_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"AdaptiveMaxPool2d.*output_size must be >= 1"):
        L.AdaptiveMaxPool2d(0)
    with pytest.raises(ValueError, match=r"AdaptiveMaxPool2d layer.*\(channels, height, width\).*\(None, 5\)"):
        L.AdaptiveMaxPool2d(2)(Input((5,)))
    with pytest.raises(ValueError, match=r"MaxPool2d layer.*at most half the kernel.*\(None, 1, 5, 5\)"):
        L.MaxPool2d(2, padding=2)(Input((1, 5, 5)))


def test_adaptive_max_pool_model_trains_a_step():
    x = Input((1, 6, 6), np.float64)
    m = Model(x, L.Linear(2)(L.Flatten()(L.AdaptiveMaxPool2d(2)(L.Conv2d(3, 3)(x)))), seed=1)
    out = m.forward(np.random.default_rng(0).standard_normal((2, 1, 6, 6)), training=True)
    m.backward(np.ones_like(out))
    grads = m.gradients()
    assert np.abs(grads["conv2d.weight"]).sum() > 0  # the gradient reached the convolution through the pool


def test_adaptive_max_pool_onnx_export(tmp_path):
    """GlobalMaxPool for output 1, a MaxPool window when the bins are one plain window, else refused."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    x = Input((3, 6, 8))
    h = L.Conv2d(4, 1)(x)
    model = Model(x, [L.AdaptiveMaxPool2d((3, 2))(h), L.AdaptiveMaxPool2d(1)(h)], seed=0)  # 6x8: windows 2x4
    xs = np.random.default_rng(0).standard_normal((2, 3, 6, 8)).astype(np.float32)
    corenet.export_onnx(model, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: xs})
    for g, w in zip(got, model.predict(xs)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)  # onnxruntime's convolution rounds differently
    back = corenet.import_onnx(tmp_path / "m.onnx")
    assert {"MaxPool2d", "GlobalMaxPool2d"} <= {type(layer).__name__ for layer in back.layers}
    for g, w in zip(back.predict(xs), model.predict(xs)):
        np.testing.assert_array_equal(g, w)
    odd = Model(x, L.AdaptiveMaxPool2d(4, name="amp")(x), seed=0)  # 6 rows into 4 overlapping bins
    with pytest.raises(ValueError, match=r"AdaptiveMaxPool2d.*amp.*not one plain window"):
        corenet.export_onnx(odd, tmp_path / "odd.onnx")
