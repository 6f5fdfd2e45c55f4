"""ShuffleNet v2 (Ma, Zhang, Zheng and Sun, 2018, "ShuffleNet V2: practical guidelines for efficient CNN
architecture design"), as torchvision builds it."""

from __future__ import annotations

from .. import layers as L
from ..layers import ChannelSlice
from ._common import bn, build, conv, image_input, relu

# Table 5: output channels of conv1, stages 2-4 and conv5 for each width (the "x" in the names).
WIDTHS = {
    "0.5": (24, 48, 96, 192, 1024),
    "1.0": (24, 116, 232, 464, 1024),
    "1.5": (24, 176, 352, 704, 1024),
    "2.0": (24, 244, 488, 976, 2048),
}
REPEATS = (4, 8, 4)
# PyTorch's default initialisation, which torchvision's ShuffleNetV2 keeps: U(+-1/sqrt(fan_in))
DEFAULT_INIT = "fan_in_uniform"


def _conv_bn(x, out_channels, kernel_size, conv_name, bn_name, stride=1, groups=1):
    x = conv(x, out_channels, kernel_size, conv_name, stride, (kernel_size - 1) // 2, groups,
             kernel_init=DEFAULT_INIT)
    return bn(x, bn_name)


def shuffle_unit(x, out_channels, stride, name):
    """torchvision's ``InvertedResidual`` (Fig. 3c/d of the paper), then a channel shuffle with 2 groups.

    Stride 1: split the channels in two halves; the first passes through, the second goes through
    ``branch2`` (1x1 conv-BN-ReLU, depthwise 3x3 conv-BN, 1x1 conv-BN-ReLU); concatenate. Stride 2:
    no split; ``branch1`` (depthwise 3x3/2 conv-BN, 1x1 conv-BN-ReLU) and ``branch2`` (with a
    stride-2 depthwise convolution) both see the whole input, doubling the width. Names:
    ``<name>_branch1_0..3``, ``<name>_branch2_0, 1, 3, 4, 5, 6`` (torchvision's Sequential indices).
    """
    c_in, half = x.shape[0], out_channels // 2
    if stride == 1:
        if c_in != 2 * half:
            raise ValueError(f"shufflenet_v2: a stride-1 unit keeps the width; {name} gets {c_in} channels "
                             f"and is asked for {out_channels}")
        left, right = ChannelSlice(0, half)(x), ChannelSlice(half, c_in)(x)
    else:
        left = _conv_bn(x, c_in, 3, f"{name}_branch1_0", f"{name}_branch1_1", stride=stride, groups=c_in)
        left = relu(_conv_bn(left, half, 1, f"{name}_branch1_2", f"{name}_branch1_3"))
        right = x
    right = relu(_conv_bn(right, half, 1, f"{name}_branch2_0", f"{name}_branch2_1"))
    right = _conv_bn(right, half, 3, f"{name}_branch2_3", f"{name}_branch2_4", stride=stride, groups=half)
    right = relu(_conv_bn(right, half, 1, f"{name}_branch2_5", f"{name}_branch2_6"))
    return L.ChannelShuffle(2)(L.Concat()([left, right]))


def shufflenet_v2(width="1.0", num_classes=1000, in_channels=3, input_size=224, seed=0):
    """ShuffleNet v2 at one of the paper's widths (``WIDTHS``: "0.5", "1.0", "1.5", "2.0").

    Stem: conv 3x3/2 (24 channels, no bias), BN, ReLU, max pool 3x3/2 pad 1. Stages 2-4 repeat
    :func:`shuffle_unit` 4, 8 and 4 times, the first unit of each with stride 2. Then conv5 1x1, BN,
    ReLU, global average pooling and ``fc``. Every convolution is bias-free and followed by batch
    norm; depthwise convolutions are not followed by ReLU (section 3 of the paper).

    Parameters with 1000 classes (torchvision's counts) and MACs at 224x224 of convolutions and
    ``fc`` (the paper's Table 5 says 41M, 146M, 299M, 591M FLOPs, meaning multiply-adds): x0.5
    1,366,792 (~40M), x1.0 2,278,604 (~145M), x1.5 3,503,624 (~296M), x2.0 7,393,996 (~583M).

    Names are torchvision's (``conv1_0``/``conv1_1``, ``stage2_0_branch1_0``, ``stage3_5_branch2_6``,
    ``conv5_0``/``conv5_1``, ``fc``), so its weights import with :func:`corenet.models.load_torchvision`.
    PyTorch's default initialisation (``U(+-1/sqrt(fan_in))``), which torchvision keeps.

    Parameters
    ----------
    width : {"0.5", "1.0", "1.5", "2.0"}
    num_classes, in_channels : int
    input_size : int or (int, int)
        224 in the paper; at least 32.
    seed : int

    Returns
    -------
    Model
        Input ``(N, in_channels, H, W)``, logits ``(N, num_classes)``.
    """
    width = f"{float(width):.1f}" if isinstance(width, (int, float)) else width
    if width not in WIDTHS:
        raise ValueError(f"shufflenet_v2: width must be one of {sorted(WIDTHS)}. Received: width={width!r}")
    c1, *stages, c5 = WIDTHS[width]
    x = inp = image_input(in_channels, input_size)
    x = relu(_conv_bn(x, c1, 3, "conv1_0", "conv1_1", stride=2))
    x = L.MaxPool2d(3, 2, padding=1)(x)
    for s, (channels, n) in enumerate(zip(stages, REPEATS), start=2):
        for b in range(n):
            x = shuffle_unit(x, channels, 2 if b == 0 else 1, f"stage{s}_{b}")
    x = relu(_conv_bn(x, c5, 1, "conv5_0", "conv5_1"))
    x = L.Flatten()(L.GlobalAvgPool2d()(x))
    out = L.Linear(num_classes, name="fc")(x)
    return build(inp, out, f"shufflenet_v2_x{width.replace('.', '_')}", seed)


def shufflenet_v2_x0_5(num_classes=1000, in_channels=3, input_size=224, seed=0):
    """ShuffleNet v2 0.5x: 1,366,792 parameters, ~40M MACs at 224x224. See :func:`shufflenet_v2`."""
    return shufflenet_v2("0.5", num_classes, in_channels, input_size, seed)


def shufflenet_v2_x1_0(num_classes=1000, in_channels=3, input_size=224, seed=0):
    """ShuffleNet v2 1.0x: 2,278,604 parameters, ~145M MACs at 224x224. See :func:`shufflenet_v2`."""
    return shufflenet_v2("1.0", num_classes, in_channels, input_size, seed)


def shufflenet_v2_x1_5(num_classes=1000, in_channels=3, input_size=224, seed=0):
    """ShuffleNet v2 1.5x: 3,503,624 parameters, ~296M MACs at 224x224. See :func:`shufflenet_v2`."""
    return shufflenet_v2("1.5", num_classes, in_channels, input_size, seed)


def shufflenet_v2_x2_0(num_classes=1000, in_channels=3, input_size=224, seed=0):
    """ShuffleNet v2 2.0x: 7,393,996 parameters, ~583M MACs at 224x224. See :func:`shufflenet_v2`."""
    return shufflenet_v2("2.0", num_classes, in_channels, input_size, seed)
