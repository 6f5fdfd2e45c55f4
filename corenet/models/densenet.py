"""DenseNet (Huang, Liu, van der Maaten and Weinberger, 2017, "Densely connected convolutional
networks"): torchvision's ImageNet DenseNet-BC models and the CIFAR DenseNet-BC."""

from __future__ import annotations

from .. import layers as L
from ._common import bn, build, conv, image_input, relu

BLOCKS = {"densenet121": (6, 12, 24, 16), "densenet169": (6, 12, 32, 32), "densenet201": (6, 12, 48, 32)}


def dense_layer(x, growth_rate, bn_size, name):
    """BN-ReLU-conv 1x1 (``bn_size * growth_rate``) -> BN-ReLU-conv 3x3 (``growth_rate``), concatenated to ``x``."""
    h = conv(relu(bn(x, f"{name}_norm1")), bn_size * growth_rate, 1, f"{name}_conv1")
    h = conv(relu(bn(h, f"{name}_norm2")), growth_rate, 3, f"{name}_conv2", padding=1)
    return L.Concat()([x, h])


def dense_block(x, n_layers, growth_rate, bn_size, name):
    """``n_layers`` dense layers; layer ``i`` sees the block input and every earlier layer's output."""
    for i in range(n_layers):
        x = dense_layer(x, growth_rate, bn_size, f"{name}_denselayer{i + 1}")
    return x


def transition(x, out_channels, name):
    """BN-ReLU-conv 1x1 (compression) -> 2x2/2 average pooling."""
    return L.AvgPool2d(2, 2)(conv(relu(bn(x, f"{name}_norm")), out_channels, 1, f"{name}_conv"))


def _densenet(x, blocks, growth_rate, bn_size, compression):
    channels = x.shape[0]
    for i, n in enumerate(blocks):
        x = dense_block(x, n, growth_rate, bn_size, f"features_denseblock{i + 1}")
        channels += n * growth_rate
        if i != len(blocks) - 1:
            channels = int(channels * compression)
            x = transition(x, channels, f"features_transition{i + 1}")
    return relu(bn(x, f"features_norm{len(blocks) + 1}"))


def _head(x, num_classes):
    return L.Linear(num_classes, name="classifier")(L.Flatten()(L.GlobalAvgPool2d()(x)))


def densenet(config, num_classes=1000, in_channels=3, input_size=224, growth_rate=32, num_init_features=64,
             bn_size=4, seed=0):
    """An ImageNet DenseNet-BC as torchvision builds it (``config`` in ``BLOCKS``).

    Stem conv 7x7/2 (64, no bias), BN, ReLU, max pool 3x3/2 pad 1; four dense blocks of bottleneck
    layers with growth rate 32 joined by transitions that halve the channels and the resolution;
    final BN and ReLU, global average pooling, ``classifier``. Names are torchvision's with ``_``
    for ``.`` (``features_denseblock2_denselayer3_conv1.weight``). DenseNet-121 has 7,978,856
    parameters (~2.9 GMACs at 224x224).

    Parameters
    ----------
    config : {"densenet121", "densenet169", "densenet201"}
    num_classes, in_channels : int
    input_size : int or (int, int)
        At least 32 (downsampling by 32, global pooling).
    growth_rate, num_init_features, bn_size : int
        32, 64 and 4 in the paper; smaller values give light variants.
    seed : int

    Returns
    -------
    Model
        Input ``(N, in_channels, H, W)``, logits ``(N, num_classes)``.
    """
    if config not in BLOCKS:
        raise ValueError(f"densenet: config must be one of {sorted(BLOCKS)}. Received: config={config!r}")
    x = inp = image_input(in_channels, input_size)
    x = relu(bn(conv(x, num_init_features, 7, "features_conv0", stride=2, padding=3), "features_norm0"))
    x = L.MaxPool2d(3, 2, padding=1)(x)
    x = _densenet(x, BLOCKS[config], growth_rate, bn_size, 0.5)
    return build(inp, _head(x, num_classes), config, seed)


def densenet121(num_classes=1000, in_channels=3, input_size=224, seed=0, **kw):
    """DenseNet-121: 7,978,856 parameters. See :func:`densenet`."""
    return densenet("densenet121", num_classes, in_channels, input_size, seed=seed, **kw)


def densenet169(num_classes=1000, in_channels=3, input_size=224, seed=0, **kw):
    """DenseNet-169: 14,149,480 parameters. See :func:`densenet`."""
    return densenet("densenet169", num_classes, in_channels, input_size, seed=seed, **kw)


def densenet201(num_classes=1000, in_channels=3, input_size=224, seed=0, **kw):
    """DenseNet-201: 20,013,928 parameters. See :func:`densenet`."""
    return densenet("densenet201", num_classes, in_channels, input_size, seed=seed, **kw)


def densenet_bc_cifar(depth=100, growth_rate=12, num_classes=10, in_channels=3, input_size=32, compression=0.5,
                      seed=0):
    """DenseNet-BC for CIFAR (section 3 of the paper): ``depth = 6n + 4``, three dense blocks of ``n``
    bottleneck layers.

    Stem conv 3x3 with ``2 * growth_rate`` channels (no bias), dense blocks of BN-ReLU-conv 1x1
    (``4k``)-BN-ReLU-conv 3x3 (``k``) layers, transitions (BN-ReLU-conv 1x1 with ``compression``,
    2x2 average pool) between them, BN-ReLU, global average pooling, ``classifier``.
    DenseNet-BC (L=100, k=12) has 769,162 parameters with 10 classes (paper: 0.8M).

    Parameters
    ----------
    depth : int
        6n + 4 (100, 190, 250 in the paper); 10 gives one layer per block.
    growth_rate : int
    num_classes, in_channels : int
    input_size : int or (int, int)
    compression : float
        Fraction of channels a transition keeps (theta = 0.5 for BC).
    seed : int

    Returns
    -------
    Model
        Input ``(N, in_channels, H, W)``, logits ``(N, num_classes)``.
    """
    if (depth - 4) % 6 or depth < 10:
        raise ValueError(f"densenet_bc_cifar: depth must be 6n+4 with n >= 1 (e.g. 40, 100). Received: {depth}")
    n = (depth - 4) // 6
    x = inp = image_input(in_channels, input_size)
    x = conv(x, 2 * growth_rate, 3, "features_conv0", padding=1)
    x = _densenet(x, (n, n, n), growth_rate, 4, compression)
    return build(inp, _head(x, num_classes), f"densenet_bc{depth}_k{growth_rate}_cifar", seed)
