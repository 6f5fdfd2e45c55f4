"""EfficientNet-B0 (Tan and Le, 2019, "EfficientNet: rethinking model scaling for convolutional neural
networks"), as torchvision builds it."""

from __future__ import annotations

from .. import layers as L
from ._common import build, conv, image_input
from .mobilenet_v2 import conv_bn_act, make_divisible

# Table 1: expansion, kernel, first stride, input and output channels, repeats of the seven MBConv stages.
B0 = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
      (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]


def squeeze_excitation(x, squeeze_channels, name):
    """torchvision's ``SqueezeExcitation`` with SiLU: ``x * sigmoid(fc2(silu(fc1(gap(x)))))``.

    ``fc1``/``fc2`` are 1x1 convolutions with biases on the pooled ``(N, C, 1, 1)`` map; the gate
    broadcasts over H and W through ``Multiply`` (as :func:`corenet.models._common.se_unit`).
    """
    s = L.GlobalAvgPool2d()(x)  # (N, C, 1, 1)
    s = L.SiLU()(conv(s, squeeze_channels, 1, f"{name}_fc1", bias=True))
    s = L.Sigmoid()(conv(s, x.shape[0], 1, f"{name}_fc2", bias=True))  # (N, C, 1, 1)
    return L.Multiply()([x, s])


def mbconv(x, expand_ratio, kernel_size, stride, out_channels, drop_prob, name):
    """Mobile inverted bottleneck with squeeze-and-excitation (torchvision's ``MBConv``).

    Expand 1x1 (SiLU; absent when the ratio is 1), depthwise ``k x k`` (stride, SiLU), SE with
    ``max(1, C_in // 4)`` squeezed channels, project 1x1 (no activation). When stride is 1 and the
    width is unchanged the branch goes through ``DropPath(drop_prob)`` (if > 0; stochastic depth, "row"
    mode: whole samples) and the input is added. Names: ``<name>_block_<k>_0``/``_1`` for the
    conv/BN pairs, ``<name>_block_<k>_fc1``/``_fc2`` for SE.
    """
    in_channels = x.shape[0]
    expanded = make_divisible(in_channels * expand_ratio)
    h, k = x, 0
    if expanded != in_channels:
        h = conv_bn_act(h, expanded, 1, f"{name}_block_0", activation=L.SiLU)
        k = 1
    h = conv_bn_act(h, expanded, kernel_size, f"{name}_block_{k}", stride=stride, groups=expanded,
                    activation=L.SiLU)
    h = squeeze_excitation(h, max(1, in_channels // 4), f"{name}_block_{k + 1}")
    h = conv_bn_act(h, out_channels, 1, f"{name}_block_{k + 2}")
    if stride == 1 and in_channels == out_channels:
        return L.Add()([L.DropPath(drop_prob)(h) if drop_prob else h, x])
    return h


def efficientnet_b0(num_classes=1000, in_channels=3, input_size=224, dropout=0.2, stochastic_depth=0.2,
                    seed=0):
    """EfficientNet-B0: a 3x3/2 convolution, 16 MBConv blocks in seven stages, a 1x1 convolution to 1280, ``fc``.

    Stages of Table 1 of the paper (``B0``): MBConv1 3x3, MBConv6 3x3, 5x5, 3x3, 5x5, 5x5, 3x3 with
    16, 24, 40, 80, 112, 192, 320 channels; see :func:`mbconv`. SiLU (swish) everywhere, batch norm
    after every convolution (PyTorch's eps 1e-5, as torchvision's B0), dropout 0.2 before
    ``classifier_1``. Stochastic depth grows linearly with depth, as in torchvision: block ``i`` of
    16 (counting from 0 over all stages) drops its residual branch with probability
    ``stochastic_depth * i / 16`` in training (0.0125 for the second block ... 0.1875 for the last).
    With 1000 classes: 5,288,548 parameters (torchvision's count), ~386M MACs at 224x224 (the
    paper: 0.39B FLOPs, meaning multiply-adds).

    Names are torchvision's (``features_0_0``, ``features_2_1_block_2_fc1``, ``features_8_1``,
    ``classifier_1``), so its weights import with :func:`corenet.models.load_torchvision`.
    Initialisation as torchvision's: convolutions He normal (fan out), linear
    ``U(+-1/sqrt(num_classes))``, zero biases.

    Parameters
    ----------
    num_classes, in_channels : int
    input_size : int or (int, int)
        224 for B0; at least 32.
    dropout : float
        Dropout before the classifier.
    stochastic_depth : float
        Drop probability of the last block's residual branch (0 disables stochastic depth).
    seed : int

    Returns
    -------
    Model
        Input ``(N, in_channels, H, W)``, logits ``(N, num_classes)``.
    """
    if not 0.0 <= stochastic_depth < 1.0:
        raise ValueError(f"efficientnet_b0: stochastic_depth must be in [0, 1). Received: {stochastic_depth!r}")
    x = inp = image_input(in_channels, input_size)
    x = conv_bn_act(x, B0[0][3], 3, "features_0", stride=2, activation=L.SiLU)
    total, block = sum(cfg[5] for cfg in B0), 0
    for stage, (t, k, s, _, c, n) in enumerate(B0, start=1):
        for b in range(n):
            p = stochastic_depth * block / total
            x = mbconv(x, t, k, s if b == 0 else 1, c, p, f"features_{stage}_{b}")
            block += 1
    x = conv_bn_act(x, 4 * B0[-1][4], 1, f"features_{len(B0) + 1}", activation=L.SiLU)
    x = L.Dropout(dropout)(L.Flatten()(L.GlobalAvgPool2d()(x)))
    # U(+-1/sqrt(out_features)): He uniform over fan-out with the gain of a leaky ReLU of slope sqrt(5)
    # (sqrt(2 / (1 + 5)) * sqrt(3 / fan_out) = 1 / sqrt(fan_out)), torchvision's classifier init
    fc_init = {"name": "kaiming_uniform", "mode": "fan_out", "nonlinearity": "leaky_relu", "a": 5 ** 0.5}
    out = L.Linear(num_classes, kernel_init=fc_init, bias_init="zeros", name="classifier_1")(x)
    return build(inp, out, "efficientnet_b0", seed)
