"""ONNX export and import (corenet/io/onnx/), checked by onnxruntime.

Every exported file passes ``onnx.checker`` (export runs it); onnxruntime's outputs match corenet's
``predict`` within rtol 1e-4 (plus an atol of 1e-4 times the output's largest magnitude, for entries
near zero), and the imported model's predictions match corenet's own.
"""

import numpy as np
import pytest

import corenet
from corenet import Input, Model, models, optim
from corenet import layers as L

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'corenet[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (it is in the test extra)")
from onnx import TensorProto, helper  # noqa: E402


def ort_run(path, *xs):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), xs)})


def close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def randomize_bn(model, seed=1):
    """Non-trivial running statistics, so that eval-mode batch norm is tested for real."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if "running_mean" in layer.buffers:
            c = layer.buffers["running_mean"].shape
            layer.buffers["running_mean"][...] = rng.normal(0, 0.5, c)
            layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, c)
    return model


def check_round_trip(model, path, opset, *xs, exact_import=True):
    corenet.export_onnx(model, path, opset=opset)
    want = model.predict(list(xs) if len(xs) > 1 else xs[0])
    want = want if isinstance(want, list) else [want]
    got = ort_run(path, *xs)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        close(g, w)
    back = corenet.import_onnx(path)
    again = back.predict(list(xs) if len(xs) > 1 else xs[0])
    again = again if isinstance(again, list) else [again]
    for a, w in zip(again, want):
        if exact_import:
            np.testing.assert_array_equal(a, w)
        else:
            close(a, w)
    return back


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("name,shape", [("lenet5", (1, 28, 28)), ("resnet20_cifar", (3, 32, 32))])
def test_zoo_round_trip(tmp_path, name, shape, opset):
    model = randomize_bn(models.get_model(name, seed=0))
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    back = check_round_trip(model, tmp_path / f"{name}.onnx", opset, x)
    params = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    got = back.state_dict()
    assert set(params) <= set(got)  # layers keep their names through the parameter names
    for k, v in params.items():
        np.testing.assert_array_equal(got[k], v)


def pooling_net(seed=0):
    """LRN (both conventions), pooling variants, 'same' padding at stride 2, ZeroPad2d, Concat, SE gates."""
    x = Input((3, 13, 13))
    h = L.ReLU()(L.Conv2d(8, 3, stride=2, padding="same")(x))                  # asymmetric pads (0, 1)
    h = L.LocalResponseNorm(5, alpha=1e-2, beta=0.75, k=2.0)(h)
    h = L.MaxPool2d(3, 2, padding=1, ceil_mode=True)(h)                          # 7 -> 4
    a = L.AvgPool2d(3, 1, padding=1, count_include_pad=False)(h)
    b = L.AvgPool2d(2, 1, padding=((0, 1), (1, 0)), ceil_mode=True)(h)          # count_include_pad=True
    c = L.LocalResponseNorm(3, alpha=1e-3, beta=0.5, k=1.0, convention="paper")(h)
    d = L.Conv2d(4, 3, padding=0, dilation=1, groups=2)(L.ZeroPad2d(((1, 0), (0, 1)))(h))
    d = L.ZeroPad2d(((0, 1), (1, 0)))(d)
    m = L.MaxPool2d(3, 1, padding=1, dilation=1)(h)
    cat = L.Concat()([a, b, c, d, m])                                            # 36 channels
    bn = L.BatchNorm2d()(cat)
    gates = L.Sigmoid()(L.Linear(36)(L.Flatten()(L.GlobalAvgPool2d()(bn))))      # (N, 36): channels-first broadcast
    se = L.Multiply()([bn, gates])
    g4 = L.Reshape((36, 1, 1))(gates)
    se = L.Add()([se, L.Multiply()([se, g4]), bn])                               # 3-way Add -> Sum
    out = L.Linear(5)(L.Flatten()(L.MaxPool2d(2, 2, ceil_mode=True)(se)))
    aux = L.Softmax()(L.Linear(3)(L.Flatten()(L.GlobalMaxPool2d()(se))))        # a second output
    return randomize_bn(Model(x, [out, aux], seed=seed))


@pytest.mark.parametrize("opset", [13, 17])
def test_pooling_lrn_concat_multiply_round_trip(tmp_path, opset):
    x = np.random.default_rng(2).standard_normal((2, 3, 13, 13)).astype(np.float32)
    back = check_round_trip(pooling_net(), tmp_path / "pool.onnx", opset, x)
    kinds = {type(layer).__name__ for layer in back.layers}
    assert {"LocalResponseNorm", "AvgPool2d", "MaxPool2d", "ZeroPad2d", "Concat", "Multiply", "Add",
            "BatchNorm2d", "Reshape", "Softmax"} <= kinds


def activations_net(seed=0):
    x = Input((4, 6, 6))
    h = L.Conv2d(6, 3, padding=1)(x)
    branches = [L.LeakyReLU(0.2)(h), L.ELU(0.7)(h), L.SELU()(h), L.Tanh()(h),
                L.Dropout(0.3)(h), L.AdaptiveAvgPool2d(6)(h)]
    h = L.Concat()(branches)
    h = L.AdaptiveAvgPool2d((3, 2))(h)                                           # 6x6 -> windows 2x3
    f = L.Flatten()(h)
    f = L.BatchNorm1d()(L.Linear(10)(f))
    return x, f


def test_activations_adaptive_pool_batchnorm1d(tmp_path):
    x, f = activations_net()
    model = randomize_bn(Model(x, [L.LogSoftmax()(f), L.Dropout(0.5)(f)], seed=3))  # an output after Dropout
    xs = np.random.default_rng(3).standard_normal((3, 4, 6, 6)).astype(np.float32)
    check_round_trip(model, tmp_path / "act.onnx", 13, xs)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_exports_as_arithmetic(tmp_path, approximate):
    x = Input((5,))
    model = Model(x, L.GELU(approximate)(L.Linear(7)(x)), seed=0)
    xs = np.random.default_rng(4).standard_normal((4, 5)).astype(np.float32) * 3
    path = tmp_path / "gelu.onnx"
    corenet.export_onnx(model, path, opset=17)
    close(ort_run(path, xs)[0], model.predict(xs))
    with pytest.raises(ValueError, match=r"gelu\.onnx.*\((Erf|Tanh|Mul)\)|node .*\(Mul\)"):
        corenet.import_onnx(path)  # below opset 20 GELU is arithmetic with constants: not a corenet layer


def test_imported_model_trains_and_saves(tmp_path):
    model = models.lenet5(seed=0)
    path = tmp_path / "lenet.onnx"
    corenet.export_onnx(model, path)
    back = corenet.import_onnx(path)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    back.compile(optim.Adam(lr=1e-3), "cross_entropy")
    losses = [back.train_on_batch(x, y) for _ in range(6)]
    assert losses[-1] < losses[0]
    back.save(tmp_path / "back.npz")
    np.testing.assert_array_equal(corenet.load(tmp_path / "back.npz").predict(x), back.predict(x))


@pytest.mark.parametrize("layer,words", [
    (L.LocalResponseNorm(4), r"local_response_norm.*LocalResponseNorm.*size=4 is even"),
    (L.LocalResponseNorm(3, mode="within"), r"LocalResponseNorm.*within"),
    (L.MinPool2d(2), r"min_pool2d.*MinPool2d"),
    (L.AvgPool2d(3, dilation=2), r"avg_pool2d.*AvgPool2d.*opset 19"),
    (L.AdaptiveAvgPool2d(3), r"adaptive_avg_pool2d.*AdaptiveAvgPool2d.*plain window"),
])
def test_export_refuses_with_the_layer_named(tmp_path, layer, words):
    x = Input((4, 8, 8))
    model = Model(x, layer(L.Conv2d(4, 1)(x)), seed=0)
    with pytest.raises(ValueError, match=words):
        corenet.export_onnx(model, tmp_path / "refused.onnx")
    assert not (tmp_path / "refused.onnx").exists()


def test_export_refuses_bad_opset(tmp_path):
    with pytest.raises(ValueError, match="opset must be an int in 13..18"):
        corenet.export_onnx(models.lenet5(), tmp_path / "x.onnx", opset=12)


def test_missing_onnx_is_a_clear_import_error(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"corenet\.export_onnx needs the 'onnx' package.*corenet\[onnx\]"):
        corenet.export_onnx(models.lenet5(), tmp_path / "x.onnx")
    with pytest.raises(ImportError, match=r"corenet\.import_onnx needs the 'onnx' package"):
        corenet.import_onnx(tmp_path / "x.onnx")


def test_two_inputs_keep_their_order(tmp_path):
    a, b = Input((3,), name="a"), Input((4,), name="b")
    out = L.Concat()([L.Linear(2)(b), L.Tanh()(a)])
    model = Model([a, b], out, seed=0)
    xa = np.random.default_rng(7).standard_normal((2, 3)).astype(np.float32)
    xb = np.random.default_rng(8).standard_normal((2, 4)).astype(np.float32)
    back = check_round_trip(model, tmp_path / "two.onnx", 17, xa, xb)
    assert back.input_names == ["a", "b"]


def _write(path, nodes, inits=(), outputs=("y",)):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4, 4])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["N", 2, 4, 4]) for o in outputs],
                              list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_import_lists_every_unsupported_node(tmp_path):
    path = _write(tmp_path / "ops.onnx", [helper.make_node("Neg", ["x"], ["a"], name="negate"),
                                          helper.make_node("Relu", ["a"], ["b"], name="ok"),
                                          helper.make_node("Abs", ["b"], ["y"], name="absolute")])
    with pytest.raises(ValueError, match=r"ops\.onnx.*2 node.*'negate' \(Neg\).*'absolute' \(Abs\)"):
        corenet.import_onnx(path)


def test_import_refuses_even_lrn_and_constant_operands(tmp_path):
    path = _write(tmp_path / "lrn.onnx", [helper.make_node("LRN", ["x"], ["y"], name="norm", size=4)])
    with pytest.raises(ValueError, match=r"lrn\.onnx.*'norm' \(LRN\).*even"):
        corenet.import_onnx(path)
    c = onnx.numpy_helper.from_array(np.ones((1, 2, 1, 1), np.float32), "c")
    path = _write(tmp_path / "mul.onnx", [helper.make_node("Mul", ["x", "c"], ["y"], name="scale")], [c])
    with pytest.raises(ValueError, match=r"'scale' \(Mul\).*constant"):
        corenet.import_onnx(path)


def test_import_refuses_garbage_truncated_and_escaping_files(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\xffnot a protobuf at all" * 10)
    with pytest.raises(ValueError, match="garbage.onnx"):
        corenet.import_onnx(garbage)
    corenet.export_onnx(models.lenet5(), tmp_path / "whole.onnx")
    data = (tmp_path / "whole.onnx").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.onnx"):
        corenet.import_onnx(cut)
    with pytest.raises(ValueError, match="no such file"):
        corenet.import_onnx(tmp_path / "missing.onnx")
    # external data outside the model's folder is refused before anything is read
    (tmp_path / "secret.bin").write_bytes(np.ones(16, np.float32).tobytes())
    sub = tmp_path / "models"
    sub.mkdir()
    w = onnx.numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value="../secret.bin")
    path = _write(sub / "escape.onnx", [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], [w])
    with pytest.raises(ValueError, match=r"escape\.onnx.*'w'.*external data '\.\./secret\.bin'"):
        corenet.import_onnx(path)


def test_cli_export(tmp_path, capsys):
    from corenet import cli

    ckpt, out = tmp_path / "l5.npz", tmp_path / "l5.onnx"
    model = models.lenet5(seed=0)
    model.save(ckpt)
    assert cli.main(["export", "--checkpoint", str(ckpt), "--onnx", str(out), "--opset", "13"]) == 0
    x = np.random.default_rng(6).standard_normal((2, 1, 28, 28)).astype(np.float32)
    close(ort_run(out, x)[0], model.predict(x))
    assert onnx.load(str(out)).opset_import[0].version == 13
    assert cli.main(["export", "--checkpoint", str(ckpt), "--onnx", str(out), "--opset", "99"]) == 2
    assert "opset must be" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")  # torch's legacy exporter
@pytest.mark.parametrize("training", ["EVAL", "PRESERVE"])
def test_import_pytorch_export(tmp_path, training):
    """PyTorch's exporter folds batch norm into the convolution in eval mode (EVAL) or keeps the
    BatchNormalization nodes (PRESERVE); both import, match PyTorch and train."""
    torch = pytest.importorskip("torch", reason="torch is the reference exporter (in the test extra)")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.bn = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
            self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.a, self.b = nn.Conv2d(8, 4, 1), nn.Conv2d(8, 4, 3, stride=1, padding=(1, 1), groups=4)
            self.avg = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
            self.fc, self.drop = nn.Linear(8 * 6 * 6, 10), nn.Dropout()

        def forward(self, x):
            x = self.pool(torch.relu(self.bn(self.c1(x))))
            x = torch.cat([self.a(x), self.avg(self.b(x))], 1)
            return self.fc(self.drop(torch.flatten(x, 1)))

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        net.bn.running_mean.normal_(0, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    net.eval()
    x = torch.randn(4, 3, 13, 13)
    path = tmp_path / "torch.onnx"
    torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                      dynamic_axes={"x": {0: "N"}}, training=getattr(torch.onnx.TrainingMode, training))
    model = corenet.import_onnx(path)
    assert ("BatchNorm2d" in {type(layer).__name__ for layer in model.layers}) == (training == "PRESERVE")
    with torch.no_grad():
        close(model.predict(x.numpy()), net(x).numpy())
    model.compile(optim.SGD(lr=0.05), "cross_entropy")
    y = np.arange(4) % 10
    losses = [model.train_on_batch(x.numpy(), y) for _ in range(5)]
    assert losses[-1] < losses[0]
