"""Squeeze-and-excitation networks (Hu, Shen and Sun, 2018, "Squeeze-and-excitation networks"):
SE-ResNet-50, a ResNet-50 with an SE unit in every bottleneck block."""

from __future__ import annotations

from ._common import se_unit
from .resnet import resnet

__all__ = ["se_resnet50", "se_unit"]


def se_resnet50(num_classes=1000, in_channels=3, input_size=224, reduction=16, seed=0, **kw):
    """SE-ResNet-50: torchvision's ResNet-50 with squeeze-and-excitation in every bottleneck.

    In each of the 16 bottleneck blocks the residual branch (after ``bn3``) is recalibrated by
    :func:`se_unit` (global average pool, fc ``C -> C/reduction``, ReLU, fc back to ``C``, sigmoid,
    channel-wise multiply) before the shortcut is added, as in Fig. 3 of the paper. The two fully
    connected layers are named ``layer<s>_<b>_se_fc1`` / ``_fc2`` and have biases. With
    ``reduction=16`` and 1000 classes: 28,088,024 parameters (ResNet-50's 25,557,032 plus
    2,530,992 for the SE units; the paper's Table 2 says 28.1M), ~4.1 GMACs at 224x224 (the SE
    units add ~2.5M MACs).

    Parameters
    ----------
    num_classes, in_channels : int
    input_size : int or (int, int)
    reduction : int
        Channel reduction ratio r of the excitation (16 in the paper).
    seed : int
    **kw
        Passed to :func:`corenet.models.resnet.resnet` (e.g. ``width`` for light variants).

    Returns
    -------
    Model
        Input ``(N, in_channels, H, W)``, logits ``(N, num_classes)``.
    """
    return resnet("resnet50", num_classes, in_channels, input_size, seed=seed, se_reduction=reduction,
                  name="se_resnet50", **kw)
