"""The model zoo: classic CNN families built with the public graph API (``Input``, layers, ``Model``).

Every constructor takes ``num_classes``, ``in_channels``, ``input_size`` (where the architecture
allows more than one) and ``seed``, and returns an uncompiled :class:`~corenet.Model`.

>>> from corenet import models
>>> m = models.get_model("resnet20_cifar", shortcut="B")
>>> sum(p.size for p in m.parameters().values())
272474

Weights exported from torchvision (``np.savez(path, **{k: v.numpy() for k, v in sd.items()})``)
import with ``corenet.io_torch.load_torch_state_dict(m, path, name_map=models.torchvision_name_map(m))``
or :func:`load_torchvision`: corenet's layer names are torchvision's module paths with ``_`` for ``.``.
"""

from __future__ import annotations

from ._common import torchvision_name_map
from .alexnet import alexnet
from .densenet import densenet121, densenet169, densenet201, densenet_bc_cifar
from .efficientnet import efficientnet_b0
from .googlenet import AUX_LOSS_WEIGHT, googlenet
from .lenet import lenet5
from .mobilenet import mobilenet_v1
from .mobilenet_v2 import mobilenet_v2
from .resnet import resnet18, resnet34, resnet50, resnet101, resnet152
from .resnet_cifar import (
    resnet20_cifar,
    resnet32_cifar,
    resnet44_cifar,
    resnet56_cifar,
    resnet110_cifar,
    resnet_cifar,
)
from .senet import se_resnet50
from .shufflenet import shufflenet_v2_x0_5, shufflenet_v2_x1_0, shufflenet_v2_x1_5, shufflenet_v2_x2_0
from .vgg import vgg11, vgg13, vgg16, vgg19
from .xception import xception
from .zfnet import zfnet

_REGISTRY = {
    f.__name__: f
    for f in (
        lenet5, alexnet, vgg11, vgg13, vgg16, vgg19, googlenet,
        resnet18, resnet34, resnet50, resnet101, resnet152,
        resnet20_cifar, resnet32_cifar, resnet44_cifar, resnet56_cifar, resnet110_cifar,
        densenet121, densenet169, densenet201, densenet_bc_cifar, se_resnet50, mobilenet_v1,
        mobilenet_v2, efficientnet_b0, shufflenet_v2_x0_5, shufflenet_v2_x1_0, shufflenet_v2_x1_5,
        shufflenet_v2_x2_0, xception, zfnet,
    )
}


def available_models() -> list[str]:
    """Names accepted by :func:`get_model`, sorted."""
    return sorted(_REGISTRY)


def get_model(name: str, **kwargs):
    """Build the model registered under ``name`` (see :func:`available_models`) with ``kwargs``.

    >>> get_model("lenet5", num_classes=10, seed=1)  # doctest: +SKIP
    """
    try:
        constructor = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"get_model: unknown model {name!r}; available: {', '.join(available_models())}") from None
    return constructor(**kwargs)


def load_torchvision(model, path_or_dict, strict: bool = True) -> dict:
    """Load a torchvision-format ``state_dict`` (an ``.npz`` of numpy arrays or a dict) into ``model``.

    Pairs torchvision's module paths with corenet's layer names (``.`` -> ``_``) and delegates to
    :func:`corenet.io_torch.load_torch_state_dict`, which checks every name and shape.
    """
    from ..io.pytorch import load_torch_state_dict

    return load_torch_state_dict(model, path_or_dict, strict=strict, name_map=torchvision_name_map(model))


__all__ = ["available_models", "get_model", "load_torchvision", "torchvision_name_map", "AUX_LOSS_WEIGHT",
           *_REGISTRY, "resnet_cifar"]
