"""Regression tests for issue 12, items 7-10: bad calls get corenet's own ValueError/TypeError.

Each error names the op first (``"elu_backward: ..."``), then what was received and what was expected;
never a KeyError from inside a backward, a MemoryError from a runaway size, a silent cast of complex
numbers, or numpy's and Python's own messages.
"""

from __future__ import annotations

import numpy as np
import pytest

import corenet
from corenet import Input, Model, Sequential
from corenet import functional as F
from corenet import layers as L

X4 = np.linspace(-1, 1, 2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)


def _states():
    """One forward state of every op family, by the op's name."""
    rng = np.random.default_rng(0)
    w = np.ones((2, 3, 3, 3), np.float32)
    x2 = X4.reshape(2, -1)
    return {
        "relu": F.relu(X4, return_state=True)[1],
        "leaky_relu": F.leaky_relu(X4, return_state=True)[1],
        "elu": F.elu(X4, return_state=True)[1],
        "selu": F.selu(X4, return_state=True)[1],
        "gelu": F.gelu(X4, return_state=True)[1],
        "sigmoid": F.sigmoid(X4, return_state=True)[1],
        "tanh": F.tanh(X4, return_state=True)[1],
        "softmax": F.softmax(X4, return_state=True)[1],
        "log_softmax": F.log_softmax(X4, return_state=True)[1],
        "dropout": F.dropout(X4, 0.5, rng, return_state=True)[1],
        "linear": F.linear(x2, np.ones((4, 48), np.float32), return_state=True)[1],
        "batch_norm": F.batch_norm(X4, None, None, None, None, True, return_state=True)[1],
        "conv2d": F.conv2d(X4, w, padding=1, return_state=True)[1],
        "pool2d": F.max_pool2d(X4, 2, return_state=True)[1],
        "local_response_norm": F.local_response_norm(X4, 3, return_state=True)[1],
    }


BACKWARDS = {
    "relu": F.relu_backward, "leaky_relu": F.leaky_relu_backward, "elu": F.elu_backward,
    "selu": F.selu_backward, "gelu": F.gelu_backward, "sigmoid": F.sigmoid_backward, "tanh": F.tanh_backward,
    "softmax": F.softmax_backward, "log_softmax": F.log_softmax_backward, "dropout": F.dropout_backward,
    "linear": F.linear_backward, "batch_norm": F.batch_norm_backward, "conv2d": F.conv2d_backward,
    "pool2d": F.pool2d_backward, "local_response_norm": F.local_response_norm_backward,
}


# ----------------------------------------------------------------------------------- item 7
@pytest.mark.parametrize("op", sorted(BACKWARDS))
def test_backward_refuses_another_ops_state(op):
    """Every backward checks its state's type: another op's state, a dict or None is a TypeError."""
    states = _states()
    other = "relu" if op != "relu" else "tanh"
    wrong = [states[other], {}, None, dict(states[op]._asdict()) if hasattr(states[op], "_asdict") else {}]
    for state in wrong:
        with pytest.raises(TypeError, match=rf"^{op}_backward: state must be the \w+State returned by {op}\(.*"
                                            rf"received {type(state).__name__}"):
            BACKWARDS[op](np.ones((2, 3, 4, 4), np.float32), state)


def test_issue_examples_of_wrong_states():
    relu_state = F.relu(X4, return_state=True)[1]
    with pytest.raises(TypeError, match=r"elu_backward: state must be the EluState .*received ReluState"):
        F.elu_backward(X4, relu_state)
    with pytest.raises(TypeError, match=r"linear_backward: state must be the LinearState .*received ReluState"):
        F.linear_backward(X4, relu_state)
    with pytest.raises(TypeError, match=r"batch_norm_backward: state must be the BatchNormState .*received dict"):
        F.batch_norm_backward(X4, {})


def test_states_are_frozen():
    for state in _states().values():
        assert type(state).__name__.endswith("State") and not isinstance(state, dict)
        field = state._fields[0] if hasattr(state, "_fields") else "mode"
        with pytest.raises(AttributeError):
            setattr(state, field, None)


@pytest.mark.parametrize("op", sorted(BACKWARDS))
def test_right_state_still_works(op):
    state = _states()[op]
    y_shape = {"linear": (2, 4), "conv2d": (2, 2, 4, 4), "pool2d": (2, 3, 2, 2)}.get(op, (2, 3, 4, 4))
    out = BACKWARDS[op](np.ones(y_shape, np.float32), state)
    gx = out[0] if isinstance(out, tuple) else out
    assert gx.shape == ((2, 48) if op == "linear" else X4.shape)


# ----------------------------------------------------------------------------------- item 8
@pytest.mark.parametrize("call, match", [
    (lambda: F.adaptive_avg_pool2d(X4, 10**6), r"^adaptive_avg_pool2d: .*2\*\*3"),
    (lambda: F.adaptive_avg_pool2d(X4, (10**5, 10**5)), r"^adaptive_avg_pool2d: "),
    (lambda: F.max_pool2d(X4, 2, stride=2**63), r"^max_pool2d: stride must be at most 2\*\*31 - 1"),
    (lambda: F.avg_pool2d(X4, 2, stride=2**63), r"^avg_pool2d: stride must be at most"),
    (lambda: F.conv2d(X4, np.ones((2, 3, 3, 3), np.float32), stride=2**63), r"^conv2d: stride must be at most"),
    (lambda: F.conv2d(X4, np.ones((2, 3, 3, 3), np.float32), stride=(1, 2**40)), r"^conv2d: stride must be"),
    (lambda: F.conv2d(X4, np.ones((2, 3, 3, 3), np.float32), padding=2**31), r"^conv2d: padding must be at most"),
    (lambda: F.conv2d(X4, np.ones((2, 3, 3, 3), np.float32), padding=2**31 - 1), r"^conv2d: the padded input"),
    (lambda: F.conv2d(X4, np.ones((2, 3, 3, 3), np.float32), padding=10**6), r"^conv2d: the output would have"),
    (lambda: F.conv2d(X4, np.ones((2, 3, 3, 3), np.float32), dilation=2**31), r"^conv2d: dilation must be at"),
    (lambda: F.conv2d(X4, np.ones((3, 1, 1, 1), np.float32), groups=2**64), r"^conv2d: groups must be at most"),
    (lambda: F.local_response_norm(X4, 2**63), r"^local_response_norm: size must be at most"),
    (lambda: L.ZeroPad2d(10**9)(X4), r"^ZeroPad2d layer: .*2\*\*3"),
    (lambda: L.ZeroPad2d(2**40), r"^ZeroPad2d layer: padding must be"),
    (lambda: L.AdaptiveAvgPool2d(10**6)(X4), r"^AdaptiveAvgPool2d layer: .*elements"),
    (lambda: L.Conv2d(2, 3, padding=2**31), r"^Conv2d: padding must be at most"),
    (lambda: L.MaxPool2d(2, stride=2**63), r"^MaxPool2d: stride must be at most"),
    (lambda: L.Linear(2**31), r"^Linear: out_features must be at most"),
    (lambda: Sequential([L.Flatten(), L.Linear(2**30)], input_shape=(8,)), r"^Linear layer.*parameter 'weight'"),
])
def test_numbers_out_of_range_are_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------------- item 9
def _mlp(seed=0):
    x = Input((4,))
    model = Model(x, L.Linear(3)(L.ReLU()(L.Linear(5)(x))), seed=seed)
    model.compile("sgd", "cross_entropy")
    return model


DATA_X = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
DATA_Y = np.arange(10) % 3


@pytest.mark.parametrize("batch_size, exc", [(-1, ValueError), (0, ValueError), (2.5, TypeError), ("2", TypeError),
                                             (True, TypeError), (None, TypeError)])
@pytest.mark.parametrize("method", ["predict", "evaluate", "fit"])
def test_batch_size_is_a_positive_int(method, batch_size, exc):
    model = _mlp()
    args = (DATA_X,) if method == "predict" else (DATA_X, DATA_Y)
    kwargs = {"verbose": 0} if method == "fit" else {}
    with pytest.raises(exc, match=rf"^{method}: batch_size must be a positive int, received {batch_size!r}"):
        getattr(model, method)(*args, batch_size=batch_size, **kwargs)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128, np.bool_, object, np.str_])
@pytest.mark.parametrize("method", ["predict", "evaluate", "fit", "forward", "train_on_batch"])
def test_complex_bool_object_and_string_inputs_are_refused(method, dtype):
    model = _mlp()
    x = (DATA_X + 1j).astype(dtype) if np.dtype(dtype).kind == "c" else DATA_X.astype(dtype)
    args = (x,) if method in ("predict", "forward") else (x, DATA_Y)
    kwargs = {"verbose": 0} if method == "fit" else {}
    prefix = method if method in ("predict", "evaluate", "fit") else model.name
    with pytest.raises(TypeError, match=rf"^{prefix}: input 'input' must hold float32 or float64, received dtype"):
        getattr(model, method)(*args, **kwargs)


@pytest.mark.parametrize("method", ["predict", "evaluate", "fit", "forward"])
def test_uint8_images_are_refused_with_how_to_convert(method):
    x = Input((1, 2, 2))
    model = Model(x, L.Linear(2)(L.Flatten()(x)), seed=0)
    model.compile("sgd", "cross_entropy")
    images = np.arange(40, dtype=np.uint8).reshape(10, 1, 2, 2)
    args = (images,) if method in ("predict", "forward") else (images, np.arange(10) % 2)
    kwargs = {"verbose": 0} if method == "fit" else {}
    with pytest.raises(TypeError, match=r"must be a float32 or float64 array, received dtype uint8\. For images, "
                                        r"x\.astype\(np\.float32\) / 255 scales uint8 pixels to \[0, 1\]"):
        getattr(model, method)(*args, **kwargs)
    model.predict(images.astype(np.float32) / 255)  # the conversion the message gives works


@pytest.mark.parametrize("dtype", [np.complex128, object, np.str_])
def test_complex_object_and_string_targets_are_refused(dtype):
    model = _mlp()
    y = DATA_Y.astype(dtype) if np.dtype(dtype).kind != "c" else DATA_Y + 0j
    with pytest.raises(TypeError, match=r"^evaluate: targets must hold real numbers"):
        model.evaluate(DATA_X, y)
    for loss in (corenet.losses.CrossEntropy(), corenet.losses.MSE(), corenet.losses.BCEWithLogits()):
        out = np.zeros((10, 3), np.float32)
        with pytest.raises(TypeError, match=rf"^{loss.name}: targets must hold real numbers"):
            loss(out, np.zeros((10, 3), dtype) if np.dtype(dtype).kind != "c" else np.zeros((10, 3)) + 1j)


def test_complex_checkpoint_weights_are_refused(tmp_path):
    model = _mlp()
    weights = {k: v.astype(np.complex64) + 1j for k, v in model.state_dict().items()}
    with pytest.raises(TypeError, match=r"load_state_dict: '[\w.]+' must hold real numbers, received dtype complex64"):
        model.load_state_dict(weights)
    path = tmp_path / "complex.npz"
    np.savez(path, **weights)
    with pytest.raises((TypeError, ValueError), match="complex64"):
        model.load_weights(path)


def test_float64_inputs_still_cast_to_a_float32_model():
    model = _mlp()
    assert model.predict(DATA_X.astype(np.float64)).dtype == np.float32
    assert np.isfinite(model.evaluate(DATA_X.astype(np.float64), DATA_Y)["loss"])


# ----------------------------------------------------------------------------------- item 10
@pytest.mark.parametrize("call, exc, match", [
    (lambda: F.softmax(X4, axis=1.0), TypeError, r"^softmax: axis must be an int, received 1\.0"),
    (lambda: F.log_softmax(X4, axis=None), TypeError, r"^log_softmax: axis must be an int, received None"),
    (lambda: L.Softmax(axis=1.5), TypeError, r"^Softmax: axis must be an int"),
    (lambda: F.elu(X4, alpha="a"), TypeError, r"^elu: alpha must be a number, received 'a'"),
    (lambda: F.leaky_relu(X4, negative_slope="0.1"), TypeError, r"^leaky_relu: negative_slope must be a number"),
    (lambda: F.local_response_norm(X4, 3, alpha="1e-4"), TypeError, r"^local_response_norm: alpha must be a number"),
    (lambda: F.dropout(X4, "0.5", np.random.default_rng(0)), TypeError, r"^dropout: p must be a number"),
    (lambda: L.ELU(alpha="x"), TypeError, r"^ELU: alpha must be a number"),
    (lambda: L.Dropout(None), TypeError, r"^Dropout layer: p must be a number, received None"),
    (lambda: L.Reshape("ab"), TypeError, r"^Reshape layer: target_shape must be an int or a tuple of ints"),
    (lambda: L.Reshape((2.5, 2)), TypeError, r"^Reshape layer: target_shape"),
    (lambda: F.batch_norm(X4[:0], None, None, None, None, True), ValueError, r"^batch_norm: x must not be empty"),
    (lambda: F.batch_norm(X4[:0], None, None, np.zeros(3), np.ones(3), False), ValueError,
     r"^batch_norm: x must not be empty"),
    (lambda: F.gelu(X4, approximate=np.array(["none"])), TypeError, r"^gelu: approximate must be one of"),
    (lambda: F.max_pool2d(X4, 2, ceil_mode=np.array([True, False])), TypeError, r"^max_pool2d: ceil_mode must be"),
    (lambda: F.dropout(X4, 0.5, np.random.default_rng(0), training=np.ones(2)), TypeError,
     r"^dropout: training must be a bool"),
    (lambda: L.Concat(axis="1"), TypeError, r"^Concat: axis must be an int"),
    (lambda: L.BatchNorm2d(eps="1e-5"), TypeError, r"^BatchNorm2d: eps must be a number"),
    (lambda: L.LocalResponseNorm(3, mode=None), TypeError, r"^LocalResponseNorm: mode must be one of"),
    (lambda: L.AdaptiveAvgPool2d("7"), TypeError, r"^AdaptiveAvgPool2d: output_size must be an int or a pair"),
    (lambda: L.Conv2d(2, 3, padding=1.5), TypeError, r"^Conv2d: padding must be an int or a pair of ints"),
    (lambda: L.AvgPool2d(2, divisor_override="2"), TypeError, r"^AvgPool2d: divisor_override must be a number"),
    (lambda: L.ReLU(lr_mult="fast"), TypeError, r"^ReLU: lr_mult must be a number"),
    (lambda: L.Add()([X4, X4[:1]]), ValueError, r"^Add layer: inputs must have one batch size"),
    (lambda: L.Concat()([X4, X4[:1]]), ValueError, r"^Concat layer: inputs must have one batch size"),
    (lambda: L.Multiply()([X4[:, :1], X4[:1]]), ValueError, r"^Multiply layer: inputs must have one batch size"),
    (lambda: L.ReLU()("x"), TypeError, r"^ReLU layer: expects numpy \(or device\) arrays, received str"),
    (lambda: L.Add()(X4), TypeError, r"^Add layer: expects a list of arrays, received ndarray"),
])
def test_fuzz_findings_get_corenets_own_message(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_reshape_takes_an_int():
    assert L.Reshape(48)(X4).shape == (2, 48)


def test_read_only_running_statistics_are_refused_in_training_only():
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    rm.flags.writeable = False
    with pytest.raises(ValueError, match=r"^batch_norm: running_mean and running_var are updated in place .* "
                                         r"running_mean is read-only"):
        F.batch_norm(X4, None, None, rm, rv, True)
    y = F.batch_norm(X4, None, None, rm, rv, False)  # eval mode reads them only
    np.testing.assert_allclose(y, X4 / np.sqrt(1 + 1e-5), rtol=1e-6)


def test_merge_inputs_of_different_batch_sizes_in_a_model():
    a, b = Input((3,)), Input((3,))
    model = Model([a, b], L.Add()([a, b]))
    with pytest.raises(ValueError, match=r"^model: inputs must have one batch size"):
        model.forward([np.zeros((2, 3), np.float32), np.zeros((3, 3), np.float32)])
    with pytest.raises(ValueError, match=r"^predict: inputs and targets must have the same number of samples"):
        model.predict([np.zeros((2, 3), np.float32), np.zeros((3, 3), np.float32)])


def test_built_layer_called_on_another_shape():
    layer = L.Reshape((2, -1))
    layer(X4)
    with pytest.raises(ValueError, match=r"^Reshape layer: already built for input shape \(None, 3, 4, 4\)"):
        layer(X4[:, :, :2])


SHAPE_FUNCTIONS = {  # every public *_output_shape, with valid arguments besides x_shape
    "conv_output_shape": lambda s: F.conv_output_shape(s, (2, 3, 3, 3)),
    "conv_transpose_output_shape": lambda s: F.conv_transpose_output_shape(s, (3, 2, 3, 3), stride=2),
    "upsample_output_shape": lambda s: F.upsample_output_shape(s, scale_factor=2),
    "pool_output_shape": lambda s: F.pool_output_shape(s, 2),
    "adaptive_pool_output_shape": lambda s: F.adaptive_pool_output_shape(s, 2),
}


@pytest.mark.parametrize("name", sorted(SHAPE_FUNCTIONS))
@pytest.mark.parametrize("x_shape", [(1, 3, 5.0, 5), None, "abcd", (1, 3, 5), (1, 3, -5, 5), (1, 3, True, 5)])
def test_output_shape_functions_take_only_int_shapes(name, x_shape):
    # conv_transpose_output_shape and upsample_output_shape computed with a float size (returning
    # 15.0) and let None or a str through to Python's own TypeError
    with pytest.raises(TypeError, match=rf"{name}: x_shape must be a tuple of 4 ints >= 0 \(N, C, H, W\), received"):
        SHAPE_FUNCTIONS[name](x_shape)
    assert all(type(d) is int for d in SHAPE_FUNCTIONS[name]((1, 3, 5, 5)))
