"""AlexNet (Krizhevsky, Sutskever and Hinton, 2012, "ImageNet classification with deep convolutional
neural networks"), in torchvision's single-tower form and in the paper's form."""

from __future__ import annotations

from .. import layers as L
from ._common import build, image_input


def alexnet(num_classes=1000, in_channels=3, input_size=None, variant="torchvision", hidden=4096,
            dropout=0.5, seed=0):
    """AlexNet.

    ``variant="torchvision"`` (default, 61,100,840 parameters, ~0.71 GMACs at 224x224) is
    torchvision's single-tower model, from the "one weird trick" paper (Krizhevsky, 2014):
    conv 64@11x11/4 pad 2, max pool 3/2, conv 192@5x5 pad 2, max pool 3/2, conv 384, 256, 256@3x3
    pad 1, max pool 3/2, adaptive average pool to 6x6, dropout, fc 4096, dropout, fc 4096, fc.
    Layer names are torchvision's (``features_0`` ... ``classifier_6`` for ``features.0`` ...), so its
    weights import.

    ``variant="paper"`` is the 2012 network on 227x227 inputs (the size the paper's arithmetic
    needs; the paper says 224): conv 96@11x11/4, conv 256@5x5 pad 2 in two groups, conv 384@3x3
    pad 1 (all-to-all), conv 384@3x3 and 256@3x3 pad 1 in two groups (the two GPU towers), ReLU
    after every layer, local response normalisation after the first two convolutions (n=5, k=2,
    alpha=1e-4, beta=0.75 in the paper's convention, i.e. alpha not divided by n), overlapping
    3x3/2 max pooling after both normalisations and after conv5, dropout 0.5 before fc6 and fc7,
    and the paper's initialisation (weights N(0, 0.01^2), biases 1 in conv2, conv4, conv5, fc6 and
    fc7, 0 elsewhere). 60,965,224 parameters with 1000 classes (the paper says "60 million").

    Parameters
    ----------
    num_classes, in_channels : int
    input_size : int or (int, int), optional
        224 for torchvision's variant, 227 for the paper's.
    variant : {"torchvision", "paper"}
    hidden : int
        Width of the two hidden fully connected layers (4096 in both definitions; smaller values
        make light CIFAR-style adaptations).
    dropout : float
        Dropout probability before the two hidden fully connected layers.
    seed : int

    Returns
    -------
    Model
        Input ``(N, in_channels, H, W)``, logits ``(N, num_classes)``.
    """
    if variant == "torchvision":
        return _alexnet_torchvision(num_classes, in_channels, input_size or 224, hidden, dropout, seed)
    if variant == "paper":
        return _alexnet_paper(num_classes, in_channels, input_size or 227, hidden, dropout, seed)
    raise ValueError(f"alexnet: variant must be 'torchvision' or 'paper'. Received: variant={variant!r}")


def _alexnet_torchvision(num_classes, in_channels, input_size, hidden, dropout, seed):
    x = inp = image_input(in_channels, input_size)
    x = L.ReLU()(L.Conv2d(64, 11, stride=4, padding=2, name="features_0")(x))
    x = L.MaxPool2d(3, 2)(x)
    x = L.ReLU()(L.Conv2d(192, 5, padding=2, name="features_3")(x))
    x = L.MaxPool2d(3, 2)(x)
    x = L.ReLU()(L.Conv2d(384, 3, padding=1, name="features_6")(x))
    x = L.ReLU()(L.Conv2d(256, 3, padding=1, name="features_8")(x))
    x = L.ReLU()(L.Conv2d(256, 3, padding=1, name="features_10")(x))
    x = L.MaxPool2d(3, 2)(x)
    x = L.Flatten()(L.AdaptiveAvgPool2d((6, 6))(x))  # (N, 256*6*6)
    x = L.ReLU()(L.Linear(hidden, name="classifier_1")(L.Dropout(dropout)(x)))
    x = L.ReLU()(L.Linear(hidden, name="classifier_4")(L.Dropout(dropout)(x)))
    out = L.Linear(num_classes, name="classifier_6")(x)
    return build(inp, out, "alexnet", seed)


def _alexnet_paper(num_classes, in_channels, input_size, hidden, dropout, seed):
    # section 5: weights N(0, 0.01^2); biases 1 in conv2, conv4, conv5 and the hidden fc layers, else 0
    w = {"name": "normal", "std": 0.01}
    one = {"name": "constant", "value": 1.0}

    def conv(h, out_channels, k, name, bias_init, **kw):
        return L.ReLU()(L.Conv2d(out_channels, k, kernel_init=w, bias_init=bias_init, name=name, **kw)(h))

    def fc(h, out_features, name, bias_init):
        return L.Linear(out_features, kernel_init=w, bias_init=bias_init, name=name)(h)

    def lrn(h):  # section 3.3: k=2, n=5, alpha=1e-4, beta=0.75, alpha applied undivided
        return L.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0, convention="paper")(h)

    x = inp = image_input(in_channels, input_size)
    x = L.MaxPool2d(3, 2)(lrn(conv(x, 96, 11, "features_0", "zeros", stride=4)))  # 55x55 -> 27x27
    x = L.MaxPool2d(3, 2)(lrn(conv(x, 256, 5, "features_4", one, padding=2, groups=2)))  # -> 13x13
    x = conv(x, 384, 3, "features_8", "zeros", padding=1)
    x = conv(x, 384, 3, "features_10", one, padding=1, groups=2)
    x = conv(x, 256, 3, "features_12", one, padding=1, groups=2)
    x = L.Flatten()(L.MaxPool2d(3, 2)(x))  # (N, 256*6*6) at 227x227
    x = L.ReLU()(fc(L.Dropout(dropout)(x), hidden, "classifier_1", one))
    x = L.ReLU()(fc(L.Dropout(dropout)(x), hidden, "classifier_4", one))
    out = fc(x, num_classes, "classifier_6", "zeros")
    return build(inp, out, "alexnet_paper", seed)
