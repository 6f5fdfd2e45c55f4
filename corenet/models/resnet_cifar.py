"""ResNet for CIFAR-10 (He, Zhang, Ren and Sun, 2015, "Deep residual learning for image recognition",
section 4.2): depth 6n+2, three stages of n basic blocks with 16, 32 and 64 channels."""

from __future__ import annotations

from .. import layers as L
from ..layers import ChannelPad
from ._common import build, classifier_head, conv_bn_relu, image_input, relu


def shortcut_a(x, out_channels, stride):
    """Option A (section 4.2): identity with stride-``stride`` subsampling and zero-padded new channels.

    Subsampling is a 1x1 max pool with stride 2 (``x[:, :, ::2, ::2]``); the extra channels are
    split evenly before and after the input's (as in the widely used reference code), so the
    shortcut has no parameters.
    """
    in_channels = x.shape[0]
    if stride != 1:
        x = L.MaxPool2d(1, stride)(x)
    extra = out_channels - in_channels
    if extra:
        x = ChannelPad(extra // 2, extra - extra // 2)(x)
    return x


def cifar_block(x, planes, stride, name, shortcut):
    """Basic block: two 3x3 conv-BN pairs, the shortcut added, ReLU (torchvision's naming)."""
    h = conv_bn_relu(x, planes, 3, f"{name}_conv1", f"{name}_bn1", stride=stride, padding=1)
    h = conv_bn_relu(h, planes, 3, f"{name}_conv2", f"{name}_bn2", padding=1, activation=False)
    if stride == 1 and x.shape[0] == planes:
        s = x
    elif shortcut == "A":
        s = shortcut_a(x, planes, stride)
    else:  # option B: 1x1 projection with batch norm where the shape changes
        s = conv_bn_relu(x, planes, 1, f"{name}_downsample_0", f"{name}_downsample_1", stride=stride,
                         activation=False)
    return relu(L.Add()([h, s]))


def resnet_cifar(depth=20, num_classes=10, in_channels=3, input_size=32, shortcut="A", width=16, seed=0):
    """A CIFAR ResNet of ``depth = 6n + 2`` layers (ResNet-20/32/44/56/110 for n = 3, 5, 7, 9, 18).

    ``conv 3x3 (width) -> BN -> ReLU``, three stages of ``n`` basic blocks with ``width``,
    ``2*width``, ``4*width`` channels (the first block of stages 2 and 3 has stride 2), global
    average pooling, ``fc``. Convolutions have no bias. Shortcuts are identities except where the
    shape changes, where ``shortcut`` picks the paper's option:

    - ``"A"``: zero-padded identity (parameter-free; the paper's CIFAR experiments, Table 6);
    - ``"B"``: 1x1 projection with batch norm. ResNet-20 has 272,474 parameters with option B and
      269,722 with option A (paper: 0.27M).

    Parameters
    ----------
    depth : int
        6n + 2.
    num_classes, in_channels : int
    input_size : int or (int, int)
        32 for CIFAR; any size the two stride-2 stages divide works.
    shortcut : {"A", "B"}
    width : int
        Channels of the first stage (16 in the paper); smaller values make tiny test models.
    seed : int

    Returns
    -------
    Model
        Input ``(N, in_channels, H, W)``, logits ``(N, num_classes)``.
    """
    if (depth - 2) % 6 or depth < 8:
        raise ValueError(f"resnet_cifar: depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110). Received: {depth}")
    if shortcut not in ("A", "B"):
        raise ValueError(f"resnet_cifar: shortcut must be 'A' or 'B'. Received: shortcut={shortcut!r}")
    n = (depth - 2) // 6
    x = inp = image_input(in_channels, input_size)
    x = conv_bn_relu(x, width, 3, "conv1", "bn1", padding=1)
    for stage in range(3):
        for b in range(n):
            stride = 2 if (stage > 0 and b == 0) else 1
            x = cifar_block(x, width * 2**stage, stride, f"layer{stage + 1}_{b}", shortcut)
    out = classifier_head(x, num_classes)
    return build(inp, out, f"resnet{depth}_cifar", seed)


def _make(depth):
    def constructor(num_classes=10, in_channels=3, input_size=32, shortcut="A", seed=0, **kw):
        return resnet_cifar(depth, num_classes, in_channels, input_size, shortcut, seed=seed, **kw)

    constructor.__name__ = constructor.__qualname__ = f"resnet{depth}_cifar"
    constructor.__doc__ = f"ResNet-{depth} for CIFAR (n={(depth - 2) // 6}). See :func:`resnet_cifar`."
    return constructor


resnet20_cifar = _make(20)
resnet32_cifar = _make(32)
resnet44_cifar = _make(44)
resnet56_cifar = _make(56)
resnet110_cifar = _make(110)
