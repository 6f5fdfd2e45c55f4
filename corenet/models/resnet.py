"""ResNet for ImageNet (He, Zhang, Ren and Sun, 2015, "Deep residual learning for image recognition"),
as torchvision builds it ("ResNet v1.5": the bottleneck's stride sits on its 3x3 convolution)."""

from __future__ import annotations

from .. import layers as L
from ._common import build, classifier_head, conv_bn_relu, image_input, relu, se_unit

STAGES = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
EXPANSION = {"basic": 1, "bottleneck": 4}


def basic_block(x, planes, stride, name, project):
    """Two 3x3 conv-BN pairs plus the shortcut, then ReLU: ``relu(bn2(conv2(relu(bn1(conv1 x)))) + s(x))``.

    The shortcut ``s`` is the identity, or a 1x1 strided convolution with batch norm
    (``downsample.0/1``, the paper's option B) when ``project``.
    """
    h = conv_bn_relu(x, planes, 3, f"{name}_conv1", f"{name}_bn1", stride=stride, padding=1)
    h = conv_bn_relu(h, planes, 3, f"{name}_conv2", f"{name}_bn2", padding=1, activation=False)
    return relu(L.Add()([h, _shortcut(x, planes, stride, name, project)]))


def bottleneck_block(x, planes, stride, name, project, se_reduction=None):
    """1x1 reduce -> 3x3 (strided, v1.5) -> 1x1 expand to ``4*planes``, plus the shortcut, then ReLU.

    With ``se_reduction`` a squeeze-and-excitation unit recalibrates the residual branch's channels
    before the addition (Hu, Shen and Sun, 2018): see :func:`corenet.models._common.se_unit`.
    """
    h = conv_bn_relu(x, planes, 1, f"{name}_conv1", f"{name}_bn1")
    h = conv_bn_relu(h, planes, 3, f"{name}_conv2", f"{name}_bn2", stride=stride, padding=1)
    h = conv_bn_relu(h, 4 * planes, 1, f"{name}_conv3", f"{name}_bn3", activation=False)
    if se_reduction:
        h = se_unit(h, 4 * planes, se_reduction, f"{name}_se")
    return relu(L.Add()([h, _shortcut(x, 4 * planes, stride, name, project)]))


def _shortcut(x, channels, stride, name, project):
    if not project:
        return x
    return conv_bn_relu(x, channels, 1, f"{name}_downsample_0", f"{name}_downsample_1", stride=stride,
                        activation=False)


def resnet(depth_name, num_classes=1000, in_channels=3, input_size=224, width=64, seed=0, se_reduction=None,
           name=None):
    """A torchvision ResNet from a name of ``STAGES``.

    Stem: conv 7x7/2 (``width`` channels, no bias), BN, ReLU, max pool 3x3/2 pad 1. Four stages of
    basic or bottleneck blocks with ``width``, 2, 4, 8 times ``width`` planes; the first block of
    stages 2-4 has stride 2 and every stage's first block whose shape changes gets a 1x1 projection
    shortcut. Global average pooling and ``fc``. Names follow torchvision
    (``layer3_1_conv2.weight``, ``layer2_0_downsample_0.weight``, ``fc.bias``; ``.`` becomes ``_``).

    Parameters
    ----------
    depth_name : {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}
    num_classes, in_channels : int
    input_size : int or (int, int)
        Any size of at least 32 (the network downsamples by 32 and pools globally).
    width : int
        Stem width (64 in the paper); smaller values give light variants for tests.
    seed : int
    se_reduction : int, optional
        Squeeze-and-excitation in every block (SE-ResNet, bottleneck only).
    name : str, optional
        Model name (default ``depth_name``).

    Returns
    -------
    Model
        Input ``(N, in_channels, H, W)``, logits ``(N, num_classes)``.
    """
    if depth_name not in STAGES:
        raise ValueError(f"resnet: depth_name must be one of {sorted(STAGES)}. Received: {depth_name!r}")
    kind, blocks = STAGES[depth_name]
    if se_reduction and kind != "bottleneck":
        raise ValueError(f"resnet: squeeze-and-excitation is built for bottleneck ResNets. Received: {depth_name!r}")
    x = inp = image_input(in_channels, input_size)
    x = conv_bn_relu(x, width, 7, "conv1", "bn1", stride=2, padding=3)
    x = L.MaxPool2d(3, 2, padding=1)(x)
    channels = width
    for stage, n in enumerate(blocks):
        planes = width * 2**stage
        for b in range(n):
            stride = 2 if (stage > 0 and b == 0) else 1
            out_channels = planes * EXPANSION[kind]
            project = stride != 1 or channels != out_channels
            block_name = f"layer{stage + 1}_{b}"
            if kind == "basic":
                x = basic_block(x, planes, stride, block_name, project)
            else:
                x = bottleneck_block(x, planes, stride, block_name, project, se_reduction)
            channels = out_channels
    out = classifier_head(x, num_classes)
    return build(inp, out, name or depth_name, seed)


def resnet18(num_classes=1000, in_channels=3, input_size=224, seed=0, **kw):
    """ResNet-18: 11,689,512 parameters, ~1.8 GMACs at 224x224. See :func:`resnet`."""
    return resnet("resnet18", num_classes, in_channels, input_size, seed=seed, **kw)


def resnet34(num_classes=1000, in_channels=3, input_size=224, seed=0, **kw):
    """ResNet-34: 21,797,672 parameters, ~3.6 GMACs. See :func:`resnet`."""
    return resnet("resnet34", num_classes, in_channels, input_size, seed=seed, **kw)


def resnet50(num_classes=1000, in_channels=3, input_size=224, seed=0, **kw):
    """ResNet-50: 25,557,032 parameters, ~4.1 GMACs. See :func:`resnet`."""
    return resnet("resnet50", num_classes, in_channels, input_size, seed=seed, **kw)


def resnet101(num_classes=1000, in_channels=3, input_size=224, seed=0, **kw):
    """ResNet-101: 44,549,160 parameters, ~7.8 GMACs. See :func:`resnet`."""
    return resnet("resnet101", num_classes, in_channels, input_size, seed=seed, **kw)


def resnet152(num_classes=1000, in_channels=3, input_size=224, seed=0, **kw):
    """ResNet-152: 60,192,808 parameters, ~11.5 GMACs. See :func:`resnet`."""
    return resnet("resnet152", num_classes, in_channels, input_size, seed=seed, **kw)
