"""Networks exported by PyTorch (``torch.onnx.export(..., dynamo=False)``) import into corenet with
PyTorch's logits within 1e-4 and then train (the loss falls over a few steps): an AlexNet-style net with
LocalResponseNorm (which PyTorch writes as ~50 primitive nodes, see corenet.io.onnx.patterns) and
overlapping max pooling, an Inception-style block with concatenation, a CIFAR ResNet-20 with
non-trivial batch-norm statistics, and one net per padding form.
"""

import numpy as np
import pytest

import corenet
from corenet import optim

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'corenet[onnx]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (it is in the test extra)")
torch = pytest.importorskip("torch", reason="torch is the reference exporter (in the test extra)")
nn, F = torch.nn, torch.nn.functional

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning",
                                        "ignore:Converting a tensor to a Python boolean")  # torch's tracer


def close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def export_import(net, shape, path, opset=17, batch=4, classes=10, training="EVAL"):
    """Export ``net`` with PyTorch, import it, compare the logits, train 5 SGD steps; the corenet model."""
    torch.manual_seed(0)
    net.eval()
    x = torch.randn(batch, *shape)
    torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=opset, input_names=["x"],
                      dynamic_axes={"x": {0: "N"}}, training=getattr(torch.onnx.TrainingMode, training))
    model = corenet.import_onnx(path)
    with torch.no_grad():
        want = net(x).numpy()
    close(model.predict(x.numpy()), want)
    model.compile(optim.SGD(lr=0.02, momentum=0.9), "cross_entropy")
    y = np.arange(batch) % classes
    losses = [model.train_on_batch(x.numpy(), y) for _ in range(5)]
    assert losses[-1] < losses[0], losses
    return model


def kinds(model):
    return [type(layer).__name__ for layer in model.layers]


class AlexNetStyle(nn.Module):
    def __init__(self, lrn2=4):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 5, stride=2, padding=2), nn.ReLU(),
            nn.LocalResponseNorm(5, alpha=1e-2, beta=0.75, k=2.0), nn.MaxPool2d(3, 2),   # overlapping pools
            nn.Conv2d(16, 24, 3, padding=1, groups=2), nn.ReLU(),
            nn.LocalResponseNorm(lrn2, alpha=3e-2, beta=0.5, k=1.0), nn.MaxPool2d(3, 2))
        self.classifier = nn.Sequential(nn.Dropout(), nn.Linear(24 * 3 * 3, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


@pytest.mark.parametrize("opset", [13, 17])
def test_alexnet_style_with_lrn_and_overlapping_pooling(tmp_path, opset):
    model = export_import(AlexNetStyle(), (3, 32, 32), tmp_path / "alex.onnx", opset)
    lrns = [layer for layer in model.layers if type(layer).__name__ == "LocalResponseNorm"]
    assert [(n.name, n.size, n.alpha, n.beta, n.k) for n in lrns] == [
        ("features_2", 5, pytest.approx(1e-2), 0.75, 2.0), ("features_6", 4, pytest.approx(3e-2), 0.5, 1.0)]
    assert kinds(model).count("MaxPool2d") == 2
    assert not {"Div", "Pow", "Shape"} & set(kinds(model))


class InceptionBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.b1 = nn.Conv2d(16, 8, 1)
        self.b2 = nn.Sequential(nn.Conv2d(16, 6, 1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1))
        self.b3 = nn.Sequential(nn.Conv2d(16, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 5, padding=2))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, padding=1, ceil_mode=True), nn.Conv2d(16, 4, 1))
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@pytest.mark.parametrize("training", ["EVAL", "PRESERVE"])
def test_inception_block_with_concatenation(tmp_path, training):
    net = InceptionBlock()
    with torch.no_grad():
        net.stem[1].running_mean.normal_(0, 0.5)
        net.stem[1].running_var.uniform_(0.5, 2.0)
    model = export_import(net, (3, 12, 12), tmp_path / "incep.onnx", training=training)
    assert "Concat" in kinds(model)


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:  # option B: a projection
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + self.short(x))


class ResNet20(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        layers, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for j in range(3):
                layers.append(Block(cin, cout, stride if j == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))


@pytest.mark.parametrize("training", ["EVAL", "PRESERVE"])
def test_cifar_resnet20_with_batchnorm_statistics(tmp_path, training):
    torch.manual_seed(1)
    net = ResNet20()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    model = export_import(net, (3, 32, 32), tmp_path / "r20.onnx", training=training)
    assert kinds(model).count("Conv2d") == 21
    assert kinds(model).count("BatchNorm2d") == (21 if training == "PRESERVE" else 0)


class Padded(nn.Module):
    def __init__(self, form):
        super().__init__()
        self.form = form
        conv = {"int": dict(padding=1), "pair": dict(padding=(1, 2)), "same": dict(padding="same"),
                "zeropad": {}, "fpad": {}}[form]
        self.pad = nn.ZeroPad2d((1, 2, 0, 1)) if form == "zeropad" else nn.Identity()
        self.conv = nn.Conv2d(3, 6, (4, 3) if form == "same" else 3, **conv)  # 'same' with an even kernel: asymmetric
        self.pool = nn.MaxPool2d(3, 2, padding=1) if form == "int" else nn.AvgPool2d(2)
        self.fc = nn.LazyLinear(10)

    def forward(self, x):
        x = F.pad(x, (0, 1, 2, 0)) if self.form == "fpad" else self.pad(x)
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


@pytest.mark.parametrize("form", ["int", "pair", "zeropad", "fpad", "same"])
def test_each_padding_form(tmp_path, form):
    net = Padded(form)
    net(torch.zeros(1, 3, 9, 10))  # materialise the lazy Linear
    export_import(net, (3, 9, 10), tmp_path / f"pad_{form}.onnx")


def test_a_differing_lrn_pattern_is_refused_with_its_nodes(tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.LocalResponseNorm(5, alpha=1e-2, k=2.0)).eval()
    path = tmp_path / "lrn.onnx"
    torch.onnx.export(net, (torch.randn(2, 3, 9, 9),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], dynamic_axes={"x": {0: "N"}})
    proto = onnx.load(str(path))
    pool = next(n for n in proto.graph.node if n.op_type == "AveragePool")
    next(a for a in pool.attribute if a.name == "count_include_pad").i = 0
    onnx.save(proto, str(tmp_path / "bad_pool.onnx"))
    with pytest.raises(ValueError, match=r"bad_pool\.onnx.*'/1/Div' \(Div\).*'/1/Pow' \(Pow\).*LocalResponseNorm.*"
                                         r"'/1/AveragePool' \(AveragePool\) must average 5 channels"):
        corenet.import_onnx(tmp_path / "bad_pool.onnx")
    next(a for a in pool.attribute if a.name == "count_include_pad").i = 1
    pads = next(n for n in proto.graph.node if n.op_type == "Constant"
                and list(onnx.numpy_helper.to_array(n.attribute[0].t).ravel()) == [0, 0, 0, 0, 2, 2])
    pads.attribute[0].t.CopyFrom(onnx.numpy_helper.from_array(np.array([0, 0, 0, 0, 3, 1], np.int64)))
    onnx.save(proto, str(tmp_path / "bad_pads.onnx"))  # same shapes, another window: caught numerically
    with pytest.raises(ValueError, match=r"bad_pads\.onnx.*'/1/Div' \(Div\).*shape of PyTorch's LocalResponseNorm "
                                         r"\(size 5.*but do not compute it"):
        corenet.import_onnx(tmp_path / "bad_pads.onnx")
