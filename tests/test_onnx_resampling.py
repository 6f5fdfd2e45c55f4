"""ONNX export/import of ConvTranspose2d (ConvTranspose) and Upsample (Resize), checked by
onnxruntime against corenet's predict, and PyTorch's own export of the two modules imported."""

import numpy as np
import pytest

import corenet
from corenet import Input, Model
from corenet import layers as L
from corenet.geometry import padding4

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'corenet[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (it is in the test extra)")


def ort_run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * float(np.abs(want).max()))


def round_trip(layer, path, opset, shape=(3, 5, 7), reimport=True):
    x_in = Input(shape)
    model = Model(x_in, layer(x_in), seed=0)
    if "bias" in layer.params:  # a visible bias (the default initializer is small)
        layer.params["bias"][...] = np.linspace(-1, 1, layer.params["bias"].size)
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    corenet.export_onnx(model, path, opset=opset)
    want = model.predict(x)
    got = ort_run(path, x)
    assert got.shape == want.shape
    close(got, want)
    if reimport:
        back = corenet.import_onnx(path)
        np.testing.assert_array_equal(back.predict(x), want)
        return back
    return None


CONV_T = [
    lambda: L.ConvTranspose2d(4, 3, stride=2, padding=1, output_padding=1),
    lambda: L.ConvTranspose2d(6, (2, 3), stride=(2, 1), padding=((1, 0), (2, 1)), groups=3, bias=False),
    # output_padding as large as the stride (allowed by the dilation): written as padding + Pad + Add
    lambda: L.ConvTranspose2d(6, (2, 3), stride=(1, 2), padding=((1, 0), (0, 2)), dilation=(2, 1),
                              output_padding=(1, 0), groups=3),
    lambda: L.ConvTranspose2d(2, 3, dilation=2, padding=2, output_padding=1),
]


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("make", CONV_T, ids=["s2", "grouped_asym", "opad_eq_stride", "opad_absorbed"])
def test_conv_transpose_round_trip(tmp_path, opset, make):
    layer = make()
    pads = padding4("ConvTranspose2d", layer.padding, layer.kernel_size, layer.stride, layer.dilation, (1, 1))
    extra = any(o > p for o, p in zip(layer.output_padding, (pads[1], pads[3])))  # zero rows: Pad + Add
    back = round_trip(layer, tmp_path / "ct.onnx", opset, reimport=not extra)
    if back is not None:
        assert "ConvTranspose2d" in {type(la).__name__ for la in back.layers}


UPSAMPLE = [
    dict(scale_factor=2), dict(scale_factor=1.5), dict(scale_factor=(2.1, 0.7)), dict(size=(9, 11)),
    dict(size=(5, 3)), dict(scale_factor=2, mode="bilinear"), dict(scale_factor=(1.5, 2.5), mode="bilinear"),
    dict(size=(9, 4), mode="bilinear"), dict(size=(9, 13), mode="bilinear", align_corners=True),
    dict(scale_factor=3, mode="bilinear", align_corners=True), dict(scale_factor=1.2, mode="bilinear"),
]


@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("kw", UPSAMPLE, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_upsample_round_trip(tmp_path, opset, kw):
    """Sizes re-import from opset 18 (spatial axes only); below it they are computed from the input's
    shape at run time, which onnxruntime runs and import_onnx refuses with the reason."""
    reimport = "size" not in kw or opset >= 18
    round_trip(L.Upsample(**kw), tmp_path / "up.onnx", opset, reimport=reimport)
    if not reimport:
        with pytest.raises(ValueError, match="Shape"):
            corenet.import_onnx(tmp_path / "up.onnx")


def test_upsample_export_refuses_a_size_float32_scales_cannot_give(tmp_path):
    x = Input((1, 30, 30))
    model = Model(x, L.Upsample(scale_factor=2.1, name="up")(x))  # floor(30 * 2.1) = 63, in float32: 62
    with pytest.raises(ValueError, match=r"'up' \(Upsample\) cannot be exported: scale_factor 2.1 on a side of 30"):
        corenet.export_onnx(model, tmp_path / "bad.onnx")


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")  # torch's legacy exporter
def test_import_pytorch_export_of_a_decoder(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is the reference exporter (in the test extra)")
    nn = torch.nn
    net = nn.Sequential(nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
                        nn.Upsample(scale_factor=2, mode="bilinear"), nn.Upsample(scale_factor=1.5),
                        nn.ConvTranspose2d(4, 2, (2, 3), stride=(1, 2), groups=2)).eval()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 6)
    path = tmp_path / "torch.onnx"
    torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                      dynamic_axes={"x": {0: "N"}})
    model = corenet.import_onnx(path)
    assert [type(la).__name__ for la in model.layers].count("Upsample") == 2
    with torch.no_grad():
        close(model.predict(x.numpy()), net(x).numpy())
