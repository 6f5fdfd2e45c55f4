"""Building blocks shared by the model families: named conv/BN/ReLU stacks, the SE unit, weight names.

Every model in the zoo is a plain graph of public layers (``corenet.layers``) wired with
``Input``/``Model``; nothing here is known to the engine.

Layer names are torchvision's module paths with ``_`` for ``.`` (layer names cannot hold dots):
torchvision's ``layer1.0.conv1.weight`` is corenet's ``layer1_0_conv1.weight``. No torchvision module
path of these families holds an underscore, so the mapping is one-to-one and
:func:`torchvision_name_map` builds the ``name_map`` that ``corenet.io_torch.load_torch_state_dict`` takes.
"""

from __future__ import annotations

import numpy as np

from .. import layers as L
from ..graph import Input
from ..model import Model


def image_input(in_channels: int, input_size, name: str = "input"):
    """An ``Input`` node for ``(in_channels, H, W)`` images; ``input_size`` is an int or ``(H, W)``."""
    h, w = (input_size, input_size) if np.isscalar(input_size) else tuple(input_size)
    return Input((int(in_channels), int(h), int(w)), name=name)


# He et al. (2015) normal initialisation in fan-out mode, what torchvision's ResNet, VGG and
# MobileNet reference code use for convolutions; biases start at zero.
HE_FAN_OUT = {"name": "kaiming_normal", "mode": "fan_out"}


def conv(x, out_channels, kernel_size, name, stride=1, padding=0, groups=1, bias=False, kernel_init=HE_FAN_OUT):
    """A named ``Conv2d`` applied to ``x`` (torchvision's ``nn.Conv2d`` arguments), zero bias."""
    return L.Conv2d(out_channels, kernel_size, stride=stride, padding=padding, groups=groups, bias=bias,
                    kernel_init=kernel_init, bias_init="zeros", name=name)(x)


def bn(x, name, eps=1e-5):
    return L.BatchNorm2d(eps=eps, name=name)(x)


def relu(x):
    return L.ReLU()(x)


def conv_bn_relu(x, out_channels, kernel_size, conv_name, bn_name, stride=1, padding=0, groups=1,
                 eps=1e-5, activation=True):
    """``Conv2d(bias=False)`` -> ``BatchNorm2d`` (-> ``ReLU``), the unit of ResNet, GoogLeNet, MobileNet."""
    x = bn(conv(x, out_channels, kernel_size, conv_name, stride, padding, groups, bias=False), bn_name, eps)
    return relu(x) if activation else x


def classifier_head(x, num_classes, name="fc", dropout=0.0):
    """Global average pooling -> flatten (-> dropout) -> ``Linear(num_classes)``."""
    x = L.Flatten()(L.GlobalAvgPool2d()(x))
    if dropout:
        x = L.Dropout(dropout)(x)
    return L.Linear(num_classes, name=name)(x)


def build(inputs, outputs, name, seed):
    """Wrap the graph in a ``Model`` whose parameters are drawn from ``seed`` (deterministic)."""
    return Model(inputs, outputs, name=name, seed=seed)


def torchvision_name_map(model) -> dict:
    """``{torch_module_path: corenet_layer_name}`` for every layer of ``model`` that holds tensors.

    >>> from corenet.models import resnet18  # doctest: +SKIP
    >>> m = resnet18()  # doctest: +SKIP
    >>> corenet.io_torch.load_torch_state_dict(m, "resnet18.npz", name_map=torchvision_name_map(m))  # doctest: +SKIP
    """
    names = {key.rpartition(".")[0] for key in model.state_dict()}
    return {name.replace("_", "."): name for name in sorted(names)}


def se_unit(x, channels, reduction, name):
    """Squeeze-and-excitation (Hu, Shen and Sun, 2018): ``x * sigmoid(fc2(relu(fc1(gap(x)))))``.

    Squeeze: global average pooling to ``(N, C, 1, 1)``. Excitation: two fully connected layers,
    ``C -> C/reduction -> C`` with biases, written as 1x1 convolutions on the pooled map (the same
    parameters and arithmetic; the names ``<name>.fc1``/``<name>.fc2`` hold ``(C', C, 1, 1)``
    weights). Scale: channel-wise ``Multiply``, broadcasting the gates over H and W.
    """
    s = L.GlobalAvgPool2d()(x)  # (N, C, 1, 1)
    s = relu(conv(s, channels // reduction, 1, f"{name}_fc1", bias=True))
    s = L.Sigmoid()(conv(s, channels, 1, f"{name}_fc2", bias=True))  # (N, C, 1, 1)
    return L.Multiply()([x, s])
