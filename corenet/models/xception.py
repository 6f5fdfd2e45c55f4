"""Xception (Chollet, 2017, "Xception: deep learning with depthwise separable convolutions"), as Keras
builds it (``keras.applications.Xception``)."""

from __future__ import annotations

from .. import layers as L
from ._common import bn, build, image_input

# Keras's defaults for what its Xception leaves unset: Glorot-uniform kernels, batch-norm epsilon 1e-3.
GLOROT = "glorot_uniform"
EPS = 1e-3


def _sep_bn(x, out_channels, name, activate_first=True):
    """(ReLU ->) SeparableConv2d 3x3 'same', no bias -> BN: Keras's ``<name>_act``, ``<name>``, ``<name>_bn``."""
    if activate_first:
        x = L.ReLU()(x)
    x = L.SeparableConv2d(out_channels, 3, padding=1, bias=False, kernel_init=GLOROT, name=name)(x)
    return bn(x, f"{name}_bn", EPS)


def _downsampling_block(x, widths, block, activate_first=True):
    """Two separable convolutions, max pool 3x3/2 'same', plus a 1x1/2 conv-BN shortcut (Fig. 5, entry flow)."""
    residual = L.Conv2d(widths[-1], 1, stride=2, bias=False, kernel_init=GLOROT, name=f"block{block}_residual")(x)
    residual = bn(residual, f"block{block}_residual_bn", EPS)
    x = _sep_bn(x, widths[0], f"block{block}_sepconv1", activate_first)
    x = _sep_bn(x, widths[1], f"block{block}_sepconv2")
    x = L.MaxPool2d(3, 2, padding="same")(x)
    return L.Add()([x, residual])


def xception(num_classes=1000, in_channels=3, input_size=299, seed=0):
    """Xception: entry flow, eight middle-flow blocks, exit flow (Fig. 5 of the paper), as in Keras.

    Entry flow: conv 32@3x3/2 and 64@3x3 ('valid', no bias, BN, ReLU); three blocks of two
    separable 3x3 convolutions (128, 256, 728 channels) with max pool 3x3/2 'same' and a 1x1/2
    convolution shortcut. Middle flow: eight residual blocks of three ReLU-separable-BN units at 728
    channels. Exit flow: separable 728 and 1024 with pool and shortcut, then separable 1536 and 2048
    with ReLU, global average pooling and ``predictions`` (logits; Keras applies softmax in the layer).
    Separable convolutions are :class:`corenet.layers.SeparableConv2d` (depthwise then pointwise,
    nothing between, no bias); every convolution is followed by batch norm (Keras's eps 1e-3).

    'same' padding: 1 for the 3x3 stride-1 separable convolutions, 0 for the 1x1/2 shortcuts (the
    same thing at any size), TensorFlow's rule for the pools (``MaxPool2d(padding="same")``: the
    extra pixel goes bottom/right at even sizes). At 299x299 the maps are 149, 147, 74, 37, 19, 10.

    With 1000 classes: 22,855,952 parameters (Keras's trainable count; its other 54,528 are the
    batch-norm moving statistics, buffers here), ~8.4 GMACs at 299x299. Names are Keras's layer
    names (``block1_conv1``, ``block1_conv1_bn``, ``block5_sepconv2``, ``block14_sepconv2_bn``,
    ``predictions``) with ``block<b>_residual``/``_residual_bn`` for the shortcut convolutions Keras
    leaves unnamed. Initialisation as Keras's: Glorot uniform kernels (both halves of the separable
    convolutions too), zero classifier bias.

    Parameters
    ----------
    num_classes, in_channels : int
    input_size : int or (int, int)
        299 in the paper and Keras; at least 71 (Keras's minimum).
    seed : int

    Returns
    -------
    Model
        Input ``(N, in_channels, H, W)``, logits ``(N, num_classes)``.
    """
    x = inp = image_input(in_channels, input_size)
    # entry flow
    x = L.Conv2d(32, 3, stride=2, bias=False, kernel_init=GLOROT, name="block1_conv1")(x)
    x = L.ReLU()(bn(x, "block1_conv1_bn", EPS))
    x = L.Conv2d(64, 3, bias=False, kernel_init=GLOROT, name="block1_conv2")(x)
    x = L.ReLU()(bn(x, "block1_conv2_bn", EPS))
    x = _downsampling_block(x, (128, 128), 2, activate_first=False)
    x = _downsampling_block(x, (256, 256), 3)
    x = _downsampling_block(x, (728, 728), 4)
    # middle flow
    for block in range(5, 13):
        h = x
        for i in (1, 2, 3):
            h = _sep_bn(h, 728, f"block{block}_sepconv{i}")
        x = L.Add()([h, x])
    # exit flow
    x = _downsampling_block(x, (728, 1024), 13)
    x = L.ReLU()(_sep_bn(x, 1536, "block14_sepconv1", activate_first=False))
    x = L.ReLU()(_sep_bn(x, 2048, "block14_sepconv2", activate_first=False))
    x = L.Flatten()(L.GlobalAvgPool2d()(x))
    out = L.Linear(num_classes, kernel_init=GLOROT, bias_init="zeros", name="predictions")(x)
    return build(inp, out, "xception", seed)
