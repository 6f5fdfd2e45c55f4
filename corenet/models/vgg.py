"""VGG (Simonyan and Zisserman, 2014, "Very deep convolutional networks for large-scale image
recognition"), configurations A, B, D and E as torchvision builds them."""

from __future__ import annotations

from .. import layers as L
from ._common import build, conv, image_input

# Table 1 of the paper: output channels of each 3x3 convolution, "M" for a 2x2/2 max pool.
CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


def vgg(config, num_classes=1000, in_channels=3, input_size=224, batch_norm=False, hidden=4096, dropout=0.5,
        seed=0):
    """A VGG network from a configuration name of ``CONFIGS`` (torchvision's ``VGG``).

    ``features`` (3x3 convolutions with padding 1 and bias, each followed by ReLU, or by batch norm
    and ReLU when ``batch_norm``; 2x2/2 max pools), adaptive average pooling to 7x7 (a no-op at
    224x224; smaller inputs are pooled up to 7x7 as in torchvision), then ``fc hidden -> ReLU ->
    dropout -> fc hidden -> ReLU -> dropout -> fc num_classes``. Layer names are torchvision's
    (``features_<i>``, ``classifier_0/3/6``, ``_`` for ``.``), so its weights import. VGG-16 has 138,357,544
    parameters and ~15.5 GMACs at 224x224; VGG-11 132,863,336.

    Parameters
    ----------
    config : {"vgg11", "vgg13", "vgg16", "vgg19"}
    num_classes, in_channels : int
    input_size : int or (int, int)
        At least 32: the five pools halve it five times.
    batch_norm : bool
    hidden : int
        Width of the two hidden fully connected layers (4096 in the paper; smaller values give a
        light head for small images).
    dropout : float
    seed : int

    Returns
    -------
    Model
        Input ``(N, in_channels, H, W)``, logits ``(N, num_classes)``.
    """
    if config not in CONFIGS:
        raise ValueError(f"vgg: config must be one of {sorted(CONFIGS)}. Received: config={config!r}")
    x = inp = image_input(in_channels, input_size)
    i = 0  # torchvision's index into nn.Sequential "features"
    for v in CONFIGS[config]:
        if v == "M":
            x = L.MaxPool2d(2, 2)(x)
            i += 1
            continue
        x = conv(x, v, 3, f"features_{i}", padding=1, bias=True)
        if batch_norm:
            x = L.BatchNorm2d(name=f"features_{i + 1}")(x)
            i += 1
        x = L.ReLU()(x)
        i += 2
    x = L.Flatten()(L.AdaptiveAvgPool2d((7, 7))(x))  # (N, 512*7*7)
    x = L.Dropout(dropout)(L.ReLU()(L.Linear(hidden, name="classifier_0")(x)))
    x = L.Dropout(dropout)(L.ReLU()(L.Linear(hidden, name="classifier_3")(x)))
    out = L.Linear(num_classes, name="classifier_6")(x)
    return build(inp, out, config + ("_bn" if batch_norm else ""), seed)


def vgg11(num_classes=1000, in_channels=3, input_size=224, batch_norm=False, seed=0, **kw):
    """VGG-11 (configuration A): 132,863,336 parameters. See :func:`vgg`."""
    return vgg("vgg11", num_classes, in_channels, input_size, batch_norm, seed=seed, **kw)


def vgg13(num_classes=1000, in_channels=3, input_size=224, batch_norm=False, seed=0, **kw):
    """VGG-13 (configuration B): 133,047,848 parameters. See :func:`vgg`."""
    return vgg("vgg13", num_classes, in_channels, input_size, batch_norm, seed=seed, **kw)


def vgg16(num_classes=1000, in_channels=3, input_size=224, batch_norm=False, seed=0, **kw):
    """VGG-16 (configuration D): 138,357,544 parameters, ~15.5 GMACs. See :func:`vgg`."""
    return vgg("vgg16", num_classes, in_channels, input_size, batch_norm, seed=seed, **kw)


def vgg19(num_classes=1000, in_channels=3, input_size=224, batch_norm=False, seed=0, **kw):
    """VGG-19 (configuration E): 143,667,240 parameters. See :func:`vgg`."""
    return vgg("vgg19", num_classes, in_channels, input_size, batch_norm, seed=seed, **kw)
