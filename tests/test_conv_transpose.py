"""conv_transpose2d / ConvTranspose2d: the scatter oracle of tests/naive.py and PyTorch over stride,
padding (every form), output_padding, groups and dilation, on every CPU backend and every
convolution path it borrows; float64 finite differences; errors; summary MACs; save/load."""

import naive
import numpy as np
import pytest
from gradcheck import check_layer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import corenet
from corenet import F, Input, Model
from corenet import layers as L
from corenet.kernels import _cpu_conv

fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TOL = {np.float64: dict(rtol=1e-10, atol=1e-10), np.float32: dict(rtol=1e-4, atol=1e-4)}


@st.composite
def cases(draw, max_hw=4, max_c=3):
    """A valid transposed convolution: groups (with depthwise), per-axis stride/dilation/padding,
    output_padding up to its bound (also where only the dilation allows it), with or without bias."""
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = 1 if groups > 1 and draw(st.booleans()) else draw(st.integers(1, max_c))
    cog = draw(st.integers(1, max_c))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    hw = (draw(st.integers(1, max_hw)), draw(st.integers(1, max_hw)))
    opad = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    sym = draw(st.booleans())
    pads = []
    for a in range(2):  # at least one output row: top + bottom <= full - 1 + output_padding, top < full
        full = (hw[a] - 1) * stride[a] + dilation[a] * (k[a] - 1) + 1
        if sym:
            t = b = draw(st.integers(0, min(2, (full - 1 + opad[a]) // 2, full - 1)))
        else:
            t = draw(st.integers(0, min(2, full - 1)))
            b = draw(st.integers(0, min(2, full - 1 - t + opad[a])))
        pads += [t, b]
    padding = (pads[0], pads[2]) if sym else ((pads[0], pads[1]), (pads[2], pads[3]))
    return dict(x_shape=(draw(st.integers(1, 2)), cg * groups, *hw), w_shape=(cg * groups, cog, *k), stride=stride,
                pads=tuple(pads), padding=padding, opad=opad, dilation=dilation, groups=groups,
                bias=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


def make(case, dtype):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["x_shape"]).astype(dtype)
    w = rng.standard_normal(case["w_shape"]).astype(dtype)
    b = rng.standard_normal(case["w_shape"][1] * case["groups"]).astype(dtype) if case["bias"] else None
    return x, w, b


def args(case):
    return case["stride"], case["padding"], case["opad"], case["groups"], case["dilation"]


@pytest.mark.parametrize("path", ["auto", "gemm", "direct"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@settings(fixture_ok, max_examples=12)
@given(case=cases())
def test_forward_and_backward_match_the_oracle(backend, monkeypatch, path, dtype, case):
    if path != "auto":  # every convolution through one of the paths it borrows
        monkeypatch.setattr(_cpu_conv, "choose_path", lambda *a: path)
    x, w, b = make(case, dtype)
    y, state = F.conv_transpose2d(x, w, b, *args(case), return_state=True)
    ref = naive.conv_transpose2d(x, w, b, case["stride"], case["pads"], case["opad"], case["dilation"],
                                 case["groups"])
    assert y.dtype == dtype and y.shape == ref.shape
    assert y.shape == F.conv_transpose_output_shape(x.shape, w.shape, *args(case))
    np.testing.assert_allclose(y, ref, **TOL[dtype])
    gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    gx, gw, gb = F.conv_transpose2d_backward(gy, state)
    rx, rw, rb = naive.conv_transpose2d_backward(x, w, gy, case["stride"], case["pads"], case["dilation"],
                                                 case["groups"])
    assert gx.dtype == gw.dtype == dtype
    np.testing.assert_allclose(gx, rx, **TOL[dtype])
    np.testing.assert_allclose(gw, rw, **TOL[dtype])
    if b is None:
        assert gb is None
    else:
        np.testing.assert_allclose(gb, rb, **TOL[dtype])
    only_w = F.conv_transpose2d_backward(gy, state, need_gx=False, need_gb=False)
    assert only_w[0] is None and only_w[2] is None
    np.testing.assert_allclose(only_w[1], rw, **TOL[dtype])


@settings(fixture_ok, max_examples=20)
@given(case=cases(max_hw=5))
def test_matches_torch(case):
    torch = pytest.importorskip("torch")
    case["padding"] = (case["pads"][0], case["pads"][2])  # torch takes symmetric padding only
    case["pads"] = (case["pads"][0], case["pads"][0], case["pads"][2], case["pads"][2])
    x, w, b = make(case, np.float64)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    try:
        ty = torch.nn.functional.conv_transpose2d(tx, tw, tb, case["stride"], case["padding"], case["opad"],
                                                  case["groups"], case["dilation"])
    except RuntimeError:  # symmetric padding left no output; corenet must refuse too
        with pytest.raises(ValueError, match="leaves no output"):
            F.conv_transpose2d(x, w, b, *args(case))
        return
    y, state = F.conv_transpose2d(x, w, b, *args(case), return_state=True)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-10)
    gy = np.random.default_rng(2).standard_normal(y.shape)
    ty.backward(torch.tensor(gy))
    gx, gw, gb = F.conv_transpose2d_backward(gy, state)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gw, tw.grad.numpy(), rtol=1e-10, atol=1e-10)
    if b is not None:
        np.testing.assert_allclose(gb, tb.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("make_layer, shape", [
    (lambda: L.ConvTranspose2d(3, 3, stride=2, padding=1, output_padding=1), (2, 3, 3)),
    (lambda: L.ConvTranspose2d(4, (2, 3), stride=(1, 2), padding=((1, 0), (0, 2)), dilation=(2, 1),
                               output_padding=(1, 0), groups=2, bias=False), (2, 3, 4)),
    (lambda: L.ConvTranspose2d(2, 2, stride=2), (1, 2, 2)),
])
def test_layer_backward_matches_finite_differences(make_layer, shape):
    check_layer(make_layer(), shape, batch=2)


def test_errors_name_the_op_and_what_was_received():
    x, w = np.zeros((1, 4, 3, 3)), np.zeros((4, 2, 3, 3))
    with pytest.raises(ValueError, match=r"conv_transpose2d: output_padding must be smaller than stride or "
                                         r"dilation, received output_padding=\(2, 2\), stride=\(2, 2\)"):
        F.conv_transpose2d(x, w, stride=2, output_padding=2)
    F.conv_transpose2d(x, w, stride=1, dilation=2, output_padding=1)  # allowed by the dilation
    with pytest.raises(ValueError, match=r"input has 3 channels but weight expects 4"):
        F.conv_transpose2d(np.zeros((1, 3, 3, 3)), w)
    with pytest.raises(ValueError, match=r"groups=3 must divide the input channels \(4\)"):
        F.conv_transpose2d(x, w, groups=3)
    with pytest.raises(ValueError, match="padding must be an int"):
        F.conv_transpose2d(x, w, padding="same")
    with pytest.raises(ValueError, match="leaves no output"):
        F.conv_transpose2d(x, w, padding=3)
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        F.conv_transpose2d(x, w, np.zeros(4))
    with pytest.raises(TypeError, match="float32 or float64"):
        F.conv_transpose2d(x.astype(np.int32), w)
    with pytest.raises(ValueError, match="ConvTranspose2d: output_padding must be smaller"):
        L.ConvTranspose2d(4, 3, stride=2, output_padding=(0, 2))
    with pytest.raises(TypeError, match="ConvTranspose2d"):
        L.ConvTranspose2d(4, 3, 2)  # stride and what follows are keyword-only


def test_upsamples_by_the_stride_and_inverts_conv_shapes():
    """The U-Net / autoencoder use: a stride-2 transposed convolution doubles the map, undoing the
    shape of a stride-2 convolution (output_padding picks the odd size)."""
    x = Input((3, 7, 7))
    down = L.Conv2d(8, 3, stride=2, padding=1)(x)  # 4x4
    up = L.ConvTranspose2d(3, 3, stride=2, padding=1, output_padding=0, name="up")(down)
    m = Model(x, up)
    layer = m.get_layer("up")
    assert layer.output_shape == (3, 7, 7)
    assert layer.params["weight"].shape == (8, 3, 3, 3)
    assert layer.macs() == 8 * 4 * 4 * 3 * 3 * 3
    text = m.summary(print_fn=None)
    assert "up (ConvTranspose2d)" in text and "3x7x7" in text


def test_summary_macs_and_params():
    x = Input((4, 5, 6))
    m = Model(x, L.ConvTranspose2d(6, (3, 2), stride=2, groups=2, name="ct")(x))
    from corenet.summary import layer_rows

    row = {r["name"]: r for r in layer_rows(m)}["ct"]
    assert row["shape"] == (6, 11, 12)
    assert row["params"] == 4 * 3 * 3 * 2 + 6
    assert row["macs"] == 4 * 5 * 6 * 3 * 3 * 2


def test_save_load_and_torch_parameter_layout(tmp_path):
    torch = pytest.importorskip("torch")
    x = Input((3, 5, 5))
    m = Model(x, L.ConvTranspose2d(4, 3, stride=2, padding=1, output_padding=1, name="up")(x), seed=3)
    params = m.parameters()
    assert params["up.weight"].shape == (3, 4, 3, 3) and params["up.bias"].shape == (4,)
    tl = torch.nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1).double()
    tl.load_state_dict({"weight": torch.tensor(params["up.weight"], dtype=torch.float64),
                        "bias": torch.tensor(params["up.bias"], dtype=torch.float64)})
    xs = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    y = m.predict(xs)
    np.testing.assert_allclose(y, tl(torch.tensor(xs, dtype=torch.float64)).detach().numpy(), rtol=1e-4, atol=1e-5)
    path = tmp_path / "ct.npz"
    m.save(path)
    loaded = corenet.load(path)
    np.testing.assert_array_equal(loaded.predict(xs), y)
    layer = loaded.get_layer("up")
    assert (layer.stride, layer.output_padding, layer.padding) == ((2, 2), (1, 1), 1)


def test_default_init_follows_pytorch_fan_in():
    """PyTorch reads the fan-in of this layout from dim 1: (C_out/groups) * kH * kW."""
    x = Input((16, 4, 4))
    m = Model(x, L.ConvTranspose2d(2, 3, name="up")(x), seed=0)
    w = m.parameters()["up.weight"]
    bound = 1 / np.sqrt(2 * 9)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
