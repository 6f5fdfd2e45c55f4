"""MobileNet v2 (Sandler, Howard, Zhu, Zhmoginov and Chen, 2018, "MobileNetV2: inverted residuals and
linear bottlenecks"), as torchvision builds it."""

from __future__ import annotations

from .. import layers as L
from ._common import HE_FAN_OUT, bn, build, conv, image_input

# Table 2: expansion t, output channels c, repeats n, first stride s of the seven bottleneck stages.
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
            (6, 320, 1, 1)]


def make_divisible(v, divisor=8, min_value=None):
    """``v`` rounded to the nearest multiple of ``divisor`` (at least ``min_value``), never more than
    10% below ``v``: the channel rounding of the TensorFlow reference code, kept by torchvision."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def conv_bn_act(x, out_channels, kernel_size, name, stride=1, groups=1, activation=None, eps=1e-5,
                kernel_init=HE_FAN_OUT):
    """torchvision's ``Conv2dNormActivation``: conv (no bias, padding ``(k - 1) // 2``) -> BN -> activation.

    The convolution is ``<name>_0`` and the batch norm ``<name>_1`` (torchvision's ``<name>.0``/``.1``);
    ``activation`` is a layer class (``L.ReLU6``, ``L.SiLU``) or None.
    """
    x = conv(x, out_channels, kernel_size, f"{name}_0", stride, (kernel_size - 1) // 2, groups,
             kernel_init=kernel_init)
    x = bn(x, f"{name}_1", eps)
    return activation()(x) if activation is not None else x


def inverted_residual(x, out_channels, stride, expand_ratio, name):
    """Expand 1x1 (ReLU6), depthwise 3x3 (stride, ReLU6), project 1x1 (linear), + input when shapes agree.

    The linear bottleneck: no activation after the projection (section 3.2). Names follow torchvision's
    ``InvertedResidual.conv``: ``<name>_conv_0_0``/``_0_1`` (expansion, absent when ``t == 1``), the
    depthwise ``Conv2dNormActivation``, then the projection ``conv_<k>`` and its batch norm ``conv_<k+1>``.
    """
    in_channels = x.shape[0]
    hidden = int(round(in_channels * expand_ratio))
    h, k = x, 0
    if expand_ratio != 1:
        h = conv_bn_act(h, hidden, 1, f"{name}_conv_0", activation=L.ReLU6)
        k = 1
    h = conv_bn_act(h, hidden, 3, f"{name}_conv_{k}", stride=stride, groups=hidden, activation=L.ReLU6)
    h = bn(conv(h, out_channels, 1, f"{name}_conv_{k + 1}"), f"{name}_conv_{k + 2}")
    if stride == 1 and in_channels == out_channels:
        return L.Add()([x, h])
    return h


def mobilenet_v2(num_classes=1000, in_channels=3, input_size=224, width=1.0, dropout=0.2, seed=0):
    """MobileNet v2: a 3x3/2 convolution, 17 inverted residual blocks, a 1x1 convolution to 1280, ``fc``.

    Each block expands its input ``t`` times with a 1x1 convolution, filters it with a depthwise 3x3
    convolution and projects it back with a linear 1x1 convolution; batch norm after each, ReLU6
    after the first two; the input is added when stride is 1 and the width is unchanged. Stages of
    Table 2: ``SETTINGS``. ``width`` (alpha) scales every width, rounded to multiples of 8 by
    :func:`make_divisible`; the last convolution keeps 1280 channels for ``width <= 1``. Dropout
    0.2 before ``classifier_1`` (torchvision). With ``width=1.0`` and 1000 classes: 3,504,872
    parameters (torchvision's count) and ~301M MACs at 224x224 (the paper: 300M multiply-adds).

    Names are torchvision's: ``features_0_0``/``_0_1`` (stem conv/BN), ``features_<i>_conv_...`` for
    the blocks (i from 1 to 17), ``features_18_0``/``_1``, ``classifier_1``, so its weights import
    with :func:`corenet.models.load_torchvision`. Initialisation as torchvision's: convolutions He
    normal (fan out), linear ``N(0, 0.01^2)``, zero biases.

    Parameters
    ----------
    num_classes, in_channels : int
    input_size : int or (int, int)
        224 in the paper (also 96-192); at least 32.
    width : float
        Width multiplier alpha (0.35-1.4 in the paper).
    dropout : float
    seed : int

    Returns
    -------
    Model
        Input ``(N, in_channels, H, W)``, logits ``(N, num_classes)``.
    """
    if not 0 < width <= 4:
        raise ValueError(f"mobilenet_v2: width must be in (0, 4]. Received: width={width!r}")
    x = inp = image_input(in_channels, input_size)
    x = conv_bn_act(x, make_divisible(32 * width), 3, "features_0", stride=2, activation=L.ReLU6)
    i = 1
    for t, c, n, s in SETTINGS:
        for b in range(n):
            x = inverted_residual(x, make_divisible(c * width), s if b == 0 else 1, t, f"features_{i}")
            i += 1
    x = conv_bn_act(x, make_divisible(1280 * max(1.0, width)), 1, f"features_{i}", activation=L.ReLU6)
    x = L.Flatten()(L.GlobalAvgPool2d()(x))
    out = L.Linear(num_classes, kernel_init={"name": "normal", "std": 0.01}, bias_init="zeros",
                   name="classifier_1")(L.Dropout(dropout)(x))
    return build(inp, out, "mobilenet_v2" if width == 1.0 else f"mobilenet_v2_{width:g}", seed)
