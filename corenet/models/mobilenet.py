"""MobileNet v1 (Howard et al., 2017, "MobileNets: efficient convolutional neural networks for mobile
vision applications")."""

from __future__ import annotations

from .. import layers as L
from ._common import build, conv_bn_relu, image_input

# Table 1: (output channels, stride) of the 13 depthwise separable layers.
LAYERS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
          (512, 1), (1024, 2), (1024, 1)]


def mobilenet_v1(num_classes=1000, in_channels=3, input_size=224, width=1.0, dropout=0.0, seed=0):
    """MobileNet v1: a 3x3/2 convolution then 13 depthwise separable convolutions.

    Each separable layer is a depthwise 3x3 convolution (``groups = channels``, stride 1 or 2)
    followed by a pointwise 1x1 convolution, each with batch norm and ReLU; convolutions have no
    bias. Global average pooling and ``fc``. ``width`` is the paper's width multiplier alpha
    (channels ``int(c * alpha)``); resolution is ``input_size``. With ``width=1.0`` and 1000 classes:
    4,231,976 parameters (paper: 4.2M) and ~569M MACs at 224x224 (paper: 569M). Names:
    ``conv1``/``bn1``, ``blocks_<i>_dw``/``_dwbn``/``_pw``/``_pwbn`` (i from 1 to 13), ``fc``.

    Parameters
    ----------
    num_classes, in_channels : int
    input_size : int or (int, int)
        224 (also 192, 160, 128 in the paper); at least 32.
    width : float
        Width multiplier alpha in (0, 1] (1.0, 0.75, 0.5, 0.25 in the paper).
    dropout : float
        Dropout before ``fc`` (0 in the paper; some reference code uses 1e-3).
    seed : int

    Returns
    -------
    Model
        Input ``(N, in_channels, H, W)``, logits ``(N, num_classes)``.
    """
    if not 0 < width <= 4:
        raise ValueError(f"mobilenet_v1: width must be in (0, 4]. Received: width={width!r}")

    def ch(c):
        return max(1, int(c * width))

    x = inp = image_input(in_channels, input_size)
    x = conv_bn_relu(x, ch(32), 3, "conv1", "bn1", stride=2, padding=1)
    channels = ch(32)
    for i, (c, s) in enumerate(LAYERS, start=1):
        x = conv_bn_relu(x, channels, 3, f"blocks_{i}_dw", f"blocks_{i}_dwbn", stride=s, padding=1, groups=channels)
        x = conv_bn_relu(x, ch(c), 1, f"blocks_{i}_pw", f"blocks_{i}_pwbn")
        channels = ch(c)
    x = L.Flatten()(L.GlobalAvgPool2d()(x))
    if dropout:
        x = L.Dropout(dropout)(x)
    out = L.Linear(num_classes, name="fc")(x)
    return build(inp, out, f"mobilenet_v1_{width:g}", seed)
