"""ONNX export and import of ReLU6, Hardsigmoid, Hardswish, SiLU, ChannelShuffle, DropPath and
SeparableConv2d (corenet/io/onnx/{export,import}_mobile.py): onnxruntime against corenet's predict,
the round trip back to the same layers, PyTorch's exporter's files, and the refusals."""

import numpy as np
import pytest

import corenet
from corenet import Input, Model
from corenet import layers as L

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'corenet[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (it is in the test extra)")
from onnx import TensorProto, helper  # noqa: E402


def ort_run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


def mobile_net():
    x_in = Input((4, 7, 7))
    h = L.SeparableConv2d(6, 3, padding=1, depth_multiplier=2, name="sep")(x_in)
    h = L.ChannelShuffle(3, name="shuffle")(L.ReLU6(name="relu6")(h))
    h = L.Hardswish(name="hswish")(L.SeparableConv2d(6, 3, stride=2, padding="same", bias=False, name="sep2")(h))
    gate = L.Hardsigmoid(name="hsig")(L.Conv2d(6, 1, name="fc")(L.GlobalAvgPool2d(name="gap")(h)))
    h = L.Multiply(name="scale")([h, gate])
    h = L.Add(name="residual")([h, L.DropPath(0.3, name="drop")(L.SiLU(name="silu")(h))])
    return Model(x_in, L.Linear(5, name="out")(L.Flatten(name="flat")(h)), seed=0)


@pytest.mark.parametrize("opset", [13, 17])
def test_round_trip_through_onnxruntime(tmp_path, opset):
    model = mobile_net()
    x = (np.random.default_rng(0).standard_normal((3, 4, 7, 7)) * 3).astype(np.float32)
    path = tmp_path / "mobile.onnx"
    corenet.export_onnx(model, path, opset=opset)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("Clip") == 1 and ops.count("HardSigmoid") == (2 if opset == 13 else 1)
    assert ("HardSwish" in ops) == (opset >= 14) and "Transpose" in ops and ops.count("Conv") == 5
    want = model.predict(x)
    close(ort_run(path, x), want)
    back = corenet.import_onnx(path)
    kinds = {layer.name: type(layer).__name__ for layer in back.layers}
    assert {kinds[n] for n in ("relu6", "shuffle", "hswish", "hsig", "silu")} == {
        "ReLU6", "ChannelShuffle", "Hardswish", "Hardsigmoid", "SiLU"}
    assert kinds["sep_depthwise"] == kinds["sep"] == "Conv2d"  # a separable convolution comes back as its two
    assert back.get_layer("sep_depthwise").groups == 4
    np.testing.assert_array_equal(back.get_layer("sep_depthwise").params["weight"],
                                  model.get_layer("sep").params["depthwise.weight"])
    assert "DropPath" not in kinds.values()
    np.testing.assert_allclose(back.predict(x), want, rtol=1e-6, atol=1e-6)


class _Unmapped(L.Layer):
    """A layer with no ONNX mapping."""

    def forward(self, x, training=False, retain=True):
        return x


def test_export_names_the_supported_layers(tmp_path):
    x_in = Input((3, 4, 4))
    model = Model(x_in, _Unmapped()(x_in))
    with pytest.raises(ValueError) as info:
        corenet.export_onnx(model, tmp_path / "m.onnx")
    for name in ("ReLU6", "SiLU", "Hardswish", "Hardsigmoid", "ChannelShuffle", "DropPath", "SeparableConv2d"):
        assert name in str(info.value)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")  # torch's legacy exporter
def test_import_torchvision_channel_shuffle(tmp_path):
    """torchvision's shuffle (view, transpose, view) exported at a fixed batch size: constant shapes."""
    torch = pytest.importorskip("torch", reason="torch is the reference exporter (in the test extra)")

    class Shuffle(torch.nn.Module):
        def forward(self, x):
            n, c, h, w = x.shape
            return x.view(n, 3, c // 3, h, w).transpose(1, 2).contiguous().view(n, c, h, w)

    x = torch.randn(2, 12, 3, 4)
    path = tmp_path / "shuffle.onnx"
    torch.onnx.export(Shuffle(), (x,), str(path), dynamo=False, opset_version=17, input_names=["x"])
    model = corenet.import_onnx(path)
    shuffles = [layer for layer in model.layers if isinstance(layer, L.ChannelShuffle)]
    assert len(shuffles) == 1 and shuffles[0].groups == 3 and len(model.layers) == 1  # nothing else
    np.testing.assert_array_equal(model.predict(x.numpy()), torch.nn.ChannelShuffle(3)(x).numpy())


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
@pytest.mark.parametrize("opset", [13, 17])
def test_import_pytorch_activations(tmp_path, opset):
    torch = pytest.importorskip("torch", reason="torch is the reference exporter (in the test extra)")
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU6(), nn.Conv2d(6, 6, 1), nn.Hardswish(),
                        nn.Conv2d(6, 6, 1), nn.SiLU(), nn.Conv2d(6, 6, 1), nn.Hardsigmoid()).eval()
    x = torch.randn(2, 3, 4, 4) * 3
    path = tmp_path / "acts.onnx"
    torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=opset, input_names=["x"],
                      dynamic_axes={"x": {0: "N"}})
    model = corenet.import_onnx(path)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert [k for k in kinds if k != "Conv2d" and k != "InputLayer"] == ["ReLU6", "Hardswish", "SiLU", "Hardsigmoid"]
    with torch.no_grad():
        close(model.predict(x.numpy()), net(x).numpy())


def _one_node_model(path, node, inits=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    graph = helper.make_graph([node], "g", [x], [y], list(inits))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_import_refuses_other_clip_and_hardsigmoid(tmp_path):
    bounds = [helper.make_tensor("lo", TensorProto.FLOAT, [], [-1.0]),
              helper.make_tensor("hi", TensorProto.FLOAT, [], [1.0])]
    path = _one_node_model(tmp_path / "clip.onnx", helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="c"), bounds)
    with pytest.raises(ValueError, match=r"node 'c' \(Clip\): Clip to \[-1.0, 1.0\]: only \[0, 6\]"):
        corenet.import_onnx(path)
    relu = [helper.make_tensor("lo", TensorProto.FLOAT, [], [0.0])]
    path = _one_node_model(tmp_path / "relu.onnx", helper.make_node("Clip", ["x", "lo"], ["y"], name="c"), relu)
    assert type(corenet.import_onnx(path).layers[-1]).__name__ == "ReLU"
    node = helper.make_node("HardSigmoid", ["x"], ["y"], name="h", alpha=0.2, beta=0.5)
    with pytest.raises(ValueError, match=r"node 'h' \(HardSigmoid\): alpha=0.2"):
        corenet.import_onnx(_one_node_model(tmp_path / "hs.onnx", node))
