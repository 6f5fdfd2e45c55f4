"""PyTorch twins of issue 17's zoo families, for tests/test_models_zoo2.py (torch is imported: import
this module only after ``pytest.importorskip("torch")``).

torchvision's MobileNetV2, EfficientNet-B0 and ShuffleNetV2 re-typed in ``torch.nn`` with torchvision's
module paths (torchvision does not install beside the torch used here), Keras's Xception with
Keras's layer names as module names, and the ZFNet of the paper's Fig. 3.
"""

import torch

nn, tF = torch.nn, torch.nn.functional


def randomize(net, seed):
    """Random weights and non-trivial batch-norm statistics, so eval mode tests every tensor
    (tests/test_models_torch.py, tests/test_models_zoo2.py)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g, dtype=t.dtype))
            elif name.endswith("running_mean") or name.endswith("bias"):
                t.copy_(0.1 * torch.randn(t.shape, generator=g, dtype=t.dtype))
            elif t.ndim == 1:  # batch-norm scale
                t.copy_(1 + 0.1 * torch.randn(t.shape, generator=g, dtype=t.dtype))
            else:
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=g, dtype=t.dtype) * (2.0 / fan_in) ** 0.5)
    return net.eval()


# ----------------------------------------------------------------------------------- twins: torchvision
def _make_divisible(v, divisor=8):
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _cna(cin, cout, k, stride=1, groups=1, act=nn.ReLU6):
    """torchvision's Conv2dNormActivation."""
    mods = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*mods, act()) if act is not None else nn.Sequential(*mods)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hidden = int(round(cin * t))
        self.use_res = stride == 1 and cin == cout
        mods = [_cna(cin, hidden, 1)] if t != 1 else []
        mods += [_cna(hidden, hidden, 3, stride, hidden), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*mods)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes, width=1.0):
        super().__init__()
        cin = _make_divisible(32 * width)
        feats = [_cna(3, cin, 3, 2)]
        for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                           (6, 160, 3, 2), (6, 320, 1, 1)]:
            for i in range(n):
                feats.append(InvertedResidual(cin, _make_divisible(c * width), s if i == 0 else 1, t))
                cin = _make_divisible(c * width)
        last = _make_divisible(1280 * max(1.0, width))
        feats.append(_cna(cin, last, 1))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(tF.adaptive_avg_pool2d(self.features(x), 1), 1))


class SqueezeExcitation(nn.Module):
    def __init__(self, c, squeeze):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(tF.silu(self.fc1(tF.adaptive_avg_pool2d(x, 1)))))


class MBConv(nn.Module):
    def __init__(self, t, k, stride, cin, cout):
        super().__init__()
        self.use_res = stride == 1 and cin == cout
        hidden = _make_divisible(cin * t)
        mods = [_cna(cin, hidden, 1, act=nn.SiLU)] if hidden != cin else []
        mods += [_cna(hidden, hidden, k, stride, hidden, act=nn.SiLU), SqueezeExcitation(hidden, max(1, cin // 4)),
                 _cna(hidden, cout, 1, act=None)]
        self.block = nn.Sequential(*mods)

    def forward(self, x):  # stochastic depth is the identity in eval mode
        return x + self.block(x) if self.use_res else self.block(x)


class EfficientNetB0(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        feats = [_cna(3, 32, 3, 2, act=nn.SiLU)]
        for t, k, s, cin, cout, n in [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2),
                                      (6, 3, 2, 40, 80, 3), (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4),
                                      (6, 3, 1, 192, 320, 1)]:
            feats.append(nn.Sequential(*[MBConv(t, k, s if i == 0 else 1, cin if i == 0 else cout, cout)
                                         for i in range(n)]))
        feats.append(_cna(320, 1280, 1, act=nn.SiLU))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(tF.adaptive_avg_pool2d(self.features(x), 1), 1))


class ShuffleUnit(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.stride, bf = stride, cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                                         nn.Conv2d(cin, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU())
        self.branch2 = nn.Sequential(
            nn.Conv2d(cin if stride > 1 else bf, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU(),
            nn.Conv2d(bf, bf, 3, stride, 1, groups=bf, bias=False), nn.BatchNorm2d(bf),
            nn.Conv2d(bf, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU())

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), 1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        n, c, h, w = out.shape  # channel shuffle, 2 groups
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleNetV2(nn.Module):
    def __init__(self, widths, num_classes):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        cin = widths[0]
        for s, (n, c) in enumerate(zip((4, 8, 4), widths[1:4]), start=2):
            setattr(self, f"stage{s}", nn.Sequential(*[ShuffleUnit(cin if i == 0 else c, c, 2 if i == 0 else 1)
                                                       for i in range(n)]))
            cin = c
        self.conv5 = nn.Sequential(nn.Conv2d(cin, widths[4], 1, bias=False), nn.BatchNorm2d(widths[4]), nn.ReLU())
        self.fc = nn.Linear(widths[4], num_classes)

    def forward(self, x):
        x = tF.max_pool2d(self.conv1(x), 3, 2, 1)
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.fc(x.mean([2, 3]))


# ----------------------------------------------------------------------------------- twins: Keras, paper
class SepConv(nn.Module):
    """Keras's SeparableConv2D 3x3 'same', no bias: depthwise then pointwise."""

    def __init__(self, cin, cout):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


def _max_pool_same(x):
    """Keras's MaxPooling2D(3, 2, padding='same'): TensorFlow's padding, the odd pixel bottom/right."""
    pads = []
    for n in (x.shape[3], x.shape[2]):
        total = max((-(-n // 2) - 1) * 2 + 3 - n, 0)
        pads += [total // 2, total - total // 2]
    return tF.max_pool2d(tF.pad(x, pads, value=float("-inf")), 3, 2)


class Xception(nn.Module):
    """Keras's Xception; module names are Keras's layer names, so the state_dicts pair by name."""

    DOWN = {2: (64, 128, 128), 3: (128, 256, 256), 4: (256, 728, 728), 13: (728, 728, 1024)}

    def __init__(self, num_classes):
        super().__init__()

        def conv_bn(name, module, c):
            setattr(self, name, module)
            setattr(self, f"{name}_bn", nn.BatchNorm2d(c, eps=1e-3))

        conv_bn("block1_conv1", nn.Conv2d(3, 32, 3, 2, bias=False), 32)
        conv_bn("block1_conv2", nn.Conv2d(32, 64, 3, bias=False), 64)
        for b, (cin, c1, c2) in self.DOWN.items():
            conv_bn(f"block{b}_residual", nn.Conv2d(cin, c2, 1, 2, bias=False), c2)
            conv_bn(f"block{b}_sepconv1", SepConv(cin, c1), c1)
            conv_bn(f"block{b}_sepconv2", SepConv(c1, c2), c2)
        for b in range(5, 13):
            for i in (1, 2, 3):
                conv_bn(f"block{b}_sepconv{i}", SepConv(728, 728), 728)
        conv_bn("block14_sepconv1", SepConv(1024, 1536), 1536)
        conv_bn("block14_sepconv2", SepConv(1536, 2048), 2048)
        self.predictions = nn.Linear(2048, num_classes)

    def _unit(self, x, name, act=True):
        x = torch.relu(x) if act else x
        return getattr(self, f"{name}_bn")(getattr(self, name)(x))

    def forward(self, x):
        x = torch.relu(self._unit(x, "block1_conv1", act=False))
        x = torch.relu(self._unit(x, "block1_conv2", act=False))
        for b in (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13):
            if b in self.DOWN:
                r = self._unit(x, f"block{b}_residual", act=False)
                h = self._unit(x, f"block{b}_sepconv1", act=b != 2)
                x = _max_pool_same(self._unit(h, f"block{b}_sepconv2")) + r
            else:
                h = x
                for i in (1, 2, 3):
                    h = self._unit(h, f"block{b}_sepconv{i}")
                x = x + h
        x = torch.relu(self._unit(x, "block14_sepconv1", act=False))
        x = torch.relu(self._unit(x, "block14_sepconv2", act=False))
        return self.predictions(x.mean([2, 3]))


class ZFNet(nn.Module):
    def __init__(self, num_classes, hidden):
        super().__init__()
        lrn = nn.LocalResponseNorm(5, alpha=5 * 1e-4, beta=0.75, k=2.0)  # the paper's alpha 1e-4, torch divides by n

        def pool():
            return nn.MaxPool2d(3, 2, ceil_mode=True)

        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 7, 2, 1), nn.ReLU(), pool(), lrn, nn.Conv2d(96, 256, 5, 2), nn.ReLU(), pool(), lrn,
            nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(), pool())
        self.classifier = nn.Sequential(nn.Dropout(), nn.LazyLinear(hidden), nn.ReLU(), nn.Dropout(),
                                        nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))
