"""GoogLeNet / Inception v1 (Szegedy et al., 2014, "Going deeper with convolutions"), as torchvision
builds it and as the paper describes it."""

from __future__ import annotations

from .. import layers as L
from ._common import build, conv, conv_bn_relu, image_input, relu

# Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) of each inception module.
INCEPTION = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}
AUX_LOSS_WEIGHT = 0.3


def googlenet(num_classes=1000, in_channels=3, input_size=224, aux_logits=True, variant="torchvision",
              dropout=None, seed=0):
    """GoogLeNet (Inception v1).

    ``variant="torchvision"`` follows torchvision's ``GoogLeNet`` exactly (names included, with
    ``_`` for ``.``, so its weights import): every convolution is ``BasicConv2d`` = conv without
    bias, batch norm (eps 1e-3), ReLU; the stem is conv 7x7/2 64, max pool 3/2, conv 1x1 64, conv
    3x3 192, max pool 3/2 (ceil mode, no LRN); the "5x5" branch of every inception module uses a
    **3x3** convolution, as torchvision does (a known deviation from the paper kept for weight
    compatibility); dropout 0.2 before ``fc``. 6,624,904 parameters without the auxiliary heads,
    13,004,888 with them; ~1.5 GMACs at 224x224.

    ``variant="paper"`` is the 2014 network: convolutions with bias and ReLU, no batch norm, local
    response normalisation in the stem (after the first pool and after conv 3x3 192; Caffe's
    ``bvlc_googlenet`` settings n=5, alpha=1e-4, beta=0.75, k=1), true 5x5 convolutions
    (padding 2), dropout 0.4; 6,998,552 parameters without the auxiliary heads.

    With ``aux_logits`` the model has three outputs: ``[logits, aux1, aux2]``, the auxiliary
    classifiers branching from inception 4a and 4d (average pool to 4x4, conv 1x1 128, fc 1024,
    ReLU, dropout 0.7, fc). The paper weights their losses by ``AUX_LOSS_WEIGHT`` = 0.3 in
    training: compile with ``loss_weights=[1.0, 0.3, 0.3]``; at inference use the first output
    only (or build with ``aux_logits=False``, whose parameters are a subset with the same names).

    Parameters
    ----------
    num_classes, in_channels : int
    input_size : int or (int, int)
        224 for ImageNet; the network downsamples by 32 and pools globally, so sizes down to 32
        work (torchvision's auxiliary heads pool adaptively to 4x4; the paper's 5x5/3 average pool
        on the 4a/4d maps, input/16 pixels wide, needs an input of at least 80).
    aux_logits : bool
    variant : {"torchvision", "paper"}
    dropout : float, optional
        Dropout before ``fc``: 0.2 (torchvision) or 0.4 (paper) by default.
    seed : int

    Returns
    -------
    Model
        Input ``(N, in_channels, H, W)``; output logits ``(N, num_classes)``, or a list of three.
    """
    if variant not in ("torchvision", "paper"):
        raise ValueError(f"googlenet: variant must be 'torchvision' or 'paper'. Received: variant={variant!r}")
    paper = variant == "paper"
    if dropout is None:
        dropout = 0.4 if paper else 0.2

    def unit(h, out_channels, k, name, stride=1, padding=0):
        """torchvision's BasicConv2d (conv, BN eps 1e-3, ReLU), or conv + bias + ReLU for the paper."""
        if paper:  # no batch norm: fan-in He init keeps the activations' scale through 1x1 reductions
            return relu(conv(h, out_channels, k, name, stride, padding, bias=True, kernel_init="kaiming_normal"))
        return conv_bn_relu(h, out_channels, k, f"{name}_conv", f"{name}_bn", stride, padding, eps=1e-3)

    def lrn(h):
        return L.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0, convention="caffe")(h) if paper else h

    def pool(h, k=3, s=2):
        return L.MaxPool2d(k, s, ceil_mode=True)(h)

    def inception(h, name):
        c1, c3r, c3, c5r, c5, cp = INCEPTION[name]
        k5 = 5 if paper else 3
        b1 = unit(h, c1, 1, f"{name}_branch1")
        b2 = unit(unit(h, c3r, 1, f"{name}_branch2_0"), c3, 3, f"{name}_branch2_1", padding=1)
        b3 = unit(unit(h, c5r, 1, f"{name}_branch3_0"), c5, k5, f"{name}_branch3_1", padding=k5 // 2)
        b4 = unit(L.MaxPool2d(3, 1, padding=1, ceil_mode=True)(h), cp, 1, f"{name}_branch4_1")
        return L.Concat()([b1, b2, b3, b4])

    def aux(h, name):
        # 4x4 maps: torchvision pools adaptively, the paper with a 5x5/3 average pool (on 14x14 maps)
        h = L.AvgPool2d(5, 3)(h) if paper else L.AdaptiveAvgPool2d((4, 4))(h)
        h = L.Flatten()(unit(h, 128, 1, f"{name}_conv"))  # (N, 128*4*4)
        h = L.Dropout(0.7)(relu(L.Linear(1024, name=f"{name}_fc1")(h)))
        return L.Linear(num_classes, name=f"{name}_fc2")(h)

    x = inp = image_input(in_channels, input_size)
    x = lrn(pool(unit(x, 64, 7, "conv1", stride=2, padding=3)))
    x = unit(x, 64, 1, "conv2")
    x = pool(lrn(unit(x, 192, 3, "conv3", padding=1)))
    x = inception(inception(x, "inception3a"), "inception3b")
    x = inception(pool(x), "inception4a")
    aux1 = aux(x, "aux1") if aux_logits else None
    x = inception(inception(inception(x, "inception4b"), "inception4c"), "inception4d")
    aux2 = aux(x, "aux2") if aux_logits else None
    x = pool(inception(x, "inception4e"), k=2)
    x = inception(inception(x, "inception5a"), "inception5b")
    x = L.Dropout(dropout)(L.Flatten()(L.GlobalAvgPool2d()(x)))
    out = L.Linear(num_classes, name="fc")(x)
    outputs = [out, aux1, aux2] if aux_logits else out
    return build(inp, outputs, "googlenet" + ("_paper" if paper else ""), seed)
