"""Zoo models against twins written in plain PyTorch with torchvision's module names.

Each twin is torchvision's definition re-typed in ``torch.nn`` (torchvision itself is not a test
dependency). Its random weights go through a ``.npz`` file into the corenet model with
``corenet.models.load_torchvision`` (which wraps ``corenet.io_torch.load_torch_state_dict``); in eval
mode both must produce the same logits. float64 throughout, so the tolerance checks the
architecture, not float32 rounding. Every module path is checked by the strict load.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from zoo_twins import randomize  # noqa: E402

from corenet import models  # noqa: E402
from corenet.models.googlenet import INCEPTION  # noqa: E402
from corenet.models.vgg import CONFIGS  # noqa: E402


# ----------------------------------------------------------------------------------- the twins
class BasicBlock(nn.Module):
    """torchvision's BasicBlock; ``shortcut="A"``: the CIFAR option A (subsample, zero-pad channels)."""

    def __init__(self, cin, planes, stride, shortcut="B"):
        super().__init__()
        self.pad = None
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if (stride != 1 or cin != planes) and shortcut == "A":
            self.pad = (stride, (planes - cin) // 2, planes - cin - (planes - cin) // 2)
        elif stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        h = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        if self.pad is not None:
            s, before, after = self.pad
            return torch.relu(h + nn.functional.pad(x[:, :, ::s, ::s], (0, 0, 0, 0, before, after)))
        return torch.relu(h + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """torchvision's ResNet with basic blocks (``stem=False``: the CIFAR ResNet with projections)."""

    def __init__(self, blocks, widths, num_classes, stem=True, shortcut="B"):
        super().__init__()
        w0 = widths[0]
        self.stem = stem
        self.conv1 = nn.Conv2d(3, w0, 7, 2, 3, bias=False) if stem else nn.Conv2d(3, w0, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w0)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = w0
        for i, (n, w) in enumerate(zip(blocks, widths)):
            layer = []
            for b in range(n):
                layer.append(BasicBlock(cin, w, 2 if (i > 0 and b == 0) else 1, shortcut))
                cin = w
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.n_stages = len(blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        if self.stem:
            x = self.maxpool(x)
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(x.mean((2, 3), keepdim=True), 1))


class AlexNet(nn.Module):
    def __init__(self, num_classes, hidden=4096):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(), nn.Linear(256 * 36, hidden), nn.ReLU(), nn.Dropout(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class VGG(nn.Module):
    def __init__(self, cfg, num_classes, hidden, batch_norm=False):
        super().__init__()
        mods, cin = [], 3
        for v in cfg:
            if v == "M":
                mods.append(nn.MaxPool2d(2, 2))
                continue
            mods.append(nn.Conv2d(cin, v, 3, padding=1))
            mods += [nn.BatchNorm2d(v), nn.ReLU()] if batch_norm else [nn.ReLU()]
            cin = v
        self.features = nn.Sequential(*mods)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 49, hidden), nn.ReLU(), nn.Dropout(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(),
            nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, k, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    def __init__(self, cin, c1, c3r, c3, c5r, c5, cp):
        super().__init__()
        self.branch1 = BasicConv2d(cin, c1, 1)
        self.branch2 = nn.Sequential(BasicConv2d(cin, c3r, 1), BasicConv2d(c3r, c3, 3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(cin, c5r, 1), BasicConv2d(c5r, c5, 3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), BasicConv2d(cin, cp, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    def __init__(self, cin, num_classes):
        super().__init__()
        self.conv = BasicConv2d(cin, 128, 1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = torch.flatten(self.conv(nn.functional.adaptive_avg_pool2d(x, (4, 4))), 1)
        return self.fc2(nn.functional.dropout(torch.relu(self.fc1(x)), 0.7, self.training))


class GoogLeNet(nn.Module):
    """torchvision's GoogLeNet (``transform_input=False``); auxiliary outputs returned in train mode."""

    def __init__(self, num_classes, aux_logits=False):
        super().__init__()
        self.conv1 = BasicConv2d(3, 64, 7, 2, 3)
        self.maxpool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        cin = 192
        for name, spec in INCEPTION.items():
            setattr(self, name, Inception(cin, *spec))
            cin = spec[0] + spec[2] + spec[4] + spec[5]
        self.maxpool3 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.maxpool4 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.aux_logits = aux_logits
        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes)
            self.aux2 = InceptionAux(528, num_classes)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        a1 = self.aux1(x) if self.aux_logits else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        a2 = self.aux2(x) if self.aux_logits else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        out = self.fc(self.dropout(torch.flatten(x.mean((2, 3)), 1)))
        return [out, a1, a2] if self.aux_logits else out


# ----------------------------------------------------------------------------------- the checks
def _compare(net, model, input_shape, tmp_path, seed=0, atol=1e-4):
    net = randomize(net.double(), seed)
    path = tmp_path / "weights.npz"
    np.savez(path, **{k: v.numpy() for k, v in net.state_dict().items()})
    pairs = models.load_torchvision(model, path)  # strict: every name and shape must pair up
    assert {k for k in net.state_dict() if not k.endswith("num_batches_tracked")} <= set(pairs.values())
    x = np.random.default_rng(seed).standard_normal((2, *input_shape))
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    got = model.predict(x) if hasattr(model, "predict") else model.forward(x, training=False)
    got = np.asarray(got[0] if isinstance(got, list) else got)
    assert got.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=0, atol=atol * scale)


def _f64(model):
    return model.astype(np.float64) if hasattr(model, "astype") else model


def test_resnet18_matches_torch(tmp_path):
    net = ResNet((2, 2, 2, 2), (64, 128, 256, 512), 10)
    _compare(net, _f64(models.resnet18(num_classes=10, input_size=64)), (3, 64, 64), tmp_path)


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_resnet20_cifar_matches_torch(tmp_path, shortcut):
    net = ResNet((3, 3, 3), (16, 32, 64), 10, stem=False, shortcut=shortcut)
    _compare(net, _f64(models.resnet20_cifar(shortcut=shortcut)), (3, 32, 32), tmp_path)


def test_googlenet_matches_torch(tmp_path):
    net = GoogLeNet(10)
    _compare(net, _f64(models.googlenet(num_classes=10, aux_logits=False, input_size=96)), (3, 96, 96), tmp_path)


def test_vgg11_matches_torch(tmp_path):
    # 32x32 input: the features end at 1x1 and torchvision's adaptive pool replicates it to 7x7;
    # a 256-wide head keeps the test light (the architecture is otherwise torchvision's VGG-11).
    net = VGG(CONFIGS["vgg11"], 10, hidden=256)
    _compare(net, _f64(models.vgg11(num_classes=10, input_size=32, hidden=256)), (3, 32, 32), tmp_path)


def test_alexnet_matches_torch(tmp_path):
    # 96x96 input: the features end at 2x2 and the adaptive pool replicates them to 6x6; a 256-wide
    # head keeps the weights small (torchvision's AlexNet otherwise).
    net = AlexNet(10, hidden=256)
    _compare(net, _f64(models.alexnet(num_classes=10, input_size=96, hidden=256)), (3, 96, 96), tmp_path)
