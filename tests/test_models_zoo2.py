"""Issue 17's zoo families: MobileNet v2, EfficientNet-B0, ShuffleNet v2, Xception, ZFNet.

Each model is checked four ways: its parameter count (the published one) and MACs at its native
input size from ``summary()``; its logits against a twin written here in plain ``torch.nn``
(torchvision's definitions re-typed with its module names; Keras's Xception with Keras's layer
names) from the same random weights, float64, eval mode, at a small input; ``summary()``'s MACs at
that input against the twin's convolutions and linear layers counted with forward hooks (the
depthwise and pointwise halves of a separable convolution included); a save/load round trip and
one training step on a light variant. (ONNX export of every zoo model: tests/test_onnx_zoo.py; here
the import of ShuffleNet's channel split.)
"""

import re

import numpy as np
import pytest
from gradcheck import check_layer

import corenet
from corenet import io, models, optim
from corenet.layers import ChannelSlice
from corenet.models.shufflenet import shufflenet_v2

torch = pytest.importorskip("torch")
nn = torch.nn
from zoo_twins import EfficientNetB0, MobileNetV2, ShuffleNetV2, Xception, ZFNet, randomize  # noqa: E402


# ----------------------------------------------------------------------------------- helpers
def _totals(model):
    text = model.summary(print_fn=None)
    params = int(re.search(r"Total params: ([\d,]+)", text).group(1).replace(",", ""))
    macs = int(re.search(r"Total MACs: ([\d,]+)", text).group(1).replace(",", ""))
    return params, macs


def _torch_macs(net, x):
    """Multiply-accumulates of one sample in the twin's Conv2d and Linear modules (bias not counted)."""
    total = []

    def hook(m, inputs, out):
        if isinstance(m, nn.Conv2d):
            total.append(out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1])
        else:
            total.append(m.in_features * m.out_features)

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        net(x[:1])
    for h in handles:
        h.remove()
    return sum(total)


def compare_with_twin(net, model, torchvision_names=True, seed=0):
    """Twin's random weights -> corenet (strict, by name); same logits in float64; same MACs. Returns max |diff|."""
    x = np.random.default_rng(seed).standard_normal((2, *model.inputs[0].shape))
    xt = torch.from_numpy(x)
    net = net.double().eval()
    with torch.no_grad():
        net(xt[:1])  # materialises ZFNet's lazy fc6
    net = randomize(net, seed)
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    model = model.astype(np.float64)
    if torchvision_names:
        pairs = models.load_torchvision(model, sd)
    else:  # Keras's layer names are the twin's module names: they must pair one to one
        pairs = corenet.load_torch_state_dict(model, sd)
        assert all(k == v for k, v in pairs.items())
    assert set(sd) == set(pairs.values())  # every tensor of the twin has its corenet twin
    with torch.no_grad():
        expected = net(xt).numpy()
    got = model.predict(x)
    assert got.shape == expected.shape and got.dtype == np.float64
    diff = float(np.abs(got - expected).max())
    assert diff <= 1e-4 * max(1.0, float(np.abs(expected).max())), diff
    assert _totals(model)[1] == _torch_macs(net, xt)
    return diff


# ----------------------------------------------------------------------------------- counts and MACs
# name, exact parameter count with 1000 classes (published), MACs at the native input: the
# literature's figure (checked within 2%) or, for ZFNet, the exact product of its map sizes
ZFNET_MACS = (96 * 3 * 49 * 110**2 + 256 * 96 * 25 * 26**2 + (384 * 256 + 384 * 384 + 256 * 384) * 9 * 13**2
              + 256 * 36 * 4096 + 4096 * 4096 + 4096 * 1000)
COUNTS = [
    ("mobilenet_v2", 3_504_872, 300e6, (3, 224, 224)),
    ("efficientnet_b0", 5_288_548, 390e6, (3, 224, 224)),
    ("shufflenet_v2_x0_5", 1_366_792, 41e6, (3, 224, 224)),
    ("shufflenet_v2_x1_0", 2_278_604, 146e6, (3, 224, 224)),
    ("shufflenet_v2_x1_5", 3_503_624, 299e6, (3, 224, 224)),
    ("shufflenet_v2_x2_0", 7_393_996, 591e6, (3, 224, 224)),
    ("xception", 22_855_952, None, (3, 299, 299)),
    ("zfnet", 62_357_608, ZFNET_MACS, (3, 224, 224)),
]


@pytest.mark.parametrize("name, n_params, macs, shape", COUNTS, ids=[c[0] for c in COUNTS])
def test_parameter_count_and_macs_at_native_size(name, n_params, macs, shape):
    model = models.get_model(name)
    params, total_macs = _totals(model)
    assert model.inputs[0].shape == shape
    assert params == n_params
    assert sum(p.size for p in model.parameters().values()) == n_params
    if name == "zfnet":
        assert total_macs == macs
    elif macs is not None:
        assert abs(total_macs - macs) <= 0.02 * macs, f"{name}: {total_macs / 1e6:.1f}M MACs"


def test_zfnet_has_the_papers_feature_maps():
    model = models.zfnet(hidden=16)
    sizes = [layer.output_shape[1:] for layer in model.layers if type(layer).__name__ in ("Conv2d", "MaxPool2d")]
    assert [s[0] for s in sizes] == [110, 55, 26, 13, 13, 13, 13, 6]
    assert all(h == w for h, w in sizes)


def test_efficientnet_stochastic_depth_grows_with_depth_as_torchvision():
    # block i of 16 drops its branch with probability 0.2 * i / 16; only residual blocks have a branch to drop
    model = models.efficientnet_b0(num_classes=10, input_size=32)
    ps = [layer.get_config()["p"] for layer in model.layers if type(layer).__name__ == "DropPath"]
    np.testing.assert_allclose(ps, [0.2 * i / 16 for i in (2, 4, 6, 7, 9, 10, 12, 13, 14)])
    assert not [la for la in models.efficientnet_b0(stochastic_depth=0.0, input_size=32).layers
                if type(la).__name__ == "DropPath" and la.get_config()["p"] > 0]


# ----------------------------------------------------------------------------------- the twins
def test_mobilenet_v2_matches_torch():
    compare_with_twin(MobileNetV2(10), models.mobilenet_v2(num_classes=10, input_size=32))


def test_efficientnet_b0_matches_torch():
    compare_with_twin(EfficientNetB0(10), models.efficientnet_b0(num_classes=10, input_size=32))


@pytest.mark.parametrize("width, widths", [("0_5", (24, 48, 96, 192, 1024)), ("1_0", (24, 116, 232, 464, 1024)),
                                           ("1_5", (24, 176, 352, 704, 1024)), ("2_0", (24, 244, 488, 976, 2048))])
def test_shufflenet_v2_matches_torch(width, widths):
    model = models.get_model(f"shufflenet_v2_x{width}", num_classes=10, input_size=32)
    compare_with_twin(ShuffleNetV2(widths, 10), model)


def test_xception_matches_keras_twin():
    # 71x71, Keras's smallest input: maps 35, 33, 17, 9, 5, 3 (odd and even sizes for the 'same' pools)
    compare_with_twin(Xception(10), models.xception(num_classes=10, input_size=71),
                      torchvision_names=False)


def test_zfnet_matches_torch():
    # the paper's 224x224 with 256-wide fc6/fc7 (the convolutional part is the paper's)
    compare_with_twin(ZFNet(10, 256), models.zfnet(num_classes=10, hidden=256))


# ----------------------------------------------------------------------------------- light variants
LIGHT = [
    ("mobilenet_v2", {"width": 0.35, "input_size": 32}),
    ("efficientnet_b0", {"input_size": 32}),
    ("shufflenet_v2_x0_5", {"input_size": 32}),
    ("xception", {"input_size": 71}),
    ("zfnet", {"input_size": 63, "hidden": 32, "dropout": 0.0}),
]


@pytest.mark.parametrize("name, kw", LIGHT, ids=[n for n, _ in LIGHT])
def test_save_load_round_trip_and_one_training_step(name, kw, tmp_path):
    model = models.get_model(name, num_classes=5, seed=1, **kw)
    rng = np.random.default_rng(2)
    # batch 4: batch norm over 2 samples of the 1x1 maps at the end of a 32-pixel input is degenerate
    # (each channel normalises to +-1) and its gradients blow the weights up to 1e5 in two steps
    x = rng.standard_normal((4, *model.inputs[0].shape), dtype=np.float32)
    y = rng.integers(0, 5, 4)
    lr = {"zfnet": 0.1, "efficientnet_b0": 0.001}.get(name, 0.01)  # EfficientNet's SE gates: a smaller step
    model.compile(optim.SGD(lr=lr, momentum=0.9), "cross_entropy")
    before = model.train_on_batch(x, y)  # the loss before the step
    after = model.train_on_batch(x, y)  # ... and after it, on the same batch
    assert np.isfinite(before) and after < before, (before, after)
    # the architecture (ChannelSlice, DropPath, SeparableConv2d included) is rebuilt from its config
    model.save(tmp_path / "m.npz", include_optimizer=False)
    again = io.load(tmp_path / "m.npz")
    assert [type(la).__name__ for la in again.layers] == [type(la).__name__ for la in model.layers]
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


# ----------------------------------------------------------------------------------- structure
def test_registry_and_torchvision_names():
    assert {"mobilenet_v2", "efficientnet_b0", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5",
            "shufflenet_v2_x2_0", "xception", "zfnet"} <= set(models.available_models())
    names = set(models.shufflenet_v2_x0_5(num_classes=10, input_size=32).state_dict())
    assert {"conv1_0.weight", "stage2_0_branch1_0.weight", "stage3_7_branch2_6.running_var", "fc.bias"} <= names


@pytest.mark.parametrize("call, match", [
    (lambda: models.mobilenet_v2(width=0), "width must be"),
    (lambda: shufflenet_v2(width="3.0"), "width must be one of"),
    (lambda: models.efficientnet_b0(stochastic_depth=1.0), "stochastic_depth must be"),
    (lambda: ChannelSlice(3, 3), "start < stop"),
])
def test_bad_arguments_say_what_was_received(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_channel_slice_forward_backward_and_gradient():
    layer = ChannelSlice(1, 3)
    x = np.arange(2 * 4 * 2 * 2, dtype=np.float32).reshape(2, 4, 2, 2)
    layer.build(x.shape[1:])
    y = layer.forward(x)
    assert y.shape == (2, 2, 2, 2) and y.dtype == np.float32 and y.flags.c_contiguous
    np.testing.assert_array_equal(y, x[:, 1:3])
    gx = layer.backward(np.ones_like(y))
    assert gx.shape == x.shape and not gx[:, [0, 3]].any() and (gx[:, 1:3] == 1).all()
    check_layer(ChannelSlice(2, 5), (6, 3, 2))
    with pytest.raises(ValueError, match="channels 2:5 of an input with 4"):
        corenet.Model(i := corenet.Input((4, 3, 3)), ChannelSlice(2, 5)(i))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_shufflenet_onnx_round_trip_imports_the_channel_split(tmp_path):
    pytest.importorskip("onnx", reason="onnx is not installed (pip install 'corenet[onnx]')")
    model = models.shufflenet_v2_x0_5(num_classes=10, input_size=32)
    corenet.export_onnx(model, tmp_path / "s.onnx", opset=13)
    again = corenet.import_onnx(tmp_path / "s.onnx")
    kinds = [type(la).__name__ for la in again.layers]
    assert kinds.count("ChannelSlice") == 2 * 13 and kinds.count("ChannelShuffle") == 16
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(again.predict(x), model.predict(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("starts, ends, axes, match", [
    (0, 2, 2, "only a step-1 slice of the channel axis"),
    (3, 1, 1, r"node 'slice'.*channels 3:1 of 4 are empty"),  # was ChannelSlice's own error, no node named
    (2, -3, 1, r"node 'slice'.*channels 2:1 of 4 are empty"),
])
def test_onnx_slice_off_the_channel_axis_or_empty_is_refused(tmp_path, starts, ends, axes, match):
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'corenet[onnx]')")
    h = onnx.helper
    consts = [onnx.numpy_helper.from_array(np.array([v], np.int64), n) for n, v in
              (("starts", starts), ("ends", ends), ("axes", axes))]
    graph = h.make_graph([h.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"], name="slice")], "g",
                         [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4, 3, 3])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4, 2, 3])], consts)
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 13)]), str(tmp_path / "s.onnx"))
    with pytest.raises(ValueError, match=match):
        corenet.import_onnx(tmp_path / "s.onnx")
