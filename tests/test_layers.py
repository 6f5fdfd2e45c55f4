"""Layers: backward vs float64 finite differences, PyTorch parameter names/shapes, train/eval
behaviour of batch norm and dropout, initializers, seeds, config round trips and bad input."""

import json

import numpy as np
import pytest
from gradcheck import check_layer

import corenet
from corenet import Input, Model
from corenet import init as I
from corenet import layers as L


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny float64 shapes: one kernel thread (parallel launches cost milliseconds on a busy 2-core box)."""
    previous = corenet.get_num_threads()
    corenet.set_num_threads(1)
    yield
    corenet.set_num_threads(previous)

GRAD_CASES = [
    (lambda: L.Conv2d(3, 3), (2, 5, 5)),
    (lambda: L.Conv2d(4, (3, 2), stride=2, padding=((1, 0), (0, 1)), dilation=(1, 2)), (2, 6, 7)),
    (lambda: L.Conv2d(4, 3, groups=2, bias=False), (4, 5, 5)),
    (lambda: L.Conv2d(2, 3, stride=2, padding="same"), (2, 7, 6)),
    (lambda: L.Linear(3), (5,)),
    (lambda: L.Linear(2, bias=False), (4,)),
    (lambda: L.MaxPool2d(2), (2, 4, 4)),
    (lambda: L.MaxPool2d(3, 2, padding=1, ceil_mode=True), (2, 6, 6)),
    (lambda: L.MinPool2d(2, 1), (1, 4, 4)),
    (lambda: L.AvgPool2d(3, 2, padding=1, count_include_pad=False), (2, 5, 5)),
    (lambda: L.SumPool2d(2), (2, 4, 4)),
    (lambda: L.GlobalAvgPool2d(), (3, 4, 3)),
    (lambda: L.GlobalMaxPool2d(), (3, 4, 3)),
    (lambda: L.AdaptiveAvgPool2d((2, 3)), (2, 5, 7)),
    (lambda: L.LocalResponseNorm(3, alpha=0.5, beta=0.75, k=2.0), (5, 2, 2)),
    (lambda: L.LocalResponseNorm(3, alpha=0.5, mode="within", convention="caffe"), (2, 4, 4)),
    (lambda: L.LocalResponseNorm(5, alpha=1e-2, k=2.0, convention="paper"), (6, 2, 2)),
    (lambda: L.BatchNorm2d(), (3, 2, 2)),
    (lambda: L.BatchNorm1d(4), (4,)),
    (lambda: L.Dropout(0.4, seed=3), (3, 4, 4)),
    (lambda: L.ReLU(), (3, 4)),
    (lambda: L.LeakyReLU(0.2), (3, 4)),
    (lambda: L.ELU(0.7), (3, 4)),
    (lambda: L.SELU(), (3, 4)),
    (lambda: L.GELU(), (3, 4)),
    (lambda: L.GELU("tanh"), (3, 4)),
    (lambda: L.Sigmoid(), (3, 4)),
    (lambda: L.Tanh(), (3, 4)),
    (lambda: L.Softmax(), (5,)),
    (lambda: L.Softmax(axis=2), (2, 3, 2)),
    (lambda: L.LogSoftmax(), (5,)),
    (lambda: L.Flatten(), (2, 3, 2)),
    (lambda: L.Reshape((3, -1)), (2, 3, 2)),
    (lambda: L.ZeroPad2d((1, 2, 0, 1)), (2, 3, 3)),
]


@pytest.mark.parametrize("make, shape", GRAD_CASES, ids=lambda v: "" if callable(v) else str(v))
def test_backward_matches_finite_differences(make, shape):
    layer = make()
    check_layer(layer, shape, batch=3)
    m = Model(layer.input, layer.output)
    m.forward(np.ones((2, *shape)), training=True)
    m.backward(np.ones((2, *layer.output_shape)))
    assert layer._state is None  # state lives only between forward and backward


def test_batch_norm_eval_backward():
    layer = L.BatchNorm2d()
    check_layer(layer, (3, 2, 2), training=False)


@pytest.mark.parametrize("make, shapes", [
    (lambda: L.Add(), [(3, 2, 2), (3, 2, 2), (3, 2, 2)]),
    (lambda: L.Add(), [(3, 2, 2), (3, 1, 1)]),
    (lambda: L.Concat(), [(2, 3, 3), (1, 3, 3), (3, 3, 3)]),
    (lambda: L.Concat(axis=-1), [(2, 3, 1), (2, 3, 2)]),
    (lambda: L.Multiply(), [(3, 2, 2), (3, 1, 1)]),
    (lambda: L.Multiply(), [(3, 2, 2), (3,)]),
    (lambda: L.Multiply(), [(4,), (4,)]),
])
def test_merge_backward(make, shapes):
    check_layer(make(), shapes, batch=2)


def test_multiply_broadcasts_channels_first():
    x = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    s = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    m = L.Multiply()
    np.testing.assert_array_equal(m([x, s]), x * s[:, :, None, None])
    a, b = Input((3, 2, 2)), Input((3,))
    assert m.__class__()([a, b]).shape == (3, 2, 2)


def test_param_names_and_shapes_follow_pytorch():
    x = Input((4, 9, 9))
    conv = L.Conv2d(6, (3, 5), groups=2)
    bn = L.BatchNorm2d()
    lin = L.Linear(7)
    m = Model(x, lin(L.Flatten()(bn(conv(x)))), seed=0)
    sd = m.state_dict()
    assert sd["conv2d.weight"].shape == (6, 2, 3, 5) and sd["conv2d.bias"].shape == (6,)
    assert [k for k in sd if k.startswith("batch_norm2d.")] == [
        "batch_norm2d.weight", "batch_norm2d.bias", "batch_norm2d.running_mean", "batch_norm2d.running_var",
        "batch_norm2d.num_batches_tracked"]
    assert sd["batch_norm2d.num_batches_tracked"].dtype == np.int64
    assert sd["linear.weight"].shape == (7, 6 * 7 * 5) and sd["linear.bias"].shape == (7,)
    assert "batch_norm2d.running_mean" not in m.parameters()
    assert all(v.dtype == np.float32 for k, v in m.parameters().items())


def test_batch_norm_train_eval_and_frozen():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((8, 3, 4, 4)) * 2 + 1).astype(np.float32)
    bn = L.BatchNorm2d(momentum=0.1)
    bn.build((3, 4, 4))
    bn.initialize(dtype=np.float32)
    y = bn.forward(x, training=True, retain=False)
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(bn.buffers["running_mean"], 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.buffers["running_var"], 0.9 + 0.1 * var * 128 / 127, rtol=1e-5)
    assert int(bn.buffers["num_batches_tracked"]) == 1
    rm, rv = bn.buffers["running_mean"].copy(), bn.buffers["running_var"].copy()
    y = bn.forward(x, training=False, retain=False)
    np.testing.assert_allclose(y, (x - rm[:, None, None]) / np.sqrt(rv[:, None, None] + 1e-5), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(bn.buffers["running_mean"], rm)
    bn.trainable = False  # frozen: running statistics even in training, and they stay put
    y2 = bn.forward(x, training=True, retain=False)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(bn.buffers["running_mean"], rm)


def test_dropout_train_eval_and_seed():
    x = np.ones((64, 100), np.float32)
    d = L.Dropout(0.25, seed=7)
    y = d(x)  # eager call: evaluation mode
    np.testing.assert_array_equal(y, x)
    y = d.forward(x, training=True)
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.02
    d2 = L.Dropout(0.25, seed=7)
    d2(x)
    np.testing.assert_array_equal(d2.forward(x, training=True), y)


def test_initializer_distributions():
    rng = np.random.default_rng(0)
    shape = (64, 32, 3, 3)
    fan_in, fan_out = 32 * 9, 64 * 9
    assert I.fans(shape) == (fan_in, fan_out)
    cases = {
        "kaiming_normal": ("std", np.sqrt(2 / fan_in)),
        "kaiming_uniform": ("bound", np.sqrt(6 / fan_in)),
        "xavier_normal": ("std", np.sqrt(2 / (fan_in + fan_out))),
        "glorot_uniform": ("bound", np.sqrt(6 / (fan_in + fan_out))),
        "lecun_normal": ("std", np.sqrt(1 / fan_in)),
        "lecun_uniform": ("bound", np.sqrt(3 / fan_in)),
        "fan_in_uniform": ("bound", 1 / np.sqrt(fan_in)),
    }
    for name, (kind, v) in cases.items():
        a = I.make(name, shape, rng)
        assert a.dtype == np.float32 and a.shape == shape
        if kind == "std":
            assert abs(a.std() / v - 1) < 0.03, name
        else:
            assert np.abs(a).max() <= v and np.abs(a).max() > 0.98 * v, name
            assert abs(a.std() / (v / np.sqrt(3)) - 1) < 0.03, name
    a = I.make({"name": "kaiming_normal", "mode": "fan_out"}, shape, rng)
    assert abs(a.std() / np.sqrt(2 / fan_out) - 1) < 0.03
    assert abs(I.make({"name": "normal", "std": 0.01}, shape, rng).std() / 0.01 - 1) < 0.03
    assert (I.make("ones", (3,), rng) == 1).all() and (I.make("zeros", (3,), rng) == 0).all()
    with pytest.raises(TypeError, match="Generator"):
        I.kaiming_normal(shape, 0)
    with pytest.raises(ValueError, match="unknown initializer"):
        I.make("he_magic", shape, rng)


def test_default_init_is_pytorch_fan_in_uniform():
    x = Input((3, 8, 8))
    conv = L.Conv2d(16, 5)
    Model(x, conv(x), seed=0)
    b = 1 / np.sqrt(3 * 25)
    for p in (conv.params["weight"], conv.params["bias"]):
        assert np.abs(p).max() <= b and np.abs(p).max() > 0.8 * b


def test_seeds_make_identical_weights():
    def build(seed, layer_seed=None):
        x = Input((2, 6, 6))
        h = L.Conv2d(4, 3, seed=layer_seed)(x)
        return Model(x, L.Linear(3)(L.Flatten()(h)), seed=seed)

    a, b, c = build(1), build(1), build(2)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])
    assert not np.array_equal(a.parameters()["linear.weight"], c.parameters()["linear.weight"])
    d, e = build(1, layer_seed=5), build(2, layer_seed=5)
    np.testing.assert_array_equal(d.parameters()["conv2d.weight"], e.parameters()["conv2d.weight"])


def test_frozen_layer_gets_no_gradient_and_lr_mult():
    x = Input((4,))
    a, b = L.Linear(3, trainable=False), L.Linear(2, lr_mult=0.1)
    m = Model(x, b(a(x)), seed=0)
    m.forward(np.ones((2, 4), np.float32), training=True)
    gx = m.backward(np.ones((2, 2), np.float32))
    assert gx.shape == (2, 4)
    assert list(m.gradients()) == ["linear_1.weight", "linear_1.bias"]
    assert list(m.trainable_parameters()) == list(m.gradients())
    assert set(m.parameters()) == {"linear.weight", "linear.bias", "linear_1.weight", "linear_1.bias"}
    assert m.lr_multipliers() == {"linear_1.weight": 0.1, "linear_1.bias": 0.1}


def test_gradients_accumulate_until_zero_grad():
    x = Input((3,))
    m = Model(x, L.Linear(2)(x), seed=0)
    xx = np.ones((4, 3), np.float32)
    gy = np.ones((4, 2), np.float32)
    for _ in range(2):
        m.forward(xx, training=True)
        m.backward(gy)
    np.testing.assert_allclose(m.gradients()["linear.bias"], 8.0)
    m.zero_grad()
    np.testing.assert_array_equal(m.gradients()["linear.bias"], 0.0)
    m.forward(xx, training=True)
    m.backward(gy)
    np.testing.assert_allclose(m.gradients()["linear.bias"], 4.0)


ALL_LAYERS = [
    L.Conv2d(4, 3, stride=2, padding="same", kernel_init={"name": "kaiming_normal", "mode": "fan_out"}),
    L.Linear(5, in_features=12), L.MaxPool2d(2, ceil_mode=True), L.AvgPool2d(3, 1, 1, divisor_override=2),
    L.MinPool2d(2), L.SumPool2d(2), L.GlobalAvgPool2d(), L.GlobalMaxPool2d(), L.AdaptiveAvgPool2d([2, None]),
    L.LocalResponseNorm(5, 1e-4, 0.75, 2.0, convention="paper"), L.BatchNorm2d(momentum=0.2), L.BatchNorm1d(),
    L.Dropout(0.3, seed=1), L.ReLU(), L.LeakyReLU(0.1), L.ELU(0.5), L.SELU(), L.GELU("tanh"), L.Sigmoid(),
    L.Tanh(), L.Softmax(axis=1), L.LogSoftmax(), L.Flatten(), L.Reshape((2, -1)), L.ZeroPad2d(((1, 0), (2, 3))),
    L.Add(), L.Concat(axis=2), L.Multiply(),
]


@pytest.mark.parametrize("layer", ALL_LAYERS, ids=lambda layer: type(layer).__name__)
def test_config_round_trip(layer):
    cfg = json.loads(json.dumps(layer.get_config()))
    clone = type(layer).from_config(cfg)
    assert clone.get_config() == cfg
    assert L.get_layer_class(type(layer).__name__) is type(layer)


def test_every_issue_layer_is_exported():
    names = ("Conv2d Linear MaxPool2d AvgPool2d MinPool2d SumPool2d GlobalAvgPool2d GlobalMaxPool2d AdaptiveAvgPool2d "
             "LocalResponseNorm BatchNorm2d BatchNorm1d Dropout ReLU LeakyReLU ELU SELU GELU Sigmoid Tanh Softmax "
             "Flatten Reshape ZeroPad2d Add Concat Multiply").split()
    for n in names:
        assert issubclass(getattr(corenet.layers, n), L.Layer)


def test_bad_inputs_give_clear_errors():
    x = Input((16, 5, 5))
    with pytest.raises(ValueError, match=r"Linear layer 'fc'.*add a Flatten.*\(None, 16, 5, 5\)"):
        L.Linear(10, name="fc")(x)
    with pytest.raises(ValueError, match=r"Conv2d layer.*\(channels, height, width\).*\(None, 400\)"):
        L.Conv2d(4, 3)(Input((400,)))
    with pytest.raises(ValueError, match="in_channels=3 but the input has 16 channels"):
        L.Conv2d(4, 3, in_channels=3)(x)
    with pytest.raises(ValueError, match="groups=3 must divide the input channels"):
        L.Conv2d(6, 3, groups=3)(x)
    with pytest.raises(ValueError, match="larger than the padded input"):
        L.Conv2d(4, 7)(x)
    with pytest.raises(ValueError, match="at most half the kernel"):
        L.MaxPool2d(2, padding=2)(x)
    with pytest.raises(ValueError, match="cannot reshape 400"):
        L.Reshape((3, -1))(x)
    with pytest.raises(TypeError, match="expects a list of tensors"):
        L.Add()(x)
    with pytest.raises(TypeError, match="expects one tensor"):
        L.ReLU()([x, x])
    with pytest.raises(ValueError, match="p must be in"):
        L.Dropout(1.5)
    with pytest.raises(ValueError, match="name must be"):
        L.ReLU(name="a.b")


def test_eager_call_on_arrays_and_float64():
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    conv = L.Conv2d(4, 3, seed=0)
    y = conv(x)
    assert y.shape == (2, 4, 4, 4) and y.dtype == np.float64 and conv.params["weight"].dtype == np.float64
