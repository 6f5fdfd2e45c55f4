"""relu6, hardsigmoid, hardswish and silu (issue 17): forward and derivative against the plain-loop
oracles of tests/naive.py (kinks, NaN and infinities included), float64 central differences over
hypothesis shapes, PyTorch's forward and autograd at the breakpoints, dtypes, thread counts, errors,
and the layers (summary, config, save/load)."""

import json

import naive
import numba
import numpy as np
import pytest
from gradcheck import check_layer
from hypothesis import given, settings
from hypothesis import strategies as st

import corenet
from corenet import F, Input, Model
from corenet import layers as L
from corenet.summary import layer_rows

ACTS = ("relu6", "hardsigmoid", "hardswish", "silu")
LAYERS = {"relu6": L.ReLU6, "hardsigmoid": L.Hardsigmoid, "hardswish": L.Hardswish, "silu": L.SiLU}
KINKS = {"relu6": (0.0, 6.0), "hardsigmoid": (-3.0, 3.0), "hardswish": (-3.0, 3.0), "silu": ()}
# the breakpoints, a hair either side of them, signed zeros, tiny values, NaN and the infinities
SPECIAL = [-np.inf, -7.0, -6.0, -3.0001, -3.0, -2.9999, -1.0, -1e-30, -0.0, 0.0, 1e-30, 1e-4, 2.9999, 3.0, 3.0001,
           5.9999, 6.0, 6.0001, 7.0, np.nan, np.inf]


def _fns(name):
    return getattr(F, name), getattr(F, name + "_backward")


def _inputs(dtype, rng):
    x = np.concatenate([SPECIAL, rng.standard_normal(200) * 4]).astype(dtype)
    return x.reshape(1, -1, 1), rng.standard_normal(x.size).astype(dtype).reshape(1, -1, 1)


@pytest.mark.parametrize("name", ACTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_and_derivative_match_the_oracles(backend, rng, name, dtype):
    x, gy = _inputs(dtype, rng)
    fwd, bwd = _fns(name)
    y, state = fwd(x, return_state=True)
    gx = bwd(gy, state)
    assert y.dtype == dtype and gx.dtype == dtype and y.shape == x.shape and gx.shape == x.shape
    want_y = getattr(naive, name)(x)
    want_gx = gy.astype(np.float64) * getattr(naive, name + "_grad")(x)
    tol = dict(rtol=2e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(y, want_y, **tol)  # NaN where the oracle has NaN
    np.testing.assert_allclose(gx, want_gx, **tol)
    if name != "silu":  # the derivative itself at the kinks, zeros, NaN and infinities: exact
        at = x[0, :len(SPECIAL), 0]
        at = at[(np.abs(at) >= 3) | (at == 0) | np.isnan(at)] if name == "hardswish" else at
        at = at.reshape(1, -1, 1)
        d = bwd(np.ones_like(at), fwd(at, return_state=True)[1])
        np.testing.assert_array_equal(d, getattr(naive, name + "_grad")(at).astype(dtype))


@pytest.mark.parametrize("name", ACTS)
@settings(max_examples=8)
@given(shape=st.sampled_from([(2, 3), (2, 3, 2, 2), (1, 5, 1, 3), (4, 1)]), seed=st.integers(0, 2**16),
       scale=st.sampled_from([1.0, 4.0]))
def test_backward_matches_finite_differences(name, shape, seed, scale):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * scale
    for k in KINKS[name]:
        x[np.abs(x - k) < 1e-3] = k + 0.5  # central differences straddling a kink measure neither side
    gy = rng.standard_normal(shape)
    fwd, bwd = _fns(name)
    _, state = fwd(x, return_state=True)
    gx = bwd(gy, state)
    num = np.zeros_like(x)
    flat, nflat, eps = x.reshape(-1), num.reshape(-1), 1e-6
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = float((fwd(x) * gy).sum())
        flat[i] = old - eps
        fm = float((fwd(x) * gy).sum())
        flat[i] = old
        nflat[i] = (fp - fm) / (2 * eps)
    np.testing.assert_allclose(gx, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ACTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_against_torch_at_the_breakpoints(backend, rng, name, dtype):
    """Forward and autograd of ``torch.nn.functional.<name>``, kinks, NaN and infinities included.

    The NaN sits at index 19 of 221, inside the part of the tensor that torch's vectorised CPU loop
    handles (its scalar loop over the last few elements gives relu6 and hardswish another gradient
    at NaN)."""
    torch = pytest.importorskip("torch")
    x, gy = _inputs(dtype, rng)
    xt = torch.tensor(x, requires_grad=True)
    yt = getattr(torch.nn.functional, name)(xt)
    yt.backward(torch.tensor(gy))
    fwd, bwd = _fns(name)
    y, state = fwd(x, return_state=True)
    gx = bwd(gy, state)
    y_t, gx_t = yt.detach().numpy(), xt.grad.numpy()
    if name == "silu":
        tol = dict(rtol=2e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-14, atol=1e-300)
        np.testing.assert_allclose(y, y_t, **tol)
        np.testing.assert_allclose(gx, gx_t, **tol)
        return
    np.testing.assert_array_equal(y, y_t)  # the same arithmetic: bit for bit, NaN where torch has NaN
    if name == "hardsigmoid" and dtype == np.float64:
        # torch multiplies float64 gradients by 1/6 rounded to float32 (0.1666666716...); we use 1/6
        np.testing.assert_allclose(gx, gx_t, rtol=1e-7, atol=0)
        np.testing.assert_array_equal(gx == 0, gx_t == 0)
    else:
        np.testing.assert_array_equal(gx, gx_t)


@pytest.mark.parametrize("name", ACTS)
def test_float32_thread_count_and_float64_agreement(backend, rng, name):
    previous = corenet.get_num_threads()
    two = min(2, numba.config.NUMBA_NUM_THREADS)
    x = np.stack([rng.standard_normal(20_011) * 4, rng.standard_normal(20_011)]).astype(np.float32)  # parallel
    gy = rng.standard_normal(x.shape).astype(np.float32)
    fwd, bwd = _fns(name)
    outs = []
    try:
        for n in (1, two):
            corenet.set_num_threads(n)
            y, s = fwd(x, return_state=True)
            outs.append((y, bwd(gy, s)))
    finally:
        corenet.set_num_threads(previous)
    for a, b in zip(*outs):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    y64, s64 = fwd(x.astype(np.float64), return_state=True)
    np.testing.assert_allclose(outs[0][0], y64, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(outs[0][1], bwd(gy.astype(np.float64), s64), rtol=1e-5, atol=1e-6)


def test_errors_name_the_op_and_what_was_received(rng):
    x = rng.standard_normal((2, 3)).astype(np.float32)
    for name in ACTS:
        fwd, bwd = _fns(name)
        with pytest.raises(TypeError, match=f"{name}: x must be float32 or float64, received dtype int64"):
            fwd(np.arange(3))
        _, state = fwd(x, return_state=True)
        with pytest.raises(ValueError, match=rf"{name}_backward: gy must have the forward output's shape \(2, 3\)"):
            bwd(np.zeros((3, 2), np.float32), state)
        with pytest.raises(TypeError, match="dtype"):
            bwd(np.zeros((2, 3)), state)
        with pytest.raises(TypeError, match=f"state must be the .*State returned by {name}"):
            bwd(x, F.relu(x, return_state=True)[1])


# ------------------------------------------------------------------------------------- layers


@pytest.mark.parametrize("name", ACTS)
def test_layer_gradient_summary_config_and_save_load(tmp_path, name):
    cls = LAYERS[name]
    layer = cls()
    check_layer(layer, (3, 4, 4), batch=2)
    cfg = json.loads(json.dumps(cls(name="act").get_config()))
    assert cls.from_config(cfg).get_config() == cfg and L.get_layer_class(cls.__name__) is cls

    x_in = Input((2, 5, 5))
    out = L.Linear(3, name="fc")(L.Flatten()(cls(name="act")(L.Conv2d(4, 3, padding=1, name="conv")(x_in))))
    model = Model(x_in, out, seed=0)
    text = model.summary(print_fn=lambda *_: None)
    assert f"act ({cls.__name__})" in text
    assert next(r for r in layer_rows(model) if r["name"] == "act")["macs"] == 0
    x = np.random.default_rng(1).standard_normal((2, 2, 5, 5)).astype(np.float32) * 3
    path = tmp_path / "m.corenet"
    corenet.save(model, str(path))
    again = corenet.load(str(path))
    assert type(again.get_layer("act")) is cls
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


def test_layers_are_exported_and_prefixed():
    for name, cls in LAYERS.items():
        assert getattr(corenet.layers, cls.__name__) is cls and cls.prefix == name
    x_in = Input((3, 2, 2))
    model = Model(x_in, L.Hardswish()(L.ReLU6()(x_in)))
    assert [layer.name for layer in model.layers][-2:] == ["relu6", "hardswish"]
