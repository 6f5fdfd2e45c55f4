"""channel_shuffle / ChannelShuffle, drop_path / DropPath and SeparableConv2d (issue 17): against the
plain-loop oracles of tests/naive.py and PyTorch, float64 finite differences, the generator
contract of drop path, parameter names, MACs, config and save/load round trips, and bad input."""

import json

import naive
import numpy as np
import pytest
from conftest import CPU_BACKENDS
from gradcheck import check_layer
from hypothesis import given, settings
from hypothesis import strategies as st

import corenet
from corenet import F, Input, Model
from corenet import layers as L
from corenet.geometry import padding4
from corenet.summary import layer_rows


def _each_backend():
    previous = corenet.get_backend()
    try:
        for name in CPU_BACKENDS:
            corenet.set_backend(name)
            yield name
    finally:
        corenet.set_backend(previous)


# ------------------------------------------------------------------------------ channel shuffle


@settings(max_examples=10)
@given(n=st.integers(1, 3), groups=st.integers(1, 4), per=st.integers(1, 4),
       rest=st.sampled_from([(), (1,), (3,), (2, 3), (1, 1)]), f32=st.booleans(), seed=st.integers(0, 2**16))
def test_channel_shuffle_matches_the_oracle_both_ways(n, groups, per, rest, f32, seed):
    dtype = np.float32 if f32 else np.float64
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, groups * per, *rest)).astype(dtype)
    gy = rng.standard_normal(x.shape).astype(dtype)
    for _ in _each_backend():
        y, state = F.channel_shuffle(x, groups, return_state=True)
        assert y.dtype == dtype and y.shape == x.shape
        np.testing.assert_array_equal(y, naive.channel_shuffle(x, groups))  # a permutation: exact
        np.testing.assert_array_equal(F.channel_shuffle_backward(gy, state), naive.channel_shuffle_backward(gy, groups))
        np.testing.assert_array_equal(F.channel_shuffle_backward(y, state), x)  # the adjoint is the inverse


def test_channel_shuffle_against_torch(backend, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 12, 3, 5))
    for groups in (1, 2, 3, 4, 6, 12):
        want = torch.nn.ChannelShuffle(groups)(torch.tensor(x)).numpy()
        np.testing.assert_array_equal(F.channel_shuffle(x, groups), want)


def test_channel_shuffle_errors(rng):
    x = rng.standard_normal((2, 6, 2, 2)).astype(np.float32)
    with pytest.raises(ValueError, match=r"channel_shuffle: the 6 channels are not divisible by groups=4. "
                                         r"Received: x.shape=\(2, 6, 2, 2\)"):
        F.channel_shuffle(x, 4)
    with pytest.raises(ValueError, match="channel_shuffle: groups"):
        F.channel_shuffle(x, 0)
    with pytest.raises(ValueError, match="at least 2 axes"):
        F.channel_shuffle(x[0, 0, 0], 1)
    _, state = F.channel_shuffle(x, 3, return_state=True)
    with pytest.raises(ValueError, match=r"channel_shuffle_backward: gy must be float32 with the forward output's"):
        F.channel_shuffle_backward(x[:1], state)
    with pytest.raises(TypeError, match="ChannelShuffleState"):
        F.channel_shuffle_backward(x, F.relu(x, return_state=True)[1])
    with pytest.raises(ValueError, match=r"ChannelShuffle layer: the input channels must be divisible by "
                                         r"groups=4. Received: input shape \(None, 6, 2, 2\)"):
        L.ChannelShuffle(4)(Input((6, 2, 2)))


# ------------------------------------------------------------------------------------ drop path


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.25, 0.5, 1.0])
def test_drop_path_drops_whole_samples_from_the_generator(backend, dtype, p):
    x = np.random.default_rng(1).standard_normal((16, 3, 4, 5)).astype(dtype)
    y, state = F.drop_path(x, p, np.random.default_rng(7), return_state=True)
    keep = np.random.default_rng(7).random(16, dtype=np.float32) >= np.float32(p)  # the documented draw
    assert y.dtype == dtype
    np.testing.assert_allclose(y, naive.drop_path(x, keep, p), rtol=1e-6 if dtype == np.float32 else 1e-15)
    assert all(np.all(y[n] == 0) != keep[n] for n in range(16))  # a sample is dropped whole or kept whole
    gy = np.random.default_rng(2).standard_normal(x.shape).astype(dtype)
    np.testing.assert_allclose(F.drop_path_backward(gy, state), naive.drop_path(gy, keep, p),
                               rtol=1e-6 if dtype == np.float32 else 1e-15)
    other = np.float64 if dtype == np.float32 else np.float32
    np.testing.assert_array_equal(F.drop_path(x.astype(other), p, np.random.default_rng(7)) != 0, y != 0)


def test_drop_path_rate_and_expectation():
    x = np.ones((20_000, 2))
    y = F.drop_path(x, 0.3, np.random.default_rng(0))
    kept = y[:, 0] != 0
    assert abs(kept.mean() - 0.7) < 0.02
    assert abs(y.mean() - 1.0) < 0.03  # survivors scaled by 1/(1-p): the expectation is kept


def test_drop_path_eval_p0_and_errors(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    r = np.random.default_rng(3)
    before = r.bit_generator.state
    y, s = F.drop_path(x, 0.5, r, training=False, return_state=True)
    assert np.array_equal(y, x) and y is not x and np.array_equal(F.drop_path_backward(x, s), x)
    assert np.array_equal(F.drop_path(x, 0.0, r), x)
    assert r.bit_generator.state == before  # eval and p = 0 draw nothing
    F.drop_path(x, 0.5, r)
    assert r.bit_generator.state != before
    with pytest.raises(ValueError, match=r"drop_path: p must be in \[0, 1\], received 1.5"):
        F.drop_path(x, 1.5, r)
    with pytest.raises(TypeError, match="drop_path: rng must be an np.random.Generator, received int"):
        F.drop_path(x, 0.5, 42)
    with pytest.raises(TypeError, match="drop_path: training must be a bool"):
        F.drop_path(x, 0.5, r, training="yes")
    _, s = F.drop_path(x, 0.5, r, return_state=True)
    with pytest.raises(ValueError, match=r"drop_path_backward: gy must be float32 with the forward output's shape "
                                         r"\(4, 5\)"):
        F.drop_path_backward(x.astype(np.float64), s)
    with pytest.raises(ValueError, match="DropPath layer: p must be in"):
        L.DropPath(-0.1)


def _residual_model(p=0.5, seed=None):
    x_in = Input((2, 3, 3))
    branch = L.DropPath(p, name="drop", seed=seed)(L.Conv2d(2, 3, padding=1, name="conv")(x_in))
    return Model(x_in, L.Add()([x_in, branch]), seed=0)


def test_drop_path_layer_train_eval_seed_generator_and_save(tmp_path):
    x = np.random.default_rng(4).standard_normal((8, 2, 3, 3)).astype(np.float32)
    m = _residual_model()
    branch = m.get_layer("conv").forward(x, retain=False)
    np.testing.assert_array_equal(m.forward(x, training=False), x + branch)  # identity in eval
    y = m.forward(x, training=True)
    dropped = [np.array_equal(y[n], x[n]) for n in range(8)]
    assert any(dropped) and not all(dropped)
    np.testing.assert_allclose(y[~np.array(dropped)], (x + 2 * branch)[~np.array(dropped)], rtol=1e-6, atol=1e-6)
    a, b = _residual_model(seed=5), _residual_model(seed=5)
    np.testing.assert_array_equal(a.forward(x, training=True), b.forward(x, training=True))
    check_layer(L.DropPath(0.4, seed=3), (3, 2, 2), batch=5)
    # a checkpoint saves the generator's state with the training state, as dropout's
    assert "drop.rng" in dict(corenet.io.generators(m))
    corenet.io.set_generator_states(m, {"drop.rng": np.random.default_rng(9).bit_generator.state}, "here")
    first = m.forward(x, training=True)
    corenet.io.set_generator_states(m, {"drop.rng": np.random.default_rng(9).bit_generator.state}, "here")
    np.testing.assert_array_equal(m.forward(x, training=True), first)
    corenet.save(m, str(tmp_path / "dp.corenet"))
    again = corenet.load(str(tmp_path / "dp.corenet"))
    assert type(again.get_layer("drop")) is L.DropPath and again.get_layer("drop").p == 0.5
    np.testing.assert_array_equal(again.forward(x, training=False), m.forward(x, training=False))
    cfg = json.loads(json.dumps(L.DropPath(0.2, name="dp").get_config()))
    assert L.DropPath.from_config(cfg).get_config() == cfg and cfg["p"] == 0.2


# ----------------------------------------------------------------------------- separable conv


def _separable_model(C=3, out=5, k=3, m=2, stride=1, padding=1, dilation=1, bias=True, hw=(7, 6)):
    x_in = Input((C, *hw))
    layer = L.SeparableConv2d(out, k, stride=stride, padding=padding, dilation=dilation, depth_multiplier=m,
                              bias=bias, name="sep")
    return Model(x_in, layer(x_in), seed=0), layer


def test_separable_parameters_macs_and_summary():
    model, layer = _separable_model(C=3, out=5, k=3, m=2)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {"sep.depthwise.weight": (6, 1, 3, 3), "sep.pointwise.weight": (5, 6, 1, 1),
                      "sep.pointwise.bias": (5,)}
    assert layer.param_count() == 3 * 9 * 2 + 3 * 2 * 5 + 5  # Keras: C*k*k*m + C*m*out + out
    assert layer.output_shape == (5, 7, 6)
    assert layer.macs() == 6 * 7 * 6 * 9 + 5 * 7 * 6 * 6
    row = next(r for r in layer_rows(model) if r["name"] == "sep")
    assert row["macs"] == layer.macs() and row["params"] == layer.param_count()
    assert "sep (SeparableConv2d)" in model.summary(print_fn=None)
    _, nobias = _separable_model(bias=False)
    assert "pointwise.bias" not in nobias.params


@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=0, m=1), dict(k=(3, 1), padding="same", m=3),
                                dict(dilation=2, padding=2, bias=False)], ids=str)
def test_separable_matches_torch_depthwise_then_pointwise(backend, kw):
    torch = pytest.importorskip("torch")
    model, layer = _separable_model(**kw)
    model.astype(np.float64)
    C, m = layer.in_channels, layer.depth_multiplier
    dw = torch.nn.Conv2d(C, C * m, layer.kernel_size, layer.stride, 0, layer.dilation, groups=C, bias=False).double()
    pw = torch.nn.Conv2d(C * m, layer.out_channels, 1, bias=layer.use_bias).double()
    seq = torch.nn.Sequential()
    seq.add_module("depthwise", dw)
    seq.add_module("pointwise", pw)
    corenet.load_torch_state_dict(model, {f"sep.{k}": v.numpy() for k, v in seq.state_dict().items()})
    x = np.random.default_rng(3).standard_normal((2, C, 7, 6))
    gy = np.random.default_rng(4).standard_normal((2, *layer.output_shape))
    pads = padding4("test", layer.padding, layer.kernel_size, layer.stride, layer.dilation, (7, 6))
    xt = torch.tensor(np.pad(x, ((0, 0), (0, 0), pads[:2], pads[2:])), requires_grad=True)
    yt = seq(xt)
    yt.backward(torch.tensor(gy))
    y = model.forward(x, training=True)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    gx = model.backward(gy)
    t, b, left, r = pads
    gx_t = xt.grad.numpy()[:, :, t:xt.shape[2] - b, left:xt.shape[3] - r]  # the padding's gradient cut off
    np.testing.assert_allclose(gx, gx_t, rtol=1e-11, atol=1e-12)
    grads = model.gradients()
    for name, p in seq.named_parameters():
        np.testing.assert_allclose(grads[f"sep.{name}"], p.grad.numpy(), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("make, shape", [
    (lambda: L.SeparableConv2d(3, 3, padding=1, depth_multiplier=2), (2, 4, 5)),
    (lambda: L.SeparableConv2d(2, (2, 3), stride=2, dilation=(1, 2), bias=False), (3, 6, 7)),
    (lambda: L.ChannelShuffle(2), (4, 2, 3)),
], ids=["separable", "separable_strided", "shuffle"])
def test_layer_gradients_match_finite_differences(make, shape):
    check_layer(make(), shape, batch=2)


def test_separable_frozen_and_need_gx():
    model, layer = _separable_model()
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 6)).astype(np.float32)
    y = model.forward(x, training=True)
    g1 = model.backward(np.ones_like(y))
    layer.trainable = False
    model.zero_grad()
    model.forward(x, training=True)
    np.testing.assert_array_equal(model.backward(np.ones_like(y)), g1)  # the input gradient does not change
    assert layer._state is None


def test_separable_config_save_load_and_errors(tmp_path):
    layer = L.SeparableConv2d(4, 3, stride=(2, 1), padding=((1, 0), (0, 1)), depth_multiplier=2, bias=False, name="s")
    cfg = json.loads(json.dumps(layer.get_config()))
    assert L.SeparableConv2d.from_config(cfg).get_config() == cfg
    model, _ = _separable_model()
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 6)).astype(np.float32)
    corenet.save(model, str(tmp_path / "sep.corenet"))
    again = corenet.load(str(tmp_path / "sep.corenet"))
    assert type(again.get_layer("sep")) is L.SeparableConv2d
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    with pytest.raises(ValueError, match="SeparableConv2d layer: was given in_channels=4 but the input has 3 channels"):
        L.SeparableConv2d(2, 3, in_channels=4)(Input((3, 5, 5)))
    with pytest.raises(ValueError, match="SeparableConv2d"):
        L.SeparableConv2d(2, 7)(Input((3, 5, 5)))  # the kernel does not fit
    with pytest.raises(ValueError, match="depth_multiplier"):
        L.SeparableConv2d(2, 3, depth_multiplier=0)
    model.forward(x, retain_state=False)  # was: Python's "cannot unpack non-iterable NoneType object"
    with pytest.raises(ValueError, match="SeparableConv2d layer 'sep': backward needs a forward with retain=True"):
        model.get_layer("sep").backward(np.ones((2, 5, 7, 6), np.float32))
