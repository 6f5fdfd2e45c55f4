"""upsample / Upsample: PyTorch's coordinate rules (nearest with 1/scale_factor, bilinear with and
without align_corners, the clamp at 0, the unchanged-size copy, the exact-doubling shortcut)
against the oracle of tests/naive.py on every CPU backend and against ``F.interpolate``; float64
finite differences; errors; save/load."""

import json

import naive
import numpy as np
import pytest
from gradcheck import check_layer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import corenet
from corenet import F, Input, Model
from corenet import layers as L

fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-5)}
MODES = [("nearest", None), ("bilinear", None), ("bilinear", False), ("bilinear", True)]


@st.composite
def cases(draw):
    H, W = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    mode, ac = draw(st.sampled_from(MODES))
    if draw(st.booleans()):
        size = (draw(st.integers(1, 13)), draw(st.integers(1, 13)))
        kw = dict(size=size if draw(st.booleans()) else size[0])
        sf = (None, None)
    else:
        factors = st.sampled_from([0.5, 0.75, 1.0, 1.2, 1.5, 2, 2.1, 2.5, 3])
        sf = (draw(factors), draw(factors))
        if int(H * sf[0]) < 1 or int(W * sf[1]) < 1:
            sf = (2, 2)
        kw = dict(scale_factor=sf if sf[0] != sf[1] else sf[0])
    return dict(x_shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), H, W), kw=kw, sf=sf, mode=mode,
                align_corners=ac, seed=draw(st.integers(0, 2**16)))


def oracle(case, x, gy=None):
    sf, mode, ac = case["sf"], case["mode"], bool(case["align_corners"])
    if gy is None:
        out = F.upsample_output_shape(x.shape, **case["kw"])[2:]
        return naive.upsample(x, out, sf, mode, ac)
    return naive.upsample_backward(x.shape, gy, sf, mode, ac)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@settings(fixture_ok, max_examples=25)
@given(case=cases())
def test_forward_and_backward_match_the_oracle(backend, dtype, case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["x_shape"]).astype(dtype)
    y, state = F.upsample(x, **case["kw"], mode=case["mode"], align_corners=case["align_corners"],
                          return_state=True)
    ref = oracle(case, x)
    assert y.dtype == dtype and y.shape == ref.shape
    np.testing.assert_allclose(y, ref, **TOL[dtype])
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = F.upsample_backward(gy, state)
    assert gx.dtype == dtype and gx.shape == x.shape
    np.testing.assert_allclose(gx, oracle(case, x, gy), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@settings(max_examples=25)
@given(case=cases())
def test_matches_torch_interpolate(dtype, case):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(case["seed"]).standard_normal(case["x_shape"]).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.interpolate(tx, **case["kw"], mode=case["mode"], align_corners=case["align_corners"])
    y, state = F.upsample(x, **case["kw"], mode=case["mode"], align_corners=case["align_corners"],
                          return_state=True)
    assert y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y, ty.detach().numpy(), **TOL[dtype])
    gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    ty.backward(torch.tensor(gy))
    np.testing.assert_allclose(F.upsample_backward(gy, state), tx.grad.numpy(), **TOL[dtype])


def test_pytorch_coordinate_rules_by_hand():
    x = np.arange(5.0).reshape(1, 1, 1, 5)
    # nearest with a scale factor reads floor(dst / 1.5), not floor(dst * 5/7)
    np.testing.assert_array_equal(F.upsample(x, scale_factor=(1, 1.5))[0, 0, 0], [0, 0, 1, 2, 2, 3, 4])
    np.testing.assert_array_equal(F.upsample(x, size=(1, 7))[0, 0, 0], [0, 0, 1, 2, 2, 3, 4])
    np.testing.assert_array_equal(F.upsample(x[..., :3], size=(1, 7))[0, 0, 0], [0, 0, 0, 1, 1, 2, 2])
    # bilinear, half-pixel centres, the first source coordinate clamped at 0
    np.testing.assert_allclose(F.upsample(x[..., :2], size=(1, 4), mode="bilinear")[0, 0, 0], [0, 0.25, 0.75, 1])
    np.testing.assert_allclose(F.upsample(x[..., :2], size=(1, 4), mode="bilinear", align_corners=True)[0, 0, 0],
                               [0, 1 / 3, 2 / 3, 1])


@pytest.mark.parametrize("make_layer, shape", [
    (lambda: L.Upsample(scale_factor=2), (2, 2, 3)),
    (lambda: L.Upsample(size=(5, 4), mode="bilinear"), (2, 3, 3)),
    (lambda: L.Upsample(scale_factor=(1.5, 2.5), mode="bilinear", align_corners=True), (1, 3, 2)),
])
def test_layer_backward_matches_finite_differences(make_layer, shape):
    check_layer(make_layer(), shape, batch=2)


def test_errors_name_the_op_and_what_was_received():
    x = np.zeros((1, 2, 3, 3))
    with pytest.raises(ValueError, match="upsample: give exactly one of size and scale_factor"):
        F.upsample(x)
    with pytest.raises(ValueError, match="upsample: give exactly one"):
        F.upsample(x, size=4, scale_factor=2)
    with pytest.raises(ValueError, match=r"upsample: mode must be one of \('nearest', 'bilinear'\)"):
        F.upsample(x, size=4, mode="bicubic")
    with pytest.raises(ValueError, match="align_corners can only be set with mode='bilinear'"):
        F.upsample(x, size=4, align_corners=True)
    with pytest.raises(ValueError, match="gives an output of 0x0"):
        F.upsample(x, scale_factor=0.2)
    with pytest.raises(TypeError, match="size must be an int or a pair of ints"):
        F.upsample(x, size=2.5)
    with pytest.raises(ValueError, match=r"x must be 4-D"):
        F.upsample(np.zeros((2, 3, 3)), size=4)
    with pytest.raises(TypeError, match="float32 or float64"):
        F.upsample(x.astype(np.int64), size=4)
    with pytest.raises(TypeError, match="Upsample"):
        L.Upsample(2)  # keyword-only: size is an output size, not Keras's factor
    with pytest.raises(ValueError, match="Upsample: scale_factor must be > 0"):
        L.Upsample(scale_factor=-1)
    with pytest.raises(ValueError, match="Upsample: align_corners can only be set"):
        L.Upsample(size=3, align_corners=False)


def test_unet_block_summary_and_save_load(tmp_path):
    """Upsample beside a skip connection: shapes, no parameters, no MACs, a config round trip."""
    x = Input((3, 8, 8))
    down = L.MaxPool2d(2)(L.Conv2d(4, 3, padding=1)(x))
    up = L.Upsample(scale_factor=2, mode="bilinear", name="up")(down)
    y = L.Conv2d(2, 1)(L.Concat()([up, x]))
    m = Model(x, y, seed=1)
    layer = m.get_layer("up")
    assert layer.output_shape == (4, 8, 8) and layer.macs() == 0 and not layer.params
    xs = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    path = tmp_path / "unet.npz"
    m.save(path)
    loaded = corenet.load(path)
    np.testing.assert_array_equal(loaded.predict(xs), m.predict(xs))
    assert loaded.get_layer("up").get_config()["mode"] == "bilinear"


def test_backward_names_the_expected_gy():
    y, state = F.upsample(np.ones((1, 2, 3, 3), np.float32), scale_factor=2, return_state=True)
    for gy in (np.ones((1, 2, 6, 5), np.float32), np.ones((1, 2, 6, 6), np.float64)):
        with pytest.raises(ValueError, match=r"upsample_backward: gy must be float32 with the forward output's "
                                             r"shape \(1, 2, 6, 6\), received gy.dtype=float(32|64), "
                                             r"gy.shape=\(1, 2, 6, [56]\)"):
            F.upsample_backward(gy, state)


def test_numpy_scale_factors_are_kept():
    # a float32 scale factor was stored as int(1.5) == 1: the layer resized by 1 and saved 1
    x = np.arange(2 * 4 * 4, dtype=np.float32).reshape(1, 2, 4, 4)
    for sf in (np.float32(1.5), (np.float64(1.5), np.float32(2.5)), np.int64(2)):
        layer = L.Upsample(scale_factor=sf, mode="bilinear")
        cfg = layer.get_config()
        assert json.loads(json.dumps(cfg)) == cfg
        x_in = Input((2, 4, 4))
        y = Model(x_in, layer(x_in)).predict(x)
        np.testing.assert_allclose(y, F.upsample(x, scale_factor=sf, mode="bilinear"), rtol=1e-6)
        assert y.shape[2:] == F.upsample_output_shape(x.shape, scale_factor=sf)[2:]
        assert type(L.Upsample.from_config(cfg).scale_factor) is type(cfg["scale_factor"])
